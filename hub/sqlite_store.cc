#include "hub/sqlite_store.h"

#include "wire/record_rules.h"

#include <sqlite3.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

#include "wire/digest.h"
#include "hub/conn_pool.h"
#include "hub/entity_routes.h"
#include "hub/position_chunk.h"
#include "hub/store_sql.h"
#include "sqlite/db.h"
#include "sqlite/migrate.h"

namespace freshsync::hub {

namespace {

// ---------- Connections: the toolkit's Db and Stmt (sqlite/db.h) ----------

using sqlite::ResetGuard;
using sqlite::Stmt;

// The one mapping, sqlite/status.h. Before it the hub mapped BUSY/LOCKED to kUnavailable and
// CONSTRAINT to kIOError; hub/server.cc answers 503 to all three alike.
Status DbError(sqlite3* db, int rc, const std::string& what) { return sqlite::StatusFor(rc, what, db); }

// Steps `q` (bound already) through its result, calling `row()` on each row; the first error
// ends it, as `what` on `db`.
template <typename RowFn>
Status EachRow(sqlite3* db, Stmt& q, const char* what, RowFn row) {
  while (true) {
    const int rc = q.Step();
    if (rc == SQLITE_DONE) return Status::Ok();
    if (rc != SQLITE_ROW) return DbError(db, rc, what);
    row();
  }
}

// A connection (the toolkit's Db) with its statement cache.
class Conn {
 public:
  ~Conn() { cache_.clear(); }  // finalize before close
  Status Open(const std::string& path, bool create) {
    sqlite::OpenOptions o;
    o.create = create;
    o.busy_timeout_ms = 5000;
    auto db = sqlite::Db::Open(path, o);
    if (!db.ok()) return db.status();
    db_ = std::move(*db);
    return Status::Ok();
  }
  Status Exec(const std::string& sql) { return db_.Exec(sql); }
  // Statements are prepared once per connection and cached by the address of their text
  // (always a string literal), so the per-record hot path costs one hash lookup, no allocation.
  Result<Stmt*> Prepare(const char* sql) {
    auto it = cache_.find(sql);
    if (it != cache_.end()) return &it->second;
    auto st = db_.Prepare(sql, true);
    if (!st.ok()) return st.status();
    return &cache_.emplace(sql, std::move(*st)).first->second;
  }
  sqlite3* db() const { return db_.get(); }

 private:
  sqlite::Db db_;
  std::unordered_map<const char*, Stmt> cache_;
};

// The handlers' view of a statement (hub/sql.h): parameters and result columns.
class StmtParams final : public SqlParams {
 public:
  explicit StmtParams(Stmt& st) : st_(st) {}
  SqlParams& Int(int i, int64_t v) override { return st_.Bind(i, v), *this; }
  SqlParams& Real(int i, double v) override { return st_.BindDouble(i, v), *this; }
  SqlParams& Text(int i, std::string_view v) override { return st_.Bind(i, v), *this; }
  SqlParams& Blob(int i, std::string_view v) override { return st_.BindBlob(i, v), *this; }
  SqlParams& TextRef(int i, const std::string& v) override { return st_.BindRef(i, v), *this; }
  SqlParams& BlobRef(int i, const std::string& v) override { return st_.BindBlobRef(i, v), *this; }
  SqlParams& Null(int i) override { return st_.BindNull(i), *this; }

 private:
  Stmt& st_;
};

class StmtRow final : public SqlRow {
 public:
  explicit StmtRow(const Stmt& st) : st_(st) {}
  int64_t Int(int c) const override { return st_.Int(c); }
  double Real(int c) const override { return st_.Real(c); }
  std::string Text(int c) const override { return st_.Text(c); }

 private:
  const Stmt& st_;
};

// ---------- Schema ----------

// Numbered migrations: index i migrates user_version i to i + 1. Never edit a shipped one's
// effect. Each entry is the store's own part; the tables of the entities are their handlers'
// (hub/entity_routes.h EntitySchema()) and run in the migration their handler names, after the
// store's part. A new entity's table is a new entry here (its handler holds the DDL).
const std::vector<std::string>& Migrations() {
  static const std::vector<std::string> m = [] {
    std::vector<std::string> sql = {
      // 1: initial schema (with the handlers' stock, orders, alerts and geofence_events).
      R"sql(
CREATE TABLE sites(
  site_id        INTEGER PRIMARY KEY,
  site           TEXT    NOT NULL UNIQUE,
  contiguous_seq INTEGER NOT NULL DEFAULT 0,   -- every seq <= it is held
  max_seq        INTEGER NOT NULL DEFAULT 0,
  records        INTEGER NOT NULL DEFAULT 0,
  last_push_ms   INTEGER NOT NULL DEFAULT 0
);
-- One row per record held; cursor is the hub's ingest order (the HQ feed cursor).
-- Rows are never deleted, so rowids are never reused.
CREATE TABLE changes(
  cursor  INTEGER PRIMARY KEY,
  site_id INTEGER NOT NULL,
  seq     INTEGER NOT NULL,
  entity  INTEGER NOT NULL,
  key     TEXT    NOT NULL,
  version INTEGER NOT NULL,
  record  BLOB    NOT NULL                      -- serialized freshsync.v1.ChangeRecord
);
CREATE UNIQUE INDEX changes_site_seq ON changes(site_id, seq);
CREATE TABLE vehicles(
  vehicle TEXT PRIMARY KEY, site_id INTEGER NOT NULL,
  device_seq INTEGER NOT NULL, lat_e6 INTEGER NOT NULL, lon_e6 INTEGER NOT NULL,
  speed_dkmh INTEGER NOT NULL, heading_deg INTEGER NOT NULL, hdop_d INTEGER NOT NULL,
  ts_ms INTEGER NOT NULL, hlc INTEGER NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX vehicles_site ON vehicles(site_id);
CREATE TABLE positions(
  site_id INTEGER NOT NULL, vehicle TEXT NOT NULL, ts_ms INTEGER NOT NULL, seq INTEGER NOT NULL,
  device_seq INTEGER NOT NULL, lat_e6 INTEGER NOT NULL, lon_e6 INTEGER NOT NULL,
  speed_dkmh INTEGER NOT NULL, heading_deg INTEGER NOT NULL, hdop_d INTEGER NOT NULL, hlc INTEGER NOT NULL,
  PRIMARY KEY(site_id, vehicle, ts_ms, seq)) WITHOUT ROWID;
CREATE TABLE audit(
  id INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL, path TEXT NOT NULL,
  seq_from INTEGER NOT NULL, seq_to INTEGER NOT NULL, count INTEGER NOT NULL, status INTEGER NOT NULL,
  detail TEXT NOT NULL);
)sql",
      // 2: position history in chunks, one row per vehicle per batch instead of one per fix
      // (hub/position_chunk.h has the blob format). The rows of `positions` are moved into
      // chunks by MovePositionsToChunks, in the same transaction, and the table dropped.
      R"sql(
CREATE TABLE position_chunks(
  site_id INTEGER NOT NULL, vehicle TEXT NOT NULL,
  ts_min  INTEGER NOT NULL,  -- first fix's device time; ts_max - ts_min <= kChunkMaxSpanMs
  seq_min INTEGER NOT NULL,  -- first fix's seq (unique per site, so the key is unique)
  ts_max  INTEGER NOT NULL,
  count   INTEGER NOT NULL,  -- fixes in the blob
  fixes   BLOB    NOT NULL,
  PRIMARY KEY(site_id, vehicle, ts_min, seq_min)) WITHOUT ROWID;
)sql",
      // 3: hub-side validation. Records that break the shared field rules
      // (wire/record_rules.h) are quarantined in refused_records instead of applied: their seq
      // counts as held, nothing else of them is kept (no body; the key only when it is a valid
      // identifier), so a refused record costs a bounded row. site_usage counts the bytes each
      // site added per UTC day for limits.site_bytes_per_day. IF NOT EXISTS: hubd builds between
      // the hub-validate merge and this migration created both tables at open on a version-2
      // store, and such a store must migrate too (sqlite_store_test MigrationThreeAdopts...).
      R"sql(
CREATE TABLE IF NOT EXISTS refused_records(
  site_id INTEGER NOT NULL, seq INTEGER NOT NULL,
  entity  INTEGER NOT NULL, version INTEGER NOT NULL,
  key     TEXT,              -- NULL when the key itself broke the rules (too long, bad bytes)
  field   TEXT NOT NULL,     -- the field named by the rule, e.g. 'position.lat_e6'
  reason  TEXT NOT NULL,     -- at most 256 bytes
  received_ms INTEGER NOT NULL,
  PRIMARY KEY(site_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS site_usage(
  site_id INTEGER NOT NULL, day INTEGER NOT NULL,  -- day = hub wall clock ms / 86400000 (UTC)
  bytes   INTEGER NOT NULL,
  PRIMARY KEY(site_id, day)) WITHOUT ROWID;
)sql",
      // 4: pallet scans at dock doors (the handler's dock_scans only).
      "",
      // 5: the RabbitMQ relay (hub/relay/amqp_relay.h): leases elect one active relay across
      // the replicas sharing the store, and the relay's cursor is the feed cursor up to which
      // the broker confirmed every message. Plain SQL, the same in PostgreSQL.
      R"sql(
CREATE TABLE leases(
  name       TEXT    PRIMARY KEY,
  holder     TEXT    NOT NULL,
  expires_ms INTEGER NOT NULL);
CREATE TABLE relay_cursors(
  name   TEXT    PRIMARY KEY,
  cursor INTEGER NOT NULL);
)sql",
      // 6: the downstream logs, HQ to sites (hub/downstream_log.h, docs/architecture-hub.md).
      // A lane per site (its position, and the versions of its fences and rules), the
      // commands, and the network-wide catalog. `digest` is what the idempotency compares.
      R"sql(
CREATE TABLE down_lanes(
  site           TEXT    PRIMARY KEY,
  last_seq       INTEGER NOT NULL DEFAULT 0,
  delivered_seq  INTEGER NOT NULL DEFAULT 0,
  delivered_ms   INTEGER NOT NULL DEFAULT 0,
  seeded         INTEGER NOT NULL DEFAULT 0,
  fences_version INTEGER NOT NULL DEFAULT 0,
  fences_digest  TEXT    NOT NULL DEFAULT '',
  rules_version  INTEGER NOT NULL DEFAULT 0,
  rules_digest   TEXT    NOT NULL DEFAULT '');
CREATE TABLE down_commands(
  site       TEXT    NOT NULL,
  down_seq   INTEGER NOT NULL,
  kind       INTEGER NOT NULL,
  command_id TEXT    NOT NULL,
  digest     TEXT    NOT NULL,
  body       BLOB    NOT NULL,
  sealed     BLOB,
  issued_ms  INTEGER NOT NULL,
  issued_by  TEXT    NOT NULL,
  PRIMARY KEY(site, down_seq),
  UNIQUE(site, command_id));
CREATE INDEX down_commands_by_id ON down_commands(command_id);
CREATE TABLE catalog_items(
  sku        TEXT    PRIMARY KEY,
  version    INTEGER NOT NULL,
  digest     TEXT    NOT NULL,
  body       BLOB    NOT NULL,
  updated_ms INTEGER NOT NULL);
)sql",
      // 7: escrow allotments per (site, sku) (the handler's escrow only; docs/escrow.md).
      "",
      // 8: each site's current HQ fences and cold-chain rules (hub/downstream_log.h
      // DownstreamLog::Current): retention deletes delivered commands, but HQ's reads and a
      // site's rebuild need the current body for good. One row per (site, kind), kind a
      // v1::DownKind, body the serialized v1::DownCommand as appended (its down_seq is the
      // log's business: the read answers 0), written in the append's transaction. Filled from the commands still in the log; a current version
      // whose command was trimmed already comes back with HQ's next PUT.
      R"sql(
CREATE TABLE down_current(
  site       TEXT    NOT NULL,
  kind       INTEGER NOT NULL,
  version    INTEGER NOT NULL,
  body       BLOB    NOT NULL,
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY(site, kind));
INSERT INTO down_current(site, kind, version, body, updated_ms)
  SELECT c.site, c.kind, l.fences_version, c.body, c.issued_ms FROM down_lanes l
  JOIN down_commands c ON c.site = l.site AND c.command_id = 'fences:' || l.fences_version
  WHERE l.fences_version > 0;
INSERT INTO down_current(site, kind, version, body, updated_ms)
  SELECT c.site, c.kind, l.rules_version, c.body, c.issued_ms FROM down_lanes l
  JOIN down_commands c ON c.site = l.site AND c.command_id = 'coldchain-rules:' || l.rules_version
  WHERE l.rules_version > 0;
)sql",
      // 9: PostgreSQL partitions position_chunks by day; SQLite keeps its one table.
      "",
      // 10: webhook deliveries given up on (hub/notify/dead_letters.h): what an admin lists and
      // replays. `replay` 1: asked for and not yet done by the webhook's lease holder.
      R"sql(
CREATE TABLE webhook_deadletters(
  id         INTEGER PRIMARY KEY,
  webhook    TEXT    NOT NULL,
  event      TEXT    NOT NULL,
  site       TEXT    NOT NULL,
  idem_key   TEXT    NOT NULL,
  body       TEXT    NOT NULL,
  attempts   INTEGER NOT NULL,
  last_error TEXT    NOT NULL,
  dead_ms    INTEGER NOT NULL,
  replay     INTEGER NOT NULL DEFAULT 0,
  replays    INTEGER NOT NULL DEFAULT 0);
CREATE INDEX webhook_deadletters_by_hook ON webhook_deadletters(webhook, replay, id);
)sql",
      // 11: the cold-chain audit chain's links, seals and pinned keys (the handler's only;
      // hub/entity_routes.cc ColdchainHandler, docs/formats.md "Cold-chain audit chain").
      "",
      // 12: the climate history, one row per CLIMATE reading (the handler's climate_readings
      // only; hub/entity_routes.cc ClimateHandler). Partitioned by day on PostgreSQL. Readings
      // held before this migration stay in the feed only.
      "",
    };
    for (const SchemaStep& step : EntitySchema()) {
      // A handler naming a migration not listed here is caught at open (Migrate()).
      if (step.migration >= 1 && static_cast<size_t>(step.migration) <= sql.size())
        sql[static_cast<size_t>(step.migration) - 1] += step.ddl.sqlite;
    }
    return sql;
  }();
  return m;
}

constexpr const char* kInsertChange =
    "INSERT OR IGNORE INTO changes(site_id, seq, entity, key, version, record) VALUES(?1, ?2, ?3, ?4, ?5, ?6)";
// Writes the fixes of one (site, vehicle), sorted by (ts_ms, seq), as chunks (ChunkEnd).
// Used by the writer per batch and by migration 2.
Status InsertChunks(Conn& db, int64_t site_id, const std::string& vehicle, const std::vector<ChunkFix>& fixes,
                    std::string* blob) {
  auto ins = db.Prepare(store_sql::kInsertChunk.sqlite);
  if (!ins.ok()) return ins.status();
  Stmt& st = **ins;
  size_t begin = 0;
  while (begin < fixes.size()) {
    const size_t end = ChunkEnd(fixes, begin);
    blob->clear();
    EncodeChunk(fixes.data() + begin, end - begin, blob);
    st.Bind(1, site_id).BindRef(2, vehicle).Bind(3, fixes[begin].ts_ms).Bind(4, fixes[begin].seq);
    st.Bind(5, fixes[end - 1].ts_ms).Bind(6, static_cast<int64_t>(end - begin)).BindBlobRef(7, *blob);
    const int rc = st.Step();
    st.Reset();
    if (rc != SQLITE_DONE) return DbError(db.db(), rc, "insert position chunk");
    begin = end;
  }
  return Status::Ok();
}

// The records of a batch as stored in `changes.record`: record i is bytes[ends[i-1], ends[i]).
struct SerializedRecords {
  std::string bytes;
  std::vector<size_t> ends;
  std::string_view Record(int i) const {
    const size_t begin = i == 0 ? 0 : ends[static_cast<size_t>(i) - 1];
    return std::string_view(bytes).substr(begin, ends[static_cast<size_t>(i)] - begin);
  }
};

// A fix from nine columns starting at `c`: ts_ms, seq, device_seq, lat_e6, lon_e6, speed_dkmh,
// heading_deg, hdop_d, hlc (the order of the old positions table).
ChunkFix FixFromColumns(const Stmt& s, int c) {
  ChunkFix f;
  f.ts_ms = s.Int(c);
  f.seq = s.UInt(c + 1);
  f.device_seq = s.UInt(c + 2);
  f.lat_e6 = static_cast<int32_t>(s.Int(c + 3));
  f.lon_e6 = static_cast<int32_t>(s.Int(c + 4));
  f.speed_dkmh = static_cast<uint32_t>(s.Int(c + 5));
  f.heading_deg = static_cast<uint32_t>(s.Int(c + 6));
  f.hdop_d = static_cast<uint32_t>(s.Int(c + 7));
  f.hlc = s.UInt(c + 8);
  return f;
}

// Migration 2's data step: every `positions` row into chunks, then the table goes.
Status MovePositionsToChunks(Conn& db) {
  auto sel = db.Prepare(
      "SELECT site_id, vehicle, ts_ms, seq, device_seq, lat_e6, lon_e6, speed_dkmh, heading_deg, hdop_d, hlc "
      "FROM positions ORDER BY site_id, vehicle, ts_ms, seq");
  if (!sel.ok()) return sel.status();
  Stmt& q = **sel;
  std::vector<ChunkFix> fixes;
  std::string blob, vehicle;
  int64_t site_id = 0;
  Status s;
  {
    ResetGuard g(q);
    while (true) {
      const int rc = q.Step();
      if (rc != SQLITE_ROW && rc != SQLITE_DONE) return DbError(db.db(), rc, "migration 2: read positions");
      const bool same = rc == SQLITE_ROW && !fixes.empty() && q.Int(0) == site_id && q.Text(1) == vehicle;
      if (!fixes.empty() && !same) {
        if (s = InsertChunks(db, site_id, vehicle, fixes, &blob); !s.ok()) return s;
        fixes.clear();
      }
      if (rc == SQLITE_DONE) break;
      if (fixes.empty()) {
        site_id = q.Int(0);
        vehicle = q.Text(1);
      }
      fixes.push_back(FixFromColumns(q, 2));
    }
  }
  return db.Exec("DROP TABLE positions");
}

}  // namespace

struct SqliteHubStore::Impl {
  SqliteHubStoreOptions options;
  int migrate_to = 0;  // 0: the newest schema (OpenAtSchemaVersionForTest sets it)

  ~Impl() {
    if (checkpoint_thread.joinable()) {
      {
        std::lock_guard<std::mutex> l(ckpt_mu);
        ckpt_stop = true;
      }
      ckpt_cv.notify_one();
      checkpoint_thread.join();
    }
    if (writer.db() != nullptr) sqlite3_wal_hook(writer.db(), nullptr, nullptr);
  }

  // ---------- Checkpoints off the writer's path ----------
  // SQLite's automatic checkpoint runs inside the COMMIT of whichever write crosses the
  // threshold, so one batch in every few paid for copying ~16 MB of WAL into the database and
  // its fsync: 9 % of hubd's CPU during a drain, all of it on the single writer (perf,
  // docs/benchmarks.md). Instead a thread with its own connection checkpoints (PASSIVE: it
  // never blocks the writer or readers) once the WAL holds kCheckpointFrames. Should it fall
  // behind, the writer checkpoints itself at kWriterCheckpointFrames, so the WAL stays bounded.
  // Durability is unchanged: a batch is durable once its COMMIT has synced the WAL.
  static constexpr int kCheckpointFrames = 4000;         // ~16 MB with 4 KiB pages
  static constexpr int kWriterCheckpointFrames = 64000;  // ~256 MB
  Conn checkpointer;
  std::thread checkpoint_thread;
  std::mutex ckpt_mu;
  std::condition_variable ckpt_cv;
  bool ckpt_wanted = false;
  bool ckpt_stop = false;

  // sqlite3_wal_hook: after every commit of the writer, with the WAL's size in frames.
  static int WalHook(void* arg, sqlite3* db, const char* /*schema*/, int frames) {
    auto* self = static_cast<Impl*>(arg);
    if (frames >= kWriterCheckpointFrames) {
      (void)sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    } else if (frames >= kCheckpointFrames) {
      {
        std::lock_guard<std::mutex> l(self->ckpt_mu);
        self->ckpt_wanted = true;
      }
      self->ckpt_cv.notify_one();
    }
    return SQLITE_OK;
  }

  void CheckpointLoop() {
    std::unique_lock<std::mutex> l(ckpt_mu);
    while (true) {
      ckpt_cv.wait(l, [&] { return ckpt_wanted || ckpt_stop; });
      if (ckpt_stop) return;
      ckpt_wanted = false;
      l.unlock();
      // SQLITE_BUSY (another checkpoint under way) and errors leave the frames for the next
      // round or for the writer's own checkpoint; nothing is lost either way.
      (void)sqlite3_wal_checkpoint_v2(checkpointer.db(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      l.lock();
    }
  }

  std::mutex write_mu;  // guards writer and site_ids
  Conn writer;
  std::unordered_map<std::string, int64_t> site_ids;

  ConnPool<Conn> readers;
  ConnPool<Conn>::Lease AcquireReader() { return readers.Acquire(); }

  // The numbered migrations as the shared runner takes them (sqlite/migrate.h): each one's SQL,
  // and migration 2's data step, commit together with the version bump.
  Status Migrate() {
    const auto& sql = Migrations();
    for (const SchemaStep& step : EntitySchema()) {
      if (step.migration < 1 || static_cast<size_t>(step.migration) > sql.size())
        return Status::Internal("an entity's table names migration " + std::to_string(step.migration) +
                                ", which the list in sqlite_store.cc does not have");
    }
    std::vector<sqlite::Migration> plan;
    for (size_t i = 0; i < sql.size(); ++i) {
      sqlite::Migration m{static_cast<int>(i + 1), "", {sqlite::MigrationStep::Sql(sql[i].c_str())}};
      if (m.version == 2) m.steps.push_back(sqlite::MigrationStep::Data([this](sqlite3*) { return MovePositionsToChunks(writer); }));
      plan.push_back(std::move(m));
    }
    sqlite::MigrateOptions o;
    o.program = "hubd";
    o.target = migrate_to;
    auto v = sqlite::Migrate(writer.db(), plan, o);
    return v.ok() ? Status::Ok() : v.status();
  }

  // Site id for `site`, creating the row inside the current write transaction.
  Result<int64_t> SiteIdForWrite(const std::string& site) {
    auto it = site_ids.find(site);
    if (it != site_ids.end()) return it->second;
    auto ins = writer.Prepare("INSERT OR IGNORE INTO sites(site) VALUES(?1)");
    if (!ins.ok()) return ins.status();
    {
      ResetGuard g(**ins);
      (*ins)->BindRef(1, site);
      const int rc = (*ins)->Step();
      if (rc != SQLITE_DONE) return DbError(writer.db(), rc, "insert site");
    }
    auto sel = writer.Prepare("SELECT site_id FROM sites WHERE site = ?1");
    if (!sel.ok()) return sel.status();
    ResetGuard g(**sel);
    (*sel)->BindRef(1, site);
    if ((*sel)->Step() != SQLITE_ROW) return Status::Internal("site row vanished");
    const int64_t id = (*sel)->Int(0);
    // Cached only after commit would be purer; a rolled-back insert leaves a stale id, so the
    // cache is cleared on every rollback (see ApplyBatch).
    site_ids.emplace(site, id);
    return id;
  }

  // The position records applied by the current batch, per vehicle, in batch order. Keys view
  // the records' own strings, which outlive the batch's apply.
  std::unordered_map<std::string_view, std::vector<const v1::ChangeRecord*>> batch_positions;
  std::vector<ChunkFix> chunk_fixes;  // reused buffers
  std::string chunk_blob;

  // Per vehicle and batch: one latest-position upsert and one position-history chunk (or a
  // few, kChunkMaxFixes / kChunkMaxSpanMs) instead of a B-tree write per fix for each. The
  // view ends as with one upsert per record, because the upsert only ever keeps the greater
  // (ts_ms, hlc) and the batch's greatest is upserted.
  Status WritePositions(int64_t site_id) {
    for (auto& [key, recs] : batch_positions) {
      const v1::ChangeRecord* latest = recs.front();
      chunk_fixes.clear();
      for (const v1::ChangeRecord* rec : recs) {
        if (std::make_pair(rec->ts_ms(), rec->hlc()) > std::make_pair(latest->ts_ms(), latest->hlc())) latest = rec;
        chunk_fixes.push_back(FixFromRecord(*rec));
      }
      // Batches are in seq order and fixes mostly in time order too: usually already sorted.
      if (!std::is_sorted(chunk_fixes.begin(), chunk_fixes.end(), FixBefore))
        std::sort(chunk_fixes.begin(), chunk_fixes.end(), FixBefore);
      const std::string vehicle(key);
      if (Status s = InsertChunks(writer, site_id, vehicle, chunk_fixes, &chunk_blob); !s.ok()) return s;

      const v1::ChangeRecord& r = *latest;
      const auto& p = r.position();
      auto veh = writer.Prepare(store_sql::kUpsertVehicle.sqlite);
      if (!veh.ok()) return veh.status();
      (*veh)->BindRef(1, vehicle).Bind(2, site_id).Bind(3, p.device_seq()).Bind(4, int64_t{p.lat_e6()});
      (*veh)->Bind(5, int64_t{p.lon_e6()}).Bind(6, int64_t{p.speed_dkmh()}).Bind(7, int64_t{p.heading_deg()});
      (*veh)->Bind(8, int64_t{p.hdop_d()}).Bind(9, r.ts_ms()).Bind(10, r.hlc()).Bind(11, r.seq());
      const int rc = (*veh)->Step();
      (*veh)->Reset();
      if (rc != SQLITE_DONE) return DbError(writer.db(), rc, "upsert vehicle");
    }
    batch_positions.clear();
    return Status::Ok();
  }

  // What a newly held record changes besides the feed: its entity's apply steps
  // (hub/entity_routes.h), or for a position the per-batch write (WritePositions).
  Status ApplyState(int64_t site_id, const v1::ChangeRecord& r) {
    if (r.entity() == v1::VEHICLE_POSITION) {
      if (r.has_position()) batch_positions[r.key()].push_back(&r);
      return Status::Ok();
    }
    for (const ApplyStep& step : EntityApply(r.entity())) {
      auto st = writer.Prepare(step.sql.sqlite);
      if (!st.ok()) return st.status();
      StmtParams params(**st);
      if (!step.bind(r, site_id, params)) continue;
      const int rc = (*st)->Step();
      (*st)->Reset();
      if (rc != SQLITE_DONE) return DbError(writer.db(), rc, step.what);
    }
    return Status::Ok();
  }

  // ---------- Group commit ----------
  // Concurrent ApplyBatch calls (one per site connection) are merged into one write
  // transaction: the first caller to find no commit under way becomes the leader, takes every
  // request queued so far, applies each inside its own SAVEPOINT (a refused or failing batch
  // rolls back alone), commits once (one fsync for all of them) and only then hands each caller
  // its result, so every ack still follows the commit of its batch. Callers that arrive during
  // a commit queue up for the next one. docs/benchmarks.md, "Hub fan-in", has the numbers.
  struct PendingApply {
    const std::string* site;
    const v1::Batch* batch;
    const SerializedRecords* serialized;
    int64_t now_ms;
    const AuditEntry* audit;
    const ApplyChecks* checks;
    Result<ApplyResult> result = Status::Internal("not applied");
    bool done = false;
  };
  // Upper bound of records per group transaction: bounds the latency one commit adds.
  static constexpr size_t kMaxGroupRecords = 100000;
  std::mutex queue_mu;
  std::condition_variable queue_cv;
  std::deque<PendingApply*> queue;
  bool leader_active = false;

  // Group commit of Write() (SqliteHubStore::Write): the same leader scheme.
  struct PendingWrite {
    const std::function<Status(SqlTx&)>* body;
    Status result = Status::Internal("not written");
    bool done = false;
  };
  static constexpr size_t kMaxGroupWrites = 1000;
  std::mutex write_queue_mu;
  std::condition_variable write_queue_cv;
  std::deque<PendingWrite*> write_queue;
  bool write_leader_active = false;
  void WriteGroup(const std::vector<PendingWrite*>& group);

  Result<ApplyResult> Apply(const std::string& site, const v1::Batch& batch, const SerializedRecords& serialized,
                            int64_t now_ms, const AuditEntry* audit, const ApplyChecks& checks) {
    PendingApply me{&site, &batch, &serialized, now_ms, audit, &checks};
    std::unique_lock<std::mutex> ql(queue_mu);
    queue.push_back(&me);
    while (!me.done) {
      if (leader_active) {
        queue_cv.wait(ql);
        continue;
      }
      leader_active = true;
      std::vector<PendingApply*> group;
      size_t records = 0;
      while (!queue.empty() && (group.empty() || records + queue.front()->batch->records_size() <= kMaxGroupRecords)) {
        records += queue.front()->batch->records_size();
        group.push_back(queue.front());
        queue.pop_front();
      }
      ql.unlock();
      ApplyGroup(group);
      ql.lock();
      for (auto* p : group) p->done = true;
      leader_active = false;
      queue_cv.notify_all();
    }
    return std::move(me.result);
  }

  void ApplyGroup(const std::vector<PendingApply*>& group) {
    std::lock_guard<std::mutex> lock(write_mu);
    Status s = writer.Exec("BEGIN IMMEDIATE");
    if (!s.ok()) {
      for (auto* p : group) p->result = s;
      return;
    }
    bool any_applied = false;
    for (auto* p : group) {
      s = writer.Exec("SAVEPOINT batch");
      if (!s.ok()) {
        p->result = s;
        continue;
      }
      p->result = ApplyInTxn(*p->site, *p->batch, *p->serialized, p->now_ms, *p->checks);
      auto& result = p->result;
      if (result.ok() && !result->gap && !result->over_quota && p->audit != nullptr) {
        AuditEntry e = *p->audit;
        e.count = result->applied;
        e.status = 200;
        s = InsertAudit(e);
        if (!s.ok()) result = s;
      }
      if (result.ok() && !result->gap && !result->over_quota) {
        s = writer.Exec("RELEASE batch");
        if (s.ok()) {
          any_applied = true;
          continue;
        }
        result = s;
      }
      // Refused (gap, over quota) or failed: this batch leaves no trace, the others stay.
      (void)writer.Exec("ROLLBACK TO batch");
      (void)writer.Exec("RELEASE batch");
      site_ids.clear();
    }
    s = any_applied ? writer.Exec("COMMIT") : writer.Exec("ROLLBACK");
    if (s.ok()) return;
    (void)writer.Exec("ROLLBACK");
    site_ids.clear();
    for (auto* p : group) {
      if (p->result.ok() && !p->result->gap && !p->result->over_quota) p->result = s;
    }
  }

  // Requires write_mu held.
  Status InsertAudit(const AuditEntry& e);

  Result<ApplyResult> ApplyInTxn(const std::string& site, const v1::Batch& batch, const SerializedRecords& serialized,
                                 int64_t now_ms, const ApplyChecks& checks) {
    ApplyResult res;
    uint64_t added_bytes = 0;  // what this batch adds to the store, for site_bytes_per_day
    const std::vector<std::string>* refusals = checks.refusals;
    bool any_refused = false;
    if (refusals != nullptr) {
      for (const auto& reason : *refusals) any_refused = any_refused || !reason.empty();
    }
    batch_positions.clear();  // an earlier batch that failed half-way may have left entries
    auto site_id = SiteIdForWrite(site);
    if (!site_id.ok()) return site_id.status();
    uint64_t contiguous = 0, max_seq = 0;
    {
      auto st = writer.Prepare("SELECT contiguous_seq, max_seq FROM sites WHERE site_id = ?1");
      if (!st.ok()) return st.status();
      ResetGuard g(**st);
      (*st)->Bind(1, *site_id);
      if ((*st)->Step() != SQLITE_ROW) return Status::Internal("site row missing");
      contiguous = (*st)->UInt(0);
      max_seq = (*st)->UInt(1);
    }
    res.contiguous_seq = contiguous;
    const auto& recs = batch.records();
    if (recs.empty()) return res;
    if (!batch.urgent() && recs[0].seq() > contiguous + 1) {
      res.gap = true;
      return res;
    }
    // Fast path: a normal batch, and the site holds nothing above contiguous (no urgent
    // records waiting for the stream: max_seq <= contiguous), so every record above contiguous
    // is new. Those go in with INSERTs of kRowsPerInsert rows each: a statement's fixed cost
    // (reset, cursors opened and closed, VdbeHalt) was about half of a one-row insert
    // (callgrind, docs/benchmarks.md). If a row turns out to be held after all (a store edited
    // by hand), the fast path is rolled back and the batch goes record by record.
    // (Not with refused records: those go record by record to refused_records.)
    if (!batch.urgent() && max_seq <= contiguous && !any_refused) {
      int first = 0;
      while (first < recs.size() && recs[first].seq() <= contiguous) ++first;
      if (Status s = writer.Exec("SAVEPOINT fast"); !s.ok()) return s;
      auto inserted = InsertAll(*site_id, recs, first, serialized);
      if (!inserted.ok()) return inserted.status();  // the batch's savepoint is rolled back
      if (*inserted == static_cast<uint64_t>(recs.size() - first)) {
        if (Status s = writer.Exec("RELEASE fast"); !s.ok()) return s;
        res.duplicates += static_cast<uint64_t>(first);
        for (int i = first; i < recs.size(); ++i) {
          if (Status s = ApplyState(*site_id, recs[i]); !s.ok()) return s;
        }
        res.applied = *inserted;
        if (*inserted > 0) max_seq = std::max<uint64_t>(max_seq, recs[recs.size() - 1].seq());
        for (int i = first; i < recs.size(); ++i) added_bytes += RowBytes(recs[i], serialized.Record(i).size());
        if (Status q = ChargeQuota(*site_id, now_ms, added_bytes, checks, res); !q.ok()) return q;
        if (res.over_quota) return res;
        return FinishBatch(*site_id, batch, contiguous, max_seq, now_ms, res);
      }
      if (Status s = writer.Exec("ROLLBACK TO fast; RELEASE fast"); !s.ok()) return s;
    }
    auto ins = writer.Prepare(kInsertChange);
    if (!ins.ok()) return ins.status();
    Stmt& st = **ins;
    for (int i = 0; i < recs.size(); ++i) {
      const v1::ChangeRecord& r = recs[i];
      // Everything at or below contiguous is held by definition: skip without touching disk.
      if (r.seq() <= contiguous) {
        ++res.duplicates;
        continue;
      }
      if (refusals != nullptr && i < static_cast<int>(refusals->size()) && !(*refusals)[i].empty()) {
        auto q = Quarantine(*site_id, r, (*refusals)[i], now_ms);
        if (!q.ok()) return q.status();
        if (*q == 0) {
          ++res.duplicates;  // refused once already (urgent lane, or a resend)
          continue;
        }
        ++res.refused;
        added_bytes += *q;
        max_seq = std::max<uint64_t>(max_seq, r.seq());
        continue;
      }
      st.Bind(1, *site_id).Bind(2, r.seq()).Bind(3, int64_t{r.entity()}).BindRef(4, r.key()).Bind(5, r.version());
      const std::string_view blob = serialized.Record(i);
      sqlite3_bind_blob(st.get(), 6, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
      const int rc = st.Step();
      st.Reset();
      if (rc != SQLITE_DONE) return DbError(writer.db(), rc, "insert change");
      if (sqlite3_changes(writer.db()) == 0) {
        ++res.duplicates;  // held earlier, e.g. through the urgent lane
        continue;
      }
      ++res.applied;
      added_bytes += RowBytes(r, blob.size());
      max_seq = std::max<uint64_t>(max_seq, r.seq());
      Status s = ApplyState(*site_id, r);
      if (!s.ok()) return s;
    }
    if (Status q = ChargeQuota(*site_id, now_ms, added_bytes, checks, res); !q.ok()) return q;
    if (res.over_quota) return res;
    return FinishBatch(*site_id, batch, contiguous, max_seq, now_ms, res);
  }


  // Puts a refused record's row into refused_records; returns its bytes, 0 if it was there.
  Result<uint64_t> Quarantine(int64_t site_id, const v1::ChangeRecord& r, const std::string& reason, int64_t now_ms) {
    auto st = writer.Prepare(store_sql::kQuarantine.sqlite);
    if (!st.ok()) return st.status();
    ResetGuard g(**st);
    // The key is kept only when it passes the identifier rule, so a 1 MB key costs nothing here.
    const bool key_ok = wire::CheckId("key", r.key()).ok();
    const std::string why = reason.substr(0, 256);
    const std::string field(wire::RefusalField(why));
    (*st)->Bind(1, site_id).Bind(2, r.seq()).Bind(3, int64_t{r.entity()}).Bind(4, r.version());
    if (key_ok) (*st)->BindRef(5, r.key());
    else sqlite3_bind_null((*st)->get(), 5);
    (*st)->BindRef(6, field).BindRef(7, why).Bind(8, now_ms);
    const int rc = (*st)->Step();
    if (rc != SQLITE_DONE) return DbError(writer.db(), rc, "insert refused record");
    if (sqlite3_changes(writer.db()) == 0) return uint64_t{0};
    return RefusedRowBytes(r, key_ok, why, field);
  }

  // Adds `bytes` to the site's usage of today, or sets res.over_quota when that would exceed
  // checks.site_bytes_per_day (the caller then rolls the batch back).
  Status ChargeQuota(int64_t site_id, int64_t now_ms, uint64_t bytes, const ApplyChecks& checks, ApplyResult& res) {
    if (checks.site_bytes_per_day <= 0 || bytes == 0) return Status::Ok();
    const int64_t day = now_ms / 86400000;
    uint64_t used = 0;
    {
      auto st = writer.Prepare(store_sql::kSiteUsage.sqlite);
      if (!st.ok()) return st.status();
      ResetGuard g(**st);
      (*st)->Bind(1, site_id).Bind(2, day);
      if ((*st)->Step() == SQLITE_ROW) used = (*st)->UInt(0);
    }
    if (used + bytes > static_cast<uint64_t>(checks.site_bytes_per_day)) {
      res.over_quota = true;
      res.quota_used = used;
      return Status::Ok();
    }
    auto up = writer.Prepare(store_sql::kChargeSiteUsage.sqlite);
    if (!up.ok()) return up.status();
    ResetGuard g(**up);
    (*up)->Bind(1, site_id).Bind(2, day).Bind(3, bytes);
    const int rc = (*up)->Step();
    if (rc != SQLITE_DONE) return DbError(writer.db(), rc, "site usage");
    // Older days are of no use to the limit; keep the table to a few rows per site.
    return writer.Exec("DELETE FROM site_usage WHERE day < " + std::to_string(day - 7));
  }

  // Rows per multi-row INSERT on the fast path (6 parameters each, far below SQLite's limit).
  static constexpr int kRowsPerInsert = 64;
  static const char* InsertManySql() {
    static const std::string sql = [] {
      std::string q = "INSERT OR IGNORE INTO changes(site_id, seq, entity, key, version, record) VALUES";
      for (int i = 0; i < kRowsPerInsert; ++i) q += i == 0 ? " (?,?,?,?,?,?)" : ",(?,?,?,?,?,?)";
      return q;
    }();
    return sql.c_str();  // a stable address: the statement cache's key
  }

  // Inserts recs[first..] into `changes`; returns how many rows were really inserted.
  Result<uint64_t> InsertAll(int64_t site_id, const google::protobuf::RepeatedPtrField<v1::ChangeRecord>& recs,
                             int first, const SerializedRecords& serialized) {
    uint64_t inserted = 0;
    int i = first;
    auto bind_row = [&](Stmt& st, int base, int idx) {
      const v1::ChangeRecord& r = recs[idx];
      st.Bind(base + 1, site_id).Bind(base + 2, r.seq()).Bind(base + 3, int64_t{r.entity()});
      st.BindRef(base + 4, r.key()).Bind(base + 5, r.version());
      const std::string_view blob = serialized.Record(idx);
      sqlite3_bind_blob(st.get(), base + 6, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
    };
    if (recs.size() - i >= kRowsPerInsert) {
      auto many = writer.Prepare(InsertManySql());
      if (!many.ok()) return many.status();
      Stmt& st = **many;
      for (; recs.size() - i >= kRowsPerInsert; i += kRowsPerInsert) {
        for (int k = 0; k < kRowsPerInsert; ++k) bind_row(st, 6 * k, i + k);
        const int rc = st.Step();
        st.Reset();
        if (rc != SQLITE_DONE) return DbError(writer.db(), rc, "insert changes");
        inserted += static_cast<uint64_t>(sqlite3_changes(writer.db()));
      }
    }
    auto one = writer.Prepare(kInsertChange);
    if (!one.ok()) return one.status();
    Stmt& st = **one;
    for (; i < recs.size(); ++i) {
      bind_row(st, 0, i);
      const int rc = st.Step();
      st.Reset();
      if (rc != SQLITE_DONE) return DbError(writer.db(), rc, "insert change");
      inserted += static_cast<uint64_t>(sqlite3_changes(writer.db()));
    }
    return inserted;
  }

  // The batch's position writes and its `sites` row.
  Result<ApplyResult> FinishBatch(int64_t site_id, const v1::Batch& batch, uint64_t contiguous, uint64_t max_seq,
                                  int64_t now_ms, ApplyResult& res) {
    const auto& recs = batch.records();
    if (Status vs = WritePositions(site_id); !vs.ok()) return vs;
    if (!batch.urgent()) contiguous = std::max<uint64_t>(contiguous, recs[recs.size() - 1].seq());
    res.contiguous_seq = contiguous;
    auto up = writer.Prepare(store_sql::kUpdateSite.sqlite);
    if (!up.ok()) return up.status();
    ResetGuard g(**up);
    (*up)->Bind(1, site_id).Bind(2, contiguous).Bind(3, std::max(max_seq, contiguous)).Bind(4, int64_t{res.applied});
    (*up)->Bind(5, now_ms);
    const int rc = (*up)->Step();
    if (rc != SQLITE_DONE) return DbError(writer.db(), rc, "update site");
    return res;
  }
};

SqliteHubStore::SqliteHubStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SqliteHubStore::~SqliteHubStore() = default;

int SqliteHubStore::SchemaVersion() { return static_cast<int>(Migrations().size()); }

Result<std::unique_ptr<SqliteHubStore>> SqliteHubStore::Open(const SqliteHubStoreOptions& options) {
  return OpenAtSchemaVersionForTest(options, 0);
}

Result<std::unique_ptr<SqliteHubStore>> SqliteHubStore::OpenAtSchemaVersionForTest(const SqliteHubStoreOptions& options,
                                                                                 int version) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->migrate_to = version;
  Status s = impl->writer.Open(options.path, true);
  if (!s.ok()) return s;
  // WAL: readers see a consistent snapshot while the writer applies a batch.
  s = impl->writer.Exec(std::string("PRAGMA journal_mode=WAL; PRAGMA synchronous=") +
                        (options.synchronous_full ? "FULL" : "NORMAL") +
                        "; PRAGMA cache_size=-32768; PRAGMA temp_store=MEMORY; PRAGMA foreign_keys=OFF;");
  if (!s.ok()) return Status::IOError(options.path + ": " + s.message());
  s = impl->Migrate();
  if (!s.ok()) return s;
  s = impl->checkpointer.Open(options.path, false);
  if (!s.ok()) return s;
  // Same synchronous level as the writer: the checkpoint syncs the database file under FULL.
  s = impl->checkpointer.Exec(std::string("PRAGMA synchronous=") + (options.synchronous_full ? "FULL" : "NORMAL"));
  if (!s.ok()) return s;
  sqlite3_wal_hook(impl->writer.db(), &Impl::WalHook, impl.get());
  impl->checkpoint_thread = std::thread([p = impl.get()] { p->CheckpointLoop(); });
  for (int i = 0; i < std::max(1, options.read_connections); ++i) {
    auto c = std::make_unique<Conn>();
    s = c->Open(options.path, false);
    if (!s.ok()) return s;
    s = c->Exec("PRAGMA query_only=1; PRAGMA cache_size=-8192;");
    if (!s.ok()) return s;
    impl->readers.Add(std::move(c));
  }
  return std::unique_ptr<SqliteHubStore>(new SqliteHubStore(std::move(impl)));
}

Result<ApplyResult> SqliteHubStore::ApplyBatch(const std::string& site, const v1::Batch& batch, int64_t now_ms,
                                               const AuditEntry* audit, const ApplyChecks& checks) {
  Status s = ValidateBatch(batch);
  if (!s.ok()) return s;
  // Serialized here, on the caller's (HTTP worker's) thread, not under the single writer:
  // with many sites pushing, the writer is the bottleneck (docs/benchmarks.md, "Hub fan-in").
  // Sized once: AppendToString reserves exactly, which made this quadratic (perf, 7 % of
  // hubd during a drain).
  SerializedRecords serialized;
  serialized.ends.reserve(static_cast<size_t>(batch.records_size()));
  size_t total = 0;
  for (const auto& r : batch.records()) serialized.ends.push_back(total += r.ByteSizeLong());
  serialized.bytes.resize(total);
  auto* out = reinterpret_cast<uint8_t*>(serialized.bytes.data());
  for (const auto& r : batch.records()) out = r.SerializeWithCachedSizesToArray(out);
  return impl_->Apply(site, batch, serialized, now_ms, audit, checks);
}

Result<uint64_t> SqliteHubStore::ContiguousSeq(const std::string& site) {
  auto r = impl_->AcquireReader();
  auto st = r->Prepare(store_sql::kContiguousSeq.sqlite);
  if (!st.ok()) return st.status();
  ResetGuard g(**st);
  (*st)->BindRef(1, site);
  const int rc = (*st)->Step();
  if (rc == SQLITE_ROW) return (*st)->UInt(0);
  if (rc == SQLITE_DONE) return uint64_t{0};
  return DbError(r->db(), rc, "contiguous seq");
}

// Runs a read query and maps each row through `row`. Stops at the first error.
template <typename T, typename BindFn, typename RowFn>
Result<std::vector<T>> Query(SqliteHubStore::Impl& impl, const char* sql, BindFn bind, RowFn row) {
  auto r = impl.AcquireReader();
  auto st = r->Prepare(sql);
  if (!st.ok()) return st.status();
  Stmt& s = **st;
  ResetGuard g(s);
  bind(s);
  std::vector<T> out;
  if (Status e = EachRow(r->db(), s, "query", [&] { out.push_back(row(s)); }); !e.ok()) return e;
  return out;
}

Result<std::vector<FeedEntry>> SqliteHubStore::Changes(uint64_t after, int limit) {
  return Query<FeedEntry>(
      *impl_,
      store_sql::kChangesAfter.sqlite,
      [&](Stmt& s) { s.Bind(1, after).Bind(2, int64_t{limit}); },
      [](Stmt& s) {
        FeedEntry e;
        e.cursor = s.UInt(0);
        e.site = s.Text(1);
        const auto* p = sqlite3_column_blob(s.get(), 2);
        // A row we wrote ourselves; a parse failure means corruption, surfaced as an empty record.
        (void)e.record.ParseFromArray(p, sqlite3_column_bytes(s.get(), 2));
        return e;
      });
}

Result<std::vector<SiteInfo>> SqliteHubStore::Sites() {
  return Query<SiteInfo>(
      *impl_, store_sql::kSites.sqlite, [](Stmt&) {},
      [](Stmt& s) {
        return SiteInfo{s.Text(0), s.UInt(1), s.UInt(2), s.UInt(3), s.Int(4)};
      });
}

Status SqliteHubStore::Read(const Sql& sql, const std::function<void(SqlParams&)>& bind,
                            const std::function<void(const SqlRow&)>& row) {
  auto r = impl_->AcquireReader();
  auto st = r->Prepare(sql.sqlite);
  if (!st.ok()) return st.status();
  Stmt& s = **st;
  ResetGuard g(s);
  StmtParams params(s);
  bind(params);
  const StmtRow current(s);
  return EachRow(r->db(), s, "read", [&] { row(current); });
}

Result<std::vector<v1::PositionItem>> SqliteHubStore::Track(const std::string& site, const std::string& vehicle,
                                                             int64_t from_ms, int64_t to_ms, int limit) {
  std::vector<v1::PositionItem> out;
  if (limit <= 0 || to_ms < from_ms) return out;
  auto r = impl_->AcquireReader();
  auto st = r->Prepare(store_sql::kTrackChunks.sqlite);
  if (!st.ok()) return st.status();
  Stmt& q = **st;
  ResetGuard g(q);
  const int64_t lowest =
      from_ms >= std::numeric_limits<int64_t>::min() + kChunkMaxSpanMs ? from_ms - kChunkMaxSpanMs
                                                                       : std::numeric_limits<int64_t>::min();
  q.BindRef(1, site).BindRef(2, vehicle).Bind(3, lowest).Bind(4, to_ms).Bind(5, from_ms);
  // Chunks may overlap in time (a late batch), so fixes are merged by (ts_ms, seq). Once
  // `limit` fixes are held, a chunk starting after the last of them cannot contribute.
  std::vector<ChunkFix> fixes, decoded;
  const auto cap = static_cast<size_t>(limit);
  auto trim = [&] {
    std::sort(fixes.begin(), fixes.end(), FixBefore);
    if (fixes.size() > cap) fixes.resize(cap);
  };
  while (true) {
    const int rc = q.Step();
    if (rc == SQLITE_DONE) break;
    if (rc != SQLITE_ROW) return DbError(r->db(), rc, "track");
    if (fixes.size() >= cap) {
      trim();
      if (q.Int(0) > fixes.back().ts_ms) break;
    }
    decoded.clear();
    const auto* blob = static_cast<const char*>(sqlite3_column_blob(q.get(), 2));
    const std::string_view bytes(blob ? blob : "", static_cast<size_t>(sqlite3_column_bytes(q.get(), 2)));
    if (!DecodeChunk(bytes, q.UInt(1), &decoded))
      return Status::Internal("position chunk of " + vehicle + " at site " + site + " is damaged");
    for (const ChunkFix& f : decoded) {
      if (f.ts_ms >= from_ms && f.ts_ms <= to_ms) fixes.push_back(f);
    }
  }
  trim();
  out.reserve(fixes.size());
  for (const ChunkFix& f : fixes) out.push_back(ItemFromFix(vehicle, site, f));
  return out;
}

namespace {

// Ends a read transaction on scope exit (a read-only COMMIT cannot lose anything).
struct ReadTxnEnd {
  Conn& c;
  ~ReadTxnEnd() { (void)c.Exec("COMMIT"); }
};

// The site's contiguous seq as seen by `conn`'s current transaction; 0 for an unknown site.
Result<uint64_t> ContiguousSeqIn(Conn& conn, const std::string& site) {
  auto st = conn.Prepare(store_sql::kContiguousSeq.sqlite);
  if (!st.ok()) return st.status();
  ResetGuard g(**st);
  (*st)->BindRef(1, site);
  return (*st)->Step() == SQLITE_ROW ? (*st)->UInt(0) : uint64_t{0};
}

// Reads the site's contiguous seq and then runs `sql` (parameters from `bind`, each row to
// `row`) in one read transaction, so that both describe the same snapshot. Returns the seq.
template <typename BindFn, typename RowFn>
Result<uint64_t> SnapshotRead(SqliteHubStore::Impl& impl, const std::string& site, const char* sql, const char* what,
                              BindFn bind, RowFn row) {
  auto r = impl.AcquireReader();
  Status s = r->Exec("BEGIN");
  if (!s.ok()) return s;
  ReadTxnEnd end{*r};
  auto contiguous = ContiguousSeqIn(*r, site);
  if (!contiguous.ok()) return contiguous.status();
  auto st = r->Prepare(sql);
  if (!st.ok()) return st.status();
  Stmt& q = **st;
  ResetGuard g(q);
  bind(q);
  if (s = EachRow(r->db(), q, what, [&] { row(q); }); !s.ok()) return s;
  return *contiguous;
}

}  // namespace

Result<DigestResult> SqliteHubStore::Digest(const std::string& site, uint64_t from, uint64_t to, uint64_t buckets) {
  auto digesters = DigestBuckets::Make(from, to, buckets);
  if (!digesters.ok()) return digesters.status();
  auto contiguous = SnapshotRead(
      *impl_, site, store_sql::kDigestRows.sqlite,
      "digest", [&](Stmt& q) { q.BindRef(1, site).Bind(2, from).Bind(3, to); },
      [&](Stmt& q) {
        const uint64_t seq = q.UInt(0);
        const auto* key = reinterpret_cast<const char*>(sqlite3_column_text(q.get(), 3));
        const int key_len = sqlite3_column_bytes(q.get(), 3);
        digesters->Add(seq, static_cast<uint32_t>(q.Int(1)), q.UInt(2), std::string_view(key ? key : "", key_len));
      });
  if (!contiguous.ok()) return contiguous.status();
  return digesters->Finish(*contiguous);
}

Result<StateDigestResult> SqliteHubStore::StateDigest(const std::string& site) {
  StateDigestResult out;
  digest::StateDigester d;
  if (Status st = d.status(); !st.ok()) return st;
  auto contiguous = SnapshotRead(
      *impl_, site,
      store_sql::kStateDigestRows.sqlite,
      "state digest", [&](Stmt& q) { q.BindRef(1, site); },
      [&](Stmt& q) {
        const auto* sku = reinterpret_cast<const char*>(sqlite3_column_text(q.get(), 0));
        const int sku_len = sqlite3_column_bytes(q.get(), 0);
        d.AddStock(std::string_view(sku ? sku : "", sku_len), q.Int(1), q.Int(2), q.UInt(3));
      });
  if (!contiguous.ok()) return contiguous.status();
  out.contiguous_seq = *contiguous;
  out.skus = d.count();
  out.digest = d.FinishAsString();
  return out;
}

Result<RebuildResult> SqliteHubStore::RebuildState(const std::string& site, const AuditEntry* audit) {
  auto& im = *impl_;
  std::lock_guard<std::mutex> lock(im.write_mu);
  Status s = im.writer.Exec("BEGIN IMMEDIATE");
  if (!s.ok()) return s;
  auto body = [&]() -> Result<RebuildResult> {
    RebuildCount count;
    auto site_id = im.SiteIdForWrite(site);
    if (!site_id.ok()) return site_id.status();
    {
      auto st = im.writer.Prepare(store_sql::kSiteStock.sqlite);
      if (!st.ok()) return st.status();
      ResetGuard g(**st);
      (*st)->Bind(1, *site_id);
      while (true) {
        const int rc = (*st)->Step();
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) return DbError(im.writer.db(), rc, "rebuild: read stock");
        count.Before((*st)->Text(0), (*st)->Int(1), (*st)->Int(2), (*st)->UInt(3));
      }
    }
    {
      auto del = im.writer.Prepare(store_sql::kDeleteSiteStock.sqlite);
      if (!del.ok()) return del.status();
      ResetGuard g(**del);
      (*del)->Bind(1, *site_id);
      const int rc = (*del)->Step();
      if (rc != SQLITE_DONE) return DbError(im.writer.db(), rc, "rebuild: delete stock");
    }
    auto sel = im.writer.Prepare(store_sql::kStockRecordsByKey.sqlite);
    if (!sel.ok()) return sel.status();
    auto ins = im.writer.Prepare(store_sql::kInsertStock.sqlite);
    if (!ins.ok()) return ins.status();
    ResetGuard g(**sel);
    (*sel)->Bind(1, *site_id).Bind(2, int64_t{v1::STOCK});
    while (true) {
      const int rc = (*sel)->Step();
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return DbError(im.writer.db(), rc, "rebuild: read changes");
      const std::string key = (*sel)->Text(0);
      if (count.Rebuilt(key)) continue;
      v1::ChangeRecord rec;
      const auto* p = sqlite3_column_blob((*sel)->get(), 2);
      if (!rec.ParseFromArray(p, sqlite3_column_bytes((*sel)->get(), 2)) || !rec.has_stock()) continue;
      const uint64_t seq = (*sel)->UInt(1);
      ResetGuard gi(**ins);
      (*ins)->Bind(1, *site_id).BindRef(2, key).Bind(3, rec.stock().on_hand()).Bind(4, rec.stock().reserved());
      (*ins)->Bind(5, rec.version()).Bind(6, rec.hlc()).Bind(7, rec.ts_ms()).Bind(8, seq);
      const int irc = (*ins)->Step();
      if (irc != SQLITE_DONE) return DbError(im.writer.db(), irc, "rebuild: insert stock");
      count.Rebuild(key, rec);
    }
    const RebuildResult res = count.Finish();
    if (audit != nullptr) {
      AuditEntry e = *audit;
      e.count = res.changed;
      Status as = im.InsertAudit(e);
      if (!as.ok()) return as;
    }
    return res;
  };
  auto result = body();
  if (result.ok()) {
    s = im.writer.Exec("COMMIT");
    if (s.ok()) return result;
    result = s;
  }
  (void)im.writer.Exec("ROLLBACK");
  im.site_ids.clear();
  return result;
}

namespace {
// SqlTx on the writer connection, inside the transaction SqliteHubStore::Write began.
class WriterTx final : public SqlTx {
 public:
  explicit WriterTx(Conn& c) : c_(c) {}
  Status Run(const Sql& sql, const std::function<void(SqlParams&)>& bind,
             const std::function<void(const SqlRow&)>& row) override {
    auto st = c_.Prepare(sql.sqlite);
    if (!st.ok()) return st.status();
    Stmt& s = **st;
    ResetGuard g(s);
    StmtParams params(s);
    if (bind) bind(params);
    const StmtRow current(s);
    return EachRow(c_.db(), s, "write", [&] {
      if (row) row(current);
    });
  }

 private:
  Conn& c_;
};
}  // namespace

// Group commit, as for batches (Impl::Apply): concurrent Write calls (HQ's POSTs, one per
// request thread) share one transaction, each body under a SAVEPOINT of its own so that a
// failing one rolls back alone, and one fsync with synchronous=FULL. Each caller returns only
// after the commit that holds its body. One POST per fsync capped HQ's writes at ~390/s
// (docs/benchmarks.md, "Downstream").
Status SqliteHubStore::Write(const std::function<Status(SqlTx&)>& body) {
  Impl& im = *impl_;
  Impl::PendingWrite me{&body};
  std::unique_lock<std::mutex> ql(im.write_queue_mu);
  im.write_queue.push_back(&me);
  while (!me.done) {
    if (im.write_leader_active) {
      im.write_queue_cv.wait(ql);
      continue;
    }
    im.write_leader_active = true;
    std::vector<Impl::PendingWrite*> group;
    while (!im.write_queue.empty() && group.size() < Impl::kMaxGroupWrites) {
      group.push_back(im.write_queue.front());
      im.write_queue.pop_front();
    }
    ql.unlock();
    im.WriteGroup(group);
    ql.lock();
    for (auto* p : group) p->done = true;
    im.write_leader_active = false;
    im.write_queue_cv.notify_all();
  }
  return me.result;
}

void SqliteHubStore::Impl::WriteGroup(const std::vector<PendingWrite*>& group) {
  std::lock_guard<std::mutex> lock(write_mu);
  Status s = writer.Exec("BEGIN IMMEDIATE");
  if (!s.ok()) {
    for (auto* p : group) p->result = s;
    return;
  }
  WriterTx run(writer);
  bool any = false;
  for (size_t i = 0; i < group.size(); ++i) {
    PendingWrite* p = group[i];
    s = writer.Exec("SAVEPOINT write_body");
    if (s.ok()) s = (*p->body)(run);
    if (s.ok()) s = writer.Exec("RELEASE write_body");
    if (s.ok()) {
      p->result = Status::Ok();
      any = true;
      continue;
    }
    p->result = s;
    // A rolled-back body may have created site rows the id cache holds (as ApplyBatch).
    site_ids.clear();
    if (sqlite3_get_autocommit(writer.db())) {  // SQLite rolled back the whole transaction
      for (size_t j = 0; j < group.size(); ++j)
        if (j != i) group[j]->result = j < i ? s : Status::Unavailable("write group rolled back: " + s.message());
      return;
    }
    (void)writer.Exec("ROLLBACK TO write_body");
    (void)writer.Exec("RELEASE write_body");
  }
  s = any ? writer.Exec("COMMIT") : writer.Exec("ROLLBACK");
  if (s.ok()) return;
  (void)writer.Exec("ROLLBACK");
  site_ids.clear();
  for (auto* p : group)
    if (p->result.ok()) p->result = s;
}

Status SqliteHubStore::AppendAudit(const AuditEntry& e) {
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  return impl_->InsertAudit(e);
}

Status SqliteHubStore::Impl::InsertAudit(const AuditEntry& e) {
  auto st = writer.Prepare(store_sql::kInsertAudit.sqlite);
  if (!st.ok()) return st.status();
  ResetGuard g(**st);
  (*st)->Bind(1, e.ts_ms).BindRef(2, e.kind).BindRef(3, e.actor).BindRef(4, e.path).Bind(5, e.seq_from).Bind(6, e.seq_to);
  (*st)->Bind(7, e.count).Bind(8, int64_t{e.status}).BindRef(9, e.detail);
  const int rc = (*st)->Step();
  if (rc != SQLITE_DONE) return DbError(writer.db(), rc, "insert audit");
  return Status::Ok();
}

Result<std::vector<AuditEntry>> SqliteHubStore::Audit(uint64_t after, int limit) {
  return Query<AuditEntry>(
      *impl_,
      store_sql::kAuditAfter.sqlite,
      [&](Stmt& s) { s.Bind(1, after).Bind(2, int64_t{limit}); },
      [](Stmt& s) {
        return AuditEntry{s.UInt(0), s.Int(1),  s.Text(2), s.Text(3), s.Text(4),
                          s.UInt(5), s.UInt(6), s.UInt(7), static_cast<int>(s.Int(8)), s.Text(9)};
      });
}

// store_sql::kHoldLease: one statement, atomic; a row changed means the lease is ours.
Result<bool> SqliteHubStore::HoldLease(const std::string& name, const std::string& holder, int64_t now_ms,
                                       int64_t ttl_ms) {
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  auto st = impl_->writer.Prepare(store_sql::kHoldLease.sqlite);
  if (!st.ok()) return st.status();
  ResetGuard g(**st);
  (*st)->BindRef(1, name).BindRef(2, holder).Bind(3, now_ms + ttl_ms).Bind(4, now_ms);
  const int rc = (*st)->Step();
  if (rc != SQLITE_DONE) return DbError(impl_->writer.db(), rc, "hold lease");
  return sqlite3_changes(impl_->writer.db()) > 0;
}

Result<uint64_t> SqliteHubStore::RelayCursor(const std::string& name) {
  auto r = impl_->AcquireReader();
  auto st = r->Prepare(store_sql::kRelayCursor.sqlite);
  if (!st.ok()) return st.status();
  ResetGuard g(**st);
  (*st)->BindRef(1, name);
  const int rc = (*st)->Step();
  if (rc == SQLITE_ROW) return (*st)->UInt(0);
  if (rc == SQLITE_DONE) return uint64_t{0};
  return DbError(r->db(), rc, "relay cursor");
}

Status SqliteHubStore::SetRelayCursor(const std::string& name, uint64_t cursor) {
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  auto st = impl_->writer.Prepare(store_sql::kSetRelayCursor.sqlite);
  if (!st.ok()) return st.status();
  ResetGuard g(**st);
  (*st)->BindRef(1, name).Bind(2, cursor);
  const int rc = (*st)->Step();
  if (rc != SQLITE_DONE) return DbError(impl_->writer.db(), rc, "set relay cursor");
  return Status::Ok();
}

Result<TelemetryUpkeep> SqliteHubStore::MaintainTelemetry(int64_t now_ms, int keep_days) {
  TelemetryUpkeep done;
  if (keep_days <= 0) return done;
  const int64_t cutoff = TelemetryCutoffMs(now_ms, keep_days);
  std::lock_guard<std::mutex> lock(impl_->write_mu);
  for (auto [sql, deleted] : {std::pair{store_sql::kDeleteOldChunks, &done.rows_deleted},
                              std::pair{store_sql::kDeleteOldReadings, &done.readings_deleted}}) {
    auto st = impl_->writer.Prepare(sql.sqlite);
    if (!st.ok()) return st.status();
    ResetGuard g(**st);
    (*st)->Bind(1, cutoff);
    const int rc = (*st)->Step();
    if (rc != SQLITE_DONE) return DbError(impl_->writer.db(), rc, "telemetry retention");
    *deleted = static_cast<uint64_t>(sqlite3_changes(impl_->writer.db()));
  }
  return done;
}

}  // namespace freshsync::hub
