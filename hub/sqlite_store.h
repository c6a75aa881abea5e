// SqliteHubStore: HubStore on one SQLite file in WAL mode.
//
// One writer connection (statements prepared once, guarded by a mutex) applies each batch in
// one BEGIN IMMEDIATE transaction; a small pool of read connections serves HQ queries
// concurrently with the writer (WAL readers never block the writer or each other).
// Durability: synchronous=FULL, so a batch is on disk before its BatchAck is sent: commit,
// then ack. A SIGKILL or power cut after the ack loses nothing the edge thinks is held.
//
// Schema: numbered migrations in sqlite_store.cc (the entities' tables from their handlers,
// hub/entity_routes.h), version in PRAGMA user_version; documented
// in docs/architecture-hub.md. Unsigned 64-bit values (version, hlc) are stored as the same
// bits in SQLite's signed INTEGER; seq values are at most 2^62 (refused otherwise).
//
// Thread-safety: as HubStore. Ownership: owns its connections; destroy after the server stops.
#pragma once

#include <memory>
#include <string>

#include "hub/store.h"

namespace freshsync::hub {

struct SqliteHubStoreOptions {
  std::string path;
  int read_connections = 4;
  // FULL: fsync on every commit (the default, see above). NORMAL is for benchmarks and tests
  // that do not cut power.
  bool synchronous_full = true;
};

class SqliteHubStore final : public HubStore {
 public:
  // Opens or creates the database and runs pending migrations.
  // kIOError if the file cannot be opened, kInternal if a migration fails or the file's schema
  // version is newer than this build knows.
  static Result<std::unique_ptr<SqliteHubStore>> Open(const SqliteHubStoreOptions& options);
  ~SqliteHubStore() override;

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

  // The schema version this build migrates to.
  static int SchemaVersion();
  // Tests of migrations only: Open, but migrate no further than `version`.
  static Result<std::unique_ptr<SqliteHubStore>> OpenAtSchemaVersionForTest(const SqliteHubStoreOptions& options,
                                                                             int version);

  struct Impl;

 private:
  explicit SqliteHubStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace freshsync::hub
