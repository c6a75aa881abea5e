#include "common/config.h"

#include <gtest/gtest.h>

namespace freshsync {
namespace {

constexpr const char* kMinimalEdge = R"(
site = "sh-pudong-01"
[mqtt]
uri = "tcp://127.0.0.1:1883"
topic_root = "fs"
[store]
path = "/tmp/edge.db"
durability = "normal"
[metrics]
listen = "127.0.0.1:9464"
[geofence]
file = "/etc/freshsync/fences.geojson"
[[coldchain.rule]]
sensors = "cold-*"
min_c = 0.0
max_c = 4.0
for_s = 300
[hub]
url = "https://hub.example:8443"
ca = "/etc/freshsync/ca.crt"
cert = "/etc/freshsync/site.crt"
key = "/etc/freshsync/site.key"
)";

TEST(EdgeConfigTest, ParsesTheDesignExample) {
  auto c = ParseEdgeConfig(kMinimalEdge);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->site, "sh-pudong-01");
  EXPECT_EQ(c->mqtt.client_id, "edged-sh-pudong-01");
  EXPECT_EQ(c->store.durability, Durability::kNormal);
  ASSERT_EQ(c->coldchain_rules.size(), 1u);
  EXPECT_EQ(c->coldchain_rules[0].for_s, 300);
  ASSERT_TRUE(c->hub.has_value());
  EXPECT_EQ(c->hub->url, "https://hub.example:8443");
  EXPECT_EQ(c->store.outbox_retention_h, 72);
}

struct BadCase {
  std::string replace_from;
  std::string replace_to;
  std::string expected_key;
};

class EdgeConfigErrorTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(EdgeConfigErrorTest, NamesTheKey) {
  std::string text = kMinimalEdge;
  const auto& p = GetParam();
  const auto pos = text.find(p.replace_from);
  ASSERT_NE(pos, std::string::npos) << p.replace_from;
  text.replace(pos, p.replace_from.size(), p.replace_to);
  auto c = ParseEdgeConfig(text);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find(p.expected_key), std::string::npos) << c.status().message();
}

INSTANTIATE_TEST_SUITE_P(
    Keys, EdgeConfigErrorTest,
    ::testing::Values(BadCase{"durability = \"normal\"", "durability = \"fast\"", "store.durability"},
                      BadCase{"uri = \"tcp://127.0.0.1:1883\"", "uri = \"http://x\"", "mqtt.uri"},
                      BadCase{"uri = \"tcp://127.0.0.1:1883\"", "uri = 5", "mqtt.uri"},
                      BadCase{"site = \"sh-pudong-01\"", "site = \"Bad Site!\"", "site"},
                      BadCase{"site = \"sh-pudong-01\"", "", "site"},
                      BadCase{"for_s = 300", "for_s = 300\nfour_s = 1", "coldchain.rule[0].four_s"},
                      BadCase{"max_c = 4.0", "max_c = -1.0", "coldchain.rule[0].max_c"},
                      BadCase{"listen = \"127.0.0.1:9464\"", "listen = \"nope\"", "metrics.listen"},
                      BadCase{"url = \"https://hub.example:8443\"", "url = \"http://hub.example\"", "hub.url"},
                      BadCase{"[store]", "[storage]", "store"},
                      BadCase{"topic_root = \"fs\"", "topic_root = \"fs/#\"", "mqtt.topic_root"},
                      BadCase{"[geofence]", "[geofence]\nhysteresis_m = -1", "geofence.hysteresis_m"},
                      BadCase{"[geofence]", "[geofence]\nhysteresis_m = nan", "geofence.hysteresis_m"},
                      BadCase{"[geofence]", "[geofence]\ndwell_s = -5", "geofence.dwell_s"},
                      BadCase{"[geofence]", "[geofence]\ndwell_s = 1.5", "geofence.dwell_s"},
                      BadCase{"[geofence]", "[geofence]\nmax_hdop = 0", "geofence.max_hdop"},
                      BadCase{"[geofence]", "[geofence]\nmax_speed_kmh = 5", "geofence.max_speed_kmh"},
                      BadCase{"[geofence]", "[geofence]\nhisteresis_m = 5", "geofence.histeresis_m"},
                      BadCase{"sensors = \"cold-*\"", "sensors = \"\"", "coldchain.rule[0].sensors"},
                      BadCase{"[[coldchain.rule]]", "[coldchain]\noffline_after_s = 0\n[[coldchain.rule]]", "coldchain.offline_after_s"},
                      BadCase{"[[coldchain.rule]]", "[coldchain]\nupdate_interval_s = 0\n[[coldchain.rule]]", "coldchain.update_interval_s"},
                      BadCase{"[hub]", "[downstream]\nkinds = [\"order\", \"orders\"]\n[hub]", "downstream.kinds"},
                      BadCase{"[hub]", "[downstream]\nwait_ms = 30000\n[hub]", "downstream.wait_ms"},
                      BadCase{"[hub]", "[downstream]\nenable = true\n[hub]", "downstream.enable"},
                      BadCase{"[hub]", "[escrow]\n\"veg-001\" = -1\n[hub]", "escrow.veg-001"},
                      BadCase{"[hub]", "[escrow]\n\"veg-001\" = \"5\"\n[hub]", "escrow.veg-001"},
                      BadCase{"[hub]", "[escrow]\n\"bad\\u0001sku\" = 5\n[hub]", "escrow"}));

TEST(EdgeConfigTest, EscrowAllotmentsPerSku) {
  auto d = ParseEdgeConfig(kMinimalEdge);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(d->escrow.empty());
  std::string text = kMinimalEdge;
  text.replace(text.find("[hub]"), 5, "[escrow]\n\"veg-001\" = 20\n\"veg-002\" = 0\n[hub]");
  auto c = ParseEdgeConfig(text);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->escrow, (std::map<std::string, int64_t>{{"veg-001", 20}, {"veg-002", 0}}));
}

TEST(EdgeConfigTest, DownstreamDefaultsAndOverrides) {
  auto d = ParseEdgeConfig(kMinimalEdge);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(d->downstream.enabled);
  EXPECT_TRUE(d->downstream.kinds.empty());  // every kind
  EXPECT_EQ(d->downstream.wait_ms, 20000);
  std::string text = kMinimalEdge;
  text.replace(text.find("[hub]"), 5, "[downstream]\nenabled = false\nkinds = [\"order\", \"cancel\"]\nwait_ms = 0\n[hub]");
  auto c = ParseEdgeConfig(text);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE(c->downstream.enabled);
  EXPECT_EQ(c->downstream.kinds, (std::vector<std::string>{"order", "cancel"}));
  EXPECT_EQ(c->downstream.wait_ms, 0);
}

TEST(EdgeConfigTest, RuleTuningDefaultsAndOverrides) {
  auto d = ParseEdgeConfig(kMinimalEdge);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->geofence.hysteresis_m, 20);
  EXPECT_EQ(d->geofence.dwell_s, 30);
  EXPECT_EQ(d->geofence.max_hdop, 5.0);
  EXPECT_EQ(d->geofence.max_speed_kmh, 150);
  EXPECT_EQ(d->coldchain.offline_after_s, 600);
  EXPECT_EQ(d->coldchain.update_interval_s, 60);

  std::string text = kMinimalEdge;
  text.replace(text.find("[geofence]"), 10, "[geofence]\nhysteresis_m = 15\ndwell_s = 45\nmax_hdop = 3\nmax_speed_kmh = 120");
  text.replace(text.find("[[coldchain.rule]]"), 18, "[coldchain]\noffline_after_s = 900\nupdate_interval_s = 30\n[[coldchain.rule]]");
  auto c = ParseEdgeConfig(text);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->geofence.hysteresis_m, 15);
  EXPECT_EQ(c->geofence.dwell_s, 45);
  EXPECT_EQ(c->geofence.max_hdop, 3.0);
  EXPECT_EQ(c->geofence.max_speed_kmh, 120);
  EXPECT_EQ(c->coldchain.offline_after_s, 900);
  EXPECT_EQ(c->coldchain.update_interval_s, 30);
  ASSERT_EQ(c->coldchain_rules.size(), 1u);
}

TEST(EdgeConfigTest, SyntaxErrorHasLineNumber) {
  auto c = ParseEdgeConfig("site = \"x\"\n[mqtt\n", "edged.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("edged.toml:2"), std::string::npos) << c.status().message();
}

TEST(HubConfigTest, ParsesAndValidatesTokens) {
  const std::string good = R"(
listen = "0.0.0.0:8443"
[tls]
ca = "/etc/freshsync/ca.crt"
cert = "/etc/freshsync/hub.crt"
key = "/etc/freshsync/hub.key"
[store]
path = "/var/lib/freshsync/hub.db"
[[tokens]]
name = "hq-analytics"
role = "reader"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
)";
  auto c = ParseHubConfig(good);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->tokens.size(), 1u);
  EXPECT_EQ(c->tokens[0].role, "reader");

  std::string bad = good;
  bad.replace(bad.find("\"reader\""), 8, "\"root\"");
  auto b = ParseHubConfig(bad);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("tokens[0].role"), std::string::npos) << b.status().message();
}

TEST(HubConfigTest, WriterRoleDownstreamAndPrivacy) {
  const std::string base = R"(
listen = "0.0.0.0:8443"
[tls]
ca = "c"
cert = "c"
key = "k"
[store]
path = "/var/lib/freshsync/hub.db"
[[tokens]]
name = "hq-orders"
role = "writer"
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
)";
  auto c = ParseHubConfig(base);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->tokens[0].role, "writer");
  EXPECT_EQ(c->downstream_retention_h, 72);
  EXPECT_EQ(c->privacy_key_file, "");
  c = ParseHubConfig(base + "[downstream]\nretention_h = 24\n[privacy]\nkey_file = \"hub.key\"\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->downstream_retention_h, 24);
  EXPECT_EQ(c->privacy_key_file, "hub.key");
  auto bad = ParseHubConfig(base + "[downstream]\nretention_h = 0\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("downstream.retention_h"), std::string::npos) << bad.status().message();
  bad = ParseHubConfig(base + "[privacy]\nold_key_files = []\n");
  ASSERT_FALSE(bad.ok());  // the hub has one key: no rotation yet
}

TEST(EdgeConfigTest, MetricsTlsAndOldPrivacyKeys) {
  std::string text = std::string(kMinimalEdge) +
                     "[privacy]\nkey_file = \"new.key\"\nold_key_files = [\"a.key\", \"/etc/freshsync/b.key\"]\n";
  text.replace(text.find("listen = \"127.0.0.1:9464\""), 25,
               "listen = \"0.0.0.0:9464\"\ntls_cert = \"m.crt\"\ntls_key = \"m.key\"");
  auto c = ParseEdgeConfig(text);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->metrics_tls_cert, "m.crt");
  EXPECT_EQ(c->metrics_tls_key, "m.key");
  EXPECT_EQ(c->privacy_old_key_files, (std::vector<std::string>{"a.key", "/etc/freshsync/b.key"}));

  std::string lone = text;
  lone.erase(lone.find("tls_key = \"m.key\""), 17);
  auto l = ParseEdgeConfig(lone);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.status().message(), "metrics.tls_key: tls_cert and tls_key go together");
  std::string bad = text;
  bad.replace(bad.find("\"a.key\""), 7, "42");
  EXPECT_EQ(ParseEdgeConfig(bad).status().message(), "privacy.old_key_files: must be an array of non-empty strings");
}

// A hub config's keys before [store], as the tests below use them.
constexpr const char* kHubHead = R"(
listen = "0.0.0.0:8443"
[tls]
ca = "ca.crt"
cert = "hub.crt"
key = "hub.key"
)";

TEST(HubConfigTest, StoreBackend) {
  const std::string base = kHubHead;
  auto sqlite = ParseHubConfig(base + "[store]\npath = \"hub.db\"\n");
  ASSERT_TRUE(sqlite.ok()) << sqlite.status().ToString();
  EXPECT_EQ(sqlite->store_backend, "sqlite");
  EXPECT_EQ(sqlite->store_path, "hub.db");
  auto pg = ParseHubConfig(base + "[store]\nbackend = \"postgresql\"\nurl = \"host=db1 dbname=freshsync\"\n");
  ASSERT_TRUE(pg.ok()) << pg.status().ToString();
  EXPECT_EQ(pg->store_backend, "postgresql");
  EXPECT_EQ(pg->store_url, "host=db1 dbname=freshsync");
  EXPECT_EQ(ParseHubConfig(base + "[store]\nbackend = \"mysql\"\npath = \"hub.db\"\n").status().message(),
            "store.backend: must be \"sqlite\" or \"postgresql\", not \"mysql\"");
  EXPECT_NE(ParseHubConfig(base + "[store]\nbackend = \"postgresql\"\n").status().message().find("store.url"),
            std::string::npos);
  EXPECT_EQ(ParseHubConfig(base + "[store]\nbackend = \"postgresql\"\nurl = \"\"\n").status().message(),
            "store.url: must not be empty (a libpq connection string)");
  EXPECT_NE(ParseHubConfig(base + "[store]\n").status().message().find("store.path"), std::string::npos);
}

TEST(HubConfigTest, RateLimits) {
  const std::string base = std::string(kHubHead) + "[store]\npath = \"hub.db\"\n";
  auto off = ParseHubConfig(base);
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->pull_per_s, 0);
  EXPECT_EQ(off->push_per_s, 0);
  auto c = ParseHubConfig(base + "[rate_limits]\npull_per_s = 2.5\npush_per_s = 10\npush_burst = 50\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->pull_per_s, 2.5);
  EXPECT_EQ(c->pull_burst, 5);  // twice the rate by default
  EXPECT_EQ(c->push_burst, 50);
  EXPECT_EQ(ParseHubConfig(base + "[rate_limits]\npull_per_s = -1\n").status().message(), "rate_limits.pull_per_s: must be 0..1000000");
  EXPECT_EQ(ParseHubConfig(base + "[rate_limits]\npull_per_s = nan\n").status().message(), "rate_limits.pull_per_s: must be 0..1000000");
  EXPECT_EQ(ParseHubConfig(base + "[rate_limits]\npull_per_s = 1\npull_burst = 0.5\n").status().message(),
            "rate_limits.pull_burst: must be >= 1");
  EXPECT_EQ(ParseHubConfig(base + "[rate_limits]\npulls = 1\n").status().message(), "rate_limits.pulls: unknown key");
}

TEST(HubConfigTest, ConsoleTiles) {
  const std::string base = std::string(kHubHead) + "[store]\npath = \"hub.db\"\n";
  auto none = ParseHubConfig(base);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->console_tiles_url, "");
  auto c = ParseHubConfig(base + "[console]\ntiles_url = \"https://tiles.example/{z}/{x}/{y}.png\"\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->console_tiles_url, "https://tiles.example/{z}/{x}/{y}.png");
  const std::string why = "console.tiles_url: must be an http(s) URL with {z}, {x} and {y}";
  EXPECT_EQ(ParseHubConfig(base + "[console]\ntiles_url = \"ftp://t/{z}/{x}/{y}\"\n").status().message(), why);
  EXPECT_EQ(ParseHubConfig(base + "[console]\ntiles_url = \"https://t/{z}/{x}.png\"\n").status().message(), why);
  EXPECT_EQ(ParseHubConfig(base + "[console]\ntiles = \"x\"\n").status().message(), "console.tiles: unknown key");
}

TEST(HubConfigTest, SiteLimitsAndDecompressionBudget) {
  const std::string base = std::string(kHubHead) + "[store]\npath = \"hub.db\"\n";
  auto d = ParseHubConfig(base);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->site_bytes_per_day, int64_t{2} << 30);
  // Default budget: one request at the per-request cap always fits.
  EXPECT_EQ(d->max_decompressed_total_bytes, 2 * d->max_decompressed_bytes + (20 << 20));
  auto c = ParseHubConfig(base + "[limits]\nsite_bytes_per_day = 0\nmax_decompressed_total_bytes = 300000000\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->site_bytes_per_day, 0);
  EXPECT_EQ(c->max_decompressed_total_bytes, 300000000);
  auto small = ParseHubConfig(base + "[limits]\nmax_decompressed_total_bytes = 1000\n");
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.status().message().rfind("limits.max_decompressed_total_bytes:", 0), 0u) << small.status().message();
  auto neg = ParseHubConfig(base + "[limits]\nsite_bytes_per_day = -1\n");
  ASSERT_FALSE(neg.ok());
  EXPECT_EQ(neg.status().message().rfind("limits.site_bytes_per_day:", 0), 0u);
}

}  // namespace
}  // namespace freshsync
