// Prometheus, verified (issue 16 item 3): the real Prometheus (Debian's package) scrapes the
// real edged and hubd, loads the shipped alert rules (packaging/prometheus/), and every series
// the Grafana dashboard and the rules query is one the daemons really export. A renamed metric
// fails here instead of leaving an empty panel or an alert that can never fire.
// The rules' own behaviour is unit-tested by promtool (prometheus_rules_test, this folder).
#include <httplib.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/site_hub.h"

namespace freshsync::testing {
namespace {

using nlohmann::json;

std::string Source(const std::string& rel) { return ReadFile(std::string(FRESHSYNC_SOURCE_DIR) + "/" + rel); }

// Every freshsync_* name in a text (PromQL inside JSON or YAML).
std::set<std::string> QueriedNames(const std::string& text) {
  std::set<std::string> names;
  const std::regex name("freshsync_[a-z_]+");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), name); it != std::sregex_iterator(); ++it) names.insert(it->str());
  return names;
}

class PrometheusScrapeTest : public ::testing::Test {
 protected:
  json Api(const std::string& path) {
    httplib::Client c("127.0.0.1", prom_port_);
    c.set_read_timeout(10);
    auto r = c.Get(path);
    if (!r || r->status != 200) return {};
    return json::parse(r->body, nullptr, false);
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- prometheus log\n" << ReadFile(hub_.dir().File("prometheus.log")) << "\n";
    prometheus_.Stop();
  }

  static SiteHubOptions WithEdgeMetrics(int port) {
    SiteHubOptions o;
    o.edge_toml = "[metrics]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\n";
    // The relay on: hubd exports its series (the dashboard's Relay row) from the moment it is
    // configured. No broker listens on that port; the relay retries with its backoff, which
    // costs this test nothing and keeps a RabbitMQ start out of the default suite.
    o.hub_toml = "[fanout.amqp]\nurl = \"amqp://guest:guest@127.0.0.1:" + std::to_string(PickFreePort()) + "/\"\n";
    return o;
  }
  int edge_metrics_port_ = PickFreePort();  // before hub_, which uses it
  SiteHub hub_{WithEdgeMetrics(edge_metrics_port_)};
  int prom_port_ = 0;
  ChildProcess prometheus_;
};

TEST_F(PrometheusScrapeTest, EverySeriesTheDashboardAndRulesQueryIsExported) {
  ASSERT_TRUE(hub_.ok());
  ASSERT_TRUE(hub_.site().StartEdged());
  // Some traffic, so that the counters that exist per kind have their series.
  auto pub = hub_.site().NewPublisher("prom-pub");
  pub->PublishReliably({"fs/stock/movements", R"({"id":"m1","sku":"tomato","delta":10,"reason":"receive","ts":1764000000000})"});
  pub->PublishReliably({"fs/vehicles/truck-1/gps", R"({"seq":1,"lat":31.2,"lon":121.5,"ts":1764000000000})"});
  pub->PublishReliably({"fs/sensors/cold-1/climate", R"({"seq":1,"temp_c":3.5,"ts":1764000000000})"});
  ASSERT_TRUE(hub_.WaitSynced(3)) << hub_.HubLog();

  const std::string dir = hub_.dir().File("prometheus");
  prom_port_ = PickFreePort();
  WriteFile(hub_.dir().File("prometheus.yml"),
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "rule_files:\n  - " + std::string(FRESHSYNC_SOURCE_DIR) + "/packaging/prometheus/freshsync-alerts.yml\n"
            "scrape_configs:\n"
            "  - job_name: edged\n    static_configs:\n      - targets: ['127.0.0.1:" + std::to_string(edge_metrics_port_) + "']\n"
            "  - job_name: hubd\n    scheme: https\n    tls_config:\n      ca_file: " + hub_.pki().ca_cert() +
                "\n    static_configs:\n      - targets: ['127.0.0.1:" + std::to_string(hub_.hub_port()) + "']\n");
  prometheus_ = ChildProcess({"prometheus", "--config.file=" + hub_.dir().File("prometheus.yml"), "--storage.tsdb.path=" + dir,
                              "--web.listen-address=127.0.0.1:" + std::to_string(prom_port_), "--log.level=warn"},
                             hub_.dir().File("prometheus.log"));
  ASSERT_TRUE(prometheus_.Start());

  // Both daemons scraped successfully, twice (so that rate() and the rules have something).
  ASSERT_TRUE(WaitFor(
      [&] {
        json up = Api("/api/v1/query?query=" + httplib::detail::encode_query_param("min_over_time(up[30s]) == 1 and count_over_time(up[30s]) >= 2"));
        return up.is_object() && up["data"]["result"].size() == 2;
      },
      std::chrono::seconds(60)))
      << Api("/api/v1/targets").dump(1);

  std::set<std::string> queried = QueriedNames(Source("packaging/grafana-dashboard.json"));
  const std::set<std::string> by_rules = QueriedNames(Source("packaging/prometheus/freshsync-alerts.yml"));
  queried.insert(by_rules.begin(), by_rules.end());
  EXPECT_GE(queried.size(), 25u) << "the dashboard or the rules lost their queries";
  for (const std::string& name : queried) {
    // A series with samples, or a family the daemons declare (a counter created on first use,
    // such as store errors, has its # TYPE line but no sample until it happens).
    const json series = Api("/api/v1/series?match[]=" + name);
    const std::string family = std::regex_replace(name, std::regex("_(bucket|sum|count)$"), "");
    const json meta = Api("/api/v1/metadata?metric=" + family);
    const bool has_series = series.is_object() && !series["data"].empty();
    const bool declared = meta.is_object() && meta["data"].contains(family);
    EXPECT_TRUE(has_series || declared) << name << " is queried by the dashboard or the rules, but no daemon exports it";
  }

  // The shipped rules loaded and evaluate without error against the real series.
  ASSERT_TRUE(WaitFor(
      [&] {
        json rules = Api("/api/v1/rules");
        if (!rules.is_object()) return false;
        int evaluated = 0;
        for (const auto& g : rules["data"]["groups"])
          for (const auto& r : g["rules"]) evaluated += r["health"] == "ok";
        return evaluated == 8;
      },
      std::chrono::seconds(30)))
      << Api("/api/v1/rules").dump(1);
}

}  // namespace
}  // namespace freshsync::testing
