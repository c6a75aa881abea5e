#include "edge/key_rotation.h"

#include <sqlite3.h>
#include <sodium.h>

#include <memory>
#include <vector>

#include "sqlite/db.h"

namespace freshsync::edge {
namespace {

// SQLite failures come mapped by the toolkit (sqlite/status.h); this names the step.
Status SqlError(const Status& s, const std::string& what) { return Status(s.code(), "rotate-key: " + what + ": " + s.message()); }

}  // namespace

Result<RotationReport> ResealCustomerData(const std::string& store_path, const Sealer& sealer, int batch_rows) {
  if (batch_rows < 1) batch_rows = 1;
  sqlite::OpenOptions options;
  options.busy_timeout_ms = 5000;
  auto db = sqlite::Db::Open(store_path, options);
  if (!db.ok()) return SqlError(db.status(), "opening");
  auto select = db->Prepare(
      "SELECT order_id, customer_sealed FROM orders WHERE customer_sealed IS NOT NULL AND order_id > ?1 "
      "ORDER BY order_id LIMIT ?2");
  if (!select.ok()) return SqlError(select.status(), "prepare");
  // Only the blob we read is replaced: a row edged changed in between is left for the next run.
  auto update = db->Prepare("UPDATE orders SET customer_sealed = ?2 WHERE order_id = ?1 AND customer_sealed = ?3");
  if (!update.ok()) return SqlError(update.status(), "prepare");

  RotationReport report;
  std::string after;  // order_id cursor
  while (true) {
    sqlite::Transaction tx(db->get());  // rolls back unless committed
    if (Status s = tx.Begin(); !s.ok()) return SqlError(s, "begin");
    sqlite::ResetGuard select_reset(*select);  // reset before the rollback
    select->Bind(1, after).Bind(2, batch_rows);
    int rows = 0, rc;
    while ((rc = select->Step()) == SQLITE_ROW) {
      ++rows;
      after = select->Text(0);
      const std::string blob = select->Text(1);
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
      sqlite::ResetGuard update_reset(*update);
      if (Status s = update->Bind(1, after).BindBlob(2, fresh).BindBlob(3, blob).Run("rotate-key: update"); !s.ok()) return s;
      if (sqlite3_changes(db->get()) == 1) ++report.resealed;
      else ++report.remaining_old;  // changed under us: the next run takes it
    }
    if (rc != SQLITE_DONE) return sqlite::StatusFor(rc, "rotate-key: select", db->get());
    select->Reset();
    if (Status s = tx.Commit(); !s.ok()) return SqlError(s, "commit");
    if (rows < batch_rows) break;
  }
  report.remaining_old += report.unreadable;
  return report;
}

}  // namespace freshsync::edge
