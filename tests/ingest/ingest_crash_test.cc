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
  std::atomic<int> kills_while_publishing{0};
  std::thread publisher([&] {
    auto pub = site.NewPublisher("crash-pub");
    // Paced at about 1,500 msg/s so that the kills land while publishing is under way.
    size_t i = 0;
    for (const auto& m : msgs) {
      // On a slow machine (sanitizers) edged restarts slowly: hold the last fifth back until
      // five kills have happened, so that they all land while publishing is under way.
      if (i == msgs.size() * 4 / 5) WaitFor([&] { return kills_while_publishing >= 5; }, std::chrono::seconds(300));
      pub->Publish(m, 50);
      if (++i % 15 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pub->Publish(Sentinel("k", 1));
    pub->Flush();
    published = true;
  });
  std::mt19937 rng(std::random_device{}());
  int kills = 0;
  while (!published && kills < 20) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 700));
    if (published) break;
    site.KillEdged();
    ++kills;
    ++kills_while_publishing;
    const int64_t applied = site.Int("SELECT COUNT(*) FROM dedupe");
    std::cerr << "kill " << kills << " after " << applied << " applied\n";
    if (rng() % 2) std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 300));
    ASSERT_TRUE(site.StartEdged());
  }
  publisher.join();
  EXPECT_GE(kills_while_publishing, 5);
  ASSERT_TRUE(site.WaitInt(SentinelSql("k", 1), 1, std::chrono::seconds(180)));
  ExpectWorkloadApplied(site, exp, 1);
}

}  // namespace
}  // namespace freshsync::testing
