#include "hub/rebuild_snapshot.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "hub/downstream_log.h"
#include "hub/entity_routes.h"
#include "hub/escrow.h"
#include "hub/store_sql.h"

namespace freshsync::hub {
namespace {

constexpr Sql kSiteSeqs{"SELECT contiguous_seq, max_seq FROM sites WHERE site = ?1"};
// The site's records of one entity in seq order: the order the edge wrote them in.
constexpr Sql kSiteRecords{
    "SELECT record FROM changes WHERE site_id = (SELECT site_id FROM sites WHERE site = ?1) AND entity = ?2 "
    "ORDER BY seq"};
constexpr Sql kSiteVersions{
    "SELECT entity, key, MAX(version) FROM changes WHERE site_id = (SELECT site_id FROM sites WHERE site = ?1) "
    "GROUP BY entity, key ORDER BY entity, key"};
// Movement ids and order status keys sent for the edge's dedupe: the newest ones, which are
// those a broker may still redeliver; older messages are long acknowledged.
constexpr size_t kMaxDedupeKeys = 200000;

struct Lot {
  int64_t on_hand = 0;
  std::string expiry;
};

// The edge ledger's first-expired-first-out order (edge/stock_ledger.h): lots with an expiry
// first, earliest first, then by lot name.
std::vector<std::string> FefoOrder(const std::map<std::string, Lot>& lots) {
  std::vector<std::string> names;
  for (const auto& [name, lot] : lots) names.push_back(name);
  std::stable_sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
    const Lot& x = lots.at(a);
    const Lot& y = lots.at(b);
    return std::make_tuple(x.expiry.empty(), x.expiry, a) < std::make_tuple(y.expiry.empty(), y.expiry, b);
  });
  return names;
}

// Takes `qty` from the lots, FEFO; what the lots lack is dropped (the SKU total decides).
void TakeFefo(std::map<std::string, Lot>& lots, int64_t qty) {
  for (const auto& name : FefoOrder(lots)) {
    if (qty <= 0) break;
    Lot& l = lots[name];
    const int64_t take = std::min(qty, l.on_hand);
    l.on_hand -= take;
    qty -= take;
  }
}

Status ReadRecords(HubStore& store, const std::string& site, v1::Entity entity,
                   const std::function<void(const v1::ChangeRecord&)>& each) {
  Status bad = Status::Ok();
  Status s = store.Read(
      kSiteRecords, [&](SqlParams& p) { p.TextRef(1, site).Int(2, entity); },
      [&](const SqlRow& row) {
        v1::ChangeRecord r;
        if (!r.ParseFromString(row.Text(0))) {
          bad = Status::Internal("a held record of site " + site + " does not parse");
          return;
        }
        each(r);
      });
  return s.ok() ? bad : s;
}

}  // namespace

Status CurrentHqRuleSets(HubStore& store, const std::string& site, v1::RebuildSnapshot& out) {
  // HQ's current sets are kept past the lane's retention (DownstreamLog::Current, table
  // down_current), so a site rebuilt long after HQ set them still gets them.
  DownstreamLog log(store);
  for (const v1::DownKind kind : {v1::DOWN_FENCES, v1::DOWN_COLDCHAIN_RULES}) {
    auto current = log.Current(site, kind);
    if (!current.ok()) return current.status();
    if (!current->has_value()) continue;
    const v1::DownCommand& c = (*current)->command;
    if (c.has_fences()) *out.mutable_fences() = c.fences();
    if (c.has_rules()) *out.mutable_rules() = c.rules();
  }
  return Status::Ok();
}

Result<v1::RebuildSnapshot> ReadRebuildSnapshot(HubStore& store, const std::string& site) {
  v1::RebuildSnapshot snap;
  snap.set_site(site);
  bool known = false;
  Status s = store.Read(
      kSiteSeqs, [&](SqlParams& p) { p.TextRef(1, site); },
      [&](const SqlRow& row) {
        known = true;
        snap.set_seq_floor(row.UInt(0));
        snap.set_max_seq(row.UInt(1));
      });
  if (!s.ok()) return s;

  DownstreamLog log(store);
  auto lane = log.Lane(site);
  if (!lane.ok()) return lane.status();
  snap.set_delivered_seq(lane->delivered_seq);
  snap.set_down_last_seq(lane->last_seq);
  if (!known && lane->last_seq == 0) return Status::NotFound("the hub holds nothing of site " + site);

  // Stock per SKU: the materialized rows (the same read as the state digest).
  std::map<std::string, int64_t> on_hand;
  s = store.Read(
      store_sql::kStateDigestRows, [&](SqlParams& p) { p.TextRef(1, site); },
      [&](const SqlRow& row) {
        auto* item = snap.add_stock();
        item->set_sku(row.Text(0));
        item->set_on_hand(row.Int(1));
        item->set_reserved(row.Int(2));
        item->set_version(row.UInt(3));
        on_hand[item->sku()] = item->on_hand();
      });
  if (!s.ok()) return s;

  // Lots and reservations from the STOCK records, in the order the edge wrote them.
  std::map<std::string, std::map<std::string, Lot>> lots;           // sku -> lot -> state
  std::map<std::string, int64_t> last_reserved;                     // sku -> reserved of its previous record
  std::map<std::pair<std::string, std::string>, int64_t> reserved;  // (order, sku) -> qty
  std::vector<std::string> movement_ids;
  uint64_t max_hlc = 0;
  s = ReadRecords(store, site, v1::STOCK, [&](const v1::ChangeRecord& r) {
    if (!r.has_stock()) return;
    const v1::StockState& st = r.stock();
    const std::string& sku = r.key();
    max_hlc = std::max<uint64_t>(max_hlc, r.hlc());
    if (!st.movement_id().empty()) {
      movement_ids.push_back(st.movement_id());
      auto& sku_lots = lots[sku];
      if (st.delta() > 0) {
        Lot& l = sku_lots[st.lot()];
        l.on_hand += st.delta();
        if (l.expiry.empty()) l.expiry = st.expiry();  // the first expiry given is kept
      } else if (st.delta() < 0 && !st.lot().empty()) {
        Lot& l = sku_lots[st.lot()];
        l.on_hand = std::max<int64_t>(0, l.on_hand + st.delta());
      } else if (st.delta() < 0) {
        TakeFefo(sku_lots, -st.delta());
      }
    }
    const int64_t change = st.reserved() - last_reserved[sku];
    last_reserved[sku] = st.reserved();
    if (!st.order_id().empty() && change != 0) reserved[{st.order_id(), sku}] += change;
  });
  if (!s.ok()) return s;
  // The lots fitted to the SKU's total: what the records could not place (a pick without a
  // lot while reservations held some lots, records from before expiry travelled) is taken
  // FEFO, as the ledger would have, or is put in lot "".
  for (const auto& [sku, total] : on_hand) {
    auto& sku_lots = lots[sku];
    int64_t sum = 0;
    for (const auto& [name, l] : sku_lots) sum += l.on_hand;
    if (sum > total) TakeFefo(sku_lots, sum - total);
    if (sum < total) sku_lots[""].on_hand += total - sum;
    for (const auto& name : FefoOrder(sku_lots)) {
      const Lot& l = sku_lots[name];
      if (l.on_hand <= 0) continue;
      auto* out = snap.add_lots();
      out->set_sku(sku);
      out->set_lot(name);
      out->set_on_hand(l.on_hand);
      out->set_expiry(l.expiry);
    }
  }

  // Orders from the ORDER records: the newest record of each (by version) decides.
  struct OrderAcc {
    v1::OrderState state;  // the newest record's
    google::protobuf::RepeatedPtrField<v1::OrderLine> lines;  // of the first record carrying them
    std::string sealed;                                       // likewise
    uint64_t version = 0, down_seq = 0;
    int64_t created_ts = 0, updated_ts = 0;
  };
  std::map<std::string, OrderAcc> orders;
  std::set<std::string> status_keys;
  uint64_t records_down_seq = 0;
  s = ReadRecords(store, site, v1::ORDER, [&](const v1::ChangeRecord& r) {
    if (!r.has_order()) return;
    const v1::OrderState& o = r.order();
    max_hlc = std::max<uint64_t>(max_hlc, r.hlc());
    records_down_seq = std::max<uint64_t>(records_down_seq, o.down_seq());
    // The edge claims "{id}#{status}" of the message it applied; a refusal was a `created`.
    status_keys.insert(r.key() + "#" + (o.status() == "refused" ? std::string("created") : o.status()));
    OrderAcc& acc = orders[r.key()];
    if (acc.version == 0 || r.ts_ms() < acc.created_ts) acc.created_ts = r.ts_ms();
    if (acc.lines.empty() && o.lines_size() > 0) acc.lines = o.lines();
    if (acc.sealed.empty()) acc.sealed = o.customer_sealed();
    if (r.version() >= acc.version) {
      acc.state = o;
      acc.version = r.version();
      acc.updated_ts = r.ts_ms();
      if (o.down_seq() > 0) acc.down_seq = o.down_seq();
    }
  });
  if (!s.ok()) return s;
  snap.set_records_down_seq(records_down_seq);
  std::set<std::string> open;
  for (auto& [id, acc] : orders) {
    const bool is_open = OrderStatusRank(acc.state.status()) < OrderStatusRank("delivered");
    if (is_open) open.insert(id);
    if (!is_open && acc.down_seq == 0) continue;  // a final local order: nothing to seed or dedupe
    auto* out = snap.add_orders();
    acc.state.set_order_id(id);
    acc.state.set_down_seq(acc.down_seq);
    *acc.state.mutable_lines() = std::move(acc.lines);
    acc.state.set_customer_sealed(std::move(acc.sealed));
    *out->mutable_order() = std::move(acc.state);
    out->set_version(acc.version);
    out->set_created_ts_ms(acc.created_ts);
    out->set_updated_ts_ms(acc.updated_ts);
    out->set_open(is_open);
  }
  for (const auto& [key, qty] : reserved) {
    if (qty <= 0 || !open.count(key.first)) continue;
    auto* out = snap.add_reservations();
    out->set_order_id(key.first);
    out->set_sku(key.second);
    out->set_qty(qty);
  }
  const size_t skip = movement_ids.size() > kMaxDedupeKeys ? movement_ids.size() - kMaxDedupeKeys : 0;
  for (size_t i = skip; i < movement_ids.size(); ++i) snap.add_movement_ids(movement_ids[i]);
  for (const auto& k : status_keys) {
    if (static_cast<size_t>(snap.order_status_keys_size()) >= kMaxDedupeKeys) break;
    snap.add_order_status_keys(k);
  }
  snap.set_max_hlc(max_hlc);

  s = store.Read(
      kSiteVersions, [&](SqlParams& p) { p.TextRef(1, site); },
      [&](const SqlRow& row) {
        auto* v = snap.add_versions();
        v->set_entity(static_cast<v1::Entity>(row.Int(0)));
        v->set_key(row.Text(1));
        v->set_version(row.UInt(2));
      });
  if (!s.ok()) return s;

  s = store.Read(kReadEscrow, [&](SqlParams& p) { p.TextRef(1, site); }, [&](const SqlRow& row) {
    const EscrowRow e = EscrowRowFrom(row);
    auto* g = snap.add_escrow();
    g->set_sku(e.sku);
    g->set_given(e.given);
    g->set_returned_applied(e.returned_applied);
    g->set_consumed_applied(e.consumed_applied);
    g->set_held(e.held);
    g->set_target(e.target);
  });
  if (!s.ok()) return s;

  auto catalog = log.Catalog();
  if (!catalog.ok()) return catalog.status();
  for (auto& item : *catalog) *snap.add_catalog() = std::move(item);
  if (Status rs = CurrentHqRuleSets(store, site, snap); !rs.ok()) return rs;
  return snap;
}

}  // namespace freshsync::hub
