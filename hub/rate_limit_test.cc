#include "hub/rate_limit.h"

#include <gtest/gtest.h>

#include "tests/support/sync_fakes.h"

namespace freshsync::hub {
namespace {

TEST(RateLimiterTest, BurstThenRefillPerKey) {
  testing::FakeClock clock;
  RateLimiter limiter({2.0, 3.0}, clock);  // 2/s, bucket of 3
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Acquire("hq").allowed) << i;
  auto d = limiter.Acquire("hq");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.retry_after_ms, 500);  // one request refills in 1/2 s
  EXPECT_TRUE(d.report);
  EXPECT_EQ(d.refused_since_report, 1u);
  // Another key has its own bucket.
  EXPECT_TRUE(limiter.Acquire("other").allowed);
  clock.Advance(499);
  d = limiter.Acquire("hq");
  EXPECT_FALSE(d.allowed);
  EXPECT_FALSE(d.report);  // reported at most once per interval
  clock.Advance(2);
  // Just over 500 ms refilled one request; refused attempts took nothing.
  EXPECT_TRUE(limiter.Acquire("hq").allowed);
  EXPECT_FALSE(limiter.Acquire("hq").allowed);
  clock.Advance(10'000);  // refills to the burst, not beyond
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Acquire("hq").allowed) << i;
  EXPECT_FALSE(limiter.Acquire("hq").allowed);
  EXPECT_EQ(limiter.refused_total(), 4u);
  clock.Advance(RateLimiter::kReportEveryMs);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.Acquire("hq").allowed) << i;
  d = limiter.Acquire("hq");
  EXPECT_TRUE(d.report);
  EXPECT_EQ(d.refused_since_report, 4u);  // the three unreported ones and this one
}

TEST(RateLimiterTest, ZeroRateIsUnlimited) {
  testing::FakeClock clock;
  RateLimiter limiter({0, 0}, clock);
  for (int i = 0; i < 10000; ++i) ASSERT_TRUE(limiter.Acquire("hq").allowed);
  EXPECT_EQ(limiter.refused_total(), 0u);
}

}  // namespace
}  // namespace freshsync::hub
