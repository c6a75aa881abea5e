#include "edge/store_reader.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>

#include "freshsync.pb.h"
#include "wire/scales.h"

namespace freshsync::edge {
namespace {

// Runs `sql`; `row` is called per row. The mapped error, naming the SQL, on failure.
template <typename F>
Status Query(sqlite3* db, const std::string& sql, F row) {
  auto st = sqlite::PrepareOn(db, sql.c_str());
  if (!st.ok()) return sqlite::LastError(db, sql);
  int rc;
  while ((rc = st->Step()) == SQLITE_ROW) row(*st);
  if (rc != SQLITE_DONE) return sqlite::LastError(db, sql);
  return Status::Ok();
}

// Text as SQLite renders the column (numbers as digits); empty for NULL.
std::string Text(const sqlite::Stmt& st, int col) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st.get(), col));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(st.get(), col))) : std::string();
}

// A read transaction, ended on every path out, so that several queries see one snapshot.
class ReadTransaction {
 public:
  explicit ReadTransaction(sqlite3* db) : db_(db) { (void)sqlite::ExecOn(db_, "BEGIN"); }
  ~ReadTransaction() {
    if (sqlite3_get_autocommit(db_) == 0) (void)sqlite::ExecOn(db_, "COMMIT");
  }
  ReadTransaction(const ReadTransaction&) = delete;
  ReadTransaction& operator=(const ReadTransaction&) = delete;

 private:
  sqlite3* db_;
};

const char* kDeadLetterCols = "SELECT id, received_ms, topic, code, reason, payload, payload_bytes FROM dead_letters ";

DeadLetterFull RowToDeadLetter(const sqlite::Stmt& st) {
  DeadLetterFull d;
  d.id = st.Int(0);
  d.received_ms = st.Int(1);
  d.topic = Text(st, 2);
  d.code = Text(st, 3);
  d.reason = Text(st, 4);
  d.payload = st.Text(5);
  d.payload_bytes = st.Int(6);
  return d;
}

constexpr const char* kAckedSql = "SELECT IFNULL((SELECT value FROM sync_state WHERE name='acked_seq'), 0)";

}  // namespace

Result<StoreReader> StoreReader::Open(const std::string& path, int busy_timeout_ms) {
  struct stat sb;
  if (stat(path.c_str(), &sb) != 0) return Status::NotFound(path + ": no store database");
  sqlite::OpenOptions o;
  o.read_only = true;
  o.busy_timeout_ms = busy_timeout_ms;
  auto db = sqlite::Db::Open(path, o);
  if (!db.ok()) return db.status();
  return StoreReader(std::move(*db));
}

Result<StoreSummary> StoreReader::Summary() {
  ReadTransaction tx(db_.get());
  auto last = db_.QueryInt(
      "SELECT max(IFNULL((SELECT MAX(seq) FROM outbox),0), IFNULL((SELECT value FROM sync_state WHERE name='acked_seq'),0))");
  auto acked = db_.QueryInt(kAckedSql);
  auto dls = db_.QueryInt("SELECT COUNT(*) FROM dead_letters");
  auto link = db_.QueryInt("SELECT IFNULL((SELECT value FROM sync_state WHERE name='link_up'), 0)");
  for (auto* r : {&last, &acked, &dls, &link})
    if (!r->ok()) return r->status();
  StoreSummary out;
  out.last_seq = *last;
  out.acked_seq = *acked;
  auto backlog = db_.QueryInt(("SELECT COUNT(*) FROM outbox WHERE seq > " + std::to_string(out.acked_seq)).c_str());
  if (!backlog.ok()) return backlog.status();
  out.backlog = *backlog;
  out.dead_letters = *dls;
  out.link_up = *link != 0;
  auto down_seq = db_.QueryInt("SELECT IFNULL((SELECT value FROM sync_state WHERE name='down_applied_seq'), 0)");
  if (!down_seq.ok()) return down_seq.status();
  out.down_applied_seq = *down_seq;
  for (auto [name, field] : {std::pair{kMetaRebuiltFromHubMs, &out.rebuilt_from_hub_ms},
                             std::pair{kMetaRebuiltSeqFloor, &out.rebuilt_seq_floor}}) {
    auto v = db_.QueryInt(("SELECT IFNULL((SELECT value FROM edge_meta WHERE name='" + std::string(name) + "'), 0)").c_str());
    if (!v.ok()) return v.status();
    *field = *v;
  }
  // The tables come with schema 7; a store not yet migrated by this release has none.
  auto has_down = db_.QueryInt("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'down_applied'");
  if (!has_down.ok()) return has_down.status();
  if (*has_down > 0) {
    auto commands = db_.QueryInt("SELECT count(*) FROM down_applied");
    auto last_ms = db_.QueryInt("SELECT IFNULL(MAX(applied_ms), 0) FROM down_applied");
    auto items = db_.QueryInt("SELECT count(*) FROM catalog");
    for (auto* r : {&commands, &last_ms, &items})
      if (!r->ok()) return r->status();
    out.down_commands = *commands;
    out.down_last_applied_ms = *last_ms;
    out.catalog_items = *items;
  }
  return out;
}

Result<std::vector<EscrowSummary>> StoreReader::Escrow() {
  ReadTransaction tx(db_.get());
  std::vector<EscrowSummary> out;
  auto has = db_.QueryInt("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'escrow'");
  if (!has.ok()) return has.status();
  if (*has == 0) return out;
  // The holder is EdgeStore::kEscrowHolder ("\x1f" "escrow"), spelled here with char(31).
  Status s = Query(db_.get(),
                   "SELECT e.sku, e.target, e.given, e.returned_applied, e.consumed_applied, "
                   "IFNULL((SELECT SUM(r.qty) FROM reservations r WHERE r.order_id = char(31) || 'escrow' AND r.sku = e.sku), 0) "
                   "FROM escrow e ORDER BY e.sku",
                   [&](const sqlite::Stmt& st) {
                     out.push_back({Text(st, 0), st.Int(1), st.Int(2), st.Int(3), st.Int(4), st.Int(5)});
                   });
  if (!s.ok()) return s;
  return out;
}

Result<BacklogSummary> StoreReader::Backlog() {
  ReadTransaction tx(db_.get());
  BacklogSummary out;
  auto acked = db_.QueryInt(kAckedSql);
  if (!acked.ok()) return acked.status();
  out.acked_seq = *acked;
  auto last = db_.QueryInt("SELECT IFNULL((SELECT MAX(seq) FROM outbox), 0)");
  if (!last.ok()) return last.status();
  out.last_seq = std::max(*last, out.acked_seq);
  // A range scan on the primary key from acked_seq, grouped by lane.
  auto st = db_.Prepare("SELECT priority, COUNT(*), MIN(created_ms) FROM outbox WHERE seq > ?1 GROUP BY priority");
  if (!st.ok()) return sqlite::LastError(db_.get(), "backlog");
  st->Bind(1, out.acked_seq);
  int rc;
  while ((rc = st->Step()) == SQLITE_ROW) {
    const int64_t n = st->Int(1);
    const int64_t oldest = st->Int(2);
    (st->Int(0) != 0 ? out.priority : out.bulk) += n;
    out.backlog += n;
    if (out.oldest_created_ms == 0 || oldest < out.oldest_created_ms) out.oldest_created_ms = oldest;
  }
  if (rc != SQLITE_DONE) return sqlite::StatusFor(rc, "backlog", db_.get());
  return out;
}

Result<OutboxHead> StoreReader::Head() {
  OutboxHead h;
  Status s = Query(db_.get(),
                   "SELECT (SELECT coalesce(max(seq), 0) FROM outbox), "
                   "(SELECT coalesce(max(value), 0) FROM sync_state WHERE name = 'acked_seq')",
                   [&](const sqlite::Stmt& st) {
                     h.last_seq = st.Int(0);
                     h.acked_seq = st.Int(1);
                   });
  if (!s.ok()) return s;
  return h;
}

Result<int64_t> StoreReader::OldestUnackedCreatedMs() {
  return db_.QueryInt(
      "SELECT created_ms FROM outbox WHERE seq > (SELECT coalesce(max(value), 0) FROM sync_state WHERE name = 'acked_seq') "
      "ORDER BY seq LIMIT 1");
}

Result<std::vector<DeadLetterRow>> StoreReader::DeadLetters(int64_t limit) {
  auto st = db_.Prepare("SELECT id, received_ms, topic, code, reason, payload_bytes FROM dead_letters ORDER BY id DESC LIMIT ?1");
  if (!st.ok()) return sqlite::LastError(db_.get(), "dead letters");
  st->Bind(1, limit);
  // Text up to its first NUL, as edgectl has always listed it.
  auto cstr = [&](int c) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st->get(), c));
    return p ? std::string(p) : std::string();
  };
  std::vector<DeadLetterRow> rows;
  int rc;
  while ((rc = st->Step()) == SQLITE_ROW) {
    DeadLetterRow r;
    r.id = st->Int(0);
    r.received_ms = st->Int(1);
    r.topic = cstr(2);
    r.code = cstr(3);
    r.reason = cstr(4);
    r.payload_bytes = st->Int(5);
    rows.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return sqlite::StatusFor(rc, "dead letters", db_.get());
  return rows;
}

Result<DeadLetterFull> StoreReader::DeadLetter(int64_t id) {
  std::vector<DeadLetterFull> out;
  if (Status s = Query(db_.get(), std::string(kDeadLetterCols) + "WHERE id = " + std::to_string(id),
                       [&](const sqlite::Stmt& st) { out.push_back(RowToDeadLetter(st)); });
      !s.ok())
    return s;
  if (out.empty()) return Status::NotFound("no dead letter with id " + std::to_string(id));
  return out.front();
}

Result<std::vector<DeadLetterFull>> StoreReader::ReplayableDeadLetters() {
  std::vector<DeadLetterFull> out;
  if (Status s = Query(db_.get(), std::string(kDeadLetterCols) + "WHERE code = 'conflict' ORDER BY id",
                       [&](const sqlite::Stmt& st) { out.push_back(RowToDeadLetter(st)); });
      !s.ok())
    return s;
  return out;
}

Result<std::vector<std::pair<std::string, int64_t>>> StoreReader::DeadLettersByCode() {
  std::vector<std::pair<std::string, int64_t>> out;
  if (Status s = Query(db_.get(), "SELECT code, count(*) FROM dead_letters GROUP BY code",
                       [&](const sqlite::Stmt& st) { out.emplace_back(Text(st, 0), st.Int(1)); });
      !s.ok())
    return s;
  return out;
}

Result<int64_t> StoreReader::OpenColdchainAlerts() {
  auto exists = db_.QueryInt("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'rule_state'");
  if (!exists.ok() || *exists == 0) return exists;
  return db_.QueryInt(
      "SELECT coalesce(sum((json_type(blob, '$.exc') IS NOT NULL) + (json_type(blob, '$.off') IS NOT NULL)), 0) "
      "FROM rule_state WHERE engine = 'coldchain' AND json_valid(blob)");
}

Status StoreReader::ColdchainExport(const std::string& sensor, int64_t from_ms, int64_t to_ms,
                                    audit::ExportHeader* header, std::vector<audit::ExportItem>* items) {
  ReadTransaction tx(db_.get());
  header->sensor = sensor;
  header->from_ms = from_ms;
  header->to_ms = to_ms;
  items->clear();
  // Bound by the caller's range; the sensor and times are bound, never spliced.
  auto span = sqlite::PrepareOn(db_.get(),
                                "SELECT MIN(idx), MAX(idx), COUNT(*) FROM coldchain_links WHERE sensor = ?1 AND ts_ms BETWEEN ?2 AND ?3");
  if (!span.ok()) return span.status();
  span->Bind(1, sensor).Bind(2, from_ms).Bind(3, to_ms);
  if (span->Step() != SQLITE_ROW) return sqlite::LastError(db_.get(), "coldchain span");
  const int64_t first = span->Int(0), last = span->Int(1), count = span->Int(2);
  if (count == 0) return Status::Ok();
  auto before = sqlite::PrepareOn(db_.get(),
                                  "SELECT idx, chain_hash FROM coldchain_links WHERE sensor = ?1 AND idx < ?2 ORDER BY idx DESC LIMIT 1");
  if (!before.ok()) return before.status();
  before->Bind(1, sensor).Bind(2, first);
  if (int rc = before->Step(); rc == SQLITE_ROW) {
    header->before_index = before->UInt(0);
    header->before_hash = before->Text(1);
  } else if (rc != SQLITE_DONE) {
    return sqlite::LastError(db_.get(), "coldchain link before");
  }
  // Seals by their last link, to put each after it.
  std::vector<audit::ExportItem> seals;
  auto seal_stmt = sqlite::PrepareOn(
      db_.get(), "SELECT seq, seal FROM coldchain_seals WHERE sensor = ?1 AND last_index BETWEEN ?2 AND ?3 ORDER BY last_index");
  if (!seal_stmt.ok()) return seal_stmt.status();
  seal_stmt->Bind(1, sensor).Bind(2, first).Bind(3, last);
  int rc;
  while ((rc = seal_stmt->Step()) == SQLITE_ROW) {
    audit::ExportItem it;
    it.is_seal = true;
    it.seal.seq = seal_stmt->UInt(0);
    if (!it.seal.seal.ParseFromString(seal_stmt->Text(1))) return Status::Internal("coldchain_seals: a seal does not parse");
    seals.push_back(std::move(it));
  }
  if (rc != SQLITE_DONE) return sqlite::LastError(db_.get(), "coldchain seals");
  // The reading of each link by its record's seq (climate_readings.outbox_seq); LEFT JOIN, so
  // a thinned or deleted reading still gives its link.
  auto links = sqlite::PrepareOn(
      db_.get(),
      "SELECT l.idx, l.seq, l.ts_ms, l.chain_prev, l.chain_hash, l.alert, l.thinned, c.rowid, c.seq, c.ts_ms, c.temp_c, "
      "c.rh, c.battery FROM coldchain_links l LEFT JOIN climate_readings c ON c.outbox_seq = l.seq "
      "WHERE l.sensor = ?1 AND l.idx BETWEEN ?2 AND ?3 ORDER BY l.idx");
  if (!links.ok()) return links.status();
  links->Bind(1, sensor).Bind(2, first).Bind(3, last);
  size_t next_seal = 0;
  while ((rc = links->Step()) == SQLITE_ROW) {
    audit::ExportItem it;
    audit::ExportLink& e = it.link;
    audit::Link& l = e.link;
    l.sensor = sensor;
    l.index = links->UInt(0);
    e.seq = links->UInt(1);
    l.ts_ms = links->Int(2);
    e.chain_prev = links->Text(3);
    e.chain_hash = links->Text(4);
    if (!links->IsNull(5)) {
      v1::ColdchainAlert a;
      if (!a.ParseFromString(links->Text(5))) return Status::Internal("coldchain_links: an alert does not parse");
      audit::SetAlertLink(a, l);
    } else if (links->IsNull(7)) {
      e.thinned = links->Int(6) != 0;
      e.missing = !e.thinned;
    } else {
      l.device_seq = links->UInt(8);
      l.ts_ms = links->Int(9);
      l.temp_dc = wire::FixedPoint(links->Real(10), wire::kTempScale);
      if (!links->IsNull(11)) l.rh_d = static_cast<uint32_t>(wire::FixedPoint(links->Real(11), wire::kHumidityScale));
      if (!links->IsNull(12))
        l.battery_d = static_cast<uint32_t>(wire::FixedPoint(links->Real(12), wire::kBatteryScale));
    }
    items->push_back(std::move(it));
    while (next_seal < seals.size() && seals[next_seal].seal.seal.last_index() <= l.index) items->push_back(seals[next_seal++]);
  }
  if (rc != SQLITE_DONE) return sqlite::LastError(db_.get(), "coldchain links");
  return Status::Ok();
}

Status StoreReader::IntegrityCheck(std::vector<std::string>* findings) {
  return Query(db_.get(), "PRAGMA integrity_check", [&](const sqlite::Stmt& st) {
    std::string r = Text(st, 0);
    if (r != "ok") findings->push_back("integrity_check: " + r);
  });
}

bool StoreReader::IsEdgeStore() {
  int64_t tables = 0;
  (void)Query(db_.get(), "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('outbox', 'sync_state', 'stock')",
              [&](const sqlite::Stmt& st) { tables = st.Int(0); });
  return tables == 3;
}

Status StoreReader::Verify(std::vector<std::string>* findings) {
  // All invariants read in one snapshot.
  if (Status s = db_.Exec("BEGIN"); !s.ok()) return s;
  auto check = [&](const std::string& sql, auto describe) {
    Status s = Query(db_.get(), sql, [&](const sqlite::Stmt& st) { findings->push_back(describe(st)); });
    if (!s.ok()) findings->push_back("query failed: " + s.message());
  };
  check("SELECT sku, on_hand FROM stock WHERE on_hand < 0 LIMIT 20",
        [](const sqlite::Stmt& st) { return "stock " + Text(st, 0) + ": on_hand " + Text(st, 1) + " < 0"; });
  check("SELECT sku, reserved, on_hand FROM stock WHERE reserved > on_hand OR reserved < 0 LIMIT 20", [](const sqlite::Stmt& st) {
    return "stock " + Text(st, 0) + ": reserved " + Text(st, 1) + " exceeds on_hand " + Text(st, 2) + " (or is negative)";
  });
  // Dense above the disk quota's mark: at or below it the quota may have dropped acknowledged
  // telemetry records (edge/disk_quota.h). seq_floor (an edge restore, outbox_schema.h) splits
  // the outbox in two runs, each dense: the hub holds the seqs between them.
  const std::string mark = "coalesce((SELECT value FROM sync_state WHERE name = 'quota_dropped_upto'), 0)";
  const std::string floor = "coalesce((SELECT value FROM sync_state WHERE name = 'seq_floor'), 0)";
  auto not_dense = [](const sqlite::Stmt& st) {
    return "outbox seq not dense: " + Text(st, 2) + " rows between seq " + Text(st, 0) + " and " + Text(st, 1);
  };
  check("SELECT min(seq), max(seq), count(*) FROM outbox WHERE seq > " + mark + " AND seq <= " + floor +
            " HAVING count(*) > 0 AND count(*) != max(seq) - min(seq) + 1",
        not_dense);
  check("SELECT min(seq), max(seq), count(*) FROM outbox WHERE seq > max(" + mark + ", " + floor +
            ") HAVING count(*) > 0 AND count(*) != max(seq) - min(seq) + 1",
        not_dense);
  // acked_seq may exceed the outbox's last seq only up to seq_floor (hub restored ahead of a
  // restored edge, outbox_schema.h).
  check("SELECT a.value, (SELECT coalesce(max(seq), 0) FROM outbox) AS last, "
        "coalesce((SELECT value FROM sync_state WHERE name = 'seq_floor'), 0) AS fl "
        "FROM sync_state a WHERE a.name = 'acked_seq' AND a.value > max(last, fl)",
        [](const sqlite::Stmt& st) { return "acked_seq " + Text(st, 0) + " beyond the last seq " + Text(st, 1); });
  (void)db_.Exec("ROLLBACK");
  return Status::Ok();
}

namespace {
// Read-only connections of edgectl's one-shot reads wait this long for a lock.
constexpr int kOneShotBusyMs = 2000;
}  // namespace

Result<StoreSummary> ReadStoreSummary(const std::string& path) {
  auto r = StoreReader::Open(path, kOneShotBusyMs);
  if (!r.ok()) return r.status();
  return r->Summary();
}

Result<std::vector<EscrowSummary>> ReadEscrow(const std::string& path) {
  auto r = StoreReader::Open(path, kOneShotBusyMs);
  if (!r.ok()) return r.status();
  return r->Escrow();
}

Result<BacklogSummary> ReadBacklog(const std::string& path) {
  auto r = StoreReader::Open(path, kOneShotBusyMs);
  if (!r.ok()) return r.status();
  return r->Backlog();
}

Result<std::vector<DeadLetterRow>> ReadDeadLetters(const std::string& path, int64_t limit) {
  auto r = StoreReader::Open(path, kOneShotBusyMs);
  if (!r.ok()) return r.status();
  return r->DeadLetters(limit);
}

}  // namespace freshsync::edge
