#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <map>

#include "sim/site_simulator.h"

namespace freshsync::sim {
namespace {

TEST(SiteSimulatorTest, SameSeedSameTraffic) {
  SimOptions opt;
  opt.seed = 7;
  SiteSimulator a(opt), b(opt);
  const auto ma = a.Advance(3'600'000), mb = b.Advance(3'600'000);
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i) ASSERT_EQ(ma[i].payload, mb[i].payload);
}

TEST(SiteSimulatorTest, AnHourOfTrafficIsPlausibleAndNeverOversells) {
  SimOptions opt;
  opt.seed = 3;
  SiteSimulator sim(opt);
  std::map<std::string, int64_t> stock;
  std::map<std::string, int> per_kind;
  for (const auto& m : sim.Advance(3'600'000)) {
    const auto j = nlohmann::json::parse(m.payload);
    if (m.topic == "fs/stock/movements") {
      stock[j["sku"]] += j["delta"].get<int64_t>();
      ASSERT_GE(stock[j["sku"]], 0) << m.payload;
      ++per_kind[j["reason"]];
    } else if (m.topic == "fs/orders/status") {
      ++per_kind["order:" + j["status"].get<std::string>()];
    } else if (m.topic.find("/gps") != std::string::npos) {
      ++per_kind["gps"];
      ASSERT_NEAR(j["lat"].get<double>(), opt.depot_lat, 0.1);
    } else if (m.topic.find("/climate") != std::string::npos) {
      ++per_kind["climate"];
    } else if (m.topic == "fs/docks/door-1/scans" || m.topic == "fs/docks/door-4/scans") {
      ++per_kind["scan:" + j["direction"].get<std::string>()];
    } else {
      ADD_FAILURE() << "unexpected topic " << m.topic;
    }
  }
  EXPECT_EQ(per_kind["gps"], 4 * 3600);          // 4 trucks, one fix a second
  EXPECT_EQ(per_kind["climate"], 3 * 360);       // 3 rooms, one reading every 10 s
  EXPECT_GT(per_kind["order:created"], 200);     // about 6 a minute
  EXPECT_GT(per_kind["order:delivered"], 100);
  EXPECT_GT(per_kind["receive"], 0);
  EXPECT_GT(per_kind["pick"], 0);
  EXPECT_EQ(per_kind["scan:in"], per_kind["receive"]);  // every lot received is scanned in
  EXPECT_GE(per_kind["scan:out"], per_kind["order:dispatched"]);  // a pallet per order line
}

TEST(SiteSimulatorTest, FencesAreGeoJson) {
  SiteSimulator sim(SimOptions{});
  const auto j = nlohmann::json::parse(sim.FencesGeoJson());
  EXPECT_EQ(j["type"], "FeatureCollection");
  EXPECT_EQ(j["features"].size(), sim.fences().size());
  EXPECT_EQ(j["features"][0]["properties"]["kind"], "depot");
}

}  // namespace
}  // namespace freshsync::sim
