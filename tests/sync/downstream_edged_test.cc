// edged's downstream end to end on the site side: real Mosquitto and edged (ingest, sync agent,
// downstream puller over mutual TLS), and an in-memory hub behind a real HTTPS server that
// verifies the site's client certificate (FakeHubTransport for batches up, FakeDownstreamHub
// for HQ's commands; tests/support/sync_fakes.h). An HQ order appears retained on
// {root}/orders/{id}/state, a catalog item on {root}/catalog/{sku}, the order's ORDER record
// reaches the hub, and edgectl status reports the applied seq. The real hubd joins in
// tests/hub once the hub side of downstream lands.
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "freshsync.pb.h"
#include "tests/ingest/site.h"
#include "tests/support/harness.h"
#include "tests/support/sync_fakes.h"

namespace freshsync::testing {
namespace {

using std::chrono::milliseconds;
constexpr char kSiteId[] = "test-site";

// The in-memory hub on HTTPS with client-certificate verification: each request becomes a
// sync::HttpRequest for the fake that speaks its route.
class HttpsFakeHub {
 public:
  explicit HttpsFakeHub(TestPki& pki)
      : server_(pki.server().cert.c_str(), pki.server().key.c_str(), pki.ca_cert().c_str()) {
    up.site = kSiteId;
    down.site = kSiteId;
    auto handle = [this](const httplib::Request& req, httplib::Response& res) {
      sync::HttpRequest r;
      r.method = req.method;
      r.url = "https://127.0.0.1" + req.path;
      char sep = '?';
      for (const auto& [k, v] : req.params) {
        r.url += sep + k + "=" + v;
        sep = '&';
      }
      r.body = req.body;
      sync::Transport& t = req.path.find("/downstream/") != std::string::npos ? static_cast<sync::Transport&>(down) : up;
      auto a = t.Send(r);
      if (!a.ok()) {
        res.status = 503;
        return;
      }
      res.status = a->status;
      res.set_content(a->body, "application/x-protobuf");
    };
    server_.Get(".*", handle);
    server_.Post(".*", handle);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~HttpsFakeHub() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return port_; }

  FakeHubTransport up;
  FakeDownstreamHub down;

 private:
  httplib::SSLServer server_;
  int port_ = 0;
  std::thread thread_;
};

// Whether an ORDER record for `id` with `status` reached the in-memory hub (its keys).
bool HubHolds(FakeHubTransport& hub, const std::string& key) {
  std::lock_guard<std::mutex> lock(hub.mu);
  for (const auto& [seq, h] : hub.held)
    if (h.entity == v1::ORDER && h.key == key) return true;
  return false;
}

TEST(DownstreamEdged, HqOrderAndCatalogArePublishedRetainedAndTheOrderGoesUp) {
  signal(SIGPIPE, SIG_IGN);
  TempDir dir;
  std::filesystem::create_directories(dir.File("pki"));
  TestPki pki(dir.File("pki"));
  ASSERT_TRUE(pki.Init());
  const auto client = pki.Client(kSiteId);
  HttpsFakeHub hub(pki);
  ASSERT_GT(hub.port(), 0);
  Site site("[hub]\nurl = \"https://127.0.0.1:" + std::to_string(hub.port()) + "\"\nca = \"" + pki.ca_cert() + "\"\ncert = \"" +
            client.cert + "\"\nkey = \"" + client.key +
            "\"\ntimeout_ms = 3000\nbackoff_initial_ms = 50\nbackoff_max_ms = 500\n[downstream]\nwait_ms = 300\n");
  ASSERT_TRUE(site.StartEdged()) << site.log();

  // Stock first (the site owns it), then HQ's order and a catalog item.
  auto pub = site.NewPublisher("test-pub");
  pub->PublishReliably({"fs/stock/movements", R"({"id":"mv-1","sku":"apple","delta":5,"reason":"receive","ts":1764000000000})"});
  ASSERT_TRUE(site.WaitInt("SELECT IFNULL((SELECT on_hand FROM stock WHERE sku = 'apple'), 0)", 5, std::chrono::seconds(20)))
      << site.log();
  v1::DownCommand order;
  order.set_kind(v1::DOWN_ORDER);
  order.set_command_id("order:hq-7");
  order.mutable_order()->set_order_id("hq-7");
  auto* line = order.mutable_order()->add_lines();
  line->set_sku("apple");
  line->set_qty(2);
  hub.down.Append(order);
  v1::DownCommand item;
  item.set_kind(v1::DOWN_CATALOG);
  item.set_command_id("catalog:apple:1");
  item.mutable_catalog()->set_sku("apple");
  item.mutable_catalog()->set_name("Apple");
  item.mutable_catalog()->set_unit("kg");
  item.mutable_catalog()->set_price_cents(249);
  item.mutable_catalog()->set_version(1);
  hub.down.Append(item);

  ASSERT_TRUE(site.WaitInt("SELECT IFNULL((SELECT value FROM sync_state WHERE name = 'down_applied_seq'), 0)", 2,
                           std::chrono::seconds(20)))
      << site.log();
  EXPECT_EQ(site.Text("SELECT status FROM orders WHERE order_id = 'hq-7'"), "accepted");
  EXPECT_EQ(site.Int("SELECT reserved FROM stock WHERE sku = 'apple'"), 2);

  // Retained: a subscriber that comes later still gets them.
  Subscriber states(site.broker().Uri(), "test-states", "fs/orders/+/state");
  Subscriber catalog(site.broker().Uri(), "test-catalog", "fs/catalog/#");
  ASSERT_TRUE(WaitFor([&] { return !states.Payloads().empty() && !catalog.Payloads().empty(); }, milliseconds(10000)));
  const auto state = nlohmann::json::parse(states.Payloads().front());
  EXPECT_EQ(state["order_id"], "hq-7");
  EXPECT_EQ(state["status"], "accepted");
  EXPECT_EQ(state["actor"], "hq");
  const auto cat = nlohmann::json::parse(catalog.Payloads().front());
  EXPECT_EQ(cat["sku"], "apple");
  EXPECT_EQ(cat["version"], 1);

  // Its ORDER record goes up to the hub, and the next pull acknowledges the position.
  EXPECT_TRUE(WaitFor([&] { return HubHolds(hub.up, "hq-7"); }, milliseconds(15000)));
  EXPECT_TRUE(WaitFor(
      [&] {
        std::lock_guard<std::mutex> lock(hub.down.mu);
        return !hub.down.acks.empty() && hub.down.acks.back() == 2;
      },
      milliseconds(5000)));

  // edgectl status --json carries the downstream position.
  const std::string out = dir.File("status.json");
  ASSERT_EQ(RunShell(BinDir() + "/edgectl --config " + site.config_path() + " status --json > " + out), 0);
  const auto status = nlohmann::json::parse(ReadFile(out));
  EXPECT_EQ(status["downstream"]["applied_seq"], 2);
  EXPECT_EQ(status["downstream"]["enabled"], true);
  EXPECT_EQ(status["downstream"]["catalog_items"], 1);
  site.StopEdged();
}

}  // namespace
}  // namespace freshsync::testing
