// The production QuotaStore (edge/disk_quota.h): its own connection to the store file, like
// the sync agent's, so the quota never runs on the ingest thread. Every write is a short
// BEGIN IMMEDIATE transaction; busy_timeout lets it wait for ingest's lock.
#include <sqlite3.h>

#include <initializer_list>
#include <string>
#include <tuple>

#include "edge/disk_quota.h"
#include "freshsync.pb.h"

namespace freshsync::edge {
namespace {

// A raw telemetry row is acknowledged when its outbox record is (outbox_seq <= acked_seq);
// rows from before schema v5 have no outbox_seq and are all at or below quota_legacy_seq.
// ?1 = acked_seq, ?2 = quota_legacy_seq.
std::string Acked(const std::string& alias) {
  return "(" + alias + ".outbox_seq <= ?1 OR (" + alias + ".outbox_seq IS NULL AND ?2 <= ?1))";
}

// Step 1: of the acknowledged rows of one device in one interval, keep the oldest (lowest
// rowid), delete the rest. ?3 = interval ms, ?4 = row limit. The EXISTS probe uses the
// (device, ts_ms) index of migration 2. Converges: the kept row stays the oldest.
std::string DownsampleSql(const char* table, const char* device) {
  const std::string t = table, d = device;
  return "DELETE FROM " + t + " WHERE rowid IN (SELECT p.rowid FROM " + t + " p WHERE " + Acked("p") + " AND EXISTS (SELECT 1 FROM " +
         t + " q WHERE q." + d + " = p." + d + " AND q.ts_ms >= p.ts_ms - (p.ts_ms % ?3) AND q.ts_ms < p.ts_ms - (p.ts_ms % ?3) + ?3" +
         " AND q.rowid < p.rowid AND " + Acked("q") + ") LIMIT ?4)";
}

// Step 2: the oldest acknowledged rows first. ?3 = row limit.
std::string DropRawSql(const char* table) {
  const std::string t = table;
  return "DELETE FROM " + t + " WHERE rowid IN (SELECT p.rowid FROM " + t + " p WHERE " + Acked("p") + " ORDER BY p.rowid LIMIT ?3)";
}

class SqliteQuotaStore final : public QuotaStore {
 public:
  SqliteQuotaStore(sqlite3* db, Clock& clock) : db_(db), hlc_(clock) {}
  ~SqliteQuotaStore() override { sqlite3_close_v2(db_); }

  Result<int64_t> UsedBytes() override {
    auto pages = Int("PRAGMA page_count");
    auto free_pages = Int("PRAGMA freelist_count");
    auto size = Int("PRAGMA page_size");
    for (auto* r : {&pages, &free_pages, &size})
      if (!r->ok()) return r->status();
    return (*pages - *free_pages) * *size;
  }

  Result<int64_t> Downsample(int max_rows) override {
    int64_t total = 0;
    for (const auto& [table, device, interval_ms] : {std::tuple{"vehicle_positions", "vehicle", int64_t{30'000}},
                                                     std::tuple{"climate_readings", "sensor", int64_t{60'000}}}) {
      if (total >= max_rows) break;
      auto n = Delete(DownsampleSql(table, device), {interval_ms, max_rows - total});
      if (!n.ok()) return n;
      total += *n;
    }
    return total;
  }

  // Why trimming telemetry dedupe keys is safe: the broker redelivers only messages it has
  // not had a PUBACK for, and it does so when the client reconnects (seconds, at most the
  // length of an outage of edged), never a day later. A device that republishes an old
  // reading after its key is gone only re-adds one raw row and one record, which the hub
  // applies as a duplicate position/reading (last-writer by ts_ms). Stock and order keys are
  // never trimmed: a second application there would change state.
  Result<int64_t> DropAcked(int max_rows, int64_t now_ms) override {
    int64_t total = 0;
    for (const char* table : {"vehicle_positions", "climate_readings"}) {
      if (total >= max_rows) return total;
      auto n = Delete(DropRawSql(table), {max_rows - total});
      if (!n.ok()) return n;
      total += *n;
    }
    if (total < max_rows) {
      // Telemetry records the hub holds, before their retention (a hub restored from an older
      // backup will lack them; docs/operations.md).
      // sync_state.quota_dropped_upto marks the highest seq dropped, in the same transaction:
      // below it the outbox has holes, so reconciliation digests and `edgectl verify`'s
      // density check start above it.
      auto n = Delete(
          "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE seq <= ?1 AND entity IN (3, 4) "
          "ORDER BY seq LIMIT ?3)",
          {max_rows - total},
          "INSERT INTO sync_state(name, value) SELECT 'quota_dropped_upto', m FROM (SELECT MAX(seq) AS m FROM "
          "(SELECT seq FROM outbox WHERE seq <= ?1 AND entity IN (3, 4) ORDER BY seq LIMIT ?3)) WHERE m IS NOT NULL "
          "ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)");
      if (!n.ok()) return n;
      total += *n;
    }
    if (total < max_rows) {
      // dedupe is WITHOUT ROWID: select by its key. Kinds 3 and 4 are GPS and climate.
      auto n = Delete("DELETE FROM dedupe WHERE (kind, key) IN (SELECT kind, key FROM dedupe WHERE kind IN (3, 4) AND seen_ms < ?3 LIMIT ?4)",
                      {now_ms - kDedupeWindowMs, max_rows - total});
      if (!n.ok()) return n;
      total += *n;
    }
    return total;
  }

  Status RecordAlert(bool open, int64_t started_ms, int64_t now_ms) override {
    if (Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
    Status s = AppendAlert(open, started_ms, now_ms);
    if (!s.ok()) {
      (void)Exec("ROLLBACK");
      return s;
    }
    return Exec("COMMIT");
  }

  Status PublishState(QuotaState state, int64_t used_bytes, std::optional<int64_t> forecast_full_s) override {
    const std::string sql =
        "INSERT INTO edge_meta(name, value) VALUES ('quota_state', " + std::to_string(static_cast<int>(state)) +
        "), ('quota_used_bytes', " + std::to_string(used_bytes) + "), ('quota_forecast_full_s', " +
        std::to_string(forecast_full_s.value_or(-1)) + ") ON CONFLICT(name) DO UPDATE SET value = excluded.value";
    return Exec(sql.c_str());
  }

 private:
  static constexpr int64_t kDedupeWindowMs = 24 * 3600 * 1000;

  Status Error(const char* what) { return Status::IOError(std::string("quota: ") + what + ": " + sqlite3_errmsg(db_)); }

  Status Exec(const char* sql) {
    if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return Error(sql);
    return Status::Ok();
  }

  Result<int64_t> Int(const char* sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK) return Error(sql);
    const int rc = sqlite3_step(st);
    const int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error(sql);
    return v;
  }

  // Runs one DELETE in its own transaction, binding ?1 = acked_seq and ?2 = quota_legacy_seq
  // (read in the same transaction) and `more` from ?3 on (a statement may leave ?1/?2 unused). Returns the rows deleted.
  // `before`, if given, runs first in the same transaction with the same bindings.
  Result<int64_t> Delete(const std::string& sql, std::initializer_list<int64_t> more, const char* before = nullptr) {
    if (Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
    auto fail = [&](const char* what) -> Result<int64_t> {
      Status s = Error(what);
      (void)Exec("ROLLBACK");
      return s;
    };
    auto acked = Int("SELECT IFNULL((SELECT value FROM sync_state WHERE name = 'acked_seq'), 0)");
    // Absent (a store not yet migrated to v5 by edged): no legacy row counts as acknowledged.
    auto legacy = Int("SELECT IFNULL((SELECT value FROM edge_meta WHERE name = 'quota_legacy_seq'), 9223372036854775807)");
    if (!acked.ok() || !legacy.ok()) return fail("acked seq");
    auto run = [&](const char* text) {
      sqlite3_stmt* st = nullptr;
      if (sqlite3_prepare_v2(db_, text, -1, &st, nullptr) != SQLITE_OK) return false;
      sqlite3_bind_int64(st, 1, *acked);
      sqlite3_bind_int64(st, 2, *legacy);
      int i = 3;
      for (int64_t v : more) sqlite3_bind_int64(st, i++, v);
      const int rc = sqlite3_step(st);
      sqlite3_finalize(st);
      return rc == SQLITE_DONE;
    };
    if (before != nullptr && !run(before)) return fail("mark");
    if (!run(sql.c_str())) return fail("delete");
    const int64_t n = sqlite3_changes(db_);
    if (Status s = Exec("COMMIT"); !s.ok()) {
      (void)Exec("ROLLBACK");
      return s;
    }
    return n;
  }

  // Inside a write transaction: one COLDCHAIN_ALERT change record, kind "disk_quota", in the
  // priority lane, with seq, version and hlc assigned as EdgeStore assigns them (the write
  // lock makes this the only writer; the HLC observes every value already in the outbox).
  Status AppendAlert(bool open, int64_t started_ms, int64_t now_ms) {
    auto seq = Int(
        "SELECT max(IFNULL((SELECT MAX(seq) FROM outbox), 0), "
        "IFNULL((SELECT MAX(value) FROM sync_state WHERE name IN ('acked_seq', 'seq_floor')), 0)) + 1");
    auto last_hlc = Int("SELECT max(IFNULL((SELECT value FROM edge_meta WHERE name = 'hlc_last'), 0), IFNULL((SELECT MAX(hlc) FROM outbox), 0))");
    auto version = Int(
        "INSERT INTO entity_versions(entity, key, version) VALUES (6, 'disk-quota', 1) "
        "ON CONFLICT(entity, key) DO UPDATE SET version = version + 1 RETURNING version");
    for (auto* r : {&seq, &last_hlc, &version})
      if (!r->ok()) return r->status();
    hlc_.Observe(static_cast<uint64_t>(*last_hlc));
    const uint64_t hlc = hlc_.Now();
    v1::ChangeRecord rec;
    rec.set_seq(static_cast<uint64_t>(*seq));
    rec.set_entity(v1::COLDCHAIN_ALERT);
    rec.set_key("disk-quota");
    rec.set_version(static_cast<uint64_t>(*version));
    rec.set_hlc(hlc);
    rec.set_ts_ms(now_ms);
    auto* a = rec.mutable_alert();
    a->set_alert_id("disk-quota");
    a->set_state(open ? "open" : "closed");
    a->set_kind("disk_quota");
    a->set_started_ts_ms(started_ms);
    if (!open) a->set_ended_ts_ms(now_ms);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_,
                           "INSERT INTO outbox(seq, entity, key, version, hlc, priority, created_ms, record) "
                           "VALUES (?1, 6, 'disk-quota', ?2, ?3, 1, ?4, ?5)",
                           -1, &st, nullptr) != SQLITE_OK)
      return Error("alert");
    const std::string blob = rec.SerializeAsString();
    sqlite3_bind_int64(st, 1, *seq);
    sqlite3_bind_int64(st, 2, *version);
    sqlite3_bind_int64(st, 3, static_cast<int64_t>(hlc));
    sqlite3_bind_int64(st, 4, now_ms);
    sqlite3_bind_blob(st, 5, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    const int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return Error("alert");
    const std::string save = "UPDATE edge_meta SET value = " + std::to_string(static_cast<int64_t>(hlc)) + " WHERE name = 'hlc_last'";
    return Exec(save.c_str());
  }

  sqlite3* db_;
  HybridLogicalClock hlc_;
};

}  // namespace

Result<std::unique_ptr<QuotaStore>> OpenSqliteQuotaStore(const std::string& path, int busy_timeout_ms, Clock& clock) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    std::string m = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return Status::IOError("quota: cannot open " + path + ": " + m);
  }
  sqlite3_busy_timeout(db, busy_timeout_ms);
  return std::unique_ptr<QuotaStore>(new SqliteQuotaStore(db, clock));
}

Result<StoredQuotaState> ReadQuotaState(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    std::string m = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return Status::IOError(path + ": " + m);
  }
  sqlite3_busy_timeout(db, 2000);
  StoredQuotaState out;
  auto query = [&](const char* sql, int64_t def) {
    sqlite3_stmt* st = nullptr;
    int64_t v = def;
    if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
      v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
  };
  const int64_t pages = query("PRAGMA page_count", 0), free_pages = query("PRAGMA freelist_count", 0), size = query("PRAGMA page_size", 0);
  out.used_bytes = (pages - free_pages) * size;
  const int64_t state = query("SELECT value FROM edge_meta WHERE name = 'quota_state'", 0);
  out.state = QuotaStateName(state >= 0 && state <= 3 ? static_cast<QuotaState>(state) : QuotaState::kOk);
  const int64_t forecast = query("SELECT value FROM edge_meta WHERE name = 'quota_forecast_full_s'", -1);
  if (forecast >= 0) out.forecast_full_s = forecast;
  sqlite3_close_v2(db);
  return out;
}

}  // namespace freshsync::edge
