#include "common/clock.h"

#include <gtest/gtest.h>

namespace freshsync {
namespace {

class StepClock : public Clock {
 public:
  int64_t now = 1'700'000'000'000;
  int64_t NowMs() override { return now; }
  int64_t MonotonicMs() override { return now; }
};

TEST(HybridLogicalClockTest, StrictlyIncreasingWhenWallClockStandsStill) {
  StepClock wall;
  HybridLogicalClock hlc(wall);
  uint64_t prev = hlc.Now();
  for (int i = 0; i < 1000; ++i) {
    const uint64_t next = hlc.Now();
    ASSERT_GT(next, prev);
    prev = next;
  }
  EXPECT_EQ(HybridLogicalClock::PhysicalMs(prev), wall.now);
  EXPECT_EQ(HybridLogicalClock::Logical(prev), 1000u);
}

TEST(HybridLogicalClockTest, KeepsOrderWhenWallClockStepsBack) {
  StepClock wall;
  HybridLogicalClock hlc(wall);
  const uint64_t before = hlc.Now();
  wall.now -= 3'600'000;  // NTP steps the clock back an hour
  const uint64_t after = hlc.Now();
  EXPECT_GT(after, before);
  EXPECT_EQ(HybridLogicalClock::PhysicalMs(after), HybridLogicalClock::PhysicalMs(before));
}

TEST(HybridLogicalClockTest, ObserveMovesPastRemote) {
  StepClock wall;
  HybridLogicalClock hlc(wall);
  const uint64_t remote = HybridLogicalClock::Pack(wall.now + 10'000, 7);
  EXPECT_GT(hlc.Observe(remote), remote);
  EXPECT_GT(hlc.Now(), remote);
}

TEST(HybridLogicalClockTest, FollowsWallClockForward) {
  StepClock wall;
  HybridLogicalClock hlc(wall);
  hlc.Now();
  wall.now += 5;
  const uint64_t t = hlc.Now();
  EXPECT_EQ(HybridLogicalClock::PhysicalMs(t), wall.now);
  EXPECT_EQ(HybridLogicalClock::Logical(t), 0u);
}

}  // namespace
}  // namespace freshsync
