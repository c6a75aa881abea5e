// Clock faults, below the daemon: the HLC and the store's change records
// under an edge clock that jumps hours back and forth (the Clock seam), and the device-clock
// check behind `max_clock_skew_s`. edged_faults_test.cc covers the same through edged.
#include <random>

#include <gtest/gtest.h>

#include "common/clock.h"
#include "tests/damage/store_damage.h"
#include "tests/support/harness.h"

namespace freshsync::testing {
namespace {

using edge::EdgeStore;
constexpr int64_t kHourMs = 3'600'000;

// A wall clock the test sets; the monotonic clock moves on regardless.
class JumpingClock final : public Clock {
 public:
  std::atomic<int64_t> wall{1'764'000'000'000};
  std::atomic<int64_t> mono{1'000'000};
  int64_t NowMs() override { return wall.load(); }
  int64_t MonotonicMs() override { return ++mono; }
};

TEST(ClockFaultsTest, HlcStaysStrictlyIncreasingThroughJumpsOfHours) {
  JumpingClock clock;
  HybridLogicalClock hlc(clock);
  std::mt19937 rng(6);
  uint64_t prev = hlc.Now();
  int64_t max_wall = clock.wall;
  int back = 0, forward = 0;
  for (int i = 0; i < 20000; ++i) {
    const int k = static_cast<int>(rng() % 100);
    if (k == 0) {
      clock.wall -= (1 + static_cast<int64_t>(rng() % 12)) * kHourMs;  // NTP steps back hours
      ++back;
    } else if (k == 1) {
      clock.wall += (1 + static_cast<int64_t>(rng() % 12)) * kHourMs;  // and forward
      ++forward;
    } else {
      clock.wall += static_cast<int64_t>(rng() % 3);
    }
    max_wall = std::max<int64_t>(max_wall, clock.wall);
    const uint64_t t = hlc.Now();
    ASSERT_GT(t, prev) << "step " << i;
    // Never ahead of the furthest wall time seen by more than the logical ticks can explain,
    // never behind the current wall clock.
    ASSERT_GE(HybridLogicalClock::PhysicalMs(t), clock.wall.load());
    ASSERT_LE(HybridLogicalClock::PhysicalMs(t), max_wall + 1);
    prev = t;
  }
  EXPECT_GT(back, 50);
  EXPECT_GT(forward, 50);
}

// Change records keep their order through clock jumps, and across a restart whose clock is
// hours behind the last record (the store restores the HLC from disk).
TEST(ClockFaultsTest, StoreChangeRecordsKeepOrderThroughEdgeClockJumpsAndRestarts) {
  TempDir dir;
  JumpingClock clock;
  Expected exp;
  const auto msgs = DecodeAll(MixedWorkload(3000, "clk", exp, 9));
  std::mt19937 rng(10);
  size_t i = 0;
  for (int run = 0; run < 3; ++run) {
    edge::StoreOptions opts;
    opts.path = dir.File("edge.db");
    opts.clock = &clock;
    auto store = EdgeStore::Open(opts);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    const uint64_t restored = (*store)->last_hlc();
    if (run > 0) {
      EXPECT_GT(restored, 0u);
    }
    for (size_t end = i + 1000; i < end; ++i) {
      if (rng() % 100 == 0) clock.wall -= (1 + static_cast<int64_t>(rng() % 6)) * kHourMs;
      if (rng() % 150 == 0) clock.wall += (1 + static_cast<int64_t>(rng() % 6)) * kHourMs;
      clock.wall += 5;
      auto r = (*store)->Apply(msgs[i], clock.wall);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
    }
    // Down for the night, and the clock comes back ten hours slow.
    clock.wall -= 10 * kHourMs;
  }
  StoreFile db(dir.File("edge.db"));
  db.ExpectConsistent("after three runs");  // includes: hlc strictly rises with seq
  ExpectExactly(db, exp);
  EXPECT_EQ(db.Int("SELECT COUNT(*) FROM outbox a JOIN outbox b ON b.seq > a.seq WHERE b.hlc <= a.hlc AND b.seq - a.seq < 50"), 0);
}

edge::Message Gps(int64_t ts_ms) {
  edge::GpsFix g;
  g.vehicle = "truck-1";
  g.seq = 1;
  g.lat = 31.2;
  g.lon = 121.5;
  g.ts_ms = ts_ms;
  return g;
}

TEST(ClockFaultsTest, DeviceClockAheadBeyondTheBoundIsRefusedWithAReason) {
  const int64_t now = 1'764'000'000'000;
  // Within the bound, ahead or behind: accepted.
  EXPECT_TRUE(edge::CheckDeviceClock(Gps(now + 299'000), now, 300).ok());
  EXPECT_TRUE(edge::CheckDeviceClock(Gps(now + 300'000), now, 300).ok());
  // Hours behind: accepted (delayed delivery looks the same as a slow clock).
  EXPECT_TRUE(edge::CheckDeviceClock(Gps(now - 5 * kHourMs), now, 300).ok());
  // Ahead beyond the bound: refused, saying by how much and which setting.
  const Status s = edge::CheckDeviceClock(Gps(now + 3 * kHourMs), now, 300);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("10800.0 s ahead of the edge clock"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("max_clock_skew_s = 300"), std::string::npos) << s.message();
  // 0 disables the check; a movement without ts has nothing to check.
  EXPECT_TRUE(edge::CheckDeviceClock(Gps(now + 3 * kHourMs), now, 0).ok());
  edge::StockMovement m;
  m.id = "m1";
  m.sku = "apple";
  m.delta = 1;
  m.reason = "receive";
  EXPECT_TRUE(edge::CheckDeviceClock(m, now, 300).ok());
  m.ts_ms = now + 3 * kHourMs;
  EXPECT_FALSE(edge::CheckDeviceClock(m, now, 300).ok());
}

}  // namespace
}  // namespace freshsync::testing
