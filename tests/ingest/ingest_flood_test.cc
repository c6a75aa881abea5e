// Liveness under a flood of hostile messages: a real Mosquitto, the real
// edged, a publisher at full speed. Every kind of invalid message (60 KB, deeply nested, bad
// UTF-8, wrong types, wrong topics, orders stock cannot cover) mixed with valid movements.
//
// On main before the fix the applier blocked in Paho's publish (the dead-letter notification)
// while Paho's receive thread, holding Paho's lock, waited in our callback for the applier:
// dead letters stopped after a few hundred 60 KB messages and never reached the total, the
// valid movements were not applied, and SIGTERM was not obeyed within TimeoutStopSec.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "tests/ingest/site.h"

namespace freshsync::testing {
namespace {

using namespace std::chrono_literals;

int Readyz(int port, std::string* body = nullptr) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(2);
  c.set_read_timeout(2);
  auto r = c.Get("/readyz");
  if (!r) return -1;
  if (body) *body = r->body;
  return r->status;
}

// The kinds of invalid message, one of each per round.
std::vector<Msg> InvalidRound(int i) {
  const std::string n = std::to_string(i);
  std::vector<Msg> out;
  // ~60 KB: delta 0 plus a 60,000-character pad (the reported reproduction).
  out.push_back({"fs/stock/movements", R"({"id":"big-)" + n + R"(","sku":"x","delta":0,"reason":"adjust","pad":")" +
                                           std::string(60000, 'p') + "\"}"});
  // Deeply nested JSON.
  out.push_back({"fs/stock/movements", "{\"id\":\"deep-" + n + "\",\"a\":" + std::string(20000, '[') + std::string(20000, ']') + "}"});
  // Bad UTF-8.
  out.push_back({"fs/stock/movements", "{\"id\":\"utf-" + n + "\xff\xfe\",\"sku\":\"x\",\"delta\":1,\"reason\":\"receive\"}"});
  // Wrong types.
  out.push_back({"fs/stock/movements", R"({"id":)" + n + R"(,"sku":["x"],"delta":"many","reason":{}})"});
  // Wrong topics (both subscriptions that reach edged: a deeper level and a single level).
  out.push_back({i % 2 ? "fs/stock/orders" : "fs/nowhere", R"({"id":"wt-)" + n + R"(","sku":"x","delta":1,"reason":"receive"})"});
  // An order stock cannot cover (refused by the stock ledger: a dead letter too).
  out.push_back({"fs/orders/status", R"({"order_id":"flood-o-)" + n +
                                         R"(","status":"created","ts":1764000000000,"lines":[{"sku":"none-here","qty":5}]})"});
  return out;
}

Msg Valid(int k) {
  return {"fs/stock/movements", R"({"id":"ok-)" + std::to_string(k) + R"(","sku":"flood-ok","delta":1,"reason":"receive"})"};
}

TEST(IngestFloodTest, HostileFloodNeverStallsValidMessagesAndSigtermStopsEdged) {
  const int metrics_port = PickFreePort();
  Site site("[metrics]\nlisten = \"127.0.0.1:" + std::to_string(metrics_port) + "\"\n");
  ASSERT_TRUE(site.StartEdged());
  auto pub = site.NewPublisher("flood");

  constexpr int kRounds = 1000, kValidEvery = 10;
  const int64_t valid_total = kRounds / kValidEvery;
  std::vector<std::chrono::steady_clock::time_point> published(valid_total), applied(valid_total);
  std::atomic<int64_t> published_n{0};
  std::atomic<bool> done{false};
  // The watcher: movements on one client apply in order, so the count says which are applied.
  std::thread watcher([&] {
    int64_t seen = 0;
    while (seen < valid_total && !done) {
      const int64_t n = std::min(site.Int("SELECT COUNT(*) FROM stock_movements WHERE sku = 'flood-ok'"), published_n.load());
      const auto now = std::chrono::steady_clock::now();
      for (; seen < n; ++seen) applied[seen] = now;
      std::this_thread::sleep_for(50ms);
    }
  });

  const auto start = std::chrono::steady_clock::now();
  int64_t invalid = 0, k = 0;
  for (int i = 0; i < kRounds; ++i) {
    for (auto& m : InvalidRound(i)) {
      pub->Publish(m);
      ++invalid;
    }
    if (i % kValidEvery == kValidEvery - 1) {
      published[k] = std::chrono::steady_clock::now();
      pub->Publish(Valid(static_cast<int>(k)));
      published_n = ++k;
    }
  }
  pub->Flush();
  const auto flood_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "flood: " << invalid << " invalid and " << valid_total << " valid messages published in " << flood_s << " s\n";

  // The broker's queue for edged drains: every invalid message becomes a dead letter.
  const bool drained = site.WaitInt("SELECT COUNT(*) FROM dead_letters", invalid, 60s);
  done = true;
  watcher.join();
  EXPECT_TRUE(drained) << "dead letters: " << site.Int("SELECT COUNT(*) FROM dead_letters") << " of " << invalid;
  ASSERT_EQ(site.Int("SELECT COUNT(*) FROM stock_movements WHERE sku = 'flood-ok'"), valid_total);
  double worst = 0;
  for (int64_t j = 0; j < valid_total; ++j) worst = std::max(worst, std::chrono::duration<double>(applied[j] - published[j]).count());
  std::cout << "worst latency of a valid message under the flood: " << worst << " s\n";
  EXPECT_LE(worst, 5.0);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM stock WHERE on_hand < 0 OR reserved < 0"), 0);
  std::string body;
  EXPECT_EQ(Readyz(metrics_port, &body), 200) << body;

  // SIGTERM in the middle of a second flood: edged stops within TimeoutStopSec (30 s), exit 0.
  std::thread second([&] {
    auto p2 = site.NewPublisher("flood-2");
    for (int i = kRounds; i < kRounds + 400; ++i)
      for (auto& m : InvalidRound(i)) p2->Publish(m);
    p2->Flush();
  });
  std::this_thread::sleep_for(1500ms);
  const auto term = std::chrono::steady_clock::now();
  site.SignalEdged(SIGTERM);
  bool stopped = WaitFor([&] { return !site.EdgedRunning(); }, 30s);
  const double stop_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - term).count();
  second.join();
  std::cout << "SIGTERM under the flood: stopped in " << stop_s << " s\n";
  EXPECT_TRUE(stopped) << "edged still running 30 s after SIGTERM";
  EXPECT_NE(site.log().find("edged: stopped"), std::string::npos);
}

// /readyz and the watchdog's verdict (STATUS= line in the log) report an applier that makes
// no progress while journal entries wait (FRESHSYNC_APPLIER_PACE_FOR_TEST: one entry per
// batch, 4 s before each; FRESHSYNC_INGEST_STUCK_MS_FOR_TEST: 1.5 s).
TEST(IngestFloodTest, ReadyzAndWatchdogReportAnApplierWithoutProgress) {
  const int metrics_port = PickFreePort();
  Site site("[metrics]\nlisten = \"127.0.0.1:" + std::to_string(metrics_port) + "\"\n");
  ASSERT_TRUE(site.StartEdged({{"FRESHSYNC_APPLIER_PACE_FOR_TEST", "1:4000"}, {"FRESHSYNC_INGEST_STUCK_MS_FOR_TEST", "1500"}}));
  std::string body;
  ASSERT_TRUE(WaitFor([&] { return Readyz(metrics_port, &body) == 200; }, 10s)) << body;  // idle is ready
  auto pub = site.NewPublisher("stall");
  for (int k = 0; k < 5; ++k) pub->Publish(Valid(k));
  pub->Flush();
  ASSERT_TRUE(WaitFor([&] { return Readyz(metrics_port, &body) == 503; }, 10s)) << body;
  EXPECT_NE(body.find("no progress"), std::string::npos) << body;
  EXPECT_TRUE(WaitFor([&] { return site.log().find("watchdog: unhealthy (journal applier made no progress") != std::string::npos; }, 10s))
      << site.log();
  httplib::Client c("127.0.0.1", metrics_port);
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("freshsync_ingest_applier_idle_seconds"), std::string::npos);
  EXPECT_NE(m->body.find("freshsync_ingest_publications_dropped_total"), std::string::npos);
  site.KillEdged();
}

}  // namespace
}  // namespace freshsync::testing
