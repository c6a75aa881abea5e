#include "edge/key_rotation.h"

#include <sqlite3.h>
#include <sodium.h>

#include <memory>
#include <vector>

#include "sqlite/status.h"

namespace freshsync::edge {
namespace {

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;
using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// The one mapping, sqlite/status.h.
Status SqlError(sqlite3* db, const std::string& what) { return sqlite::LastError(db, "rotate-key: " + what); }

Result<Stmt> Prepare(sqlite3* db, const char* sql) {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK) return SqlError(db, "prepare");
  return Stmt(s);
}

}  // namespace

Result<RotationReport> ResealCustomerData(const std::string& store_path, const Sealer& sealer, int batch_rows) {
  if (batch_rows < 1) batch_rows = 1;
  sqlite3* raw = nullptr;
  const int rc_open = sqlite3_open_v2(store_path.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr);
  Db db(raw);
  if (rc_open != SQLITE_OK) return SqlError(raw, "opening " + store_path);
  sqlite3_busy_timeout(db.get(), 5000);
  auto select = Prepare(db.get(),
                        "SELECT order_id, customer_sealed FROM orders WHERE customer_sealed IS NOT NULL AND order_id > ?1 "
                        "ORDER BY order_id LIMIT ?2");
  if (!select.ok()) return select.status();
  // Only the blob we read is replaced: a row edged changed in between is left for the next run.
  auto update = Prepare(db.get(), "UPDATE orders SET customer_sealed = ?2 WHERE order_id = ?1 AND customer_sealed = ?3");
  if (!update.ok()) return update.status();

  RotationReport report;
  std::string after;  // order_id cursor
  while (true) {
    if (sqlite3_exec(db.get(), "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) return SqlError(db.get(), "begin");
    sqlite3_stmt* sel = select->get();
    sqlite3_bind_text(sel, 1, after.data(), static_cast<int>(after.size()), SQLITE_TRANSIENT);
    sqlite3_bind_int(sel, 2, batch_rows);
    int rows = 0, rc;
    while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
      ++rows;
      after.assign(reinterpret_cast<const char*>(sqlite3_column_text(sel, 0)), static_cast<size_t>(sqlite3_column_bytes(sel, 0)));
      const void* p = sqlite3_column_blob(sel, 1);
      const std::string blob = p ? std::string(static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(sel, 1))) : "";
      ++report.scanned;
      if (sealer.IsCurrent(blob)) {
        ++report.already_current;
        continue;
      }
      auto plain = sealer.Open(blob);
      if (!plain.ok()) {
        ++report.unreadable;
        continue;
      }
      const std::string fresh = sealer.Seal(*plain);
      sodium_memzero(plain->data(), plain->size());
      sqlite3_stmt* up = update->get();
      sqlite3_bind_text(up, 1, after.data(), static_cast<int>(after.size()), SQLITE_TRANSIENT);
      sqlite3_bind_blob(up, 2, fresh.data(), static_cast<int>(fresh.size()), SQLITE_TRANSIENT);
      sqlite3_bind_blob(up, 3, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
      const int urc = sqlite3_step(up);
      sqlite3_reset(up);
      if (urc != SQLITE_DONE) {
        sqlite3_reset(sel);
        sqlite3_exec(db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
        return SqlError(db.get(), "update");
      }
      if (sqlite3_changes(db.get()) == 1) ++report.resealed;
      else ++report.remaining_old;  // changed under us: the next run takes it
    }
    sqlite3_reset(sel);
    if (rc != SQLITE_DONE) {
      sqlite3_exec(db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
      return SqlError(db.get(), "select");
    }
    if (sqlite3_exec(db.get(), "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      sqlite3_exec(db.get(), "ROLLBACK", nullptr, nullptr, nullptr);
      return SqlError(db.get(), "commit");
    }
    if (rows < batch_rows) break;
  }
  report.remaining_old += report.unreadable;
  return report;
}

}  // namespace freshsync::edge
