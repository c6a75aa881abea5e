#include "cloud-sync/sync_store.h"

#include <sqlite3.h>

#include "cloud-sync/outbox_schema.h"
#include "freshsync.pb.h"
#include "sqlite/db.h"
#include "wire/digest.h"

namespace freshsync::sync {
using sqlite::ResetGuard;

Result<std::unique_ptr<SyncStore>> SyncStore::Open(const std::string& path, int busy_timeout_ms) {
  std::unique_ptr<SyncStore> s(new SyncStore());
  // READWRITE without CREATE: the store creates the file; a wrong path must be an error, not
  // an empty new database that silently syncs nothing.
  sqlite::OpenOptions options;
  options.busy_timeout_ms = busy_timeout_ms;
  auto db = sqlite::Db::Open(path, options);
  if (!db.ok()) return Status::NotFound("cannot open edge store: " + db.status().message());
  s->db_ = std::move(*db);
  if (Status st = s->Exec("PRAGMA foreign_keys=OFF"); !st.ok()) return st;
  struct {
    const char* sql;
    sqlite::Stmt* stmt;
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
    auto prepared = s->db_.Prepare(st.sql, true);
    if (!prepared.ok())
      return Status::NotFound(path + ": not an edge store with outbox and sync_state tables: " + prepared.status().message());
    *st.stmt = std::move(*prepared);
  }
  return s;
}

SyncStore::~SyncStore() = default;
// The one mapping, sqlite/status.h: BUSY past busy_timeout is kIOError, retried by the agent.
Status SyncStore::Error(const char* what) { return db_.Error(what); }

Status SyncStore::Exec(const char* sql) { return db_.Exec(sql); }

Result<int64_t> SyncStore::GetState(const char* name, int64_t def) {
  ResetGuard g(get_state_, true);
  const int rc = get_state_.Bind(1, name).Step();
  if (rc == SQLITE_ROW) return get_state_.Int(0);
  if (rc == SQLITE_DONE) return def;
  return Error("read sync_state");
}

Status SyncStore::WriteStates(const std::vector<std::pair<const char*, int64_t>>& values) {
  for (const auto& [name, value] : values) {
    ResetGuard g(set_state_, true);
    if (set_state_.Bind(1, name).Bind(2, value).Step() != SQLITE_DONE) return Error("write sync_state");
  }
  return Status::Ok();
}

Status SyncStore::SetStates(const std::vector<std::pair<const char*, int64_t>>& values) {
  // BEGIN IMMEDIATE takes the write lock up front, so busy_timeout applies to it instead of a
  // deadlock-prone upgrade from a read lock.
  sqlite::Transaction tx(db_.get());
  if (Status st = tx.Begin(); !st.ok()) return st;
  if (Status st = WriteStates(values); !st.ok()) return st;  // rolled back by tx
  return tx.Commit();
}

Result<uint64_t> SyncStore::LastSeq() {
  ResetGuard g(last_seq_, true);
  const int rc = last_seq_.Step();
  if (rc == SQLITE_ROW) return last_seq_.UInt(0);
  if (rc == SQLITE_DONE) return uint64_t{0};
  return Error("read max(seq)");
}

Result<uint64_t> SyncStore::FirstSeq() {
  ResetGuard g(first_seq_, true);
  const int rc = first_seq_.Step();
  if (rc == SQLITE_ROW) return first_seq_.UInt(0);
  if (rc == SQLITE_DONE) return uint64_t{0};
  return Error("read min(seq)");
}

Status SyncStore::ReadWith(sqlite::Stmt& stmt, uint64_t after, uint64_t upto, int max_records, int64_t max_bytes,
                           std::vector<OutboxRow>* out, bool* full) {
  ResetGuard g(stmt, true);
  out->clear();
  *full = false;
  stmt.Bind(1, after).Bind(2, upto > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(upto));
  // One row more than asked tells a full batch from the end of the data.
  stmt.Bind(3, static_cast<int64_t>(max_records) + 1);
  int64_t bytes = 0;
  int rc;
  while ((rc = stmt.Step()) == SQLITE_ROW) {
    if (static_cast<int>(out->size()) >= max_records) {
      *full = true;
      break;
    }
    const int len = sqlite3_column_bytes(stmt.get(), 3);
    if (!out->empty() && bytes + len > max_bytes) {
      *full = true;
      break;
    }
    OutboxRow row;
    row.seq = stmt.UInt(0);
    row.priority = static_cast<int>(stmt.Int(1));
    row.created_ms = stmt.Int(2);
    row.record = stmt.Text(3);
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
    ResetGuard g(trim_, true);
    if (trim_.Bind(1, upto).Bind(2, cutoff_ms).Bind(3, chunk).Step() != SQLITE_DONE) return Error("trim outbox");
    const int n = sqlite3_changes(db_.get());
    total += n;
    // Fewer than a chunk: either done, or the oldest rows are still inside the window.
    if (n < chunk) break;
  }
  return total;
}

Result<int64_t> SyncStore::RenumberAfterRestore(uint64_t restored_last, uint64_t hub_contiguous) {
  if (hub_contiguous <= restored_last) return Status::InvalidArgument("renumber: hub is not ahead of the restored store");
  const auto shift = static_cast<int64_t>(hub_contiguous - restored_last);
  sqlite::Transaction tx(db_.get());  // rolls back unless committed
  if (Status st = tx.Begin(); !st.ok()) return st;
  auto read = db_.Prepare("SELECT record FROM outbox WHERE seq = ?1");
  if (!read.ok()) return read.status();
  auto move = db_.Prepare("UPDATE outbox SET seq = ?1, record = ?2 WHERE seq = ?3");
  if (!move.ok()) return move.status();
  // The seqs first: SQLite leaves undefined what a cursor sees of rows changed under it.
  std::vector<int64_t> seqs;
  {
    auto list = db_.Prepare("SELECT seq FROM outbox WHERE seq > ?1 ORDER BY seq DESC");
    if (!list.ok()) return list.status();
    list->Bind(1, restored_last);
    int rc;
    while ((rc = list->Step()) == SQLITE_ROW) seqs.push_back(list->Int(0));
    if (rc != SQLITE_DONE) return Error("renumber: read outbox");
  }
  int64_t moved = 0;
  v1::ChangeRecord record;
  std::string bytes;
  for (const int64_t seq : seqs) {  // highest first
    {
      ResetGuard g(*read);
      if (read->Bind(1, seq).Step() != SQLITE_ROW) return Error("renumber: read row");
      if (!record.ParseFromArray(sqlite3_column_blob(read->get(), 0), sqlite3_column_bytes(read->get(), 0)))
        return Status::Internal("renumber: unreadable change record");
    }
    record.set_seq(static_cast<uint64_t>(seq + shift));
    record.SerializeToString(&bytes);
    ResetGuard g(*move);
    if (move->Bind(1, seq + shift).BindBlobRef(2, bytes).Bind(3, seq).Step() != SQLITE_DONE) return Error("renumber: move row");
    ++moved;
  }
  // The disk quota finds a raw telemetry row's record by outbox_seq (schema v5 of the edge store;
  // an outbox-only store has neither table).
  for (const char* table : {"vehicle_positions", "climate_readings"}) {
    const std::string probe = std::string("SELECT 1 FROM pragma_table_info('") + table + "') WHERE name = 'outbox_seq'";
    auto has = db_.Prepare(probe.c_str());
    if (!has.ok() || has->Step() != SQLITE_ROW) continue;
    const std::string sql = std::string("UPDATE ") + table + " SET outbox_seq = outbox_seq + " + std::to_string(shift) +
                            " WHERE outbox_seq > " + std::to_string(restored_last);
    if (Status st = Exec(sql.c_str()); !st.ok()) return Status(st.code(), "renumber: telemetry rows: " + st.message());
  }
  const auto c = static_cast<int64_t>(hub_contiguous);
  if (Status st = WriteStates({{kStateAckedSeq, c}, {kStateUrgentSentSeq, c}, {kStateSeqFloor, c}, {kStateRestoredLastSeq, 0}});
      !st.ok())
    return st;
  if (Status st = tx.Commit(); !st.ok()) return st;
  return moved;
}

Result<std::vector<digest::DigestBucket>> SyncStore::Digest(uint64_t from, uint64_t to, uint32_t buckets) {
  digest::BucketDigester d(from, to, buckets);
  if (Status st = d.status(); !st.ok()) return st;
  ResetGuard g(digest_, true);
  digest_.Bind(1, from).Bind(2, to);
  int rc;
  while ((rc = digest_.Step()) == SQLITE_ROW) {
    const auto* key = reinterpret_cast<const char*>(sqlite3_column_text(digest_.get(), 3));
    const int klen = sqlite3_column_bytes(digest_.get(), 3);
    d.Add(digest_.UInt(0), static_cast<int>(digest_.Int(1)), digest_.UInt(2),
          std::string_view(key ? key : "", static_cast<size_t>(klen)));
  }
  if (rc != SQLITE_DONE) return Error("digest outbox");
  return d.Finish();
}

Result<StockSnapshot> SyncStore::StockDigest() {
  StockSnapshot out;
  // Prepared per call (once per reconciliation round): a store without a `stock` table (an
  // outbox-only test store) simply has nothing to compare.
  auto stock = db_.Prepare("SELECT sku, on_hand, reserved, version FROM stock ORDER BY sku");
  if (!stock.ok()) return out;
  sqlite::Stmt& q = *stock;
  // One read transaction: the digest and last seq describe the same snapshot, so the caller
  // can tell whether every row the digest reflects has been acknowledged by the hub.
  if (Status st = Exec("BEGIN"); !st.ok()) return st;
  struct End {
    SyncStore* s;
    ~End() { (void)s->Exec("COMMIT"); }
  } end{this};
  {
    ResetGuard g(last_seq_);
    const int rc = last_seq_.Step();
    if (rc == SQLITE_ROW) out.last_seq = last_seq_.UInt(0);
    else if (rc != SQLITE_DONE) return Error("stock digest: last seq");
  }
  // ORDER BY sku with the BINARY collation: bytewise, as the hub sorts (wire/digest.h).
  digest::StateDigester d;
  if (Status st = d.status(); !st.ok()) return st;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    const auto* sku = reinterpret_cast<const char*>(sqlite3_column_text(q.get(), 0));
    const int len = sqlite3_column_bytes(q.get(), 0);
    d.AddStock(std::string_view(sku ? sku : "", static_cast<size_t>(len)), q.Int(1), q.Int(2), q.UInt(3));
  }
  if (rc != SQLITE_DONE) return Error("stock digest");
  out.available = true;
  out.skus = d.count();
  out.digest = d.FinishAsString();
  return out;
}

}  // namespace freshsync::sync
