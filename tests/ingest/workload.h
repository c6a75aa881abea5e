// Deterministic mixed site traffic with its expected effect. Test-only.
#pragma once

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "freshsync.pb.h"
#include "tests/ingest/site.h"

namespace freshsync::testing {

struct Expected {
  int64_t movements = 0, orders = 0, order_msgs = 0, gps = 0, climate = 0;
  // STOCK change records: one per movement, plus one per SKU an order reserves (created) or
  // releases (cancelled, dispatched with unpicked reservations).
  int64_t stock_records = 0;
  std::map<std::string, int64_t> on_hand, reserved;
  std::map<std::string, std::string> order_status;
  int64_t total() const { return movements + order_msgs + gps + climate; }
};

// `tag` keeps ids of different workloads apart. Every 5th telemetry message and every 7th
// movement is protobuf, the rest JSON. The traffic is one a real site could send under stock
// with reservations (docs/rules.md, "Stock"): receives go to random lots with expiries, picks
// take free stock (FEFO, no lot) or, a third of them, an open order's reservation; orders are
// created only for SKUs with enough free stock, walk the lifecycle in order, some get
// cancelled. So nothing is refused, and the model below is the exact expected effect.
inline std::vector<Msg> MixedWorkload(size_t n, const std::string& tag, Expected& exp, uint32_t seed = 42) {
  std::mt19937 rng(seed);
  std::vector<Msg> out;
  static const char* kFlow[] = {"created", "accepted", "picking", "packed", "dispatched", "delivered"};
  std::map<std::string, int> active;                                // order id -> index in kFlow
  std::map<std::string, std::map<std::string, int64_t>> holds;      // order id -> sku -> still reserved
  std::map<std::string, uint64_t> dev_seq;
  int64_t ts = 1764000000000;
  int order_counter = 0;
  auto free_of = [&](const std::string& sku) -> int64_t {  // without adding SKUs never moved to the model
    auto h = exp.on_hand.find(sku);
    auto r = exp.reserved.find(sku);
    return (h == exp.on_hand.end() ? 0 : h->second) - (r == exp.reserved.end() ? 0 : r->second);
  };
  auto sku_name = [&](uint32_t i) { return tag + "-sku-" + std::to_string(i); };
  auto release = [&](const std::string& id) {
    for (const auto& [sku, q] : holds[id]) {
      if (q == 0) continue;
      exp.reserved[sku] -= q;
      ++exp.stock_records;
    }
    holds.erase(id);
  };
  while (out.size() < n) {
    ts += 7;
    const int k = static_cast<int>(rng() % 100);
    if (k < 20) {
      std::string sku = sku_name(rng() % 20);
      const std::string id = tag + "-m-" + std::to_string(exp.movements);
      int64_t delta;
      std::string reason, lot, expiry, order;
      // A third of the picks are for an open order that still has something reserved.
      std::vector<std::pair<std::string, std::string>> open;
      for (const auto& [o, skus] : holds)
        for (const auto& [s2, q] : skus)
          if (q > 0) open.push_back({o, s2});
      if (!open.empty() && rng() % 3 == 0) {
        const auto& [o, s2] = open[rng() % open.size()];
        order = o;
        sku = s2;
        int64_t& held = holds[o][s2];
        delta = -std::min<int64_t>(held, 1 + rng() % 3);
        reason = "pick";
        held += delta;
        exp.reserved[sku] += delta;
      } else if (free_of(sku) < 3) {
        delta = 50;
        reason = "receive";
        lot = "L" + std::to_string(rng() % 5);
        expiry = "2026-12-" + std::to_string(10 + rng() % 20);
      } else {
        delta = -static_cast<int64_t>(1 + rng() % 3);
        reason = "pick";
      }
      exp.on_hand[sku] += delta;
      if (exp.movements % 7 == 3) {
        v1::StockMovementMsg p;
        p.set_id(id);
        p.set_sku(sku);
        p.set_delta(delta);
        p.set_reason(reason);
        p.set_ts_ms(ts);
        p.set_lot(lot);
        p.set_expiry(expiry);
        p.set_order_id(order);
        out.push_back({"fs/stock/movements", p.SerializeAsString()});
      } else {
        nlohmann::json j = {{"id", id}, {"sku", sku}, {"delta", delta}, {"reason", reason}, {"ts", ts}};
        if (!lot.empty()) j["lot"] = lot;
        if (!expiry.empty()) j["expiry"] = expiry;
        if (!order.empty()) j["order_id"] = order;
        out.push_back({"fs/stock/movements", j.dump()});
      }
      ++exp.movements;
      ++exp.stock_records;
    } else if (k < 38) {
      std::string id;
      std::string status;
      nlohmann::json lines = nlohmann::json::array();
      if (active.size() < 15 || rng() % 4 == 0) {
        // Lines only for SKUs with the free stock to cover them.
        std::map<std::string, int64_t> want;
        for (int tries = 0; tries < 6 && want.size() < 2; ++tries) {
          const std::string sku = sku_name(rng() % 20);
          const int64_t q = 1 + rng() % 4;
          if (!want.count(sku) && free_of(sku) >= q) want[sku] = q;
        }
        if (want.empty()) continue;  // nothing in stock yet: some other message instead
        id = tag + "-o-" + std::to_string(order_counter++);
        status = "created";
        active[id] = 0;
        for (const auto& [sku, q] : want) {
          lines.push_back({{"sku", sku}, {"qty", q}});
          exp.reserved[sku] += q;
          holds[id][sku] = q;
          ++exp.stock_records;
        }
        ++exp.orders;
      } else {
        auto it = active.begin();
        std::advance(it, rng() % active.size());
        id = it->first;
        if (it->second <= 3 && rng() % 10 == 0) {
          status = "cancelled";
          active.erase(it);
          release(id);
        } else {
          status = kFlow[++it->second];
          if (status == "dispatched") release(id);
          if (it->second == 5) active.erase(it);
        }
      }
      exp.order_status[id] = status;
      nlohmann::json j = {{"order_id", id}, {"status", status}, {"ts", ts}, {"actor", "terminal-3"}};
      if (status == "created") {
        j["lines"] = lines;
        j["customer"] = {{"name", "Customer Name " + id}, {"phone", "+86 138 0000 0000"}, {"address", "88 Century Avenue"}};
      }
      out.push_back({"fs/orders/status", j.dump()});
      ++exp.order_msgs;
    } else if (k < 70) {
      const std::string v = tag + "-truck-" + std::to_string(rng() % 5);
      const uint64_t seq = ++dev_seq[v];
      const double lat = 31.0 + (rng() % 10000) / 1e4, lon = 121.0 + (rng() % 10000) / 1e4;
      if (exp.gps % 5 == 0) {
        v1::GpsMsg p;
        p.set_seq(seq);
        p.set_lat(lat);
        p.set_lon(lon);
        p.set_ts_ms(ts);
        p.set_speed_kmh(40);
        out.push_back({"fs/vehicles/" + v + "/gps", p.SerializeAsString()});
      } else {
        nlohmann::json j = {{"seq", seq}, {"lat", lat}, {"lon", lon}, {"ts", ts}, {"heading", 90.0}};
        out.push_back({"fs/vehicles/" + v + "/gps", j.dump()});
      }
      ++exp.gps;
    } else {
      const std::string s = tag + "-cold-" + std::to_string(rng() % 5);
      const uint64_t seq = ++dev_seq[s];
      const double t = 2.0 + (rng() % 300) / 100.0;
      if (exp.climate % 5 == 0) {
        v1::ClimateMsg p;
        p.set_seq(seq);
        p.set_ts_ms(ts);
        p.set_temp_c(t);
        out.push_back({"fs/sensors/" + s + "/climate", p.SerializeAsString()});
      } else {
        nlohmann::json j = {{"seq", seq}, {"ts", "2025-11-24T16:00:00.000Z"}, {"temp_c", t}, {"rh", 85.5}};
        out.push_back({"fs/sensors/" + s + "/climate", j.dump()});
      }
      ++exp.climate;
    }
  }
  return out;
}

// A message that is applied after everything published before it on the same edged client
// (per-connection order; telemetry has its own client): wait for its row to know that edged has
// worked through the rest of the telemetry.
inline Msg Sentinel(const std::string& name, uint64_t seq) {
  return {"fs/sensors/sentinel-" + name + "/climate",
          nlohmann::json({{"seq", seq}, {"ts", 1764000000000}, {"temp_c", 1.0}}).dump()};
}

inline std::string SentinelSql(const std::string& name, uint64_t seq) {
  return "SELECT COUNT(*) FROM climate_readings WHERE sensor = 'sentinel-" + name + "' AND seq = " + std::to_string(seq);
}

// Checks the store holds exactly the effect of `exp` (plus `extra_climate` sentinel rows).
inline void ExpectWorkloadApplied(const Site& site, const Expected& exp, int64_t extra_climate) {
  // The sentinel is telemetry: it proves that edged's telemetry client is through. Stock and
  // orders come over the other client (edge/ingest.h), so wait for those too; dedupe reaches
  // the total only once everything is applied (and never passes it: exactly once).
  (void)site.WaitInt("SELECT COUNT(*) FROM dedupe", exp.total() + extra_climate, std::chrono::seconds(60));
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM stock_movements"), exp.movements);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM orders"), exp.orders);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM vehicle_positions"), exp.gps);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM climate_readings"), exp.climate + extra_climate);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox"), exp.total() + (exp.stock_records - exp.movements) + extra_climate);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM dedupe"), exp.total() + extra_climate);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM dead_letters"), 0) << site.Text("SELECT reason FROM dead_letters LIMIT 1");
  for (const auto& [sku, n] : exp.on_hand) EXPECT_EQ(site.Int("SELECT on_hand FROM stock WHERE sku = '" + sku + "'"), n) << sku;
  for (const auto& [sku, n] : exp.reserved) EXPECT_EQ(site.Int("SELECT reserved FROM stock WHERE sku = '" + sku + "'"), n) << sku;
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM stock s WHERE reserved > on_hand OR on_hand <> (SELECT SUM(on_hand) FROM stock_lots l WHERE l.sku = s.sku)"), 0);
  int wrong = 0;
  for (const auto& [id, st] : exp.order_status)
    if (site.Text("SELECT status FROM orders WHERE order_id = '" + id + "'") != st) ++wrong;
  EXPECT_EQ(wrong, 0);
  // Versions: one stock record per movement and per SKU reserved or released, one order
  // record per status message.
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE entity = 1"), exp.stock_records);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE entity = 2"), exp.order_msgs);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE priority = 1"), exp.stock_records + exp.order_msgs);
  ExpectDenseOutbox(site);
}

}  // namespace freshsync::testing
