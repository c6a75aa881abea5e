// The crash loop: 100 cycles of kill -9 to edged at a random moment under a
// steady publishing load, while the link to the hub flaps (FaultProxy cuts and resets) and
// hubd is killed and restarted every 10 cycles together with edged, and every 10 cycles (offset by 5) on
// its own while the live edged pushes. At the end: the edge store holds exactly the
// effect of what was published; the hub's feed holds every change record exactly once (seq
// 1..last, no gap, no repeat); stock invariants hold at the edge and HQ's stock equals the
// edge's; the edge backlog is zero.
//
// It runs twice: on hubd's SQLite store, and on PostgreSQL (issue 13: the crash loop also runs
// with PostgreSQL), where the database itself is also crashed (`pg_ctl stop -m immediate`, no
// checkpoint: recovery from the WAL) and restarted every 25 cycles while the live edged pushes.
#include <algorithm>
#include <atomic>
#include <functional>
#include <memory>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "tests/ingest/workload.h"
#include "tests/support/postgres.h"
#include "tests/support/site_hub.h"

namespace freshsync::testing {
namespace {

// One store's part of the loop: `damage(cycle, rng)` runs after the cycle's own kills and
// restarts and returns how many extra faults it caused.
using StoreDamage = std::function<int(int cycle, std::mt19937& rng)>;

// 100 cycles in CI; scripts/soak.sh runs more (DamageRounds).
int CrashLoopCycles() { return DamageRounds(100); }

void RunCrashLoop(SiteHubOptions options, const std::string& store_name, const StoreDamage& store_damage) {
  const int kCycles = CrashLoopCycles();
  const uint32_t workload_seed = DamageSeed(77);
  SiteHub sh(std::move(options));
  ASSERT_TRUE(sh.ok()) << sh.HubLog();
  Site& site = sh.site();
  ASSERT_TRUE(site.StartEdged()) << site.log();

  // Steady load: paced at about 300 msg/s until the cycles are done (a cycle takes about 0.6 s,
  // so the pool outlasts them).
  Expected unused;
  const auto pool = MixedWorkload(std::max<size_t>(200000, static_cast<size_t>(kCycles) * 400), "loop", unused, workload_seed);
  std::atomic<bool> stop{false};
  std::atomic<size_t> published{0};
  std::thread publisher([&] {
    auto pub = site.NewPublisher("loop-pub");
    for (size_t i = 0; i < pool.size() && !stop; ++i) {
      pub->Publish(pool[i], 50);
      published = i + 1;
      if (i % 6 == 5) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pub->Publish(Sentinel("loop", 1));
    pub->Flush();
  });
  // A failed ASSERT below returns early: stop and join the publisher first (a joinable
  // std::thread destroyed would end the process and leave the daemons running).
  struct JoinOnExit {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~JoinOnExit() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } join_on_exit{stop, publisher};

  std::mt19937 rng(DamageSeed(20261125));
  int edge_kills = 0, hub_kills = 0, hub_kills_live = 0, link_cuts = 0, link_resets = 0, store_crashes = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int cycle = 1; cycle <= kCycles; ++cycle) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 400));
    site.KillEdged();
    ++edge_kills;
    const int fault = static_cast<int>(rng() % 3);
    if (fault == 0) {
      sh.proxy().Cut();
      ++link_cuts;
    } else if (fault == 1) {
      sh.proxy().ResetAll();
      ++link_resets;
    }
    if (cycle % 10 == 0) {
      sh.KillHubd();
      ++hub_kills;
    }
    if (rng() % 2) std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 200));
    ASSERT_TRUE(site.StartEdged()) << "cycle " << cycle << "\n" << site.log().substr(site.log().size() > 4000 ? site.log().size() - 4000 : 0);
    if (fault == 0) {
      // Let the agent meet the dead link before it comes back.
      std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 300));
      sh.proxy().Pass();
    }
    if (cycle % 10 == 0) {
      ASSERT_TRUE(sh.StartHubd()) << sh.HubLog();
    }
    if (cycle % 10 == 5) {
      // hubd killed while a live edged is pushing (mid-batch, mid-ack or mid-reconciliation).
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 300));
      sh.KillHubd();
      ++hub_kills_live;
      ASSERT_TRUE(sh.StartHubd()) << sh.HubLog();
    }
    store_crashes += store_damage(cycle, rng);
  }
  stop = true;
  publisher.join();
  const auto loop_s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - t0).count();

  // What was published: a prefix of the deterministic pool, so its expected effect is that of
  // a workload of the same size and seed.
  Expected exp;
  const size_t n = published;
  MixedWorkload(n, "loop", exp, workload_seed);
  ASSERT_TRUE(site.WaitInt(SentinelSql("loop", 1), 1, std::chrono::seconds(180))) << "edged did not catch up";
  // The sentinel (telemetry) may be applied before stock/orders when ingest runs them on
  // separate sessions (the telemetry client split): wait for both.
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM dedupe", exp.total() + 1, std::chrono::seconds(120)));
  ExpectWorkloadApplied(site, exp, 1);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM stock WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand"), 0);

  const int64_t last = sh.EdgeLastSeq();
  ASSERT_TRUE(sh.WaitSynced(last, std::chrono::seconds(240)))
      << "hub " << sh.HubRecords() << " edge last " << last << " backlog " << sh.EdgeBacklog();
  EXPECT_EQ(sh.CheckFeedExactlyOnce(last), "");
  const auto edge_stock = sh.EdgeStock();
  EXPECT_EQ(edge_stock.size(), exp.on_hand.size());
  EXPECT_TRUE(WaitFor([&] { return sh.HubStock() == edge_stock; }, std::chrono::seconds(60))) << "HQ stock differs from the edge's";
  EXPECT_EQ(sh.EdgeBacklog(), 0);
  EXPECT_EQ(edge_kills, kCycles);
  EXPECT_EQ(hub_kills, kCycles / 10);
  EXPECT_EQ(hub_kills_live, (kCycles + 5) / 10);  // cycles 5, 15, 25, ...
  std::cerr << "FIGURES crash_loop store=" << store_name << " cycles=" << kCycles << " edged_kills=" << edge_kills << " hubd_kills=" << hub_kills << " hubd_kills_while_edged_pushed=" << hub_kills_live
            << " store_crashes=" << store_crashes << " link_cuts=" << link_cuts << " link_resets=" << link_resets << " proxy_resets=" << sh.proxy().resets()
            << " messages=" << n + 1 << " change_records=" << last << " loop_s=" << loop_s
            << " applied=" << site.Int("SELECT COUNT(*) FROM dedupe") << " expected=" << exp.total() + 1
            << " hub_records=" << sh.HubRecords() << "\n";
}

TEST(CrashLoopTest, SlowHundredKillsUnderLoadWithFlappingLinkAndHubKills) {
  RunCrashLoop({}, "sqlite", [](int, std::mt19937&) { return 0; });
}

// hubd on PostgreSQL. The database is crashed mid-push every 25 cycles: hubd answers 503 while
// it is down and reconnects on the next request, the agent retries, and the end state must be
// the same exact one.
TEST(CrashLoopTest, SlowHundredKillsOnPostgresWithDatabaseCrashes) {
  TempDir pg_dir;
  PostgresServer pg(pg_dir.File("pg"));
  ASSERT_TRUE(pg.Start()) << ReadFile(pg.log_path());
  ASSERT_TRUE(pg.CreateDatabase("hub")) << ReadFile(pg.log_path());
  SiteHubOptions o;
  o.hub_store = "[store]\nbackend = \"postgresql\"\nurl = \"" + pg.Url("hub") + "\"\n";
  int crashes = 0;
  RunCrashLoop(std::move(o), "postgresql", [&](int cycle, std::mt19937& rng) {
    if (cycle % 25 != 12) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 300));
    pg.Crash();
    std::this_thread::sleep_for(std::chrono::milliseconds(200 + rng() % 800));
    EXPECT_TRUE(pg.Start()) << ReadFile(pg.log_path());
    ++crashes;
    return 1;
  });
  EXPECT_EQ(crashes, (CrashLoopCycles() + 13) / 25);  // cycles 12, 37, 62, 87, ...
}

}  // namespace
}  // namespace freshsync::testing
