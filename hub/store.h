// HubStore: the hub's durable state. Idempotent apply of site batches keyed by (site, seq),
// the HQ change feed in the hub's own ingest order, materialized current state, position
// history, reconciliation digests and the audit log.
//
// SqliteHubStore (sqlite_store.h) is the embedded default; a server database follows later,
// which is why callers see only this interface, plain structs and protobuf messages. What is
// particular to an entity (its table, apply, read) is in its handler, hub/entity_routes.h.
//
// Thread-safety: every method is safe to call from any thread. Writers are serialized by the
// implementation; readers may run concurrently with a writer.
//
// Status codes:
//   kInvalidArgument  the batch breaks a structural rule (seq 0, not consecutive, ...)
//   kIOError          the database failed (disk full, I/O error); the batch was not applied
//   kInternal         the database is corrupt or a statement could not be prepared
// A seq gap is not an error status: ApplyBatch returns ok with ApplyResult::gap set, because
// the caller must answer with the expected seq.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "freshsync.pb.h"
#include "hub/sql.h"
#include "wire/digest.h"

namespace freshsync::hub {

struct ApplyResult {
  bool gap = false;             // refused: first seq > contiguous + 1; nothing was written
  bool over_quota = false;      // refused: the site's bytes for today would exceed the limit; nothing written
  uint64_t quota_used = 0;      // with over_quota: bytes the site has added today
  uint32_t refused = 0;         // records newly quarantined in refused_records (ApplyChecks)
  uint64_t contiguous_seq = 0;  // after the batch
  uint32_t applied = 0;         // records newly held
  uint32_t duplicates = 0;      // records already held
};

struct SiteInfo {
  std::string site;
  uint64_t contiguous_seq = 0;
  uint64_t max_seq = 0;         // highest seq held (urgent records can be above contiguous)
  uint64_t records = 0;         // records held
  int64_t last_push_ms = 0;     // hub wall clock of the last accepted batch
};

struct FeedEntry {
  uint64_t cursor = 0;          // the hub's ingest order, strictly increasing
  std::string site;
  v1::ChangeRecord record;
};

struct AuditEntry {
  uint64_t id = 0;              // assigned by the store
  int64_t ts_ms = 0;
  std::string kind;             // "push", "pull", "digest"
  std::string actor;            // site (certificate CN) or token name
  std::string path;
  uint64_t seq_from = 0;
  uint64_t seq_to = 0;
  uint64_t count = 0;           // records applied (push) or returned (pull)
  int status = 0;               // HTTP status answered
  std::string detail;
};

struct DigestResult {
  uint64_t contiguous_seq = 0;
  struct Range {
    uint64_t from_seq = 0;
    uint64_t to_seq = 0;
    uint64_t count = 0;
    std::string digest;         // 32 raw bytes
  };
  std::vector<Range> ranges;
};

// Current-state digest of a site's stock (wire/digest.h StateDigester).
struct StateDigestResult {
  uint64_t contiguous_seq = 0;
  uint64_t skus = 0;            // stock rows hashed
  std::string digest;           // 32 raw bytes
};

struct RebuildResult {
  uint64_t skus_before = 0;     // stock rows of the site before the rebuild
  uint64_t skus_after = 0;
  uint64_t changed = 0;         // rows inserted, updated or deleted
};

// Hub-side checks that ApplyBatch enforces in the batch's transaction (hub/record_check.h).
struct ApplyChecks {
  // Per record index of the batch: empty = valid; otherwise the reason the record breaks the
  // shared field rules (wire/record_rules.h). A refused record is not applied and not put in
  // the feed; its seq counts as held (so the site's stream moves on) and a row with the seq,
  // entity, version, the key when it is a valid identifier, and the reason goes to
  // `refused_records`. nullptr: every record is valid.
  const std::vector<std::string>* refusals = nullptr;
  // Bytes a site may add per UTC day (records held + refused rows); 0 = unlimited.
  int64_t site_bytes_per_day = 0;
};

// What every store shares of the contract below (hub/store.cc):
// The structural rules of a batch (seq >= 1 and <= 2^62, consecutive in a normal batch,
// increasing in an urgent one); kInvalidArgument names the broken one.
Status ValidateBatch(const v1::Batch& batch);
// Approximate store cost of one held record for site_bytes_per_day: its `changes` row (record
// blob, key in the row and in the unique index) plus fixed row overhead. Materialized state is
// not counted: it is bounded by the number of distinct keys, and each key by the rules.
uint64_t RowBytes(const v1::ChangeRecord& r, size_t blob_bytes);
// The same for a quarantined record's refused_records row.
uint64_t RefusedRowBytes(const v1::ChangeRecord& r, bool key_kept, const std::string& reason,
                         const std::string& field);

// The buckets of one Digest call: Make validates the arguments (kInvalidArgument), Add takes
// each held (seq, entity, version, key) of the range, Finish gives the answer.
class DigestBuckets {
 public:
  static Result<DigestBuckets> Make(uint64_t from, uint64_t to, uint64_t buckets);
  void Add(uint64_t seq, uint32_t entity, uint64_t version, std::string_view key);
  DigestResult Finish(uint64_t contiguous_seq);

 private:
  DigestBuckets() = default;
  uint64_t from_ = 0, to_ = 0, buckets_ = 0;
  std::vector<digest::Bucket> ranges_;
  std::vector<digest::RangeDigester> digesters_;
};

// RebuildState's count of what it changed: Before() for each stock row of the site before;
// then over the held STOCK records in store_sql::kStockRecordsByKey's order, skip a record
// whose SKU is Rebuilt() already (the first valid one of each SKU wins) and call Rebuild()
// with the record whose row was written.
class RebuildCount {
 public:
  void Before(std::string sku, int64_t on_hand, int64_t reserved, uint64_t version);
  bool Rebuilt(const std::string& sku) const { return have_last_ && sku == last_; }
  void Rebuild(const std::string& sku, const v1::ChangeRecord& stock_record);
  RebuildResult Finish() const;  // rows left from before had no held record: deleted

 private:
  struct Row {
    int64_t on_hand, reserved;
    uint64_t version;
  };
  std::map<std::string, Row> before_;
  RebuildResult res_;
  std::string last_;
  bool have_last_ = false;
};

// What one round of telemetry upkeep did (HubStore::MaintainTelemetry).
struct TelemetryUpkeep {
  uint64_t partitions_created = 0;  // PostgreSQL: day partitions made ready (both tables)
  uint64_t partitions_dropped = 0;  // PostgreSQL: whole days removed by retention (both tables)
  uint64_t rows_deleted = 0;        // chunks deleted one by one (SQLite; PostgreSQL's default partition)
  uint64_t readings_deleted = 0;    // climate readings deleted one by one (likewise)
};

// The oldest fix time telemetry retention keeps: the start of the UTC day `keep_days` days
// before now_ms' day (whole days, so PostgreSQL drops a day partition whole).
inline int64_t TelemetryCutoffMs(int64_t now_ms, int keep_days) {
  constexpr int64_t kDayMs = 86400000;
  return (now_ms / kDayMs - keep_days) * kDayMs;
}

class HubStore {
 public:
  virtual ~HubStore() = default;

  // Applies one batch for `site` in one transaction (all or nothing), per docs/sync-protocol.md:
  // a normal batch must be consecutive and start at or below contiguous + 1; an urgent batch
  // holds its records without moving contiguous. Records already held are counted as
  // duplicates and have no second effect. The caller has checked that batch.site() == site.
  // If `audit` is given and the batch is applied, the audit entry is written in the same
  // transaction (count = records applied, status 200): the push and its audit row commit
  // together, with one fsync.
  //
  // `checks`: records refused by the field rules are quarantined instead of applied, and the
  // site's daily byte limit is enforced (ApplyResult::over_quota, nothing written).
  virtual Result<ApplyResult> ApplyBatch(const std::string& site, const v1::Batch& batch, int64_t now_ms,
                                         const AuditEntry* audit, const ApplyChecks& checks) = 0;
  Result<ApplyResult> ApplyBatch(const std::string& site, const v1::Batch& batch, int64_t now_ms,
                                 const AuditEntry* audit) {
    return ApplyBatch(site, batch, now_ms, audit, ApplyChecks{});
  }
  Result<ApplyResult> ApplyBatch(const std::string& site, const v1::Batch& batch, int64_t now_ms) {
    return ApplyBatch(site, batch, now_ms, nullptr);
  }

  // Contiguous seq of a site; 0 for a site never seen.
  virtual Result<uint64_t> ContiguousSeq(const std::string& site) = 0;

  // Up to `limit` changes with cursor > after, in cursor order.
  virtual Result<std::vector<FeedEntry>> Changes(uint64_t after, int limit) = 0;

  virtual Result<std::vector<SiteInfo>> Sites() = 0;
  // Runs one read of an entity's handler (hub/entity_routes.h) on a read connection: `bind`
  // sets the statement's parameters, `row` gets each result row in order. The per-site HQ
  // reads all go through here, so the store has no method per entity.
  virtual Status Read(const Sql& sql, const std::function<void(SqlParams&)>& bind,
                      const std::function<void(const SqlRow&)>& row) = 0;

  // Positions of `vehicle` reported by `site` with from_ms <= ts <= to_ms, oldest first, at
  // most `limit`. Not a handler's SQL read: the history is kept in the store's own chunk
  // format (hub/position_chunk.h), decoded here.
  virtual Result<std::vector<v1::PositionItem>> Track(const std::string& site, const std::string& vehicle,
                                                      int64_t from_ms, int64_t to_ms, int limit) = 0;

  // Reconciliation digest (wire/digest.h); arguments already validated by the caller.
  virtual Result<DigestResult> Digest(const std::string& site, uint64_t from, uint64_t to, uint64_t buckets) = 0;

  // Digest of the site's materialized stock (docs/sync-protocol.md, "State digest"), read in
  // one snapshot together with the site's contiguous seq. A site never seen has 0 rows.
  virtual Result<StateDigestResult> StateDigest(const std::string& site) = 0;

  // Repair: re-derives the site's materialized stock from the records held, in one write
  // transaction: per SKU the STOCK record with the highest version (ties: highest seq) wins,
  // rows without any held record are deleted. If `audit` is given it is written in the same
  // transaction (count = rows changed). Other sites and other tables are untouched.
  virtual Result<RebuildResult> RebuildState(const std::string& site, const AuditEntry* audit) = 0;

  // Runs `body` in one write transaction and commits when it returns ok; any other status rolls
  // back and is returned. Writers are serialised (SQLite: the one writer; PostgreSQL: whatever
  // rows `body` locks with FOR UPDATE). PostgreSQL retries the whole transaction after a
  // deadlock or serialization failure, so `body` must only fill its outputs from its reads.
  // The generic write path of the parts that need no hot-path tuning (hub/downstream_log.h).
  virtual Status Write(const std::function<Status(SqlTx&)>& body) = 0;

  virtual Status AppendAudit(const AuditEntry& entry) = 0;
  // Up to `limit` audit entries with id > after, oldest first.
  virtual Result<std::vector<AuditEntry>> Audit(uint64_t after, int limit) = 0;

  // Leases: at most one holder per `name` among all the processes sharing the store (the hub's
  // replicas), e.g. the one active change-feed relay. Takes the lease when it is free, expired
  // (expires_ms <= now_ms) or already `holder`'s, and then holds it until now_ms + ttl_ms; true
  // when `holder` holds it after the call, false when another holder's lease is still running.
  // The holders' clocks must agree to well within ttl_ms.
  virtual Result<bool> HoldLease(const std::string& name, const std::string& holder, int64_t now_ms, int64_t ttl_ms) = 0;
  // A relay's cursor in the change feed (0 when never set): every change with cursor <= it was
  // delivered. Set by the lease's holder; a stale holder that writes a lower value only causes
  // repeats, which the relay's consumers see as the same message_id.
  virtual Result<uint64_t> RelayCursor(const std::string& name) = 0;
  virtual Status SetRelayCursor(const std::string& name, uint64_t cursor) = 0;

  // Telemetry upkeep ([retention] telemetry_days, docs/operations.md "Telemetry retention"):
  // position history and climate history are time-partitioned, and removed once older than
  // `keep_days` days before now_ms (a chunk goes when its newest fix does; keep_days 0 = keep
  // everything).
  //   PostgreSQL: position_chunks is partitioned by day of ts_min, climate_readings by day of
  //     ts_ms (declarative partitioning), both the same way.
  //     Each round makes the partitions from a week back to three days ahead (moving any rows of
  //     those days out of the DEFAULT partition, which takes what no day partition covers: a
  //     site back after a longer outage, a wrong device clock), and drops whole day partitions
  //     past retention: no row-by-row delete, no bloat, no vacuum debt. The default partition's
  //     old rows are deleted.
  //   SQLite: the old chunks and readings are deleted.
  // Run by one replica at a time (hub/telemetry_upkeep.h holds a lease); safe beside writers.
  virtual Result<TelemetryUpkeep> MaintainTelemetry(int64_t now_ms, int keep_days) = 0;
};

}  // namespace freshsync::hub
