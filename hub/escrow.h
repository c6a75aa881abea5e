// Escrow stock, the hub's side (docs/escrow.md): per (site, sku) the site's last ESCROW record
// (its monotone counters given, returned_applied, consumed_applied and what it holds now) and
// the hub's own monotone counters `returned` and `used`, in one row of the `escrow` table (its
// DDL and the record's apply are EscrowHandler's, hub/entity_routes.cc).
//
// The hub decides an HQ order at once when the site's free allotment covers every line, in the
// transaction that appends the order to the site's downstream log (DownstreamLog::AppendOrder);
// it hands allotment back above the site's target in the transaction that appends the
// escrow-return command (DownstreamLog::ReturnEscrow). Both run under the site's lane lock, so
// two replicas never decide on the same allotment at once.
//
// Thread-safety: free functions on the caller's transaction.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "freshsync.pb.h"
#include "hub/sql.h"

namespace freshsync::hub {

struct EscrowRow {
  std::string sku;
  // The site's last record (a consistent snapshot of the site).
  int64_t given = 0, returned_applied = 0, consumed_applied = 0, held = 0, target = 0;
  // The hub's counters.
  int64_t returned = 0, used = 0;

  // What HQ holds of the allotment: granted less handed back.
  int64_t Granted() const { return given - returned; }
  // What the hub may still accept: what the site last said it holds, less what the hub has
  // since handed back or used and the site has not applied yet. Never above
  // given - returned - used (the record rules bound `held`), and lower by whatever spoilage
  // took from the reservation.
  int64_t Free() const;
};

// The columns every read of `escrow` selects, in EscrowRowFrom's order.
#define FRESHSYNC_ESCROW_COLUMNS "sku, given, returned_applied, consumed_applied, held, target, returned, used"
EscrowRow EscrowRowFrom(const SqlRow& row);

// The site's rows, oldest sku first, locked for the transaction (PostgreSQL FOR UPDATE).
Result<std::vector<EscrowRow>> LockEscrow(SqlTx& tx, const std::string& site);
// The site's rows, read outside a transaction.
extern const Sql kReadEscrow;

// The hub's decision on an HQ order: true when the site has granted an allotment of every
// line's SKU and Free() covers the order's quantity per SKU; then `used` grows by it, in `tx`.
// A site that never sent an ESCROW record has no rows: its orders are never decided here
// (the record is its escrow capability).
Result<bool> TakeEscrow(SqlTx& tx, const std::string& site, const v1::HqOrder& order);

// Hands back, for every SKU whose Free() is above the site's target, the excess: `returned`
// grows by it, in `tx`. Returns the new totals to send as escrow-return commands.
Result<std::vector<v1::EscrowReturn>> ReturnExcess(SqlTx& tx, const std::string& site);

}  // namespace freshsync::hub
