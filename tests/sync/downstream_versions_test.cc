// Issue 14, "A fleet on mixed versions", end to end with real hubd, Mosquitto and edged
// (tests/support/site_hub.h):
//   - a site announcing an older capability set (`[downstream] kinds = ["order", "cancel"]`)
//     gets HQ's orders but never its catalog or fence commands, and its position still moves
//     past them (the lane's pending goes to 0);
//   - a site on a release that never pulls (`[downstream] enabled = false`) keeps syncing
//     upstream while HQ posts for it; its commands stay pending, visible in /downstream.
#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/site_hub.h"

namespace freshsync::testing {
namespace {

using std::chrono::seconds;

const std::string kSitePath = std::string("/v1/sites/") + SiteHub::kSiteId;
constexpr char kFences[] =
    R"({"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"depot","radius_m":150},)"
    R"("geometry":{"type":"Point","coordinates":[121.5,31.2]}}]})";

std::string Order(const std::string& id) { return R"({"order_id":")" + id + R"(","lines":[{"sku":"apple","qty":2}]})"; }

void Seed(Site& site) {
  auto pub = site.NewPublisher("versions-pub");
  pub->PublishReliably({"fs/stock/movements", R"({"id":"seed","sku":"apple","delta":50,"reason":"receive","ts":1764000000000})"});
  ASSERT_TRUE(site.WaitInt("SELECT IFNULL(SUM(on_hand), 0) FROM stock", 50, seconds(30))) << site.log();
}

TEST(DownstreamVersions, OlderCapabilitySetGetsOrdersOnlyAndItsPositionMovesPastTheRest) {
  SiteHubOptions o;
  o.edge_toml = "[downstream]\nwait_ms = 500\nkinds = [\"order\", \"cancel\"]\n";
  SiteHub sh(o);
  ASSERT_TRUE(sh.ok()) << sh.HubLog();
  ASSERT_TRUE(sh.site().StartEdged()) << sh.site().log();
  Seed(sh.site());
  // The hub knows the site once it has pulled: the catalog then fans out to its log too.
  ASSERT_TRUE(WaitFor([&] { return sh.HqJson(kSitePath + "/downstream").is_object(); }, seconds(20)));

  ASSERT_EQ(sh.HqWrite("PUT", "/v1/catalog/apple", R"({"name":"Apple","unit":"kg","price_cents":250})"), 202);
  ASSERT_EQ(sh.HqWrite("PUT", kSitePath + "/fences", kFences), 202);
  ASSERT_EQ(sh.HqWrite("POST", kSitePath + "/orders", Order("hq-1")), 202);
  ASSERT_EQ(sh.HqWrite("PUT", "/v1/catalog/pear", R"({"name":"Pear","unit":"kg","price_cents":300})"), 202);

  ASSERT_TRUE(sh.site().WaitInt("SELECT count(*) FROM orders WHERE status = 'accepted'", 1, seconds(30))) << sh.site().log();
  ASSERT_TRUE(WaitFor(
      [&] {
        const auto lane = sh.HqJson(kSitePath + "/downstream");
        return lane.is_object() && lane["last_seq"] == 4 && lane["pending"] == 0;
      },
      seconds(30)))
      << sh.HqJson(kSitePath + "/downstream").dump();
  EXPECT_EQ(sh.site().Int("SELECT value FROM sync_state WHERE name = 'down_applied_seq'"), 4);
  EXPECT_EQ(sh.site().Int("SELECT count(*) FROM down_applied"), 1);  // the order only
  EXPECT_EQ(sh.site().Int("SELECT count(*) FROM catalog"), 0);
  EXPECT_EQ(sh.site().Int("SELECT count(*) FROM hq_rule_sets"), 0);
  EXPECT_EQ(sh.site().Int("SELECT reserved FROM stock WHERE sku = 'apple'"), 2);
  sh.site().StopEdged();
}

TEST(DownstreamVersions, SiteThatNeverPullsKeepsSyncingUpstreamAndItsCommandsStayPending) {
  SiteHubOptions o;
  o.edge_toml = "[downstream]\nenabled = false\n";
  SiteHub sh(o);
  ASSERT_TRUE(sh.ok()) << sh.HubLog();
  ASSERT_TRUE(sh.site().StartEdged()) << sh.site().log();
  Seed(sh.site());
  ASSERT_EQ(sh.HqWrite("POST", kSitePath + "/orders", Order("hq-1")), 202);
  ASSERT_EQ(sh.HqWrite("POST", kSitePath + "/orders", Order("hq-2")), 202);

  // Upstream as before: local traffic reaches the hub, every record once.
  auto pub = sh.site().NewPublisher("versions-local");
  pub->PublishReliably({"fs/orders/status", R"({"order_id":"loc-1","status":"created","ts":1764000000001,)"
                                            R"("lines":[{"sku":"apple","qty":3}]})"});
  ASSERT_TRUE(sh.site().WaitInt("SELECT count(*) FROM orders", 1, seconds(30))) << sh.site().log();
  const int64_t last = sh.EdgeLastSeq();
  ASSERT_TRUE(sh.WaitSynced(last, seconds(60))) << sh.site().log();
  EXPECT_EQ(sh.CheckFeedExactlyOnce(last), "");

  const auto lane = sh.HqJson(kSitePath + "/downstream");
  EXPECT_EQ(lane["last_seq"], 2);
  EXPECT_EQ(lane["delivered_seq"], 0);
  EXPECT_EQ(lane["pending"], 2);
  EXPECT_EQ(sh.site().Int("SELECT count(*) FROM down_applied"), 0);
  EXPECT_EQ(sh.site().Int("SELECT reserved FROM stock WHERE sku = 'apple'"), 3);
  sh.site().StopEdged();
}

}  // namespace
}  // namespace freshsync::testing
