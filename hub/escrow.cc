#include "hub/escrow.h"

#include <algorithm>
#include <map>

namespace freshsync::hub {
namespace {

#define SITE_ID "(SELECT site_id FROM sites WHERE site = ?1)"
constexpr Sql kLockEscrow{"SELECT " FRESHSYNC_ESCROW_COLUMNS " FROM escrow WHERE site_id = " SITE_ID " ORDER BY sku",
                          "SELECT " FRESHSYNC_ESCROW_COLUMNS " FROM escrow WHERE site_id = "
                          "(SELECT site_id FROM sites WHERE site = $1) ORDER BY sku FOR UPDATE"};
constexpr Sql kUse{"UPDATE escrow SET used = used + ?3 WHERE site_id = " SITE_ID " AND sku = ?2"};
constexpr Sql kReturn{"UPDATE escrow SET returned = returned + ?3 WHERE site_id = " SITE_ID " AND sku = ?2"};

}  // namespace

const Sql kReadEscrow{"SELECT " FRESHSYNC_ESCROW_COLUMNS " FROM escrow WHERE site_id = " SITE_ID " ORDER BY sku"};
#undef SITE_ID

int64_t EscrowRow::Free() const {
  // returned - returned_applied and used - consumed_applied are in flight to the site: it
  // still counts them in `held`.
  return std::max<int64_t>(0, held - (returned - returned_applied) - (used - consumed_applied));
}

EscrowRow EscrowRowFrom(const SqlRow& r) {
  EscrowRow e;
  e.sku = r.Text(0);
  e.given = r.Int(1);
  e.returned_applied = r.Int(2);
  e.consumed_applied = r.Int(3);
  e.held = r.Int(4);
  e.target = r.Int(5);
  e.returned = r.Int(6);
  e.used = r.Int(7);
  return e;
}

Result<std::vector<EscrowRow>> LockEscrow(SqlTx& tx, const std::string& site) {
  std::vector<EscrowRow> rows;
  Status s = tx.Run(kLockEscrow, [&](SqlParams& p) { p.Text(1, site); },
                    [&](const SqlRow& r) { rows.push_back(EscrowRowFrom(r)); });
  if (!s.ok()) return s;
  return rows;
}

Result<bool> TakeEscrow(SqlTx& tx, const std::string& site, const v1::HqOrder& order) {
  std::map<std::string, int64_t> want;
  for (const auto& l : order.lines()) want[l.sku()] += l.qty();
  auto rows = LockEscrow(tx, site);
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return false;
  for (const auto& [sku, qty] : want) {
    auto it = std::find_if(rows->begin(), rows->end(), [&](const EscrowRow& e) { return e.sku == sku; });
    if (it == rows->end() || it->Free() < qty) return false;
  }
  for (const auto& [sku, qty] : want) {
    if (Status s = tx.Run(kUse, [&](SqlParams& p) { p.Text(1, site).Text(2, sku).Int(3, qty); }); !s.ok()) return s;
  }
  return true;
}

Result<std::vector<v1::EscrowReturn>> ReturnExcess(SqlTx& tx, const std::string& site) {
  auto rows = LockEscrow(tx, site);
  if (!rows.ok()) return rows.status();
  std::vector<v1::EscrowReturn> out;
  for (const EscrowRow& e : *rows) {
    const int64_t excess = e.Free() - e.target;
    if (excess <= 0) continue;
    if (Status s = tx.Run(kReturn, [&](SqlParams& p) { p.Text(1, site).Text(2, e.sku).Int(3, excess); }); !s.ok())
      return s;
    v1::EscrowReturn r;
    r.set_sku(e.sku);
    r.set_returned(e.returned + excess);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace freshsync::hub
