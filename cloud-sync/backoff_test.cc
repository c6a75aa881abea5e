#include "cloud-sync/backoff.h"

#include <gtest/gtest.h>

namespace freshsync::sync {
namespace {

TEST(Backoff, FullJitterStaysWithinTheGrowingCeilingAndTheCap) {
  Backoff b(100, 5000, 42);
  for (int attempt = 0; attempt < 20; ++attempt) {
    const int64_t ceiling = b.Ceiling();
    int64_t want = 100;
    for (int i = 0; i < attempt && want < 5000; ++i) want *= 2;
    EXPECT_EQ(ceiling, std::min<int64_t>(want, 5000)) << attempt;
    const int64_t d = b.Next();
    EXPECT_GE(d, 0);
    EXPECT_LE(d, ceiling);
  }
  EXPECT_EQ(b.Ceiling(), 5000);
}

TEST(Backoff, JitterIsSpreadNotFixed) {
  // Full jitter: over many draws at the cap, the delays cover the range, averaging ~cap/2.
  Backoff b(1000, 1000, 7);
  int64_t sum = 0, lo = 1000, hi = 0;
  for (int i = 0; i < 2000; ++i) {
    const int64_t d = b.Next();
    sum += d;
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_LT(lo, 50);
  EXPECT_GT(hi, 950);
  EXPECT_NEAR(sum / 2000.0, 500.0, 40.0);
}

TEST(Backoff, RetryAfterIsAFloor) {
  Backoff b(10, 100, 1);
  EXPECT_GE(b.Next(3), 3000);
  EXPECT_EQ(b.AtCap(), 100);
  EXPECT_EQ(b.AtCap(2), 2000);
  // Unreasonable Retry-After values are bounded at an hour.
  EXPECT_EQ(b.Next(10'000'000), 3'600'000);
}

TEST(Backoff, ProbeKeepsAShortJitteredCadenceOnceTheBackoffWouldGrowPastIt) {
  Backoff b(200, 30000, 3);
  int64_t lo = 1000, hi = 0;
  for (int i = 0; i < 200; ++i) {
    const int64_t ceiling = b.Ceiling();
    const int64_t d = b.Probe(1000);
    if (ceiling <= 1000) {
      EXPECT_LE(d, ceiling) << i;  // the usual backoff while it is shorter
    } else {
      EXPECT_GE(d, 500) << i;
      EXPECT_LE(d, 1500) << i;
      lo = std::min(lo, d);
      hi = std::max(hi, d);
    }
  }
  EXPECT_EQ(b.Ceiling(), 30000);  // still counted as failures
  EXPECT_LT(lo, 600);             // spread, not in lockstep
  EXPECT_GT(hi, 1400);
}

TEST(Backoff, HintedIsRetryAfterPlusBoundedJitterWhateverTheAttempt) {
  Backoff b(200, 30000, 5);
  for (int i = 0; i < 10; ++i) (void)b.Next();  // an outage grew the ceiling to the cap
  ASSERT_EQ(b.Ceiling(), 30000);
  for (int i = 0; i < 100; ++i) {
    const int64_t d = b.Hinted(2);
    EXPECT_GE(d, 2000);
    EXPECT_LE(d, 3000);
  }
  const int64_t d = b.Hinted(0);
  EXPECT_EQ(d, 0);
  EXPECT_EQ(b.Hinted(10'000'000), 3'600'000);
}

TEST(Backoff, ResetStartsOver) {
  Backoff b(10, 10000, 1);
  for (int i = 0; i < 8; ++i) (void)b.Next();
  EXPECT_GT(b.Ceiling(), 10);
  b.Reset();
  EXPECT_EQ(b.Ceiling(), 10);
  EXPECT_EQ(b.attempt(), 0);
}

}  // namespace
}  // namespace freshsync::sync
