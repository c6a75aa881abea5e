// The disk quota end to end: a real Mosquitto, the real edged with store.quota_mb = 1, a real
// SQLite file. The hub's acknowledgements are stood in for by advancing sync_state.acked_seq,
// as the sync agent does on a 200 (no [hub] is configured, so no agent runs and the link
// counts as down). Asserts that telemetry is downsampled first and nothing else is lost, and
// that a full store pauses telemetry (the broker keeps it) while stock and orders still flow.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include <string>
#include <thread>
#include <vector>

#include "tests/ingest/site.h"

namespace freshsync::testing {
namespace {

constexpr int64_t kT0 = 1'764'000'000'020;  // device time of the first message (ms, not on a 30 s boundary)

std::string GpsMsg(int seq, int64_t ts) {
  return R"({"seq":)" + std::to_string(seq) + R"(,"lat":31.2,"lon":121.5,"ts":)" + std::to_string(ts) + "}";
}
std::string ClimateMsg(int seq, int64_t ts, double temp) {
  return R"({"seq":)" + std::to_string(seq) + R"(,"ts":)" + std::to_string(ts) + R"(,"temp_c":)" + std::to_string(temp) + "}";
}
std::string MoveMsg(const std::string& id, int delta) {
  return R"({"id":")" + id + R"(","sku":"apple","delta":)" + std::to_string(delta) + R"(,"reason":"receive"})";
}
std::string OrderMsg(const std::string& id) {
  return R"({"order_id":")" + id + R"(","status":"created","ts":1764000000000,"lines":[{"sku":"apple","qty":1}]})";
}

// What the sync agent writes when the hub acknowledges up to `seq`.
void AckUpTo(const Site& site, int64_t seq) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(site.db_path().c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  const std::string sql = "INSERT INTO sync_state(name, value) VALUES ('acked_seq', " + std::to_string(seq) +
                          ") ON CONFLICT(name) DO UPDATE SET value = excluded.value";
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
  sqlite3_close(db);
}

nlohmann::json Status(const Site& site) {
  TempDir out;
  EXPECT_EQ(RunShell("'" + BinDir() + "/edgectl' --config '" + site.config_path() + "' status --json > '" + out.File("s.json") + "'"), 0);
  return nlohmann::json::parse(ReadFile(out.File("s.json")), nullptr, false);
}

// Log lines "disk quota: STATE: downsampled D and dropped P ..." in order: (D, P).
std::vector<std::pair<int64_t, int64_t>> QuotaSteps(const std::string& log) {
  std::vector<std::pair<int64_t, int64_t>> out;
  const std::string a = ": downsampled ", b = " and dropped ";
  for (size_t p = log.find(a); p != std::string::npos; p = log.find(a, p + 1)) {
    const size_t q = log.find(b, p);
    if (q == std::string::npos) break;
    out.emplace_back(std::stoll(log.substr(p + a.size())), std::stoll(log.substr(q + b.size())));
  }
  return out;
}

TEST(QuotaTest, TelemetryIsDownsampledFirstNothingElseIsLostAndAFullStorePausesTelemetry) {
  const int metrics_port = PickFreePort();
  Site site(
      "quota_mb = 1\n"
      "[[coldchain.rule]]\nsensors = \"cold-*\"\nmin_c = 0.0\nmax_c = 4.0\nfor_s = 60\n"
      "[metrics]\nlisten = \"127.0.0.1:" + std::to_string(metrics_port) + "\"\n");
  ASSERT_TRUE(site.StartEdged({{"FRESHSYNC_QUOTA_TICK_MS_FOR_TEST", "100"}}));
  auto pub = site.NewPublisher("quota-pub");

  // Stock, orders, and a cold room out of range long enough to open an excursion alert.
  int moves = 0, orders = 0, gps_sent = 0;
  for (; moves < 40; ++moves) pub->Publish({"fs/stock/movements", MoveMsg("m" + std::to_string(moves), 1)});
  for (; orders < 10; ++orders) pub->Publish({"fs/orders/status", OrderMsg("o" + std::to_string(orders))});
  for (int i = 0; i < 20; ++i) pub->Publish({"fs/sensors/cold-1/climate", ClimateMsg(i + 1, kT0 + i * 10'000, 9.0)});
  // Telemetry at 1 Hz device time: 6 trucks x 500 fixes, 17 intervals of 30 s each.
  const int kTrucks = 6, kFixes = 500;
  for (int i = 0; i < kFixes; ++i)
    for (int t = 0; t < kTrucks; ++t, ++gps_sent) pub->Publish({"fs/vehicles/truck-" + std::to_string(t) + "/gps", GpsMsg(i + 1, kT0 + i * 1000)});
  pub->Flush();
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM vehicle_positions", gps_sent, std::chrono::seconds(30)));
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM stock_movements", moves, std::chrono::seconds(10)));
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM orders", orders, std::chrono::seconds(10)));
  const int64_t alerts = site.Int("SELECT COUNT(*) FROM outbox WHERE entity = 6");
  ASSERT_GE(alerts, 1) << "the cold-chain excursion should have opened an alert";
  const int64_t stock_records = site.Int("SELECT COUNT(*) FROM outbox WHERE entity IN (1, 2)");
  // Each created order also reserves its one apple: one more STOCK record (docs/rules.md, "Stock").
  ASSERT_EQ(stock_records, moves + 2 * orders);

  const int64_t intervals =
      site.Int("SELECT COUNT(*) FROM (SELECT DISTINCT vehicle, ts_ms - ts_ms % 30000 FROM vehicle_positions WHERE vehicle LIKE 'truck-%')");
  ASSERT_GE(intervals, kTrucks * 16);

  // The hub acknowledges everything so far; then more telemetry (not acknowledged) pushes the
  // store over the soft mark.
  const int64_t acked = site.Int("SELECT MAX(seq) FROM outbox");
  AckUpTo(site, acked);
  int late_seq = 0;
  auto fill = [&](int n) {
    for (int i = 0; i < n; ++i, ++gps_sent) pub->Publish({"fs/vehicles/van-1/gps", GpsMsg(++late_seq, kT0 + 600'000 + late_seq * 1000)});
    pub->Flush();
  };
  for (int round = 0; round < 40 && site.Int("SELECT COUNT(*) FROM vehicle_positions WHERE outbox_seq <= " + std::to_string(acked)) == kTrucks * kFixes; ++round) {
    fill(500);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  // Downsampled, not dropped: fewer acknowledged fixes, but every truck's every 30 s interval
  // still has one.
  const std::string acked_gps = " FROM vehicle_positions WHERE outbox_seq <= " + std::to_string(acked);
  ASSERT_TRUE(WaitFor([&] { return site.Int("SELECT COUNT(*)" + acked_gps) < kTrucks * kFixes; }, std::chrono::seconds(10)));
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM (SELECT DISTINCT vehicle, ts_ms - ts_ms % 30000" + acked_gps + ")"), intervals);
  // The step's log line follows its commit: wait for it rather than race it.
  ASSERT_TRUE(WaitFor([&] { return !QuotaSteps(site.log()).empty(); }, std::chrono::seconds(10)));
  const auto steps = QuotaSteps(site.log());
  EXPECT_GT(steps.front().first, 0) << "the first step freed rows by downsampling";
  EXPECT_EQ(steps.front().second, 0) << "nothing dropped before downsampling was spent";
  // Nothing else lost: stock, orders, alerts, and every unacknowledged record.
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM stock_movements"), moves);
  EXPECT_EQ(site.Int("SELECT on_hand FROM stock WHERE sku = 'apple'"), moves);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM orders"), orders);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE entity IN (1, 2)"), stock_records);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE entity = 6 AND key <> 'disk-quota'"), alerts);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE seq > " + std::to_string(acked)), site.Int("SELECT MAX(seq) FROM outbox") - acked);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM vehicle_positions WHERE vehicle = 'van-1'"), late_seq);

  // The hub is now unreachable (acked_seq stays): fill until nothing can be freed.
  for (int round = 0; round < 60 && site.Int("SELECT COUNT(*) FROM outbox WHERE key = 'disk-quota'") == 0; ++round) {
    fill(500);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM outbox WHERE key = 'disk-quota' AND priority = 1", 1, std::chrono::seconds(10)))
      << "the quota alert is a priority change record";
  ASSERT_TRUE(WaitFor([&] { return site.log().find("telemetry paused") != std::string::npos; }, std::chrono::seconds(10)));
  {
    // Before pausing, the quota went through dropping (what the hub had acknowledged).
    const std::string log = site.log();
    bool dropped = false;
    for (const auto& step : QuotaSteps(log.substr(0, log.find("pausing telemetry")))) dropped = dropped || step.second > 0;
    EXPECT_TRUE(dropped) << "paused without having dropped acknowledged telemetry first";
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // what was in flight at the pause lands
  auto st = Status(site);
  ASSERT_TRUE(st.contains("disk")) << st.dump();
  EXPECT_EQ(st["disk"]["state"], "full") << st.dump();
  EXPECT_EQ(st["disk"]["quota_mb"], 1);
  EXPECT_GE(st["disk"]["used_mb"].get<double>(), 0.9);
  // At (or past) the quota the forecast is "now".
  EXPECT_EQ(st["disk"]["forecast_full_s"], 0) << st.dump();
  {
    httplib::Client http("127.0.0.1", metrics_port);
    auto m = http.Get("/metrics");
    ASSERT_TRUE(m && m->status == 200);
    EXPECT_NE(m->body.find("freshsync_disk_quota_state{state=\"full\"} 1"), std::string::npos) << m->body;
    EXPECT_NE(m->body.find("freshsync_disk_quota_alert 1"), std::string::npos);
    EXPECT_NE(m->body.find("freshsync_disk_quota_bytes 1048576"), std::string::npos);
    EXPECT_NE(m->body.find("freshsync_disk_quota_pauses_total 1"), std::string::npos);
    EXPECT_EQ(m->body.find("freshsync_disk_quota_rows_total{step=\"downsample\"} 0\n"), std::string::npos) << "downsampled rows counted";
    auto ready = http.Get("/readyz");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 200) << "paused telemetry is intended, not unready: " << ready->body;
  }

  // While paused: telemetry is not acknowledged (not applied), stock and orders still flow.
  const int64_t van_before = site.Int("SELECT COUNT(*) FROM vehicle_positions WHERE vehicle = 'van-1'");
  const int kHeld = 400;
  for (int i = 0; i < kHeld; ++i) pub->Publish({"fs/vehicles/held-1/gps", GpsMsg(i + 1, kT0 + i * 1000)});
  for (int i = 0; i < 10; ++i, ++moves) pub->Publish({"fs/stock/movements", MoveMsg("m" + std::to_string(moves), 1)});
  for (int i = 0; i < 5; ++i, ++orders) pub->Publish({"fs/orders/status", OrderMsg("o" + std::to_string(orders))});
  pub->Flush();
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM stock_movements", moves, std::chrono::seconds(10)));
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM orders", orders, std::chrono::seconds(10)));
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM vehicle_positions WHERE vehicle = 'held-1'"), 0);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM vehicle_positions WHERE vehicle = 'van-1'"), van_before);

  // The link is back: the hub acknowledges everything, the quota drops what it now may, and
  // telemetry resumes by itself; the broker redelivers every held message.
  AckUpTo(site, site.Int("SELECT MAX(seq) FROM outbox"));
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM vehicle_positions WHERE vehicle = 'held-1'", kHeld, std::chrono::seconds(20)));
  EXPECT_EQ(site.Int("SELECT COUNT(DISTINCT seq) FROM vehicle_positions WHERE vehicle = 'held-1'"), kHeld);
  EXPECT_NE(site.log().find("resuming telemetry"), std::string::npos);
  EXPECT_TRUE(site.WaitInt("SELECT COUNT(*) FROM outbox WHERE key = 'disk-quota'", 2, std::chrono::seconds(5))) << "alert closed";
  // And still nothing of value lost.
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM stock_movements"), moves);
  EXPECT_EQ(site.Int("SELECT on_hand FROM stock WHERE sku = 'apple'"), moves);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM orders"), orders);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE entity IN (1, 2)"), moves + 2 * orders);  // + a reservation each
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE entity = 6 AND key <> 'disk-quota'"), alerts);
  EXPECT_EQ(site.StopEdged(), 0);
}

}  // namespace
}  // namespace freshsync::testing
