// Issue "Downstream", must show: a race under damage. Three sites behind fault proxies, one
// real hubd. HQ orders (POSTed to the hub, pulled by each site) and local orders (published at
// each site's broker) race for the same stock, while edged is SIGKILLed 20 times, hubd 5 times,
// and links are cut. Afterwards, per site:
//   - every HQ command was applied once and in down_seq order (down_applied, the outbox);
//   - stock never went negative, and what is reserved is exactly what the winning orders hold;
//   - every order ended reserved or refused (HQ orders: accepted or refused; local orders:
//     created or refused), and HQ's view agrees with the site's;
//   - nothing is pending downstream, and the upstream backlog is empty.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/hub/hubd_fixture.h"
#include "tests/ingest/site.h"
#include "tests/support/fault_proxy.h"

namespace freshsync::testing {
namespace {

using nlohmann::json;

constexpr int kSites = 3;
constexpr int kHqOrders = 1000;
constexpr int kLocalOrders = 1000;
constexpr int64_t kSeedUnits = 600;  // per SKU per site: about two thirds of what the orders ask for

struct Line {
  std::string sku;
  int64_t qty;
};

struct RaceSite {
  std::string id;
  std::unique_ptr<FaultProxy> proxy;
  std::unique_ptr<EdgeSite> site;
  std::unique_ptr<Publisher> pub;
};

class DownstreamRace : public HubdTest {
 protected:
  // hubd from the shared fixture (tests/hub/hubd_fixture.h), then the sites, each behind its proxy.
  void SetUp() override {
    read_timeout_s_ = 10;  // as the test's own HQ client had
    ASSERT_NO_FATAL_FAILURE(HubdTest::SetUp());
    for (int i = 0; i < kSites; ++i) {
      RaceSite s;
      s.id = "race-" + std::to_string(i + 1);
      const auto client = pki_.Client(s.id);
      s.proxy = std::make_unique<FaultProxy>("127.0.0.1", port_);
      ASSERT_TRUE(s.proxy->Start());
      SiteOptions o;
      o.site_id = s.id;
      o.extra_toml = "[hub]\nurl = \"https://127.0.0.1:" + std::to_string(s.proxy->port()) + "\"\nca = \"" + pki_.ca_cert() +
                     "\"\ncert = \"" + client.cert + "\"\nkey = \"" + client.key +
                     "\"\nbatch_max_records = 500\ntimeout_ms = 3000\nbackoff_initial_ms = 50\nbackoff_max_ms = 1000\n"
                     "reconcile_interval_s = 2\n";
      s.site = std::make_unique<EdgeSite>(o);
      ASSERT_TRUE(s.site->StartEdged()) << s.site->log();
      s.pub = s.site->NewPublisher("race-pub-" + std::to_string(i));
      for (const char* sku : {"veg-001", "veg-002"})
        s.pub->PublishReliably({"fs/stock/movements", std::string(R"({"id":"seed-)") + sku + R"(","sku":")" + sku +
                                                         R"(","delta":)" + std::to_string(kSeedUnits) +
                                                         R"(,"reason":"receive","lot":"L1","ts":1764000000000})"});
      sites_.push_back(std::move(s));
    }
    for (auto& s : sites_)
      ASSERT_TRUE(s.site->WaitInt("SELECT IFNULL(SUM(on_hand), 0) FROM stock", 2 * kSeedUnits, std::chrono::seconds(30)));
  }

  void TearDown() override {
    sites_.clear();
    HubdTest::TearDown();
  }

  json HqGet(const std::string& path) {
    auto r = Hq(kWriterToken)->Get(path);
    if (!r || r->status != 200) return json();
    return json::parse(r->body, nullptr, false);
  }

  static std::string LinesJson(const std::vector<Line>& lines) {
    json a = json::array();
    for (const auto& l : lines) a.push_back({{"sku", l.sku}, {"qty", l.qty}});
    return a.dump();
  }

  std::vector<RaceSite> sites_;
};

TEST_F(DownstreamRace, SlowHqAndLocalOrdersRaceForStockUnderKillsAndCuts) {
  std::mt19937 rng(20261207);
  auto lines_for = [&] {
    std::vector<Line> lines;
    std::uniform_int_distribution<int> qty(1, 3), pick(0, 2);
    const int which = pick(rng);
    if (which != 1) lines.push_back({"veg-001", qty(rng)});
    if (which != 0) lines.push_back({"veg-002", qty(rng)});
    return lines;
  };
  // Every order of the race: id -> (site index, lines, from HQ).
  struct Order {
    int site;
    std::vector<Line> lines;
    bool hq;
  };
  std::map<std::string, Order> orders;
  std::vector<std::string> hq_ids, local_ids;
  for (int i = 0; i < kHqOrders; ++i) {
    const std::string id = "hq-" + std::to_string(i);
    orders[id] = {i % kSites, lines_for(), true};
    hq_ids.push_back(id);
  }
  for (int i = 0; i < kLocalOrders; ++i) {
    const std::string id = "loc-" + std::to_string(i);
    orders[id] = {i % kSites, lines_for(), false};
    local_ids.push_back(id);
  }

  const auto race = std::chrono::seconds(40);
  const auto start = std::chrono::steady_clock::now();
  std::atomic<int> hq_retries{0}, edge_kills{0}, hub_kills{0}, cuts{0};

  // HQ: each order POSTed until the hub answers 202 (a repeat after a kill answers as the first).
  std::thread hq_poster([&] {
    for (size_t i = 0; i < hq_ids.size(); ++i) {
      std::this_thread::sleep_until(start + race * i / hq_ids.size());
      const Order& o = orders[hq_ids[i]];
      const std::string body = R"({"order_id":")" + hq_ids[i] + R"(","lines":)" + LinesJson(o.lines) + "}";
      for (int attempt = 0;; ++attempt) {
        auto r = Hq(kWriterToken)->Post("/v1/sites/" + sites_[o.site].id + "/orders", body, "application/json");
        if (r && r->status == 202) break;
        ASSERT_TRUE(!r || r->status >= 500 || r->status == 429) << r->status << " " << r->body;
        ++hq_retries;
        ASSERT_LT(attempt, 600) << "HQ could not place " << hq_ids[i];
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  });
  // Sites: local orders at each site's broker, at least once (the broker keeps them for edged).
  std::thread local_publisher([&] {
    for (size_t i = 0; i < local_ids.size(); ++i) {
      std::this_thread::sleep_until(start + race * i / local_ids.size());
      const Order& o = orders[local_ids[i]];
      sites_[o.site].pub->PublishReliably(
          {"fs/orders/status", R"({"order_id":")" + local_ids[i] + R"(","status":"created","ts":)" +
                                   std::to_string(1764000000000LL + static_cast<int64_t>(i)) + R"(,"lines":)" +
                                   LinesJson(o.lines) + "}"});
    }
  });
  // Damage: 20 edge kills, 5 hub kills, 10 link cuts, spread over the race.
  std::thread damage([&] {
    std::vector<int> plan;  // 0: edge kill, 1: hub kill, 2: link cut
    plan.insert(plan.end(), 20, 0);
    plan.insert(plan.end(), 5, 1);
    plan.insert(plan.end(), 10, 2);
    std::mt19937 drng(7);
    std::shuffle(plan.begin(), plan.end(), drng);
    for (size_t i = 0; i < plan.size(); ++i) {
      std::this_thread::sleep_until(start + race * (i + 1) / (plan.size() + 1));
      RaceSite& s = sites_[drng() % kSites];
      if (plan[i] == 0) {
        s.site->KillEdged();
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        EXPECT_TRUE(s.site->StartEdged()) << s.site->log();
        ++edge_kills;
      } else if (plan[i] == 1) {
        hubd_.Kill();
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        StartHubd();  // a failed start fails the test (the fixture's assertion); the run goes on
        ++hub_kills;
      } else {
        s.proxy->Cut();
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        s.proxy->Pass();
        ++cuts;
      }
    }
  });
  hq_poster.join();
  local_publisher.join();
  damage.join();
  EXPECT_EQ(edge_kills.load(), 20);
  EXPECT_EQ(hub_kills.load(), 5);
  EXPECT_EQ(cuts.load(), 10);

  // Settled: nothing pending downstream, nothing unacknowledged upstream, every local order
  // taken in (an order row: created or refused).
  std::map<int, int> hq_per_site, local_per_site;
  for (const auto& [id, o] : orders) (o.hq ? hq_per_site : local_per_site)[o.site]++;
  for (int i = 0; i < kSites; ++i) {
    RaceSite& s = sites_[i];
    const bool settled = WaitFor(
        [&] {
          json d = HqGet("/v1/sites/" + s.id + "/downstream");
          if (!d.is_object() || d.value("pending", -1) != 0) return false;
          if (d.value("last_seq", int64_t{-1}) != hq_per_site[i]) return false;
          const int64_t taken = s.site->Int("SELECT COUNT(*) FROM orders WHERE order_id LIKE 'loc-%'");
          if (taken < local_per_site[i]) return false;
          return s.site->Int("SELECT COUNT(*) FROM outbox WHERE seq > IFNULL((SELECT value FROM sync_state WHERE "
                             "name = 'acked_seq'), 0)") == 0;
        },
        std::chrono::seconds(180));
    ASSERT_TRUE(settled) << s.id << ": downstream " << HqGet("/v1/sites/" + s.id + "/downstream").dump();
  }
  // One more pull round-trip so HQ's order view has every state the sites sent.
  std::this_thread::sleep_for(std::chrono::seconds(2));

  for (int i = 0; i < kSites; ++i) {
    RaceSite& s = sites_[i];
    EdgeSite& site = *s.site;
    SCOPED_TRACE(s.id);
    // Every command once, in order: one dedupe row per down_seq 1..last, and the orders' first
    // ORDER records in the outbox in down_seq order.
    EXPECT_EQ(site.Int("SELECT COUNT(*) FROM down_applied"), hq_per_site[i]);
    EXPECT_EQ(site.Int("SELECT COUNT(DISTINCT down_seq) FROM down_applied"), hq_per_site[i]);
    EXPECT_EQ(site.Int("SELECT MAX(down_seq) FROM down_applied"), hq_per_site[i]);
    EXPECT_EQ(site.Int("SELECT COUNT(*) FROM down_applied a JOIN down_applied b ON a.down_seq < b.down_seq "
                       "AND a.applied_ms > b.applied_ms"),
              0);
    // Stock: never negative, nothing picked, and reserved is exactly what live orders hold.
    EXPECT_EQ(site.Int("SELECT COUNT(*) FROM stock_lots WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand"), 0);
    EXPECT_EQ(site.Int("SELECT SUM(on_hand) FROM stock"), 2 * kSeedUnits);
    json hq_orders = HqGet("/v1/sites/" + s.id + "/orders");
    ASSERT_TRUE(hq_orders.is_object());
    std::map<std::string, std::string> hq_status;
    for (const auto& o : hq_orders["orders"]) hq_status[o["order_id"].get<std::string>()] = o["status"].get<std::string>();
    int64_t reserved_expected = 0;
    int accepted = 0, refused = 0;
    for (const auto& [id, o] : orders) {
      if (o.site != i) continue;
      int64_t qty = 0;
      for (const auto& l : o.lines) qty += l.qty;
      const std::string status = site.Text("SELECT status FROM orders WHERE order_id = '" + id + "'");
      const int64_t held = site.Int("SELECT IFNULL(SUM(qty), 0) FROM reservations WHERE order_id = '" + id + "'");
      if (o.hq) {
        ASSERT_TRUE(status == "accepted" || status == "refused") << id << ": " << status;
        EXPECT_EQ(hq_status[id], status) << id << ": HQ and the site disagree";
        if (status == "accepted") {
          EXPECT_EQ(held, qty) << id;
          reserved_expected += qty;
          ++accepted;
        } else {
          EXPECT_EQ(held, 0) << id;
          EXPECT_FALSE(site.Text("SELECT reason FROM orders WHERE order_id = '" + id + "'").empty()) << id;
          ++refused;
        }
      } else {
        // A local order the stock cannot cover is committed as refused, with its reason.
        ASSERT_TRUE(status == "created" || status == "refused") << id << ": " << status;
        EXPECT_EQ(hq_status[id], status) << id << ": HQ and the site disagree";
        if (status == "created") {
          EXPECT_EQ(held, qty) << id;
          reserved_expected += qty;
          ++accepted;
        } else {
          EXPECT_EQ(held, 0) << id;
          ++refused;
        }
      }
    }
    EXPECT_EQ(site.Int("SELECT SUM(reserved) FROM stock"), reserved_expected);
    // The race was a race: both outcomes happened at every site.
    EXPECT_GT(accepted, 0);
    EXPECT_GT(refused, 0);
  }
  RecordProperty("hq_retries", hq_retries.load());
}

}  // namespace
}  // namespace freshsync::testing
