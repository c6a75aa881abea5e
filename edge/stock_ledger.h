// StockLedger: stock per SKU and per lot, with reservations for orders. Runs inside the
// store's transaction for the message (EdgeStore::Apply), on the store's connection.
//
// Tables (docs/formats.md, migration 4): stock_lots (sku, lot) on_hand/reserved/expiry,
// reservations (order_id, sku, lot) qty, and stock (sku) totals, the sum of its lots. The
// invariants, per lot and per SKU: on_hand >= 0, reserved >= 0, reserved <= on_hand. The
// ledger keeps them by construction and the schema's CHECK constraints back it up (a violation
// is a kConflict and the message is refused whole: the transaction rolls back).
//
// Rules:
//   - Incoming stock (delta > 0: receive, return, adjust, transfer in) goes to its lot ("" when
//     the message names none); the first expiry given for a lot is kept.
//   - Outgoing stock (delta < 0) takes free stock (on_hand - reserved) only: from its lot if one
//     is named, else first-expired-first-out over the SKU's lots (lots without expiry last).
//     A pick with an order_id first consumes that order's reservation of the SKU (its lots,
//     FEFO), then free stock for any excess.
//   - Reserve (order created): each line (qty summed per SKU) is reserved from free stock,
//     FEFO; any shortfall refuses the whole order (kConflict naming the SKU).
//   - Release (order cancelled, or dispatched with reservations left): returns what is left.
// Status: kConflict for a shortfall (the caller dead-letters), kIOError/kInternal from SQLite.
// Thread-safety: none; the store's thread.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"
#include "edge/decode.h"
#include "sqlite/db.h"


namespace freshsync::edge {

struct SkuLevel {
  std::string sku;
  int64_t on_hand = 0;
  int64_t reserved = 0;
};

class StockLedger {
 public:
  // The schema the ledger needs (from store schema v3: rebuilds `stock` with CHECK (reserved <=
  // on_hand), moves each SKU's stock to lot ""). Store migration 4 is this plus
  // stock_movements.expiry (edge/migrations.cc).
  static const char* const kMigrationSql;

  explicit StockLedger(sqlite3* db) : db_(db) {}
  ~StockLedger();
  StockLedger(const StockLedger&) = delete;
  StockLedger& operator=(const StockLedger&) = delete;
  Status Prepare();

  // Applies a movement to the lots; returns the SKU's new totals (stock row not yet written).
  // `expiry` (YYYY-MM-DD or "") is kept for an incoming lot that has none yet.
  Result<SkuLevel> Move(const StockMovement& m, const std::string& expiry = "");
  // Reserves an order's lines; returns the new totals of every SKU touched.
  Result<std::vector<SkuLevel>> Reserve(const std::string& order_id, const std::vector<OrderLine>& lines);
  // Releases whatever the order still has reserved; returns the SKUs touched (maybe none).
  Result<std::vector<SkuLevel>> Release(const std::string& order_id);
  // Partial reservations for a holder that is not an order (the escrow allotment,
  // edge/store.h): reserves up to `qty` of the SKU's free stock, FEFO, and returns how much it
  // reserved; releases up to `qty` of the holder's reservation of the SKU and returns how much.
  Result<int64_t> ReserveUpTo(const std::string& holder, const std::string& sku, int64_t qty);
  Result<int64_t> ReleaseUpTo(const std::string& holder, const std::string& sku, int64_t qty);
  // What `holder` has reserved of the SKU.
  Result<int64_t> Held(const std::string& holder, const std::string& sku);
  // The SKU's totals now.
  Result<SkuLevel> Level(const std::string& sku) { return Totals(sku); }
  // Writes the SKU's totals row with its new version.
  Status PutSku(const SkuLevel& level, int64_t version, int64_t now_ms);

 private:
  struct Lot {
    std::string lot;
    int64_t on_hand = 0, reserved = 0;
  };
  Status Err(const char* what);
  Status Run(sqlite::Stmt& s, const char* what);
  Result<std::vector<Lot>> Lots(const std::string& sku);  // FEFO order
  Result<int64_t> Reserved(const std::string& order_id, const std::string& sku, const std::string& lot);
  Status AddLot(const std::string& sku, const std::string& lot, int64_t d_on_hand, int64_t d_reserved, const std::string& expiry);
  Status AddReservation(const std::string& order_id, const std::string& sku, const std::string& lot, int64_t d_qty);
  Result<SkuLevel> Totals(const std::string& sku);

  sqlite3* db_;
  sqlite::Stmt lots_, lot_add_, lot_new_, res_new_, res_get_, res_add_, res_clean_, res_of_order_, totals_, sku_put_, held_;
};

}  // namespace freshsync::edge
