// OutboxWriter: the one place that appends change records to the edge store's outbox and
// assigns their seq, version and hlc (docs/sync-protocol.md). Every writer of the outbox goes
// through one: EdgeStore on ingest's connection, the disk quota (edge/quota_sqlite.cc) on its
// own. A writer belongs to one connection and is used inside a write transaction (BEGIN
// IMMEDIATE) its owner holds; the write lock makes it the only writer until COMMIT/ROLLBACK.
//
// The rules, kept here only:
//   seq      dense per site, one past the highest ever issued (kLastIssuedSeqSql);
//   version  per (entity, key), 1 for the first record, +1 for each next (entity_versions);
//   hlc      greater than every value already persisted. At the first append of each
//            transaction the writer observes the newest outbox row's hlc and edge_meta's
//            hlc_last (both primary-key reads), so writers on different connections, each
//            with its own clock, still issue hlc in seq order. That is what lets Open()
//            recover the last value from the newest rows by seq instead of a MAX(hlc) scan of
//            the whole outbox (seconds with 10M rows; docs/benchmarks.md).
//   chain    a CLIMATE or COLDCHAIN_ALERT record of a named sensor is the next link of that
//            sensor's cold-chain audit chain (audit/chain.h): Append sets its chain_index,
//            chain_prev and chain_hash and writes coldchain_heads/coldchain_links in the same
//            transaction. When the link's hour (ts_ms / 1 h) is past the hour of the sensor's
//            last link and a signing key is set, a COLDCHAIN_SEAL record of the links not yet
//            sealed is appended first (docs/formats.md, "Cold-chain audit chain").
//
// Thread-safety: as its connection, one thread at a time.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "common/clock.h"
#include "common/status.h"
#include "sqlite/db.h"

namespace freshsync::v1 {
class ChangeRecord;
}
namespace freshsync::audit {
class SigningKey;
}

namespace freshsync::edge {

// The highest seq ever issued, as an SQL expression: the outbox is trimmed only at or below
// acked_seq, so max(outbox.seq, acked_seq) is that; 'seq_floor' lets the sync agent move the
// counter past the hub's after an edge restore (cloud-sync/outbox_schema.h). The next seq is
// this + 1; `edgectl restore` marks the restored copy's last seq with it.
inline constexpr const char* kLastIssuedSeqSql =
    "max(IFNULL((SELECT MAX(seq) FROM outbox), 0), "
    "IFNULL((SELECT MAX(value) FROM sync_state WHERE name IN ('acked_seq', 'seq_floor')), 0))";

// outbox.priority: the sync agent sends the priority lane ahead of the bulk lane.
inline constexpr int kBulkLane = 0;      // vehicle positions, climate readings
inline constexpr int kPriorityLane = 1;  // orders, stock, alerts, geofence events, dock scans

class OutboxWriter {
 public:
  // Prepares the writer's statements on `db` (not owned; must outlive the writer) and
  // recovers the HLC: never at or below a value already persisted, even if the wall clock
  // stepped back meanwhile. A failed read fails: such an HLC must never be issued.
  static Result<std::unique_ptr<OutboxWriter>> Open(sqlite3* db, Clock& clock);

  // Call at every BEGIN, COMMIT and ROLLBACK of the connection: the next seq is read once per
  // write transaction and counted from there, as nobody else appends while the lock is held.
  // The same for the entity versions written in the transaction (NextVersion).
  void NewTransaction() {
    next_seq_ = 0;
    appended_ = false;
    versions_.clear();
  }
  // After ROLLBACK TO a savepoint: the records appended since are gone, so the next seq is read
  // again from what the transaction holds (seq stays dense), and the versions too.
  // appended() stays as it was.
  void Rewind() {
    next_seq_ = 0;
    versions_.clear();
  }
  // True once the open transaction has appended a record.
  bool appended() const { return appended_; }

  // The entity's next version for `key` (1 the first time), claimed in the transaction.
  Result<int64_t> NextVersion(int entity, const std::string& key);
  // Appends one change record with `version`, filling the record's seq, entity, key, version,
  // hlc and ts_ms; returns its seq. entity: the v1::Entity value.
  Result<int64_t> Append(int entity, const std::string& key, int64_t version, int lane, int64_t ts_ms,
                         v1::ChangeRecord& record, int64_t now_ms);
  // NextVersion, then Append: for records whose version is not also written to a domain row.
  Result<int64_t> AppendNext(int entity, const std::string& key, int lane, int64_t ts_ms, v1::ChangeRecord& record,
                             int64_t now_ms);

  uint64_t last_hlc() const { return hlc_.Last(); }

  // The site's key for the chain's hourly seals (not owned; outlives the writer). nullptr: the
  // chain is kept, nothing is sealed.
  void SetSigningKey(const audit::SigningKey* key) { signing_key_ = key; }

 private:
  OutboxWriter(sqlite3* db, Clock& clock) : db_(db), hlc_(clock) {}
  // The record as the next link of its sensor's chain (see "chain" above).
  Status Chain(const std::string& sensor, v1::ChangeRecord& record, int64_t now_ms);
  // One COLDCHAIN_SEAL record of links sealed_index+1..last_index of `sensor`.
  Status Seal(const std::string& sensor, uint64_t first, uint64_t last, const std::string& last_hash, int64_t now_ms);

  sqlite3* db_;
  HybridLogicalClock hlc_;
  sqlite::Stmt version_get_, version_put_, version_new_, next_seq_stmt_, insert_, hlc_save_;
  sqlite::Stmt head_get_, head_put_, link_put_, link_range_, seal_put_;
  const audit::SigningKey* signing_key_ = nullptr;
  int64_t next_seq_ = 0;  // next seq within the open transaction; 0: read it
  // (entity, key) -> the version this transaction last wrote to entity_versions. Only valid
  // while the transaction holds the write lock: cleared at every BEGIN, COMMIT, ROLLBACK and
  // ROLLBACK TO (NewTransaction, Rewind), so no other writer can have moved a row meanwhile.
  std::map<std::pair<int, std::string>, int64_t> versions_;
  bool appended_ = false;
  int64_t hlc_saved_ms_ = 0;  // wall ms of the last edge_meta.hlc_last write
};

}  // namespace freshsync::edge
