#include "edge/stock_ledger.h"

#include <sqlite3.h>


#include <algorithm>
#include <map>

namespace freshsync::edge {


const char* const StockLedger::kMigrationSql = R"sql(
CREATE TABLE stock_new(
  sku        TEXT PRIMARY KEY,
  on_hand    INTEGER NOT NULL CHECK (on_hand >= 0),
  reserved   INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  version    INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  CHECK (reserved <= on_hand)
) WITHOUT ROWID;
INSERT INTO stock_new SELECT sku, on_hand, reserved, version, updated_ms FROM stock;
DROP TABLE stock;
ALTER TABLE stock_new RENAME TO stock;
CREATE TABLE stock_lots(
  sku      TEXT    NOT NULL,
  lot      TEXT    NOT NULL,
  expiry   TEXT,
  on_hand  INTEGER NOT NULL CHECK (on_hand >= 0),
  reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  CHECK (reserved <= on_hand),
  PRIMARY KEY (sku, lot)
) WITHOUT ROWID;
INSERT INTO stock_lots(sku, lot, expiry, on_hand, reserved) SELECT sku, '', NULL, on_hand, reserved FROM stock;
CREATE TABLE reservations(
  order_id TEXT    NOT NULL,
  sku      TEXT    NOT NULL,
  lot      TEXT    NOT NULL,
  qty      INTEGER NOT NULL CHECK (qty >= 0),  -- rows reaching 0 are deleted in the same step
  PRIMARY KEY (order_id, sku, lot)
) WITHOUT ROWID;
CREATE INDEX reservations_by_lot ON reservations(sku, lot);
)sql";

StockLedger::~StockLedger() = default;

// kConflict when a CHECK caught a broken invariant (refuse the message whole), kIOError for
// the environment: the one mapping, sqlite/status.h.
Status StockLedger::Err(const char* what) { return sqlite::LastError(db_, std::string("stock: ") + what); }

Status StockLedger::Prepare() {
  auto make = [&](const char* sql, sqlite::Stmt* out) {
    auto st = sqlite::PrepareOn(db_, sql, true);
    if (st.ok()) *out = std::move(*st);
    return st.ok();
  };
  // FEFO: earliest expiry first, lots without one last, then by lot name for determinism.
  if (!make("SELECT lot, on_hand, reserved FROM stock_lots WHERE sku = ?1 ORDER BY expiry IS NULL, expiry, lot", &lots_) ||
      // Update, else insert: not an UPSERT, because SQLite checks the CHECK constraints on the
      // would-be inserted row (a delta) before it finds the conflict.
      !make("UPDATE stock_lots SET on_hand = on_hand + ?3, reserved = reserved + ?4, expiry = COALESCE(expiry, ?5) "
            "WHERE sku = ?1 AND lot = ?2",
            &lot_add_) ||
      !make("INSERT INTO stock_lots(sku, lot, expiry, on_hand, reserved) VALUES (?1, ?2, ?5, ?3, ?4)", &lot_new_) ||
      !make("SELECT qty FROM reservations WHERE order_id = ?1 AND sku = ?2 AND lot = ?3", &res_get_) ||
      !make("UPDATE reservations SET qty = qty + ?4 WHERE order_id = ?1 AND sku = ?2 AND lot = ?3", &res_add_) ||
      !make("INSERT INTO reservations(order_id, sku, lot, qty) VALUES (?1, ?2, ?3, ?4)", &res_new_) ||
      !make("DELETE FROM reservations WHERE order_id = ?1 AND sku = ?2 AND lot = ?3 AND qty = 0", &res_clean_) ||
      !make("SELECT sku, lot, qty FROM reservations WHERE order_id = ?1 ORDER BY sku, lot", &res_of_order_) ||
      !make("SELECT IFNULL(SUM(qty), 0) FROM reservations WHERE order_id = ?1 AND sku = ?2", &held_) ||
      !make("SELECT IFNULL(SUM(on_hand), 0), IFNULL(SUM(reserved), 0) FROM stock_lots WHERE sku = ?1", &totals_) ||
      !make("INSERT INTO stock(sku, on_hand, reserved, version, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5) "
            "ON CONFLICT(sku) DO UPDATE SET on_hand = excluded.on_hand, reserved = excluded.reserved, "
            "version = excluded.version, updated_ms = excluded.updated_ms",
            &sku_put_))
    return Err("prepare");
  return Status::Ok();
}

Status StockLedger::Run(sqlite::Stmt& s, const char* what) {
  sqlite::ResetGuard reset(s, true);
  return s.Step() == SQLITE_DONE ? Status::Ok() : Err(what);
}

Result<std::vector<StockLedger::Lot>> StockLedger::Lots(const std::string& sku) {
  sqlite::ResetGuard reset(lots_, true);
  lots_.Bind(1, sku);
  std::vector<Lot> out;
  int rc;
  while ((rc = lots_.Step()) == SQLITE_ROW) out.push_back({lots_.Text(0), lots_.Int(1), lots_.Int(2)});
  if (rc != SQLITE_DONE) return Err("lots");
  return out;
}

Result<int64_t> StockLedger::Reserved(const std::string& order_id, const std::string& sku, const std::string& lot) {
  sqlite::ResetGuard reset(res_get_, true);
  const int rc = res_get_.Bind(1, order_id).Bind(2, sku).Bind(3, lot).Step();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Err("reservation");
  return rc == SQLITE_ROW ? res_get_.Int(0) : int64_t{0};
}

Status StockLedger::AddLot(const std::string& sku, const std::string& lot, int64_t d_on_hand, int64_t d_reserved,
                           const std::string& expiry) {
  lot_add_.Bind(1, sku).Bind(2, lot).Bind(3, d_on_hand).Bind(4, d_reserved).BindTextOrNull(5, expiry);
  if (Status s = Run(lot_add_, "lot write"); !s.ok()) return s;
  if (sqlite3_changes(db_) > 0) return Status::Ok();
  lot_new_.Bind(1, sku).Bind(2, lot).Bind(3, d_on_hand).Bind(4, d_reserved).BindTextOrNull(5, expiry);
  return Run(lot_new_, "lot insert");
}

Status StockLedger::AddReservation(const std::string& order_id, const std::string& sku, const std::string& lot, int64_t d_qty) {
  res_add_.Bind(1, order_id).Bind(2, sku).Bind(3, lot).Bind(4, d_qty);
  if (Status s = Run(res_add_, "reservation write"); !s.ok()) return s;
  if (sqlite3_changes(db_) == 0) {
    res_new_.Bind(1, order_id).Bind(2, sku).Bind(3, lot).Bind(4, d_qty);
    if (Status s = Run(res_new_, "reservation insert"); !s.ok()) return s;
  }
  res_clean_.Bind(1, order_id).Bind(2, sku).Bind(3, lot);
  return Run(res_clean_, "reservation cleanup");
}

Result<SkuLevel> StockLedger::Totals(const std::string& sku) {
  sqlite::ResetGuard reset(totals_, true);
  const int rc = totals_.Bind(1, sku).Step();
  if (rc != SQLITE_ROW) return Err("totals");
  return SkuLevel{sku, totals_.Int(0), totals_.Int(1)};
}

Result<SkuLevel> StockLedger::Move(const StockMovement& m, const std::string& expiry) {
  if (m.delta > 0) {
    if (Status s = AddLot(m.sku, m.lot, m.delta, 0, expiry); !s.ok()) return s;
    return Totals(m.sku);
  }
  int64_t need = -m.delta;
  auto lots = Lots(m.sku);
  if (!lots.ok()) return lots.status();
  if (!m.lot.empty()) {
    std::erase_if(*lots, [&](const Lot& l) { return l.lot != m.lot; });
  }
  // A pick for an order consumes that order's reservation first.
  struct Take {
    std::string lot;
    int64_t from_reserved = 0, from_free = 0;
  };
  std::vector<Take> takes;
  int64_t reserved_for_order = 0, free = 0;
  for (const auto& l : *lots) {
    int64_t r = 0;
    if (!m.order_id.empty() && m.reason == "pick") {
      auto got = Reserved(m.order_id, m.sku, l.lot);
      if (!got.ok()) return got.status();
      r = *got;
    }
    reserved_for_order += r;
    free += l.on_hand - l.reserved;
    takes.push_back({l.lot, r, l.on_hand - l.reserved});  // capacities for now
  }
  if (need > reserved_for_order + free) {
    int64_t on_hand = 0, reserved = 0;
    for (const auto& l : *lots) on_hand += l.on_hand, reserved += l.reserved;
    return Status::Conflict("negative stock: movement " + m.id + " of " + std::to_string(m.delta) + " on sku " + m.sku + " with " +
                            std::to_string(on_hand) + " on hand" + (m.lot.empty() ? "" : " in lot " + m.lot) + ", " +
                            std::to_string(reserved) + " reserved" +
                            (reserved_for_order ? " (" + std::to_string(reserved_for_order) + " for order " + m.order_id + ")" : ""));
  }
  // First the order's reservation, FEFO; then free stock, FEFO.
  for (auto& t : takes) {
    const int64_t n = std::min(need, t.from_reserved);
    t.from_reserved = n;
    need -= n;
  }
  for (auto& t : takes) {
    const int64_t n = std::min(need, t.from_free);
    t.from_free = n;
    need -= n;
  }
  for (const auto& t : takes) {
    if (t.from_reserved == 0 && t.from_free == 0) continue;
    if (Status s = AddLot(m.sku, t.lot, -(t.from_reserved + t.from_free), -t.from_reserved, ""); !s.ok()) return s;
    if (t.from_reserved)
      if (Status s = AddReservation(m.order_id, m.sku, t.lot, -t.from_reserved); !s.ok()) return s;
  }
  return Totals(m.sku);
}

Result<std::vector<SkuLevel>> StockLedger::Reserve(const std::string& order_id, const std::vector<OrderLine>& lines) {
  std::map<std::string, int64_t> want;
  for (const auto& l : lines) want[l.sku] += l.qty;
  std::vector<SkuLevel> out;
  for (const auto& [sku, qty] : want) {
    if (qty <= 0) continue;
    auto lots = Lots(sku);
    if (!lots.ok()) return lots.status();
    int64_t free = 0;
    for (const auto& l : *lots) free += l.on_hand - l.reserved;
    if (free < qty)
      return Status::Conflict("insufficient stock: order " + order_id + " needs " + std::to_string(qty) + " of sku " + sku + ", " +
                              std::to_string(free) + " free; nothing reserved");
    int64_t need = qty;
    for (const auto& l : *lots) {
      const int64_t n = std::min(need, l.on_hand - l.reserved);
      if (n <= 0) continue;
      if (Status s = AddLot(sku, l.lot, 0, n, ""); !s.ok()) return s;
      if (Status s = AddReservation(order_id, sku, l.lot, n); !s.ok()) return s;
      need -= n;
      if (need == 0) break;
    }
    auto t = Totals(sku);
    if (!t.ok()) return t.status();
    out.push_back(*t);
  }
  return out;
}

Result<std::vector<SkuLevel>> StockLedger::Release(const std::string& order_id) {
  struct Row {
    std::string sku, lot;
    int64_t qty;
  };
  std::vector<Row> rows;
  {
    sqlite::ResetGuard reset(res_of_order_, true);
    res_of_order_.Bind(1, order_id);
    int rc;
    while ((rc = res_of_order_.Step()) == SQLITE_ROW) rows.push_back({res_of_order_.Text(0), res_of_order_.Text(1), res_of_order_.Int(2)});
    if (rc != SQLITE_DONE) return Err("reservations of order");
  }
  std::vector<SkuLevel> out;
  for (const auto& r : rows) {
    if (Status s = AddLot(r.sku, r.lot, 0, -r.qty, ""); !s.ok()) return s;
    if (Status s = AddReservation(order_id, r.sku, r.lot, -r.qty); !s.ok()) return s;
    if (out.empty() || out.back().sku != r.sku) out.push_back({r.sku, 0, 0});
  }
  for (auto& l : out) {
    auto t = Totals(l.sku);
    if (!t.ok()) return t.status();
    l = *t;
  }
  return out;
}

Result<int64_t> StockLedger::ReserveUpTo(const std::string& holder, const std::string& sku, int64_t qty) {
  auto lots = Lots(sku);
  if (!lots.ok()) return lots.status();
  int64_t got = 0;
  for (const auto& l : *lots) {
    const int64_t n = std::min(qty - got, l.on_hand - l.reserved);
    if (n <= 0) continue;
    if (Status s = AddLot(sku, l.lot, 0, n, ""); !s.ok()) return s;
    if (Status s = AddReservation(holder, sku, l.lot, n); !s.ok()) return s;
    got += n;
    if (got == qty) break;
  }
  return got;
}

Result<int64_t> StockLedger::ReleaseUpTo(const std::string& holder, const std::string& sku, int64_t qty) {
  struct Row {
    std::string lot;
    int64_t qty;
  };
  std::vector<Row> rows;
  {
    sqlite::ResetGuard reset(res_of_order_, true);
    res_of_order_.Bind(1, holder);
    int rc;
    while ((rc = res_of_order_.Step()) == SQLITE_ROW)
      if (res_of_order_.Text(0) == sku) rows.push_back({res_of_order_.Text(1), res_of_order_.Int(2)});
    if (rc != SQLITE_DONE) return Err("reservations of holder");
  }
  int64_t done = 0;
  for (const auto& r : rows) {
    const int64_t n = std::min(qty - done, r.qty);
    if (n <= 0) break;
    if (Status s = AddLot(sku, r.lot, 0, -n, ""); !s.ok()) return s;
    if (Status s = AddReservation(holder, sku, r.lot, -n); !s.ok()) return s;
    done += n;
  }
  return done;
}

Result<int64_t> StockLedger::Held(const std::string& holder, const std::string& sku) {
  sqlite::ResetGuard reset(held_, true);
  if (held_.Bind(1, holder).Bind(2, sku).Step() != SQLITE_ROW) return Err("held");
  return held_.Int(0);
}

Status StockLedger::PutSku(const SkuLevel& level, int64_t version, int64_t now_ms) {
  sku_put_.Bind(1, level.sku).Bind(2, level.on_hand).Bind(3, level.reserved).Bind(4, version).Bind(5, now_ms);
  return Run(sku_put_, "stock write");
}

}  // namespace freshsync::edge
