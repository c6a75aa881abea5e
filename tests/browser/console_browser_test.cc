// The HQ web console end to end, in a real browser: Mosquitto + edged + hubd (SiteHub,
// tests/support/site_hub.h), a site seeded with a truck, stock and an order, then
// console_test.mjs drives Debian's chromium through puppeteer-core: it opens
// /console/#token=..., publishes at the site and requires each change in the DOM within 1 s.
// Afterwards the token must appear nowhere in what hubd wrote: its log and its database
// (audit rows included).
#include <httplib.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <iostream>
#include <string>

#include <gtest/gtest.h>

#include "tests/support/harness.h"
#include "tests/support/site_hub.h"

namespace freshsync::testing {
namespace {

bool FileContains(const std::string& path, const std::string& needle) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return bytes.find(needle) != std::string::npos;
}

// What the page should use live: "stream" when hubd answers GET /v1/stream (the head is
// enough), "poll" (GET /v1/changes) when it says 404, as a hub without the stream does.
std::string LiveMode(SiteHub& sh) {
  httplib::SSLClient c("127.0.0.1", sh.hub_port());
  c.set_ca_cert_path(sh.pki().ca_cert().c_str());
  c.enable_server_certificate_verification(true);
  c.set_bearer_token_auth(SiteHub::kToken);
  c.set_connection_timeout(2);
  c.set_read_timeout(5);
  int status = 0;
  c.Get("/v1/stream", {{"Accept", "text/event-stream"}}, [&](const httplib::Response& r) {
    status = r.status;
    return false;  // the head says it; the stream itself never ends
  }, [](const char*, size_t) { return false; });
  return status == 404 ? "poll" : "stream";
}

TEST(ConsoleBrowserTest, LiveChangesReachTheDomWithinASecond) {
  const std::string node_modules = std::string(FRESHSYNC_BROWSER_DIR) + "/node_modules/puppeteer-core";
  ASSERT_TRUE(std::filesystem::exists(node_modules))
      << "puppeteer-core is not installed: run `npm ci` in tests/browser (scripts/test.sh does)";
  ASSERT_TRUE(std::filesystem::exists("/usr/bin/chromium")) << "Debian's chromium is missing (scripts/install-deps.sh)";

  SiteHubOptions options;
  // A short for_s (message time): the second out-of-range reading 5 s later opens the alert.
  options.edge_toml = "[[coldchain.rule]]\nsensors = \"cold-*\"\nmin_c = 0.0\nmax_c = 4.0\nfor_s = 2\n";
  SiteHub sh(options);
  ASSERT_TRUE(sh.ok());
  ASSERT_TRUE(sh.site().StartEdged()) << sh.site().log();

  // The initial state the page reads from the GET routes: a truck, stock, a created order.
  auto pub = sh.site().NewPublisher("console-seed");
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  pub->Publish({"fs/vehicles/truck-01/gps", "{\"seq\":1,\"ts\":" + std::to_string(now - 60000) +
                                                ",\"lat\":31.2304,\"lon\":121.4737,\"speed_kmh\":20,\"hdop\":1.0}"});
  pub->Publish({"fs/stock/movements", R"({"id":"r-kale","sku":"kale","delta":40,"reason":"receive","lot":"K1","expiry":"2030-01-09"})"});
  pub->Publish({"fs/orders/status", "{\"order_id\":\"o-console-1\",\"status\":\"created\",\"ts\":" + std::to_string(now - 30000) +
                                        ",\"lines\":[{\"sku\":\"kale\",\"qty\":3}]}"});
  pub->Flush();
  // Three messages, and the records they make (the order's reservation moves stock too).
  ASSERT_TRUE(sh.site().WaitInt("SELECT COUNT(*) FROM orders", 1)) << sh.site().log();
  ASSERT_TRUE(WaitFor([&] { return sh.EdgeBacklog() == 0 && sh.HubRecords() == sh.EdgeLastSeq(); }, std::chrono::seconds(60)))
      << sh.site().log();

  const std::string shots = std::getenv("FRESHSYNC_CONSOLE_SCREENSHOTS") ? std::getenv("FRESHSYNC_CONSOLE_SCREENSHOTS")
                                                                          : sh.dir().File("screenshots");
  const std::string live = LiveMode(sh);
  ChildProcess node({"/usr/bin/node", std::string(FRESHSYNC_BROWSER_DIR) + "/console_test.mjs"}, sh.dir().File("browser.log"),
                    {{"HUB_URL", "https://127.0.0.1:" + std::to_string(sh.hub_port())},
                     {"TOKEN", SiteHub::kToken},
                     {"MQTT_PORT", std::to_string(sh.site().broker().port())},
                     {"SITE", SiteHub::kSiteId},
                     {"VEHICLE", "truck-01"},
                     {"ORDER_ID", "o-console-1"},
                     {"SCREENSHOTS", shots},
                     {"HOME", sh.dir().path()}, {"LIVE", live}});  // chromium's profile and crash folders
  ASSERT_TRUE(node.Start());
  const int rc = node.Wait(std::chrono::seconds(120));
  const std::string out = ReadFile(sh.dir().File("browser.log"));
  std::cout << out;
  EXPECT_EQ(rc, 0) << out << "\nhubd:\n" << sh.HubLog();

  // The token went only into Authorization headers: nothing hubd logged or stored has it,
  // although its audit rows record every pull the page made (path and query).
  sh.KillHubd();
  EXPECT_FALSE(FileContains(sh.dir().File("hubd.log"), SiteHub::kToken));
  bool audited_stream = false;
  for (const auto& f : std::filesystem::directory_iterator(sh.dir().path())) {
    if (f.path().filename().string().rfind("hub.db", 0) != 0) continue;  // hub.db, -wal, -shm
    EXPECT_FALSE(FileContains(f.path().string(), SiteHub::kToken)) << f.path();
    audited_stream = audited_stream || FileContains(f.path().string(), "/v1/sites/test-site/orders");
  }
  EXPECT_TRUE(audited_stream) << "the page's pulls are in the audit rows";
}

}  // namespace
}  // namespace freshsync::testing
