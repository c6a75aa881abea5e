// Site rules end to end: MQTT in through a real Mosquitto, the real edged, events back out on
// fs/events/geofence and fs/alerts/coldchain and in the outbox.
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "freshsync.pb.h"
#include "tests/ingest/site.h"

namespace freshsync::testing {
namespace {

const std::string kFences = std::string(FRESHSYNC_GEOFENCE_TESTDATA) + "/sim_seed7_fences.geojson";

// The edge-sim recorded track (seed 7, one truck, 150 min) as MQTT messages.
std::vector<Msg> Track(int64_t* first_ts) {
  std::ifstream in(std::string(FRESHSYNC_GEOFENCE_TESTDATA) + "/sim_seed7_track.csv");
  std::vector<Msg> out;
  std::string line;
  uint64_t seq = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::stringstream ss(line);
    std::string vehicle, ts, lat, lon, hdop;
    std::getline(ss, vehicle, ',');
    std::getline(ss, ts, ',');
    std::getline(ss, lat, ',');
    std::getline(ss, lon, ',');
    std::getline(ss, hdop, ',');
    if (out.empty()) *first_ts = std::stoll(ts);
    out.push_back({"fs/vehicles/" + vehicle + "/gps", "{\"seq\":" + std::to_string(++seq) + ",\"ts\":" + ts + ",\"lat\":" + lat +
                                                          ",\"lon\":" + lon + ",\"hdop\":" + hdop + "}"});
  }
  return out;
}

// What edge/geofence's own recorded-track test expects: event fence@seconds since the first fix.
const char* kExpectedTrack =
    "enter drop-01@585 exit drop-01@860 enter drop-07@1780 exit drop-07@2155 enter drop-03@2665 exit drop-03@2930 "
    "enter depot@3555 exit depot@3880 enter drop-01@4320 exit drop-01@4855 enter drop-07@5670 exit drop-07@6170 "
    "enter drop-03@6655 exit drop-03@7010 enter depot@7790 exit depot@8205 enter drop-01@8875 ";

std::string Summary(const std::vector<nlohmann::json>& events, int64_t t0) {
  std::string s;
  for (const auto& e : events)
    s += e["event"].get<std::string>() + " " + e["fence"].get<std::string>() + "@" + std::to_string((e["ts"].get<int64_t>() - t0) / 1000) + " ";
  return s;
}

std::vector<nlohmann::json> OutboxEvents(const Site& site, int entity, int n) {
  std::vector<nlohmann::json> out;
  for (int i = 0; i < n; ++i) {
    // hex(): Site::Text reads text, and a record may hold NUL bytes.
    const std::string hex = site.Text("SELECT hex(record) FROM outbox WHERE entity = " + std::to_string(entity) +
                                      " ORDER BY seq LIMIT 1 OFFSET " + std::to_string(i));
    std::string blob;
    for (size_t k = 0; k + 1 < hex.size(); k += 2) blob.push_back(static_cast<char>(std::stoi(hex.substr(k, 2), nullptr, 16)));
    v1::ChangeRecord r;
    EXPECT_TRUE(r.ParseFromString(blob));
    if (entity == v1::GEOFENCE_EVENT)
      out.push_back({{"event", r.geofence().event()}, {"fence", r.geofence().fence()}, {"kind", r.geofence().kind()}, {"ts", r.ts_ms()}});
    else
      out.push_back({{"alert_id", r.alert().alert_id()}, {"state", r.alert().state()}, {"started_ts", r.alert().started_ts_ms()},
                     {"ended_ts", r.alert().ended_ts_ms()}, {"min_c", r.alert().min_c()}, {"max_c", r.alert().max_c()}});
  }
  return out;
}

TEST(RulesIntegrationTest, RecordedTrackGivesExactGeofenceEventsOnMqttAndInTheOutbox) {
  Site site("[geofence]\nfile = \"" + kFences + "\"\n");
  ASSERT_TRUE(site.StartEdged());
  Subscriber events(site.broker().Uri(), "geo-watch", "fs/events/geofence");
  int64_t t0 = 0;
  const auto track = Track(&t0);
  ASSERT_EQ(track.size(), 1800u);
  auto pub = site.NewPublisher("truck-pub");
  for (const auto& m : track) pub->Publish(m, 50);
  pub->Flush();
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM vehicle_positions", 1800));
  ASSERT_TRUE(WaitFor([&] { return events.Payloads().size() >= 17; }, std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // nothing more may come
  std::vector<nlohmann::json> got;
  for (const auto& p : events.Payloads()) {
    auto j = nlohmann::json::parse(p);
    ASSERT_TRUE(j.contains("vehicle") && j.contains("kind")) << p;
    EXPECT_EQ(j["vehicle"], "truck-01");
    got.push_back(j);
  }
  EXPECT_EQ(Summary(got, t0), kExpectedTrack);
  EXPECT_EQ(got[0]["kind"], "customer_drop");
  ASSERT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE entity = 5"), 17);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE entity = 5 AND priority = 1"), 17);
  EXPECT_EQ(Summary(OutboxEvents(site, v1::GEOFENCE_EVENT, 17), t0), kExpectedTrack);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM rule_state WHERE engine = 'geofence' AND entity = 'truck-01'"), 1);
  ExpectDenseOutbox(site);
}

TEST(RulesIntegrationTest, KilledMidTrackEdgedRestoresAndTheOutboxHasEachEventOnce) {
  Site site("[geofence]\nfile = \"" + kFences + "\"\n");
  ASSERT_TRUE(site.StartEdged());
  int64_t t0 = 0;
  const auto track = Track(&t0);
  auto pub = site.NewPublisher("truck-pub");
  for (size_t i = 0; i < track.size(); ++i) {
    pub->Publish(track[i], 50);
    if (i == 700 || i == 1300) {
      pub->Flush();
      site.KillEdged();  // at whatever point edged is: commits not yet made are redelivered
      ASSERT_TRUE(site.StartEdged());
    }
  }
  pub->Flush();
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM vehicle_positions", 1800));
  ASSERT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE entity = 5"), 17);
  EXPECT_EQ(Summary(OutboxEvents(site, v1::GEOFENCE_EVENT, 17), t0), kExpectedTrack);
  ExpectDenseOutbox(site);
}

TEST(RulesIntegrationTest, SyntheticSeriesGivesExactlyTheExpectedColdchainAlerts) {
  Site site(
      "[[coldchain.rule]]\nsensors = \"cold-*\"\nmin_c = 0.0\nmax_c = 4.0\nfor_s = 300\n"
      "[coldchain]\nraw_retention_h = 1\n");
  ASSERT_TRUE(site.StartEdged());
  Subscriber alerts(site.broker().Uri(), "alert-watch", "fs/alerts/coldchain");
  const int64_t t0 = 1767225600000;
  int64_t t = t0;
  uint64_t seq = 0;
  std::vector<Msg> msgs;
  auto add = [&](int n, double temp) {
    for (int i = 0; i < n; ++i, t += 30'000)
      msgs.push_back({"fs/sensors/cold-1/climate",
                      "{\"seq\":" + std::to_string(++seq) + ",\"ts\":" + std::to_string(t) + ",\"temp_c\":" + std::to_string(temp) + "}"});
  };
  add(20, 2.0);
  add(9, 8.0);  // 240 s outside: shorter than for_s, no alert
  add(20, 2.0);
  const int64_t a_start = t;
  add(15, 7.5);  // 420 s outside: opens at 300 s; constant, so no update
  const int64_t a_end = t;
  add(20, 2.0);
  const int64_t b_start = t;
  add(12, -2.0);  // 330 s below min_c
  const int64_t b_end = t;
  add(10, 2.0);
  auto pub = site.NewPublisher("sensor-pub");
  for (const auto& m : msgs) pub->Publish(m, 50);
  pub->Flush();
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM dedupe WHERE kind = 4", static_cast<int64_t>(msgs.size())));
  ASSERT_TRUE(WaitFor([&] { return alerts.Payloads().size() >= 4; }, std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto got = alerts.Payloads();
  ASSERT_EQ(got.size(), 4u);
  struct Want {
    std::string state;
    int64_t started, ended;
    double min_c, max_c;
  };
  const Want want[] = {{"open", a_start, 0, 7.5, 7.5}, {"closed", a_start, a_end, 7.5, 7.5},
                       {"open", b_start, 0, -2.0, -2.0}, {"closed", b_start, b_end, -2.0, -2.0}};
  const auto outbox = OutboxEvents(site, v1::COLDCHAIN_ALERT, 4);
  for (size_t i = 0; i < 4; ++i) {
    auto j = nlohmann::json::parse(got[i]);
    SCOPED_TRACE(got[i]);
    EXPECT_EQ(j["alert_id"], "cold-1/excursion/" + std::to_string(want[i].started));
    EXPECT_EQ(j["sensor"], "cold-1");
    EXPECT_EQ(j["state"], want[i].state);
    EXPECT_EQ(j["started_ts"], want[i].started);
    EXPECT_EQ(j["min_c"], want[i].min_c);
    EXPECT_EQ(j["max_c"], want[i].max_c);
    if (want[i].ended) EXPECT_EQ(j["ended_ts"], want[i].ended);
    else EXPECT_FALSE(j.contains("ended_ts"));
    EXPECT_EQ(outbox[i]["alert_id"], j["alert_id"]);
    EXPECT_EQ(outbox[i]["state"], want[i].state);
    EXPECT_EQ(outbox[i]["ended_ts"], want[i].ended);
  }
  // Durations: 450 s and 360 s, from the first outside reading to the first inside one.
  EXPECT_EQ((a_end - a_start) / 1000, 450);
  EXPECT_EQ((b_end - b_start) / 1000, 360);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE entity = 6 AND priority = 1"), 4);
  // One-minute rollups, two readings each, for every minute but the one still open.
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM climate_rollups WHERE sensor = 'cold-1'"), (t - t0) / 60'000 - 1);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM climate_rollups WHERE count != 2"), 0);
  ExpectDenseOutbox(site);
}

TEST(RulesIntegrationTest, BadFenceFileRefusesStartNamingTheFeature) {
  TempDir dir;
  WriteFile(dir.File("bad.geojson"),
            R"({"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"a"},)"
            R"("geometry":{"type":"LineString","coordinates":[[121.5,31.2],[121.6,31.3]]}}]})");
  Site site("[geofence]\nfile = \"" + dir.File("bad.geojson") + "\"\n");
  const int rc = RunShell(BinDir() + "/edged --config " + site.config_path() + " --check-config", dir.File("check.log"));
  EXPECT_EQ(rc, 2);
  const std::string out = ReadFile(dir.File("check.log"));
  EXPECT_NE(out.find("geofence.file"), std::string::npos) << out;
  EXPECT_NE(out.find("features[0].geometry.type"), std::string::npos) << out;
  EXPECT_FALSE(site.StartEdged({}, std::chrono::seconds(3)));
}

// Customer personal data of an order created through MQTT, with the key as a systemd
// credential: sealed in the store, absent from the database, its WAL and shm, the log, the
// dead letters and the retained order state.
TEST(RulesIntegrationTest, CustomerDataIsNowhereInClearAndOrderStateIsRetained) {
  TempDir creds;
  WriteFile(creds.File("privacy.key"), std::string(64, 'a') + "\n");
  Site site("");  // no privacy.key_file: the credential directory provides privacy.key
  ASSERT_TRUE(site.StartEdged({{"CREDENTIALS_DIRECTORY", creds.path()}}));
  const std::string name = "Zhang Sanfeng-Secret", phone = "+86 139 8765 4321", address = "77 Hidden Willow Lane";
  const std::string customer = R"("customer":{"name":")" + name + R"(","phone":")" + phone + R"(","address":")" + address + R"("})";
  auto pub = site.NewPublisher("order-pub");
  // Orders reserve stock when created (docs/rules.md, "Stock"): the kale they need.
  pub->Publish({"fs/stock/movements", R"({"id":"r-kale","sku":"kale","delta":5,"reason":"receive","lot":"K1","expiry":"2026-01-09"})"});
  pub->Publish({"fs/orders/status", R"({"order_id":"o-p1","status":"created","ts":1767225600000,"lines":[{"sku":"kale","qty":2}],)" + customer + "}"});
  pub->Publish({"fs/orders/status", R"({"order_id":"o-p1","status":"accepted","ts":1767225601000,"actor":"t-1"})"});
  // Refused ones carrying the same data: an unknown order, and a broken payload.
  pub->Publish({"fs/orders/status", R"({"order_id":"o-p1","status":"picking","ts":1767225602000})"});
  // Late ones: a status the order already had is a duplicate (no effect); one it never had and
  // can no longer take is refused.
  pub->Publish({"fs/orders/status", R"({"order_id":"o-p1","status":"accepted","ts":1767225603000})"});
  pub->Publish({"fs/orders/status", R"({"order_id":"o-p4","status":"created","ts":1767225600000,"lines":[{"sku":"kale","qty":1}]})"});
  pub->Publish({"fs/orders/status", R"({"order_id":"o-p4","status":"cancelled","ts":1767225601000})"});
  pub->Publish({"fs/orders/status", R"({"order_id":"o-p4","status":"packed","ts":1767225600500})"});
  pub->Publish({"fs/orders/status", R"({"order_id":"o-p2","status":"accepted","ts":1767225600000,)" + customer + "}"});
  pub->Publish({"fs/orders/status", R"({"order_id":"o-p3","status":"created",)" + customer});
  pub->Flush();
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM dead_letters", 3));
  EXPECT_EQ(site.Text("SELECT status FROM orders WHERE order_id = 'o-p1'"), "picking");
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM orders WHERE customer_sealed IS NOT NULL AND length(customer_sealed) > 40"), 1);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM dead_letters WHERE reason LIKE 'illegal order transition: order o-p4 cancelled -> packed%'"), 1);
  EXPECT_EQ(site.Text("SELECT status FROM orders WHERE order_id = 'o-p4'"), "cancelled");
  // The retained state: a terminal connecting now gets "picking", not the replayed "accepted".
  Subscriber state(site.broker().Uri(), "state-watch", "fs/orders/o-p1/state");
  ASSERT_TRUE(WaitFor([&] { return !state.Payloads().empty(); }, std::chrono::seconds(5)));
  auto j = nlohmann::json::parse(state.Payloads().back());
  EXPECT_EQ(j["status"], "picking");
  for (const auto& p : state.Payloads()) EXPECT_EQ(p.find("Secret"), std::string::npos) << p;
  // The files while edged runs (the WAL holds the recent commits), then after it stopped.
  std::vector<std::pair<std::string, std::string>> files;
  for (const std::string suffix : {"", "-wal", "-shm"}) files.push_back({site.db_path() + suffix, ReadFile(site.db_path() + suffix)});
  EXPECT_GT(files[1].second.size(), 0u);  // there was a WAL to search
  site.StopEdged();
  for (const std::string suffix : {"", "-wal", "-shm"}) files.push_back({site.db_path() + suffix + " (stopped)", ReadFile(site.db_path() + suffix)});
  for (const auto& [path, bytes] : files) {
    SCOPED_TRACE(path + " (" + std::to_string(bytes.size()) + " bytes)");
    for (const auto& secret : {name, phone, address, std::string("Sanfeng"), std::string("Hidden Willow")})
      EXPECT_EQ(bytes.find(secret), std::string::npos) << secret;
  }
  EXPECT_GT(ReadFile(site.db_path()).size() + ReadFile(site.db_path() + "-wal").size(), 4096u);  // it did read something
  const std::string log = site.log();
  for (const auto& secret : {name, phone, address, std::string("Sanfeng")}) EXPECT_EQ(log.find(secret), std::string::npos) << secret;
}

}  // namespace
}  // namespace freshsync::testing
