#include "cloud-sync/sync_store.h"

#include <sqlite3.h>

#include "cloud-sync/outbox_schema.h"
#include "freshsync.pb.h"
#include "sqlite/db.h"
#include "wire/digest.h"

namespace freshsync::sync {
namespace {

// Resets a statement on scope exit so that no read transaction stays open between steps
// (an open read would pin the WAL and stop checkpoints).
struct ResetGuard {
  sqlite3_stmt* s;
  ~ResetGuard() {
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
  }
};

}  // namespace

Result<std::unique_ptr<SyncStore>> SyncStore::Open(const std::string& path, int busy_timeout_ms) {
  std::unique_ptr<SyncStore> s(new SyncStore());
  // READWRITE without CREATE: the store creates the file; a wrong path must be an error, not
  // an empty new database that silently syncs nothing.
  int rc = sqlite3_open_v2(path.c_str(), &s->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = s->db_ ? sqlite3_errmsg(s->db_) : "out of memory";
    return Status::NotFound(path + ": cannot open edge store: " + msg);
  }
  sqlite3_busy_timeout(s->db_, busy_timeout_ms);
  if (Status st = s->Exec("PRAGMA foreign_keys=OFF"); !st.ok()) return st;
  struct {
    const char* sql;
    sqlite3_stmt** stmt;
  } stmts[] = {
      {"SELECT value FROM sync_state WHERE name = ?1", &s->get_state_},
      {"INSERT INTO sync_state(name, value) VALUES(?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
       &s->set_state_},
      {"SELECT seq FROM outbox ORDER BY seq DESC LIMIT 1", &s->last_seq_},
      {"SELECT seq FROM outbox ORDER BY seq ASC LIMIT 1", &s->first_seq_},
      {"SELECT seq, priority, created_ms, record FROM outbox WHERE seq > ?1 AND seq <= ?2 ORDER BY seq LIMIT ?3",
       &s->read_range_},
      {"SELECT seq, priority, created_ms, record FROM outbox WHERE seq > ?1 AND seq <= ?2 AND priority = 1 "
       "ORDER BY seq LIMIT ?3",
       &s->read_priority_},
      // Oldest first, bounded: the inner SELECT walks the primary key from the start.
      {"DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE seq <= ?1 ORDER BY seq LIMIT ?3) "
       "AND created_ms < ?2",
       &s->trim_},
      {"SELECT seq, entity, version, key FROM outbox WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq", &s->digest_},
  };
  for (auto& st : stmts) {
    if (sqlite3_prepare_v3(s->db_, st.sql, -1, SQLITE_PREPARE_PERSISTENT, st.stmt, nullptr) != SQLITE_OK) {
      return Status::NotFound(path + ": not an edge store with outbox and sync_state tables: " +
                              sqlite3_errmsg(s->db_));
    }
  }
  return s;
}

SyncStore::~SyncStore() {
  for (sqlite3_stmt* st : {get_state_, set_state_, last_seq_, first_seq_, read_range_, read_priority_, trim_, digest_}) {
    sqlite3_finalize(st);
  }
  sqlite3_close_v2(db_);
}

// The one mapping, sqlite/status.h: BUSY past busy_timeout is kIOError, retried by the agent.
Status SyncStore::Error(const char* what) { return sqlite::LastError(db_, what); }

Status SyncStore::Exec(const char* sql) { return sqlite::ExecOn(db_, sql); }

Result<int64_t> SyncStore::GetState(const char* name, int64_t def) {
  ResetGuard g{get_state_};
  sqlite3_bind_text(get_state_, 1, name, -1, SQLITE_STATIC);
  int rc = sqlite3_step(get_state_);
  if (rc == SQLITE_ROW) return static_cast<int64_t>(sqlite3_column_int64(get_state_, 0));
  if (rc == SQLITE_DONE) return def;
  return Error("read sync_state");
}

Status SyncStore::WriteStates(const std::vector<std::pair<const char*, int64_t>>& values) {
  for (const auto& [name, value] : values) {
    ResetGuard g{set_state_};
    sqlite3_bind_text(set_state_, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(set_state_, 2, value);
    if (sqlite3_step(set_state_) != SQLITE_DONE) return Error("write sync_state");
  }
  return Status::Ok();
}

Status SyncStore::SetStates(const std::vector<std::pair<const char*, int64_t>>& values) {
  // BEGIN IMMEDIATE takes the write lock up front, so busy_timeout applies to it instead of a
  // deadlock-prone upgrade from a read lock.
  if (Status st = Exec("BEGIN IMMEDIATE"); !st.ok()) return st;
  if (Status st = WriteStates(values); !st.ok()) {
    (void)Exec("ROLLBACK");
    return st;
  }
  if (Status st = Exec("COMMIT"); !st.ok()) {
    (void)Exec("ROLLBACK");
    return st;
  }
  return Status::Ok();
}

Result<uint64_t> SyncStore::LastSeq() {
  ResetGuard g{last_seq_};
  int rc = sqlite3_step(last_seq_);
  if (rc == SQLITE_ROW) return static_cast<uint64_t>(sqlite3_column_int64(last_seq_, 0));
  if (rc == SQLITE_DONE) return uint64_t{0};
  return Error("read max(seq)");
}

Result<uint64_t> SyncStore::FirstSeq() {
  ResetGuard g{first_seq_};
  int rc = sqlite3_step(first_seq_);
  if (rc == SQLITE_ROW) return static_cast<uint64_t>(sqlite3_column_int64(first_seq_, 0));
  if (rc == SQLITE_DONE) return uint64_t{0};
  return Error("read min(seq)");
}

Status SyncStore::ReadWith(sqlite3_stmt* stmt, uint64_t after, uint64_t upto, int max_records, int64_t max_bytes,
                           std::vector<OutboxRow>* out, bool* full) {
  ResetGuard g{stmt};
  out->clear();
  *full = false;
  sqlite3_bind_int64(stmt, 1, static_cast<int64_t>(after));
  sqlite3_bind_int64(stmt, 2, upto > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(upto));
  // One row more than asked tells a full batch from the end of the data.
  sqlite3_bind_int64(stmt, 3, static_cast<int64_t>(max_records) + 1);
  int64_t bytes = 0;
  int rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    if (static_cast<int>(out->size()) >= max_records) {
      *full = true;
      break;
    }
    const int len = sqlite3_column_bytes(stmt, 3);
    if (!out->empty() && bytes + len > max_bytes) {
      *full = true;
      break;
    }
    OutboxRow row;
    row.seq = static_cast<uint64_t>(sqlite3_column_int64(stmt, 0));
    row.priority = sqlite3_column_int(stmt, 1);
    row.created_ms = sqlite3_column_int64(stmt, 2);
    const void* blob = sqlite3_column_blob(stmt, 3);
    if (len > 0) row.record.assign(static_cast<const char*>(blob), static_cast<size_t>(len));
    bytes += len;
    out->push_back(std::move(row));
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("read outbox");
  return Status::Ok();
}

Status SyncStore::ReadRange(uint64_t after, uint64_t upto, int max_records, int64_t max_bytes,
                            std::vector<OutboxRow>* out, bool* full) {
  return ReadWith(read_range_, after, upto, max_records, max_bytes, out, full);
}

Status SyncStore::ReadPriority(uint64_t after, uint64_t upto, int max_records, int64_t max_bytes,
                               std::vector<OutboxRow>* out, bool* full) {
  return ReadWith(read_priority_, after, upto, max_records, max_bytes, out, full);
}

Result<int64_t> SyncStore::TrimAcked(uint64_t upto, int64_t cutoff_ms, int chunk, int max_chunks) {
  int64_t total = 0;
  for (int i = 0; i < max_chunks; ++i) {
    ResetGuard g{trim_};
    sqlite3_bind_int64(trim_, 1, static_cast<int64_t>(upto));
    sqlite3_bind_int64(trim_, 2, cutoff_ms);
    sqlite3_bind_int64(trim_, 3, chunk);
    if (sqlite3_step(trim_) != SQLITE_DONE) return Error("trim outbox");
    const int n = sqlite3_changes(db_);
    total += n;
    // Fewer than a chunk: either done, or the oldest rows are still inside the window.
    if (n < chunk) break;
  }
  return total;
}

Result<int64_t> SyncStore::RenumberAfterRestore(uint64_t restored_last, uint64_t hub_contiguous) {
  if (hub_contiguous <= restored_last) return Status::InvalidArgument("renumber: hub is not ahead of the restored store");
  const auto shift = static_cast<int64_t>(hub_contiguous - restored_last);
  if (Status st = Exec("BEGIN IMMEDIATE"); !st.ok()) return st;
  struct Statements {
    sqlite3_stmt* read = nullptr;
    sqlite3_stmt* move = nullptr;
    ~Statements() {
      sqlite3_finalize(read);
      sqlite3_finalize(move);
    }
  } q;
  auto fail = [&](const char* what) -> Status {
    Status err = Error(what);
    (void)Exec("ROLLBACK");
    return err;
  };
  if (sqlite3_prepare_v2(db_, "SELECT record FROM outbox WHERE seq = ?1", -1, &q.read, nullptr) != SQLITE_OK ||
      sqlite3_prepare_v2(db_, "UPDATE outbox SET seq = ?1, record = ?2 WHERE seq = ?3", -1, &q.move, nullptr) != SQLITE_OK)
    return fail("renumber: prepare");
  // The seqs first: SQLite leaves undefined what a cursor sees of rows changed under it.
  std::vector<int64_t> seqs;
  {
    sqlite3_stmt* list = nullptr;
    if (sqlite3_prepare_v2(db_, "SELECT seq FROM outbox WHERE seq > ?1 ORDER BY seq DESC", -1, &list, nullptr) != SQLITE_OK) {
      sqlite3_finalize(list);
      return fail("renumber: prepare");
    }
    sqlite3_bind_int64(list, 1, static_cast<int64_t>(restored_last));
    int rc;
    while ((rc = sqlite3_step(list)) == SQLITE_ROW) seqs.push_back(sqlite3_column_int64(list, 0));
    sqlite3_finalize(list);
    if (rc != SQLITE_DONE) return fail("renumber: read outbox");
  }
  int64_t moved = 0;
  v1::ChangeRecord record;
  std::string bytes;
  for (const int64_t seq : seqs) {  // highest first
    sqlite3_bind_int64(q.read, 1, seq);
    if (sqlite3_step(q.read) != SQLITE_ROW) return fail("renumber: read row");
    const bool parsed = record.ParseFromArray(sqlite3_column_blob(q.read, 0), sqlite3_column_bytes(q.read, 0));
    sqlite3_reset(q.read);
    if (!parsed) return fail("renumber: unreadable change record");
    record.set_seq(static_cast<uint64_t>(seq + shift));
    record.SerializeToString(&bytes);
    sqlite3_bind_int64(q.move, 1, seq + shift);
    sqlite3_bind_blob(q.move, 2, bytes.data(), static_cast<int>(bytes.size()), SQLITE_STATIC);
    sqlite3_bind_int64(q.move, 3, seq);
    if (sqlite3_step(q.move) != SQLITE_DONE) return fail("renumber: move row");
    sqlite3_reset(q.move);
    ++moved;
  }
  // The disk quota finds a raw telemetry row's record by outbox_seq (schema v5 of the edge store;
  // an outbox-only store has neither table).
  for (const char* table : {"vehicle_positions", "climate_readings"}) {
    sqlite3_stmt* has = nullptr;
    const std::string probe = std::string("SELECT 1 FROM pragma_table_info('") + table + "') WHERE name = 'outbox_seq'";
    const bool present = sqlite3_prepare_v2(db_, probe.c_str(), -1, &has, nullptr) == SQLITE_OK && sqlite3_step(has) == SQLITE_ROW;
    sqlite3_finalize(has);
    if (!present) continue;
    const std::string sql = std::string("UPDATE ") + table + " SET outbox_seq = outbox_seq + " + std::to_string(shift) +
                            " WHERE outbox_seq > " + std::to_string(restored_last);
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) return fail("renumber: telemetry rows");
  }
  const auto c = static_cast<int64_t>(hub_contiguous);
  if (Status st = WriteStates({{kStateAckedSeq, c}, {kStateUrgentSentSeq, c}, {kStateSeqFloor, c}, {kStateRestoredLastSeq, 0}});
      !st.ok()) {
    (void)Exec("ROLLBACK");
    return st;
  }
  if (Status st = Exec("COMMIT"); !st.ok()) {
    (void)Exec("ROLLBACK");
    return st;
  }
  return moved;
}

Result<std::vector<digest::DigestBucket>> SyncStore::Digest(uint64_t from, uint64_t to, uint32_t buckets) {
  digest::BucketDigester d(from, to, buckets);
  if (Status st = d.status(); !st.ok()) return st;
  ResetGuard g{digest_};
  sqlite3_bind_int64(digest_, 1, static_cast<int64_t>(from));
  sqlite3_bind_int64(digest_, 2, static_cast<int64_t>(to));
  int rc;
  while ((rc = sqlite3_step(digest_)) == SQLITE_ROW) {
    const auto* key = reinterpret_cast<const char*>(sqlite3_column_text(digest_, 3));
    const int klen = sqlite3_column_bytes(digest_, 3);
    d.Add(static_cast<uint64_t>(sqlite3_column_int64(digest_, 0)), sqlite3_column_int(digest_, 1),
          static_cast<uint64_t>(sqlite3_column_int64(digest_, 2)), std::string_view(key ? key : "", static_cast<size_t>(klen)));
  }
  if (rc != SQLITE_DONE) return Error("digest outbox");
  return d.Finish();
}

Result<StockSnapshot> SyncStore::StockDigest() {
  StockSnapshot out;
  // Prepared per call (once per reconciliation round): a store without a `stock` table (an
  // outbox-only test store) simply has nothing to compare.
  sqlite3_stmt* q = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT sku, on_hand, reserved, version FROM stock ORDER BY sku", -1, &q, nullptr) !=
      SQLITE_OK) {
    sqlite3_finalize(q);
    return out;
  }
  struct Fin {
    sqlite3_stmt* s;
    ~Fin() { sqlite3_finalize(s); }
  } fin{q};
  // One read transaction: the digest and last seq describe the same snapshot, so the caller
  // can tell whether every row the digest reflects has been acknowledged by the hub.
  if (Status st = Exec("BEGIN"); !st.ok()) return st;
  struct End {
    SyncStore* s;
    ~End() { (void)s->Exec("COMMIT"); }
  } end{this};
  {
    ResetGuard g{last_seq_};
    const int rc = sqlite3_step(last_seq_);
    if (rc == SQLITE_ROW) out.last_seq = static_cast<uint64_t>(sqlite3_column_int64(last_seq_, 0));
    else if (rc != SQLITE_DONE) return Error("stock digest: last seq");
  }
  // ORDER BY sku with the BINARY collation: bytewise, as the hub sorts (wire/digest.h).
  digest::StateDigester d;
  if (Status st = d.status(); !st.ok()) return st;
  int rc;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    const auto* sku = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
    const int len = sqlite3_column_bytes(q, 0);
    d.AddStock(std::string_view(sku ? sku : "", static_cast<size_t>(len)), sqlite3_column_int64(q, 1),
               sqlite3_column_int64(q, 2), static_cast<uint64_t>(sqlite3_column_int64(q, 3)));
  }
  if (rc != SQLITE_DONE) return Error("stock digest");
  out.available = true;
  out.skus = d.count();
  out.digest = d.FinishAsString();
  return out;
}

}  // namespace freshsync::sync
