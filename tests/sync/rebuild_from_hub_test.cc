// "An edge server dies with its disk" (downstream issue, item 7), end to end with real hubd,
// Mosquitto and edged (tests/support/site_hub.h): local movements and orders and HQ orders flow;
// edged is killed (SIGKILL) mid-traffic; its store, WAL and intake journal are deleted;
// `edgectl restore --from-hub` seeds a fresh store from the hub; edged starts again while
// traffic and HQ orders keep flowing. Then, without any operator action:
//   - no seq is reused: the hub holds the site's seqs 1..last once each, densely;
//   - every HQ command is applied exactly once (down_applied) and in order, none is lost:
//     every HQ order exists at HQ, and at the site those still open;
//   - stock is never negative, and on_hand/reserved at the edge equal the hub's;
//   - every order is reserved or refused, and the site and HQ agree on each;
//   - nothing is pending downstream.
// The kill usually lands after the dead edge had applied and acknowledged an HQ order whose
// ORDER record it never shipped (the restore's warning "commands A..B were acknowledged by the
// dead edge but no record of their effect reached the hub"): the rebuilt edge pulls those again
// from the highest down_seq the hub's records name, and the check that every HQ order reached
// HQ, accepted, is what fails if they were skipped as delivered.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/site_hub.h"

namespace freshsync::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

class RebuildFromHub : public ::testing::Test {
 protected:
  void SetUp() override {
    SiteHubOptions o;
    o.edge_toml = "[downstream]\nwait_ms = 300\n";
    sh_ = std::make_unique<SiteHub>(o);
    ASSERT_TRUE(sh_->ok()) << sh_->HubLog();
    ASSERT_TRUE(site().StartEdged()) << site().log();
    auto pub = site().NewPublisher("rebuild-seed");
    pub->PublishReliably({"fs/stock/movements",
                          R"({"id":"seed-a1","sku":"apple","delta":3000,"reason":"receive","lot":"A1","expiry":"2027-01-10","ts":1764000000000})"});
    pub->PublishReliably({"fs/stock/movements",
                          R"({"id":"seed-a2","sku":"apple","delta":2000,"reason":"receive","lot":"A2","expiry":"2027-02-10","ts":1764000000001})"});
    pub->PublishReliably({"fs/stock/movements",
                          R"({"id":"seed-p1","sku":"pear","delta":4000,"reason":"receive","lot":"P1","ts":1764000000002})"});
    ASSERT_TRUE(site().WaitInt("SELECT IFNULL(SUM(on_hand), 0) FROM stock", 9000, seconds(30))) << site().log();
  }
  void TearDown() override { StopTraffic(); }

  Site& site() { return sh_->site(); }
  std::string Path(const std::string& suffix) { return std::string("/v1/sites/") + SiteHub::kSiteId + suffix; }

  // Local traffic from a thread of its own: per step a pick of an apple, a pear received, and a
  // local order created (every other one accepted later), until StopTraffic().
  void StartTraffic(const std::string& tag) {
    stop_ = false;
    traffic_ = std::thread([this, tag] {
      auto pub = site().NewPublisher("rebuild-traffic-" + tag);
      for (int i = 0; !stop_; ++i) {
        const std::string n = tag + "-" + std::to_string(i);
        const std::string ts = std::to_string(1765000000000 + i);
        pub->Publish({"fs/stock/movements", R"({"id":"pick-)" + n + R"(","sku":"apple","delta":-1,"reason":"pick","ts":)" + ts + "}"});
        pub->Publish({"fs/stock/movements", R"({"id":"recv-)" + n + R"(","sku":"pear","delta":1,"reason":"receive","lot":"P2","ts":)" + ts + "}"});
        pub->Publish({"fs/orders/status", R"({"order_id":"loc-)" + n + R"(","status":"created","ts":)" + ts +
                                              R"(,"lines":[{"sku":"pear","qty":2}]})"});
        if (i % 2 == 1) {
          const std::string prev = tag + "-" + std::to_string(i - 1);
          pub->Publish({"fs/orders/status", R"({"order_id":"loc-)" + prev + R"(","status":"accepted","ts":)" + ts + "}"});
        }
        ++steps_;
        std::this_thread::sleep_for(milliseconds(20));
      }
      pub->Flush();
    });
  }
  void StopTraffic() {
    stop_ = true;
    if (traffic_.joinable()) traffic_.join();
  }

  static std::string Hq(int i) { return "hq-" + std::to_string(i); }
  void PostHq(int from, int to) {
    for (int i = from; i <= to; ++i) {
      const std::string body = R"({"order_id":")" + Hq(i) + R"(","lines":[{"sku":"apple","qty":)" + std::to_string(1 + i % 3) + "}]}";
      int status = -1;
      for (int attempt = 0; attempt < 100 && status != 202; ++attempt) {
        status = sh_->HqWrite("POST", Path("/orders"), body);
        if (status != 202) std::this_thread::sleep_for(milliseconds(100));
      }
      ASSERT_EQ(status, 202) << Hq(i);
    }
  }
  int64_t Applied() { return site().Int("SELECT IFNULL((SELECT value FROM sync_state WHERE name = 'down_applied_seq'), 0)"); }
  nlohmann::json Lane() { return sh_->HqJson(Path("/downstream")); }

  std::unique_ptr<SiteHub> sh_;
  std::thread traffic_;
  std::atomic<bool> stop_{false};
  std::atomic<int> steps_{0};
};

TEST_F(RebuildFromHub, SiteRebuiltFromTheHubConvergesWithoutReuseRepeatOrLoss) {
  // The site key is edged's systemd credential (tests/support/site_hub.cc): edgectl is given it
  // as the service would be.
  const std::string edgectl = "CREDENTIALS_DIRECTORY=" + sh_->dir().File("credentials") + " " + BinDir() +
                              "/edgectl --config " + site().config_path();
  StartTraffic("a");
  PostHq(1, 20);
  ASSERT_TRUE(site().WaitInt("SELECT count(*) >= 12 FROM down_applied", 1, seconds(60))) << site().log();
  ASSERT_TRUE(WaitFor([&] { return sh_->HubRecords() > 60; }, seconds(60))) << site().log();

  // The server dies mid-traffic, and its disk with it.
  site().KillEdged();
  std::this_thread::sleep_for(milliseconds(300));  // traffic goes on into the broker's session
  StopTraffic();
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(site().db_path() + suffix);
  std::filesystem::remove_all(site().db_path() + ".intake");
  PostHq(21, 30);  // HQ goes on while the site is down

  // Rebuilt from the hub: refused while a store with data is in the way is tested in
  // edge_rebuild_test; here the path is empty, as on a new disk.
  const std::string out = sh_->dir().File("restore-from-hub.out");
  ASSERT_EQ(RunShell(edgectl + " restore --from-hub > " + out + " 2>&1"), 0) << ReadFile(out) << sh_->HubLog();
  EXPECT_NE(ReadFile(out).find("continues at"), std::string::npos) << ReadFile(out);
  ASSERT_NE(RunShell(edgectl + " restore --from-hub > /dev/null 2>&1"), 0);  // now there is a store: refused
  const int64_t floor = site().Int("SELECT value FROM sync_state WHERE name = 'acked_seq'");
  EXPECT_GT(floor, 0);
  EXPECT_EQ(site().Int("SELECT count(*) FROM outbox"), 0);

  ASSERT_TRUE(site().StartEdged()) << site().log();
  StartTraffic("b");
  PostHq(31, 40);
  std::this_thread::sleep_for(seconds(2));
  StopTraffic();

  // Converges without an operator: upstream drained, nothing pending downstream.
  ASSERT_TRUE(WaitFor(
      [&] {
        const auto lane = Lane();
        return sh_->EdgeBacklog() == 0 && lane.is_object() && lane["pending"] == 0 && lane["last_seq"] == Applied() &&
               site().Int("SELECT count(*) FROM down_applied WHERE command_id LIKE 'order:hq-%'") == 40;
      },
      seconds(90)))
      << site().log();
  // Quiet: the last movements and the orders' states are in and acknowledged.
  ASSERT_TRUE(WaitFor([&] { return sh_->EdgeBacklog() == 0; }, seconds(30)));
  std::this_thread::sleep_for(seconds(1));
  ASSERT_EQ(sh_->EdgeBacklog(), 0);

  // No seq reused: the new records continued above the hub's floor; the hub holds 1..last
  // once each, with nothing refused as a gap or taken as a repeat of other content.
  const int64_t last = sh_->EdgeLastSeq();
  EXPECT_GT(last, floor);
  EXPECT_EQ(site().Int("SELECT min(seq) FROM outbox"), floor + 1);
  EXPECT_EQ(sh_->HubRecords(), last);
  EXPECT_EQ(sh_->CheckFeedExactlyOnce(last), "");

  // Every HQ command exactly once, in order; none lost.
  EXPECT_EQ(Applied(), Lane()["last_seq"].get<int64_t>());
  const auto hq_orders = sh_->HqJson(Path("/orders"));
  std::map<std::string, std::string> hq_status;
  for (const auto& o : hq_orders["orders"]) hq_status[o["order_id"].get<std::string>()] = o["status"].get<std::string>();
  int64_t last_down = 0;
  for (int i = 1; i <= 40; ++i) {
    const std::string id = Hq(i);
    EXPECT_EQ(site().Int("SELECT count(*) FROM down_applied WHERE command_id = 'order:" + id + "'"), 1) << id;
    const int64_t d = site().Int("SELECT down_seq FROM down_applied WHERE command_id = 'order:" + id + "'");
    EXPECT_GT(d, last_down) << id << ": applied out of order";
    last_down = d;
    ASSERT_TRUE(hq_status.count(id)) << id << " never reached HQ from the site";
    EXPECT_TRUE(hq_status[id] == "accepted") << id << " is " << hq_status[id];
    EXPECT_EQ(site().Text("SELECT status FROM orders WHERE order_id = '" + id + "'"), "accepted") << id;
  }
  // Nothing applied twice: no order anywhere was refused as a repeat ("order id exists at site").
  for (const auto& ch : sh_->Feed()) {
    if (ch.record().has_order()) {
      EXPECT_EQ(ch.record().order().reason(), "") << ch.record().key();
    }
  }

  // Stock: never negative (CHECK constraints), and the edge equals the hub.
  const auto hub_stock = sh_->HqJson(Path("/stock"));
  int skus = 0;
  for (const auto& s : hub_stock["stock"]) {
    const std::string sku = s["sku"].get<std::string>();
    EXPECT_EQ(site().Int("SELECT on_hand FROM stock WHERE sku = '" + sku + "'"), s["on_hand"].get<int64_t>()) << sku;
    EXPECT_EQ(site().Int("SELECT reserved FROM stock WHERE sku = '" + sku + "'"), s["reserved"].get<int64_t>()) << sku;
    EXPECT_GE(s["on_hand"].get<int64_t>(), s["reserved"].get<int64_t>()) << sku;
    ++skus;
  }
  EXPECT_EQ(skus, 2);
  EXPECT_EQ(site().Int("SELECT count(*) FROM stock_lots WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand"), 0);

  // Every order at the site is reserved (open) or refused, and HQ says the same of it.
  const int64_t orders = site().Int("SELECT count(*) FROM orders");
  EXPECT_GT(orders, 40);
  for (int64_t i = 0; i < orders; ++i) {
    const std::string id = site().Text("SELECT order_id FROM orders ORDER BY order_id LIMIT 1 OFFSET " + std::to_string(i));
    const std::string status = site().Text("SELECT status FROM orders WHERE order_id = '" + id + "'");
    EXPECT_TRUE(status == "created" || status == "accepted" || status == "refused") << id << " " << status;
    EXPECT_EQ(hq_status[id], status) << id;
  }
  // The site's own books balance: the reservations are the open orders' lines.
  EXPECT_EQ(RunShell(edgectl + " verify > /dev/null"), 0);
  const std::string status_out = sh_->dir().File("status.json");
  ASSERT_EQ(RunShell(edgectl + " status --json > " + status_out), 0);
  const auto status = nlohmann::json::parse(ReadFile(status_out));
  EXPECT_EQ(status["rebuilt_from_hub"]["seq_floor"].get<int64_t>(), floor);
}

}  // namespace
}  // namespace freshsync::testing
