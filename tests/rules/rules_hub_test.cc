// Site rules to HQ: geofence events and cold-chain alerts made by the real edged reach the
// real hubd through the sync agent (mutual TLS), and HQ sees them in its materialized views:
// GET /v1/sites/{site}/geofence and GET /v1/sites/{site}/alerts (open alerts only); and orders
// that reserve stock or are refused for want of it, in /orders and /stock.
#include <fstream>
#include <map>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/hub/hubd_fixture.h"
#include "tests/ingest/site.h"

namespace freshsync::testing {
namespace {

using nlohmann::json;
constexpr const char* kSiteId = "test-site";  // tests/ingest/site.cc names its site so

// hubd from the shared fixture (tests/hub/hubd_fixture.h); the site's edged from
// tests/ingest/site.h, pushing with a certificate for its own site id.
class RulesHubTest : public HubdTest {};
TEST_F(RulesHubTest, GeofenceEventsAndAlertsReachHqViews) {
  const auto client = pki_.Client(kSiteId);
  auto get = [&](const std::string& path) {
    auto r = Hq(kReaderToken)->Get(path);
    return r && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
  };

  EdgeSite site("[hub]\nurl = \"https://127.0.0.1:" + std::to_string(port_) + "\"\nca = \"" + pki_.ca_cert() +
                "\"\ncert = \"" + client.cert + "\"\nkey = \"" + client.key + "\"\nbackoff_initial_ms = 50\nbackoff_max_ms = 1000\n" + "[geofence]\nfile = \"" +
                std::string(FRESHSYNC_GEOFENCE_TESTDATA) + "/sim_seed7_fences.geojson\"\n" +
                "[[coldchain.rule]]\nsensors = \"cold-*\"\nmin_c = 0.0\nmax_c = 4.0\nfor_s = 300\n");
  ASSERT_TRUE(site.StartEdged()) << site.log();
  auto pub = site.NewPublisher("rules-hub-pub");
  // The first 800 fixes (4000 s) of the recorded track: enter/exit drop-01, drop-07, drop-03, depot.
  std::ifstream in(std::string(FRESHSYNC_GEOFENCE_TESTDATA) + "/sim_seed7_track.csv");
  std::string line;
  int seq = 0;
  while (std::getline(in, line) && seq < 800) {
    if (line.empty() || line[0] == '#') continue;
    std::stringstream ss(line);
    std::string v, ts, lat, lon, hdop;
    std::getline(ss, v, ',');
    std::getline(ss, ts, ',');
    std::getline(ss, lat, ',');
    std::getline(ss, lon, ',');
    std::getline(ss, hdop, ',');
    pub->Publish({"fs/vehicles/" + v + "/gps",
                  "{\"seq\":" + std::to_string(++seq) + ",\"ts\":" + ts + ",\"lat\":" + lat + ",\"lon\":" + lon + ",\"hdop\":" + hdop + "}"});
  }
  // cold-1: an excursion that opens and closes; cold-2: one that is still open.
  const int64_t t0 = 1767225600000;
  for (int i = 0; i < 40; ++i) {
    const double t1 = i >= 10 && i < 25 ? 7.5 : 2.0;  // 15 readings outside: 450 s
    const double t2 = i >= 20 ? 9.0 : 3.0;            // 20 readings outside, still open
    for (const auto& [s, t] : {std::pair{"cold-1", t1}, std::pair{"cold-2", t2}})
      pub->Publish({std::string("fs/sensors/") + s + "/climate",
                    "{\"seq\":" + std::to_string(i + 1) + ",\"ts\":" + std::to_string(t0 + i * 30'000) + ",\"temp_c\":" + std::to_string(t) + "}"});
  }
  pub->Flush();
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM dedupe WHERE kind IN (3, 4)", 880));
  ASSERT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE entity = 5"), 8);
  const int64_t last = site.Int("SELECT MAX(seq) FROM outbox");
  ASSERT_TRUE(site.WaitInt("SELECT IFNULL((SELECT value FROM sync_state WHERE name = 'acked_seq'), 0)", last)) << site.log();

  json geo = get(std::string("/v1/sites/") + kSiteId + "/geofence");
  ASSERT_TRUE(geo.is_object()) << geo.dump();
  std::string summary;
  for (const auto& e : geo["events"]) summary += e["event"].get<std::string>() + " " + e["fence"].get<std::string>() + " ";
  EXPECT_EQ(summary, "enter drop-01 exit drop-01 enter drop-07 exit drop-07 enter drop-03 exit drop-03 enter depot exit depot ") << geo.dump();
  EXPECT_EQ(geo["events"][0]["vehicle"], "truck-01");
  EXPECT_EQ(geo["events"][0]["kind"], "customer_drop");

  json alerts = get(std::string("/v1/sites/") + kSiteId + "/alerts");
  ASSERT_TRUE(alerts.is_object()) << alerts.dump();
  ASSERT_EQ(alerts["alerts"].size(), 1u) << alerts.dump();  // cold-1's alert closed: not open any more
  EXPECT_EQ(alerts["alerts"][0]["alert_id"], "cold-2/excursion/" + std::to_string(t0 + 20 * 30'000));
  EXPECT_EQ(alerts["alerts"][0]["state"], "open");
  EXPECT_EQ(alerts["alerts"][0]["max_c"], 9.0);

  // Stock with reservations (docs/rules.md, "Stock"): a created order reserves, one stock
  // cannot cover is refused, and HQ sees both, with on_hand and reserved.
  Subscriber order_events(site.broker().Uri(), "order-events", "fs/events/orders");
  Subscriber dead(site.broker().Uri(), "dead-watch", "fs/deadletter");
  pub->Publish({"fs/stock/movements", R"({"id":"r-kale","sku":"kale","delta":5,"reason":"receive","lot":"K1","expiry":"2026-01-09"})"});
  pub->Publish({"fs/orders/status", R"({"order_id":"o-ok","status":"created","ts":1767225600000,"lines":[{"sku":"kale","qty":3}]})"});
  pub->Publish({"fs/orders/status", R"({"order_id":"o-short","status":"created","ts":1767225601000,"lines":[{"sku":"kale","qty":3}]})"});
  pub->Flush();
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM orders", 2));
  const int64_t last_stock = site.Int("SELECT MAX(seq) FROM outbox");
  ASSERT_TRUE(site.WaitInt("SELECT IFNULL((SELECT value FROM sync_state WHERE name = 'acked_seq'), 0)", last_stock)) << site.log();
  json orders = get(std::string("/v1/sites/") + kSiteId + "/orders");
  std::map<std::string, std::string> status;
  for (const auto& o : orders["orders"]) status[o["order_id"].get<std::string>()] = o["status"].get<std::string>();
  EXPECT_EQ(status["o-ok"], "created") << orders.dump();
  EXPECT_EQ(status["o-short"], "refused") << orders.dump();
  json stock = get(std::string("/v1/sites/") + kSiteId + "/stock");
  ASSERT_EQ(stock["stock"].size(), 1u) << stock.dump();
  EXPECT_EQ(stock["stock"][0]["on_hand"], 5);
  EXPECT_EQ(stock["stock"][0]["reserved"], 3);
  ASSERT_TRUE(WaitFor([&] { return !order_events.Payloads().empty(); }, std::chrono::seconds(10)));
  const json refused = json::parse(order_events.Payloads()[0]);
  EXPECT_EQ(refused["order_id"], "o-short");
  EXPECT_EQ(refused["event"], "refused");
  EXPECT_EQ(refused["reason"], "insufficient stock: order o-short needs 3 of sku kale, 2 free; nothing reserved");
  ASSERT_TRUE(WaitFor([&] { return !dead.Payloads().empty(); }, std::chrono::seconds(10)));
  EXPECT_EQ(json::parse(dead.Payloads()[0])["reason"], refused["reason"]);
  Subscriber state(site.broker().Uri(), "state-watch", "fs/orders/o-short/state");
  ASSERT_TRUE(WaitFor([&] { return !state.Payloads().empty(); }, std::chrono::seconds(10)));
  EXPECT_EQ(json::parse(state.Payloads().back())["status"], "refused");
}

}  // namespace
}  // namespace freshsync::testing
