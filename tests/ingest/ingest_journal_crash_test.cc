// edged is SIGKILLed while its journal applier lags far behind the intake journal: thousands of
// messages are acknowledged to the broker (so the broker has forgotten them) and exist only in
// the journal. After the restarts every message is applied exactly once, seq dense.
#include <thread>

#include <gtest/gtest.h>

#include "edge/ingest.h"
#include "edge/intake_journal.h"
#include "tests/ingest/workload.h"

namespace freshsync::testing {
namespace {

// Journal entries acknowledged to the broker and not yet committed to the store.
int64_t JournalLag(const Site& site) {
  auto last = edge::ReadJournalLastIndex(edge::Ingest::JournalDir(site.db_path()));
  if (!last.ok()) return -1;
  // A drained journal may hold no entry at all (last index 0): no lag.
  return std::max<int64_t>(0, static_cast<int64_t>(*last) - site.Int("SELECT IFNULL((SELECT value FROM edge_meta WHERE name = 'intake_applied'), 0)"));
}

std::string Tail(const std::string& log) { return log.substr(log.size() > 4000 ? log.size() - 4000 : 0); }

TEST(IngestJournalCrashTest, KillNineWhileTheApplierLagsLosesNothingAndAppliesOnce) {
  Site site;
  // The applier commits at most 20 entries every 20 ms (~1,000 msg/s) while the publisher
  // runs at full speed: the journal runs far ahead of the store.
  const std::map<std::string, std::string> slow_applier = {{"FRESHSYNC_APPLIER_PACE_FOR_TEST", "20:20"}};
  ASSERT_TRUE(site.StartEdged(slow_applier));
  Expected exp;
  const auto msgs = MixedWorkload(8000, "jl", exp, 11);
  std::atomic<bool> published{false};
  std::thread publisher([&] {
    auto pub = site.NewPublisher("journal-crash-pub");
    for (const auto& m : msgs) pub->Publish(m, 200);
    pub->Publish(Sentinel("jl", 1));
    pub->Flush();
    published = true;
  });
  int64_t max_lag_at_kill = 0;
  int kills = 0;
  for (; kills < 3; ++kills) {
    // Kill once at least 500 acknowledged messages wait in the journal only.
    int64_t lag = 0;
    WaitFor([&] { return (lag = JournalLag(site)) >= 500 || published; }, std::chrono::seconds(60));
    if (lag < 500) break;
    site.KillEdged();
    lag = JournalLag(site);  // as the crash left it
    std::cerr << "kill " << kills + 1 << " with " << lag << " journaled, unapplied messages\n";
    max_lag_at_kill = std::max(max_lag_at_kill, lag);
    ASSERT_TRUE(site.StartEdged(slow_applier)) << Tail(site.log());
  }
  publisher.join();
  EXPECT_GE(kills, 2);
  EXPECT_GE(max_lag_at_kill, 500);
  // The last restart at full speed: the rest of the journal, then whatever the broker holds.
  site.KillEdged();
  ASSERT_TRUE(site.StartEdged());
  ASSERT_TRUE(site.WaitInt(SentinelSql("jl", 1), 1, std::chrono::seconds(120)));
  ExpectWorkloadApplied(site, exp, 1);
  EXPECT_EQ(JournalLag(site), 0);
  EXPECT_EQ(site.StopEdged(), 0);
}

}  // namespace
}  // namespace freshsync::testing
