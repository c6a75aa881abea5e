// Escrow stock end to end (issue 17, docs/escrow.md): real Mosquitto, edged and hubd over
// mutual TLS, a FaultProxy on the site's link. The site grants an allotment in [escrow]; with
// the link cut, HQ's orders within it are accepted by the hub at once, the one beyond it is
// left to the site, and local sales cannot take the allotment; with the link back, the site
// honours every hub-accepted order and the hub's view matches. Then the same with kill -9 of
// edged and of hubd while HQ's orders arrive, with and without the link.

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
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

constexpr const char* kSiteId = "escrow-1";

class EscrowE2E : public HubdTest {
 protected:
  // The site's [escrow] allotment of veg-001.
  virtual int Grant() const { return 5; }

  // hubd from the shared fixture (tests/hub/hubd_fixture.h), then the proxy and the site.
  void SetUp() override {
    read_timeout_s_ = 10;  // as the test's own HQ client had
    ASSERT_NO_FATAL_FAILURE(HubdTest::SetUp());
    const auto client = pki_.Client(kSiteId);
    proxy_ = std::make_unique<FaultProxy>("127.0.0.1", port_);
    ASSERT_TRUE(proxy_->Start());
    SiteOptions o;
    o.site_id = kSiteId;
    o.extra_toml = "[hub]\nurl = \"https://127.0.0.1:" + std::to_string(proxy_->port()) + "\"\nca = \"" + pki_.ca_cert() +
                   "\"\ncert = \"" + client.cert + "\"\nkey = \"" + client.key +
                   "\"\nbatch_max_records = 500\ntimeout_ms = 3000\nbackoff_initial_ms = 50\nbackoff_max_ms = 1000\n"
                   "reconcile_interval_s = 2\n[downstream]\nwait_ms = 2000\n[escrow]\n\"veg-001\" = " + std::to_string(Grant()) + "\n";
    site_ = std::make_unique<EdgeSite>(o);
    ASSERT_TRUE(site_->StartEdged()) << site_->log();
    pub_ = site_->NewPublisher("escrow-pub");
  }

  void TearDown() override {
    pub_.reset();
    site_.reset();
    HubdTest::TearDown();
  }

  json HqOrder(const std::string& id, int qty) {
    auto r = Hq(kWriterToken)->Post(std::string("/v1/sites/") + kSiteId + "/orders",
                        json{{"order_id", id}, {"lines", {{{"sku", "veg-001"}, {"qty", qty}}}}}.dump(), "application/json");
    EXPECT_TRUE(r);
    if (!r) return json();
    EXPECT_EQ(r->status, 202) << r->body;
    return json::parse(r->body, nullptr, false);
  }

  // The site's one allotment as HQ sees it; {} until there is one (so value() never throws).
  json Escrow() {
    auto r = Hq(kWriterToken)->Get(std::string("/v1/sites/") + kSiteId + "/escrow");
    if (!r || r->status != 200) return json::object();
    json j = json::parse(r->body, nullptr, false);
    return j.is_object() && j["escrow"].is_array() && !j["escrow"].empty() ? j["escrow"][0] : json::object();
  }

  void LocalOrder(const std::string& id, int qty) {
    pub_->PublishReliably({"fs/orders/status", R"({"order_id":")" + id + R"(","status":"created","ts":1764000000000,"lines":[{"sku":"veg-001","qty":)" +
                                                   std::to_string(qty) + "}]}"});
  }

  std::string Status(const std::string& order) {
    return std::to_string(site_->Int("SELECT CASE status WHEN 'accepted' THEN 1 WHEN 'created' THEN 2 WHEN 'refused' THEN 3 ELSE 0 END "
                                     "FROM orders WHERE order_id = '" + order + "'"));
  }

  std::unique_ptr<FaultProxy> proxy_;
  std::unique_ptr<EdgeSite> site_;
  std::unique_ptr<Publisher> pub_;
};

TEST_F(EscrowE2E, HubAcceptedOrdersDuringAnOutageAreHonouredWhenTheLinkReturns) {
  pub_->PublishReliably({"fs/stock/movements",
                         R"({"id":"seed-1","sku":"veg-001","delta":10,"reason":"receive","lot":"L1","ts":1764000000000})"});
  // The grant reaches the hub as the site's ESCROW record.
  ASSERT_TRUE(WaitFor([&] { return Escrow().value("granted", 0) == 5; }, std::chrono::seconds(30))) << site_->log();
  EXPECT_EQ(Escrow()["free"], 5);

  proxy_->Cut();
  json a = HqOrder("hq-e1", 2);
  EXPECT_EQ(a["decided_by"], "hub");
  EXPECT_EQ(a["status"], "accepted");
  EXPECT_EQ(HqOrder("hq-e2", 2)["decided_by"], "hub");
  json beyond = HqOrder("hq-e3", 2);  // 1 left
  EXPECT_EQ(beyond["decided_by"], "site");
  EXPECT_EQ(beyond["status"], "pending");
  EXPECT_EQ(Escrow()["used"], 4);
  EXPECT_EQ(Escrow()["free"], 1);
  // Local sales meanwhile: the free 5 go, the allotment does not.
  LocalOrder("pos-1", 5);
  LocalOrder("pos-2", 1);
  ASSERT_TRUE(site_->WaitInt("SELECT count(*) FROM orders WHERE order_id IN ('pos-1', 'pos-2')", 2, std::chrono::seconds(20)));
  EXPECT_EQ(Status("pos-1"), "2");  // created: reserved from the free stock
  EXPECT_EQ(Status("pos-2"), "3");
  EXPECT_EQ(site_->Int("SELECT IFNULL(SUM(qty), 0) FROM reservations WHERE order_id = char(31) || 'escrow'"), 5);

  // The link is down: none of HQ's orders has reached the site yet.
  EXPECT_EQ(site_->Int("SELECT count(*) FROM orders WHERE order_id LIKE 'hq-%'"), 0);
  proxy_->Pass();
  ASSERT_TRUE(site_->WaitInt("SELECT count(*) FROM orders WHERE order_id IN ('hq-e1', 'hq-e2', 'hq-e3')", 3, std::chrono::seconds(60)))
      << site_->log();
  EXPECT_EQ(Status("hq-e1"), "1");
  EXPECT_EQ(Status("hq-e2"), "1");
  EXPECT_EQ(Status("hq-e3"), "3");  // the site decided: no free stock
  EXPECT_EQ(site_->Int("SELECT IFNULL(SUM(qty), 0) FROM reservations WHERE order_id IN ('hq-e1', 'hq-e2')"), 4);
  EXPECT_EQ(site_->Int("SELECT on_hand FROM stock WHERE sku = 'veg-001'"), 10);
  EXPECT_EQ(site_->Int("SELECT reserved FROM stock WHERE sku = 'veg-001'"), 10);
  // HQ hears the site's decisions on the orders' records, and the allotment is as it said.
  auto hq_status = [&](const std::string& id) {
    auto r = Hq(kWriterToken)->Get(std::string("/v1/sites/") + kSiteId + "/orders");
    if (!r || r->status != 200) return std::string();
    json j = json::parse(r->body, nullptr, false);
    if (!j.is_object() || !j["orders"].is_array()) return std::string();
    for (const auto& o : j["orders"])
      if (o.value("order_id", "") == id) return o.value("status", "");
    return std::string();
  };
  ASSERT_TRUE(WaitFor([&] { return hq_status("hq-e1") == "accepted" && hq_status("hq-e2") == "accepted" && hq_status("hq-e3") == "refused"; },
                      std::chrono::seconds(30)));
  EXPECT_EQ(Escrow()["granted"], 5);
  EXPECT_EQ(Escrow()["used"], 4);
  EXPECT_EQ(Escrow()["free"], 1);
}

// A larger allotment, so that HQ's orders straddle it while the daemons die.
class EscrowKillsE2E : public EscrowE2E {
 protected:
  int Grant() const override { return 30; }

  // The site's stock of veg-001 (on hand, reserved), read in one statement (one snapshot);
  // {-1, -1} when the database did not answer.
  std::pair<int64_t, int64_t> SiteStock() {
    const std::string row = site_->Text("SELECT IFNULL(MAX(on_hand), 0) || ' ' || IFNULL(MAX(reserved), 0) FROM stock WHERE sku = 'veg-001'");
    const size_t space = row.find(' ');
    if (space == std::string::npos) return {-1, -1};
    return {std::stoll(row.substr(0, space)), std::stoll(row.substr(space + 1))};
  }
};

// kill -9 of edged and of hubd while HQ posts orders (each retried with the same body until
// it gets its 202, as an HQ system would), with the link up and cut; local sales meanwhile.
// Afterwards: stock never went negative, nothing was oversold, every hub-accepted order is
// accepted at the site exactly once (its reservation is its lines, once; the hub's `used` is
// their sum), and HQ's unused allotment + the site's free stock <= on hand, checked whenever
// the link was cut (no rebalancing in flight between the two reads) and at the end.
TEST_F(EscrowKillsE2E, KillsOfEdgedAndHubdDuringHqOrdersKeepEveryInvariant) {
  constexpr int kReceived = 60, kOrders = 48;
  pub_->PublishReliably({"fs/stock/movements", R"({"id":"seed-1","sku":"veg-001","delta":)" + std::to_string(kReceived) +
                                                   R"(,"reason":"receive","lot":"L1","ts":1764000000000})"});
  ASSERT_TRUE(WaitFor([&] { return Escrow().value("granted", 0) == Grant(); }, std::chrono::seconds(30))) << site_->log();

  // HQ's orders, one at a time, each retried until answered (hubd may be dead).
  std::mutex mu;
  std::map<std::string, int> hub_accepted;  // order -> qty
  std::vector<std::string> errors;
  std::atomic<int> answered{0}, retries{0};
  std::atomic<bool> hq_done{false};
  std::thread hq([&] {
    for (int i = 0; i < kOrders; ++i) {
      const std::string id = "hq-k" + std::to_string(i);
      const int qty = 1 + i % 2;
      const std::string body = json{{"order_id", id}, {"lines", {{{"sku", "veg-001"}, {"qty", qty}}}}}.dump();
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      for (;;) {
        auto r = Hq(kWriterToken)->Post(std::string("/v1/sites/") + kSiteId + "/orders", body, "application/json");
        if (r && r->status == 202) {
          json a = json::parse(r->body, nullptr, false);
          std::lock_guard<std::mutex> l(mu);
          if (a.value("decided_by", "") == "hub") hub_accepted[id] = qty;
          break;
        }
        if (r && r->status != 503) {
          std::lock_guard<std::mutex> l(mu);
          errors.push_back(id + ": " + std::to_string(r->status) + " " + r->body);
          break;
        }
        if (std::chrono::steady_clock::now() > deadline) {
          std::lock_guard<std::mutex> l(mu);
          errors.push_back(id + ": no answer within 60 s");
          break;
        }
        ++retries;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      ++answered;
      std::this_thread::sleep_for(std::chrono::milliseconds(40));
    }
    hq_done = true;
  });
  // The site's own invariant, sampled throughout from its database.
  std::atomic<int> samples{0};
  std::vector<std::string> site_violations;
  std::thread watch([&] {
    for (; !hq_done; std::this_thread::sleep_for(std::chrono::milliseconds(20))) {
      const auto [on_hand, reserved] = SiteStock();
      if (on_hand == -1 && reserved == -1) continue;  // no answer (edged restarting): no sample
      if (on_hand < 0 || reserved < 0 || reserved > on_hand) {
        std::lock_guard<std::mutex> l(mu);
        site_violations.push_back("on_hand " + std::to_string(on_hand) + ", reserved " + std::to_string(reserved));
      }
      ++samples;
    }
  });
  auto wait_answered = [&](int n) { return WaitFor([&] { return answered >= n || hq_done; }, std::chrono::seconds(90)); };
  int cut_checks = 0;
  // With the link cut nothing moves between the sides, so two reads in turn are one moment.
  auto check_cut = [&](const std::string& when) {
    const int64_t hub_free = Escrow().value("free", int64_t{-1});
    const auto [on_hand, reserved] = SiteStock();
    EXPECT_GE(hub_free, 0) << when;
    EXPECT_LE(hub_free + (on_hand - reserved), on_hand) << when << ": hub free " << hub_free << ", site free " << on_hand - reserved;
    ++cut_checks;
  };

  int local = 0;
  auto local_order = [&] { LocalOrder("pos-k" + std::to_string(++local), 3); };
  // 1. edged dies with the link up, HQ's orders arriving; back a second later.
  ASSERT_TRUE(wait_answered(6));
  local_order();
  site_->KillEdged();
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  ASSERT_TRUE(site_->StartEdged()) << site_->log();
  // 2. hubd dies with the link up.
  ASSERT_TRUE(wait_answered(14));
  hubd_.Kill();
  local_order();
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  ASSERT_NO_FATAL_FAILURE(StartHubd());
  // 3. The link is cut; hubd dies and comes back, then edged, with HQ's orders going on.
  ASSERT_TRUE(wait_answered(24));
  proxy_->Cut();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  check_cut("cut");
  hubd_.Kill();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_NO_FATAL_FAILURE(StartHubd());
  check_cut("cut, after the hubd kill");
  ASSERT_TRUE(wait_answered(32));
  local_order();
  site_->KillEdged();
  ASSERT_TRUE(site_->StartEdged()) << site_->log();
  check_cut("cut, after the edged kill");
  // 4. Both die at once with the link back.
  ASSERT_TRUE(wait_answered(38));
  proxy_->Pass();
  ASSERT_TRUE(wait_answered(40));
  hubd_.Kill();
  site_->KillEdged();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_TRUE(site_->StartEdged()) << site_->log();
  ASSERT_NO_FATAL_FAILURE(StartHubd());
  hq.join();
  watch.join();
  for (const auto& e : errors) ADD_FAILURE() << "HQ order " << e;
  for (const auto& v : site_violations) ADD_FAILURE() << "site stock: " << v;
  EXPECT_GT(samples.load(), 10);
  EXPECT_GT(retries.load(), 0) << "no HQ order met a dead hubd: the kills proved nothing";
  ASSERT_GT(hub_accepted.size(), 5u);
  ASSERT_LT(static_cast<int>(hub_accepted.size()), kOrders) << "every order fitted the allotment: the site never decided one";

  // Every HQ order reaches the site and is decided there.
  ASSERT_TRUE(site_->WaitInt("SELECT count(*) FROM orders WHERE order_id LIKE 'hq-k%' AND status IN ('accepted', 'refused')", kOrders,
                             std::chrono::seconds(90)))
      << site_->log();
  int hub_units = 0;
  for (const auto& [id, qty] : hub_accepted) {
    hub_units += qty;
    EXPECT_EQ(Status(id), "1") << id << " was accepted by the hub and not honoured";
    EXPECT_EQ(site_->Int("SELECT IFNULL(SUM(qty), 0) FROM reservations WHERE order_id = '" + id + "'"), qty) << id;
  }
  // No oversell: the site's orders hold at most what was received, and exactly what is reserved.
  const auto [on_hand, reserved] = SiteStock();
  EXPECT_EQ(on_hand, kReceived);
  EXPECT_LE(reserved, on_hand);
  EXPECT_EQ(site_->Int("SELECT IFNULL(SUM(qty), 0) FROM reservations"), reserved);
  // The hub took each accepted order once, and its view settles on the site's.
  ASSERT_TRUE(WaitFor([&] { return Escrow().value("used", -1) == hub_units; }, std::chrono::seconds(30)))
      << "hub used " << Escrow().value("used", -1) << ", hub-accepted units " << hub_units;
  const int64_t hub_free = Escrow().value("free", int64_t{-1});
  EXPECT_GE(hub_free, 0);
  EXPECT_LE(hub_free + (on_hand - reserved), on_hand);
  EXPECT_EQ(cut_checks, 3);
  std::printf("%zu of %d HQ orders accepted by the hub (%d units), %d retried calls, %d site samples; on hand %lld, reserved %lld\n",
              hub_accepted.size(), kOrders, hub_units, retries.load(), samples.load(), static_cast<long long>(on_hand),
              static_cast<long long>(reserved));
}

}  // namespace
}  // namespace freshsync::testing
