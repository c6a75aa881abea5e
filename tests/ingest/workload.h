// Deterministic mixed site traffic with its expected effect. Test-only.
#pragma once

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
  std::map<std::string, int64_t> on_hand;
  std::map<std::string, std::string> order_status;
  int64_t total() const { return movements + order_msgs + gps + climate; }
};

// `tag` keeps ids of different workloads apart. Every 5th telemetry message and every 7th
// movement is protobuf, the rest JSON. Orders walk the lifecycle in order, some get cancelled.
inline std::vector<Msg> MixedWorkload(size_t n, const std::string& tag, Expected& exp, uint32_t seed = 42) {
  std::mt19937 rng(seed);
  std::vector<Msg> out;
  static const char* kFlow[] = {"created", "accepted", "picking", "packed", "dispatched", "delivered"};
  std::map<std::string, int> active;  // order id -> index in kFlow
  std::map<std::string, uint64_t> dev_seq;
  int64_t ts = 1764000000000;
  int order_counter = 0;
  while (out.size() < n) {
    ts += 7;
    const int k = static_cast<int>(rng() % 100);
    if (k < 20) {
      const std::string sku = tag + "-sku-" + std::to_string(rng() % 20);
      const std::string id = tag + "-m-" + std::to_string(exp.movements);
      int64_t delta;
      std::string reason;
      int64_t& have = exp.on_hand[sku];
      if (have < 3) {
        delta = 50;
        reason = "receive";
      } else {
        delta = -static_cast<int64_t>(1 + rng() % 3);
        reason = "pick";
      }
      have += delta;
      if (exp.movements % 7 == 3) {
        v1::StockMovementMsg p;
        p.set_id(id);
        p.set_sku(sku);
        p.set_delta(delta);
        p.set_reason(reason);
        p.set_ts_ms(ts);
        out.push_back({"fs/stock/movements", p.SerializeAsString()});
      } else {
        nlohmann::json j = {{"id", id}, {"sku", sku}, {"delta", delta}, {"reason", reason}, {"ts", ts}, {"lot", "L" + std::to_string(rng() % 5)}};
        out.push_back({"fs/stock/movements", j.dump()});
      }
      ++exp.movements;
    } else if (k < 38) {
      std::string id;
      std::string status;
      if (active.size() < 15 || rng() % 4 == 0) {
        id = tag + "-o-" + std::to_string(order_counter++);
        status = "created";
        active[id] = 0;
        ++exp.orders;
      } else {
        auto it = active.begin();
        std::advance(it, rng() % active.size());
        id = it->first;
        if (it->second <= 3 && rng() % 10 == 0) {
          status = "cancelled";
          active.erase(it);
        } else {
          status = kFlow[++it->second];
          if (it->second == 5) active.erase(it);
        }
      }
      exp.order_status[id] = status;
      nlohmann::json j = {{"order_id", id}, {"status", status}, {"ts", ts}, {"actor", "terminal-3"}};
      if (status == "created") {
        j["lines"] = {{{"sku", "apple"}, {"qty", 1 + rng() % 5}}, {{"sku", "pear"}, {"qty", 2}}};
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
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox"), exp.total() + extra_climate);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM dedupe"), exp.total() + extra_climate);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM dead_letters"), 0) << site.Text("SELECT reason FROM dead_letters LIMIT 1");
  for (const auto& [sku, n] : exp.on_hand) EXPECT_EQ(site.Int("SELECT on_hand FROM stock WHERE sku = '" + sku + "'"), n) << sku;
  int wrong = 0;
  for (const auto& [id, st] : exp.order_status)
    if (site.Text("SELECT status FROM orders WHERE order_id = '" + id + "'") != st) ++wrong;
  EXPECT_EQ(wrong, 0);
  // Versions: one stock record per movement, one order record per status message.
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE entity = 1"), exp.movements);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE entity = 2"), exp.order_msgs);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE priority = 1"), exp.movements + exp.order_msgs);
  ExpectDenseOutbox(site);
}

}  // namespace freshsync::testing
