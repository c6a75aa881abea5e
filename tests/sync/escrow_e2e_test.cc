// Escrow stock end to end (issue 17, docs/escrow.md): real Mosquitto, edged and hubd over
// mutual TLS, a FaultProxy on the site's link. The site grants an allotment in [escrow]; with
// the link cut, HQ's orders within it are accepted by the hub at once, the one beyond it is
// left to the site, and local sales cannot take the allotment; with the link back, the site
// honours every hub-accepted order and the hub's view matches.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "tests/ingest/site.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/harness.h"
#include "wire/digest.h"

namespace freshsync::testing {
namespace {

using nlohmann::json;

constexpr const char* kWriterToken = "hq-writer-token-for-escrow";
constexpr const char* kSiteId = "escrow-1";

class EscrowE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);
    std::filesystem::create_directories(dir_.File("pki"));
    pki_ = std::make_unique<TestPki>(dir_.File("pki"));
    ASSERT_TRUE(pki_->Init());
    hub_port_ = PickFreePort();
    WriteFile(dir_.File("hubd.toml"), "listen = \"127.0.0.1:" + std::to_string(hub_port_) + "\"\nthreads = 4\n[tls]\nca = \"" +
                                          pki_->ca_cert() + "\"\ncert = \"" + pki_->server().cert + "\"\nkey = \"" +
                                          pki_->server().key + "\"\n[store]\npath = \"" + dir_.File("hub.db") +
                                          "\"\n[[tokens]]\nname = \"hq\"\nrole = \"writer\"\nsha256 = \"" +
                                          digest::Sha256Hex(kWriterToken) + "\"\n");
    hubd_ = ChildProcess({BinDir() + "/hubd", "--config", dir_.File("hubd.toml")}, dir_.File("hubd.log"));
    ASSERT_TRUE(hubd_.Start());
    ASSERT_TRUE(WaitFor([&] { return Hq()->Get("/healthz") != nullptr; }, std::chrono::seconds(20)));
    const auto client = pki_->Client(kSiteId);
    proxy_ = std::make_unique<FaultProxy>("127.0.0.1", hub_port_);
    ASSERT_TRUE(proxy_->Start());
    SiteOptions o;
    o.site_id = kSiteId;
    o.extra_toml = "[hub]\nurl = \"https://127.0.0.1:" + std::to_string(proxy_->port()) + "\"\nca = \"" + pki_->ca_cert() +
                   "\"\ncert = \"" + client.cert + "\"\nkey = \"" + client.key +
                   "\"\nbatch_max_records = 500\ntimeout_ms = 3000\nbackoff_initial_ms = 50\nbackoff_max_ms = 1000\n"
                   "reconcile_interval_s = 2\n[downstream]\nwait_ms = 2000\n[escrow]\n\"veg-001\" = 5\n";
    site_ = std::make_unique<Site>(o);
    ASSERT_TRUE(site_->StartEdged()) << site_->log();
    pub_ = site_->NewPublisher("escrow-pub");
  }

  void TearDown() override {
    pub_.reset();
    site_.reset();
    hubd_.Kill();
  }

  std::unique_ptr<httplib::SSLClient> Hq() {
    auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", hub_port_);
    c->set_ca_cert_path(pki_->ca_cert().c_str());
    c->enable_server_certificate_verification(true);
    c->set_bearer_token_auth(kWriterToken);
    c->set_connection_timeout(2);
    c->set_read_timeout(10);
    return c;
  }

  json HqOrder(const std::string& id, int qty) {
    auto r = Hq()->Post(std::string("/v1/sites/") + kSiteId + "/orders",
                        json{{"order_id", id}, {"lines", {{{"sku", "veg-001"}, {"qty", qty}}}}}.dump(), "application/json");
    EXPECT_TRUE(r);
    if (!r) return json();
    EXPECT_EQ(r->status, 202) << r->body;
    return json::parse(r->body, nullptr, false);
  }

  // The site's one allotment as HQ sees it; {} until there is one (so value() never throws).
  json Escrow() {
    auto r = Hq()->Get(std::string("/v1/sites/") + kSiteId + "/escrow");
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

  TempDir dir_;
  std::unique_ptr<TestPki> pki_;
  int hub_port_ = 0;
  ChildProcess hubd_;
  std::unique_ptr<FaultProxy> proxy_;
  std::unique_ptr<Site> site_;
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
    auto r = Hq()->Get(std::string("/v1/sites/") + kSiteId + "/orders");
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

}  // namespace
}  // namespace freshsync::testing
