// The HQ web console end to end, in a real browser: Mosquitto + edged + hubd (SiteHub,
// tests/support/site_hub.h), a site seeded with a truck, stock and an order, then
// console_test.mjs drives Debian's chromium through puppeteer-core: it opens
// /console/#token=..., publishes at the site and requires each change in the DOM within 1 s,
// the truck's trail to grow with its fixes, and fences PUT through the HQ API on the map.
// Afterwards the token must appear nowhere in what hubd wrote: its log and its database
// (audit rows included).
#include <httplib.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
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

// What hubd offers live: "stream" when it answers GET /v1/stream (the head is enough), "poll"
// when it says 404. This hubd has the stream; the page's polling, for an older hub, is tested
// by console_test.mjs with the stream refused in the browser.
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
  // The recorded fences of edge-sim's seed 7, which the recorded track below enters and leaves.
  options.edge_toml = "[geofence]\nfile = \"" + std::string(FRESHSYNC_GEOFENCE_TESTDATA) + "/sim_seed7_fences.geojson\"\n" +
                      "[[coldchain.rule]]\nsensors = \"cold-*\"\nmin_c = 0.0\nmax_c = 4.0\nfor_s = 2\n" +
                      // HQ's allotment of kale: granted from the receipt below, shown in the escrow panel.
                      "[escrow]\n\"kale\" = 10\n";
  // Map tiles from a server of the test's own (console_test.mjs starts it on this port): the
  // page must fetch them from there, past its Content-Security-Policy.
  const int tiles_port = PickFreePort();
  options.hub_toml = "[console]\ntiles_url = \"http://127.0.0.1:" + std::to_string(tiles_port) + "/tiles/{z}/{x}/{y}.png\"\n";
  SiteHub sh(options);
  ASSERT_TRUE(sh.ok());
  ASSERT_TRUE(sh.site().StartEdged()) << sh.site().log();

  // The initial state the page reads from the GET routes: a truck that has passed the depot
  // and three drop points (the first 800 fixes of the recorded track, moved to end a minute
  // ago, so that its geofence events are of the last 24 h), stock, a created order.
  auto pub = sh.site().NewPublisher("console-seed");
  const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::ifstream track(std::string(FRESHSYNC_GEOFENCE_TESTDATA) + "/sim_seed7_track.csv");
  std::string line;
  int gps_seq = 0;
  const int64_t shift = now - 60000 - (1767225600100 + 799 * 5000);
  while (std::getline(track, line) && gps_seq < 800) {
    if (line.empty() || line[0] == '#') continue;
    std::stringstream ss(line);
    std::string v, ts, lat, lon, hdop;
    std::getline(ss, v, ',');
    std::getline(ss, ts, ',');
    std::getline(ss, lat, ',');
    std::getline(ss, lon, ',');
    std::getline(ss, hdop, ',');
    pub->Publish({"fs/vehicles/" + v + "/gps", "{\"seq\":" + std::to_string(++gps_seq) + ",\"ts\":" +
                                                   std::to_string(std::stoll(ts) + shift) + ",\"lat\":" + lat + ",\"lon\":" + lon +
                                                   ",\"hdop\":" + hdop + "}"});
  }
  ASSERT_EQ(gps_seq, 800);
  pub->Publish({"fs/stock/movements", R"({"id":"r-kale","sku":"kale","delta":40,"reason":"receive","lot":"K1","expiry":"2030-01-09"})"});
  pub->Publish({"fs/orders/status", "{\"order_id\":\"o-console-1\",\"status\":\"created\",\"ts\":" + std::to_string(now - 30000) +
                                        ",\"lines\":[{\"sku\":\"kale\",\"qty\":3}]}"});
  pub->Flush();
  // Every message, and the records they make (the order's reservation moves stock too).
  ASSERT_TRUE(sh.site().WaitInt("SELECT COUNT(*) FROM orders", 1)) << sh.site().log();
  ASSERT_TRUE(WaitFor([&] { return sh.EdgeBacklog() == 0 && sh.HubRecords() == sh.EdgeLastSeq(); }, std::chrono::seconds(60)))
      << sh.site().log();

  const std::string shots = std::getenv("FRESHSYNC_CONSOLE_SCREENSHOTS") ? std::getenv("FRESHSYNC_CONSOLE_SCREENSHOTS")
                                                                          : sh.dir().File("screenshots");
  const std::string live = LiveMode(sh);
  ASSERT_EQ(live, "stream") << "hubd does not answer GET /v1/stream";
  ChildProcess node({"/usr/bin/node", std::string(FRESHSYNC_BROWSER_DIR) + "/console_test.mjs"}, sh.dir().File("browser.log"),
                    {{"HUB_URL", "https://127.0.0.1:" + std::to_string(sh.hub_port())},
                     {"TOKEN", SiteHub::kToken},
                     {"MQTT_PORT", std::to_string(sh.site().broker().port())},
                     {"SITE", SiteHub::kSiteId},
                     {"VEHICLE", "truck-01"},
                     {"GPS_SEQ", std::to_string(gps_seq + 1)},
                     {"ORDER_ID", "o-console-1"},
                     {"SCREENSHOTS", shots},
                     {"TILES_PORT", std::to_string(tiles_port)},
                     {"WRITER_TOKEN", SiteHub::kWriterToken},
                     {"HUB_CA", sh.pki().ca_cert()},
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
