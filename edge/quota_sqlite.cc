// The production QuotaStore (edge/disk_quota.h): its own connection to the store file, like
// the sync agent's, so the quota never runs on the ingest thread. Every write is a short
// BEGIN IMMEDIATE transaction; busy_timeout lets it wait for ingest's lock.
#include <sqlite3.h>

#include <algorithm>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "edge/disk_quota.h"
#include "edge/message_types.h"
#include "edge/outbox_writer.h"
#include "edge/store.h"
#include "freshsync.pb.h"
#include "sqlite/db.h"

namespace freshsync::edge {
namespace {

// What the quota may drop: telemetry, as outbox entities and as dedupe kinds.
const std::string kTelemetryEntities =
    "(" + std::to_string(v1::VEHICLE_POSITION) + ", " + std::to_string(v1::CLIMATE) + ")";
const std::string kTelemetryDedupeKinds = "(" + std::to_string(MessageTypeOf(TopicKind::kGps).dedupe_kind) + ", " +
                                          std::to_string(MessageTypeOf(TopicKind::kClimate).dedupe_kind) + ")";
// The quota alert's change record key (and alert id).
constexpr char kAlertKey[] = "disk-quota";

// A raw telemetry row is acknowledged when its outbox record is (outbox_seq <= acked_seq);
// rows from before schema v5 have no outbox_seq and are all at or below quota_legacy_seq.
// ?1 = acked_seq, ?2 = quota_legacy_seq. `alias` qualifies the column (a table name or alias).
std::string Acked(const std::string& alias) {
  return "(" + alias + ".outbox_seq <= ?1 OR (" + alias + ".outbox_seq IS NULL AND ?2 <= ?1))";
}

// Step 1, the read: rows after the cursor in rowid order (= insertion order = outbox seq
// order), whether each is acknowledged, and whether an older acknowledged row of the same
// device shares its interval (then it may go: the older one is kept). ?3 = cursor, ?4 = rows
// to read, ?5 = interval ms. The EXISTS probe uses the (device, ts_ms) index of migration 2.
std::string DownsampleScanSql(const std::string& t, const std::string& d) {
  return "SELECT p.rowid, " + Acked("p") + ", EXISTS (SELECT 1 FROM " + t + " q WHERE q." + d + " = p." + d +
         " AND q.ts_ms >= p.ts_ms - (p.ts_ms % ?5) AND q.ts_ms < p.ts_ms - (p.ts_ms % ?5) + ?5 AND q.rowid < p.rowid AND " +
         Acked("q") + ") FROM " + t + " p WHERE p.rowid > ?3 ORDER BY p.rowid LIMIT ?4";
}

// Step 2, the read: the oldest rows, of which the acknowledged ones (a prefix, as
// acknowledgement follows insertion order). ?3 = rows to read.
std::string DropScanSql(const std::string& t) {
  return "SELECT p.r FROM (SELECT rowid AS r, outbox_seq FROM " + t + " ORDER BY rowid LIMIT ?3) p WHERE " + Acked("p");
}

class SqliteQuotaStore final : public QuotaStore {
 public:
  SqliteQuotaStore(sqlite3* db, Clock& clock) : db_(db), clock_(clock) {}
  ~SqliteQuotaStore() override {
    outbox_.reset();  // its statements before the connection
    sqlite3_close_v2(db_);
  }

  Result<int64_t> UsedBytes() override {
    auto pages = Int("PRAGMA page_count");
    auto free_pages = Int("PRAGMA freelist_count");
    auto size = Int("PRAGMA page_size");
    for (auto* r : {&pages, &free_pages, &size})
      if (!r->ok()) return r->status();
    return (*pages - *free_pages) * *size;
  }

  // Reads happen outside any write transaction (WAL: ingest is not blocked however long the
  // scan); the deletes are short write transactions that re-check acknowledgement, so a row
  // the hub un-acknowledged meanwhile (a rewind after a hub restore) is left alone.
  Result<int64_t> Downsample(int max_rows) override {
    int64_t total = 0;
    for (Raw& raw : raws_) {
      if (total >= max_rows) break;
      auto marks = Marks();
      if (!marks.ok()) return marks.status();
      std::vector<int64_t> doomed;
      // From the cursor on, until enough candidates or the first unacknowledged row: each row
      // is read once in the life of the process (the cursor only advances over acknowledged rows).
      bool frontier = false;
      while (!frontier && static_cast<int64_t>(doomed.size()) < max_rows - total) {
        sqlite3_stmt* st = nullptr;
        const std::string sql = DownsampleScanSql(raw.table, raw.device);
        if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) return Error("downsample scan");
        sqlite3_bind_int64(st, 1, marks->first);
        sqlite3_bind_int64(st, 2, marks->second);
        sqlite3_bind_int64(st, 3, raw.cursor);
        sqlite3_bind_int64(st, 4, kScanRows);
        sqlite3_bind_int64(st, 5, raw.interval_ms);
        int rc, read = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
          ++read;
          if (sqlite3_column_int(st, 1) == 0) {
            frontier = true;
            break;
          }
          raw.cursor = sqlite3_column_int64(st, 0);
          if (sqlite3_column_int(st, 2) != 0) doomed.push_back(raw.cursor);
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("downsample scan");
        if (read < kScanRows) frontier = true;  // end of the table
      }
      auto n = DeleteRows(raw.table, doomed);
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
    for (Raw& raw : raws_) {
      if (total >= max_rows) return total;
      auto rows = Column(DropScanSql(raw.table), {max_rows - total});
      if (!rows.ok()) return rows.status();
      auto n = DeleteRows(raw.table, *rows);
      if (!n.ok()) return n;
      total += *n;
    }
    if (total < max_rows) {
      // Telemetry records the hub holds, before their retention (a hub restored from an older
      // backup will lack them; docs/operations.md).
      auto seqs = Column("SELECT seq FROM outbox WHERE seq <= ?1 AND entity IN " + kTelemetryEntities + " ORDER BY seq LIMIT ?3",
                         {max_rows - total});
      if (!seqs.ok()) return seqs.status();
      auto n = DeleteOutbox(*seqs);
      if (!n.ok()) return n;
      total += *n;
    }
    if (total < max_rows && now_ms >= next_dedupe_ms_) {
      // Telemetry keys (gps and climate kinds) a day old. Finding none scans them all, so when none
      // are left look again only an hour later.
      auto n = DeleteOldDedupe(now_ms - kDedupeWindowMs, max_rows - total);
      if (!n.ok()) return n;
      if (*n < max_rows - total) next_dedupe_ms_ = now_ms + 3600 * 1000;
      total += *n;
    }
    return total;
  }

  // One COLDCHAIN_ALERT change record, kind "disk_quota", in the priority lane, appended by
  // the outbox writer as the store appends its own (the write lock makes it the only writer).
  Status RecordAlert(bool open, int64_t started_ms, int64_t now_ms) override {
    if (!outbox_) {
      // Opened at the first alert: a quota that never raises one never touches the outbox.
      auto writer = OutboxWriter::Open(db_, clock_);
      if (!writer.ok()) return writer.status();
      outbox_ = std::move(*writer);
    }
    v1::ChangeRecord rec;
    auto* a = rec.mutable_alert();
    a->set_alert_id(kAlertKey);
    a->set_state(open ? "open" : "closed");
    a->set_kind("disk_quota");
    a->set_started_ts_ms(started_ms);
    if (!open) a->set_ended_ts_ms(now_ms);
    sqlite::Transaction tx(db_);
    if (Status s = tx.Begin(); !s.ok()) return s;
    outbox_->NewTransaction();
    auto seq = outbox_->AppendNext(v1::COLDCHAIN_ALERT, kAlertKey, kPriorityLane, now_ms, rec, now_ms);
    if (!seq.ok()) return seq.status();  // rolled back by tx
    return tx.Commit();
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
  static constexpr int kScanRows = 5000;  // rows per downsampling read

  // The raw telemetry tables, their device column, the downsampling interval, and how far
  // downsampling has read (rowid; in memory: after a restart it reads once more from the start).
  struct Raw {
    std::string table;
    std::string device;
    int64_t interval_ms;
    int64_t cursor = 0;
  };
  Raw raws_[2] = {{"vehicle_positions", "vehicle", 30'000}, {"climate_readings", "sensor", 60'000}};
  int64_t next_dedupe_ms_ = 0;

  // The one mapping, sqlite/status.h.
  Status Error(const char* what) { return sqlite::LastError(db_, std::string("quota: ") + what); }

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

  // (acked_seq, quota_legacy_seq); absent legacy mark (a store edged has not migrated to v5):
  // no legacy row counts as acknowledged.
  Result<std::pair<int64_t, int64_t>> Marks() {
    auto acked = Int("SELECT IFNULL((SELECT value FROM sync_state WHERE name = 'acked_seq'), 0)");
    auto legacy = Int("SELECT IFNULL((SELECT value FROM edge_meta WHERE name = 'quota_legacy_seq'), 9223372036854775807)");
    if (!acked.ok()) return acked.status();
    if (!legacy.ok()) return legacy.status();
    return std::pair{*acked, *legacy};
  }

  // The first column of a read, binding ?1 = acked_seq, ?2 = quota_legacy_seq, `more` from ?3.
  Result<std::vector<int64_t>> Column(const std::string& sql, std::initializer_list<int64_t> more) {
    auto marks = Marks();
    if (!marks.ok()) return marks.status();
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) return Error("scan");
    sqlite3_bind_int64(st, 1, marks->first);
    sqlite3_bind_int64(st, 2, marks->second);
    int i = 3;
    for (int64_t v : more) sqlite3_bind_int64(st, i++, v);
    std::vector<int64_t> out;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) out.push_back(sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return Error("scan");
    return out;
  }

  // Runs `each` (a DELETE with ?1/?2 = the marks read inside the transaction, ?3 = one key)
  // for every key in one short write transaction; `done` (may be null) runs last with ?3 =
  // the highest key deleted. Returns the rows deleted.
  // `before` (may be null) runs with the same parameters ahead of `each`, for every key.
  Result<int64_t> DeleteEach(const std::string& each, const std::vector<int64_t>& keys, const char* done = nullptr,
                             const char* before = nullptr) {
    if (keys.empty()) return int64_t{0};
    if (Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
    auto fail = [&](const char* what) -> Result<int64_t> {
      Status s = Error(what);
      (void)Exec("ROLLBACK");
      return s;
    };
    auto marks = Marks();
    if (!marks.ok()) return fail("acked seq");
    auto run = [&](const char* sql, const std::vector<int64_t>& values, int64_t* changes) {
      sqlite3_stmt* st = nullptr;
      if (sqlite3_prepare_v2(db_, sql, -1, &st, nullptr) != SQLITE_OK) return false;
      bool ok = true;
      for (int64_t v : values) {
        sqlite3_bind_int64(st, 1, marks->first);
        sqlite3_bind_int64(st, 2, marks->second);
        sqlite3_bind_int64(st, 3, v);
        ok = sqlite3_step(st) == SQLITE_DONE;
        sqlite3_reset(st);
        if (!ok) break;
        if (changes != nullptr) *changes += sqlite3_changes(db_);
      }
      sqlite3_finalize(st);
      return ok;
    };
    int64_t n = 0;
    if (before != nullptr && !run(before, keys, nullptr)) return fail("before delete");
    if (!run(each.c_str(), keys, &n)) return fail("delete");
    if (done != nullptr && n > 0 && !run(done, {*std::max_element(keys.begin(), keys.end())}, nullptr)) return fail("mark");
    if (Status s = Exec("COMMIT"); !s.ok()) {
      (void)Exec("ROLLBACK");
      return s;
    }
    return n;
  }

  Result<int64_t> DeleteRows(const std::string& table, const std::vector<int64_t>& rowids) {
    // A thinned reading stays a link of its sensor's cold-chain audit chain (edge/migrations.cc,
    // coldchain_links): marked in the same transaction, so the export says where the site
    // thinned and carries the chain on with the link's hash; the hub holds the whole reading.
    static const std::string thin_links = "UPDATE coldchain_links SET thinned = 1 WHERE seq = (SELECT outbox_seq FROM "
                                          "climate_readings WHERE rowid = ?3 AND " + Acked("climate_readings") + ")";
    return DeleteEach("DELETE FROM " + table + " WHERE rowid = ?3 AND " + Acked(table), rowids, nullptr,
                      table == "climate_readings" ? thin_links.c_str() : nullptr);
  }

  // sync_state.quota_dropped_upto marks the highest seq dropped, in the same transaction:
  // below it the outbox has holes, so reconciliation digests and `edgectl verify`'s density
  // check start above it. (Conservative: the highest seq asked for, deleted or not.)
  Result<int64_t> DeleteOutbox(const std::vector<int64_t>& seqs) {
    return DeleteEach("DELETE FROM outbox WHERE seq = ?3 AND seq <= ?1 AND entity IN " + kTelemetryEntities, seqs,
                      "INSERT INTO sync_state(name, value) VALUES ('quota_dropped_upto', ?3) "
                      "ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)");
  }

  // dedupe is WITHOUT ROWID: read the keys, delete by (kind, key).
  Result<int64_t> DeleteOldDedupe(int64_t before_ms, int64_t limit) {
    std::vector<std::pair<int, std::string>> keys;
    {
      sqlite3_stmt* st = nullptr;
      const std::string scan = "SELECT kind, key FROM dedupe WHERE kind IN " + kTelemetryDedupeKinds + " AND seen_ms < ?1 LIMIT ?2";
      if (sqlite3_prepare_v2(db_, scan.c_str(), -1, &st, nullptr) != SQLITE_OK)
        return Error("dedupe scan");
      sqlite3_bind_int64(st, 1, before_ms);
      sqlite3_bind_int64(st, 2, limit);
      int rc;
      while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        keys.emplace_back(sqlite3_column_int(st, 0), reinterpret_cast<const char*>(sqlite3_column_text(st, 1)));
      sqlite3_finalize(st);
      if (rc != SQLITE_DONE) return Error("dedupe scan");
    }
    if (keys.empty()) return int64_t{0};
    if (Status s = Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, "DELETE FROM dedupe WHERE kind = ?1 AND key = ?2 AND seen_ms < ?3", -1, &st, nullptr) != SQLITE_OK) {
      Status s = Error("dedupe");
      (void)Exec("ROLLBACK");
      return s;
    }
    int64_t n = 0;
    bool ok = true;
    for (const auto& [kind, key] : keys) {
      sqlite3_bind_int(st, 1, kind);
      sqlite3_bind_text(st, 2, key.data(), static_cast<int>(key.size()), SQLITE_TRANSIENT);
      sqlite3_bind_int64(st, 3, before_ms);
      ok = sqlite3_step(st) == SQLITE_DONE;
      sqlite3_reset(st);
      if (!ok) break;
      n += sqlite3_changes(db_);
    }
    sqlite3_finalize(st);
    if (!ok) {
      Status s = Error("dedupe");
      (void)Exec("ROLLBACK");
      return s;
    }
    if (Status s = Exec("COMMIT"); !s.ok()) {
      (void)Exec("ROLLBACK");
      return s;
    }
    return n;
  }

  sqlite3* db_;
  Clock& clock_;
  std::unique_ptr<OutboxWriter> outbox_;  // opened at the first alert
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
