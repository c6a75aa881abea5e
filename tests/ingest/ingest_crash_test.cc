// While 20,000 messages are being published, edged is SIGKILLed at random moments (at least
// five times) and restarted. Afterwards every message is applied exactly once and the outbox
// seq is dense.
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "tests/ingest/workload.h"

namespace freshsync::testing {
namespace {

TEST(IngestCrashTest, KillNineDuringPublishingLosesNothingAndAppliesOnce) {
  Site site;
  ASSERT_TRUE(site.StartEdged());
  Expected exp;
  const auto msgs = MixedWorkload(20000, "k", exp, 7);
  std::atomic<bool> published{false};
  std::thread publisher([&] {
    auto pub = site.NewPublisher("crash-pub");
    for (const auto& m : msgs) pub->Publish(m, 50);
    pub->Publish(Sentinel("k", 1));
    pub->Flush();
    published = true;
  });
  std::mt19937 rng(std::random_device{}());
  int kills = 0;
  while (kills < 5 || !published) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150 + rng() % 500));
    if (kills >= 12) break;
    site.KillEdged();
    ++kills;
    const int64_t applied = site.Int("SELECT COUNT(*) FROM dedupe");
    std::cerr << "kill " << kills << " after " << applied << " applied\n";
    if (rng() % 2) std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 300));
    ASSERT_TRUE(site.StartEdged());
  }
  publisher.join();
  EXPECT_GE(kills, 5);
  ASSERT_TRUE(site.WaitInt(SentinelSql("k", 1), 1, std::chrono::seconds(180)));
  ExpectWorkloadApplied(site, exp, 1);
}

}  // namespace
}  // namespace freshsync::testing
