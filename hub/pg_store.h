// PgHubStore: HubStore on PostgreSQL (libpq), for several hubd replicas sharing one database
// (issue 13, docs/architecture-hub.md "PostgreSQL store").
//
// A pool of connections; every call takes one. Apply of a batch is one transaction:
//   - serialised per site across replicas by `SELECT ... FOR UPDATE` on the site's row;
//   - records already held (changes or refused_records, by (site, seq)) are duplicates;
//   - the handlers' apply steps, quarantine, quota, positions (the chunk format of
//     hub/position_chunk.h in position_chunks), the site row and the audit row;
//   - last the batch's `changes` rows (binary COPY), after announcing a floor below which its
//     cursors cannot be (a shared transaction-scoped advisory lock); Changes reads only below
//     every floor still held, so a reader never passes a row that commits later, while
//     batches of all replicas commit in parallel (why: architecture-hub.md).
//   - a handler step with a `postgres_batch` form runs once for the batch (unnest of arrays),
//     one with a `postgres_copy` form as one COPY of the batch's rows;
//   - at most `apply_concurrency` batches of the process at once (PgHubStoreOptions).
// Schema: numbered migrations, the same numbers as SqliteHubStore's, run under a session
// advisory lock so replicas starting at once migrate one at a time; version in pg_schema.
//
// Thread-safety: as HubStore. Ownership: owns its connections.
#pragma once

#include <memory>
#include <cstdint>
#include <string>
#include <string_view>

#include "hub/store.h"

namespace freshsync::hub {

struct PgHubStoreOptions {
  std::string url;          // a libpq connection string
  int connections = 4;      // pool size: concurrent applies and reads of this process
  // Batches of this process applied at once; the others wait for a turn in hubd. A batch is
  // ~10 ms of PostgreSQL CPU, so a few per replica keep a server's cores busy; 100 at once (one
  // per pushing site) only queued inside PostgreSQL, on the feed's index and heap pages and
  // the relation extension lock, and every extra backend faulted the shared buffers into its
  // own page tables (docs/benchmarks.md, "Fan-in into PostgreSQL at 0.6 of COPY").
  int apply_concurrency = 4;
};

// The text PgHubStore runs for `sql`: its postgres member, or else its SQLite text with each
// ?N placeholder outside a quoted literal made $N (hub/sql.h says when which applies).
std::string PostgresText(const Sql& sql);

// Rows in COPY's binary format (`COPY t(cols) FROM STDIN BINARY`): nothing for the server to
// parse, no hex for bytes. The store's feed rows, and a benchmark's raw COPY baseline.
class CopyBinaryRows {
 public:
  CopyBinaryRows();                       // the header
  CopyBinaryRows& Row(int fields);        // then exactly `fields` values, in the COPY's column order
  CopyBinaryRows& Int8(int64_t v);        // BIGINT
  CopyBinaryRows& Int4(int32_t v);        // INT
  CopyBinaryRows& Bytes(std::string_view v);  // TEXT (UTF-8) or BYTEA
  // The next Int8's position, for SetInt8 once its value is known.
  size_t Next() const { return buf_.size(); }
  void SetInt8(size_t at, int64_t v);
  const std::string& Finish();            // the trailer; no more rows after it
  bool empty() const { return rows_ == 0; }

 private:
  void BigEndian(uint64_t v, int bytes);
  std::string buf_;
  size_t rows_ = 0;
};

class PgHubStore final : public HubStore {
 public:
  // Connects, then runs pending migrations under the advisory lock.
  // kIOError if the server cannot be reached, kInternal if a migration fails or the database's
  // schema is newer than this build knows.
  static Result<std::unique_ptr<PgHubStore>> Open(const PgHubStoreOptions& options);
  ~PgHubStore() override;

  using HubStore::ApplyBatch;
  Result<ApplyResult> ApplyBatch(const std::string& site, const v1::Batch& batch, int64_t now_ms,
                                 const AuditEntry* audit, const ApplyChecks& checks) override;
  Result<uint64_t> ContiguousSeq(const std::string& site) override;
  Result<std::vector<FeedEntry>> Changes(uint64_t after, int limit) override;
  Result<std::vector<SiteInfo>> Sites() override;
  Status Read(const Sql& sql, const std::function<void(SqlParams&)>& bind,
              const std::function<void(const SqlRow&)>& row) override;
  Result<std::vector<v1::PositionItem>> Track(const std::string& site, const std::string& vehicle, int64_t from_ms,
                                              int64_t to_ms, int limit) override;
  Result<DigestResult> Digest(const std::string& site, uint64_t from, uint64_t to, uint64_t buckets) override;
  Result<StateDigestResult> StateDigest(const std::string& site) override;
  Result<RebuildResult> RebuildState(const std::string& site, const AuditEntry* audit) override;
  Status Write(const std::function<Status(SqlTx&)>& body) override;
  Status AppendAudit(const AuditEntry& entry) override;
  Result<std::vector<AuditEntry>> Audit(uint64_t after, int limit) override;
  Result<bool> HoldLease(const std::string& name, const std::string& holder, int64_t now_ms, int64_t ttl_ms) override;
  Result<uint64_t> RelayCursor(const std::string& name) override;
  Status SetRelayCursor(const std::string& name, uint64_t cursor) override;
  Result<TelemetryUpkeep> MaintainTelemetry(int64_t now_ms, int keep_days) override;

  static int SchemaVersion();

  struct Impl;

 private:
  explicit PgHubStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace freshsync::hub
