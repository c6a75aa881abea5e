#include "common/prometheus.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

namespace freshsync::prometheus {
namespace {

TEST(PrometheusTextTest, LabelValuesAreEscaped) {
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  TextWriter w;
  w.Sample("x_total", {{"site", "we\"ird"}}, uint64_t{3});
  EXPECT_EQ(w.text(), "x_total{site=\"we\\\"ird\"} 3\n");
}

TEST(PrometheusTextTest, HistogramBucketsAreCumulativeWithSumAndCount) {
  const double bounds[] = {0.01, 0.1};
  Histogram h(bounds);
  h.Observe(0.005);
  h.Observe(0.05);
  h.Observe(0.05);
  h.Observe(3);
  TextWriter w;
  h.Write(w, "lat_seconds", {{"route", "r"}});
  EXPECT_EQ(w.text(),
            "lat_seconds_bucket{route=\"r\",le=\"0.01\"} 1\n"
            "lat_seconds_bucket{route=\"r\",le=\"0.1\"} 3\n"
            "lat_seconds_bucket{route=\"r\",le=\"+Inf\"} 4\n"
            "lat_seconds_sum{route=\"r\"} 3.105\n"
            "lat_seconds_count{route=\"r\"} 4\n");
}

TEST(PrometheusTextTest, LabeledSeriesAreCreatedOnFirstUseAndCountedFromManyThreads) {
  LabeledCounters c({"route", "status"});
  LabeledHistograms h({"route"});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        c.Add({"/v1/changes", i % 2 ? "200" : "503"});
        h.Observe({"/v1/changes"}, 0.002);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(c.Get({"/v1/changes", "200"}), 2000u);
  EXPECT_EQ(c.Get({"/v1/changes", "503"}), 2000u);
  EXPECT_EQ(c.Get({"/v1/changes", "404"}), 0u);
  TextWriter w;
  h.Write(w, "req_seconds", "Request latency.");
  EXPECT_NE(w.text().find("req_seconds_count{route=\"/v1/changes\"} 4000\n"), std::string::npos) << w.text();
}

// The format as Prometheus itself reads it: promtool (Debian's prometheus package) lints the
// text. Without promtool the test says so and is skipped; scripts/install-deps.sh installs it.
TEST(PrometheusTextTest, PromtoolAcceptsTheText) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) GTEST_SKIP() << "promtool not installed";
  TextWriter w;
  LabeledCounters c({"route", "status"});
  c.Add({"/v1/sites/{site}/batches", "200"}, 5);
  c.Write(w, "freshsync_test_requests_total", "Requests answered, by route and status.");
  LabeledHistograms h({"route"});
  h.Observe({"/v1/changes"}, 0.003);
  h.Write(w, "freshsync_test_request_duration_seconds", "Request latency.");
  w.Family("freshsync_test_open", "gauge", "Open things.");
  w.Sample("freshsync_test_open", {}, uint64_t{7});
  char path[] = "/tmp/prom-text-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << w.text();
  const std::string cmd = std::string("promtool check metrics < ") + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int rc = pclose(p);
  std::remove(path);
  EXPECT_EQ(rc, 0) << out << "\n" << w.text();
}

}  // namespace
}  // namespace freshsync::prometheus
