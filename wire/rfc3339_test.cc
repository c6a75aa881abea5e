#include "wire/rfc3339.h"

#include <gtest/gtest.h>

namespace freshsync::wire {
namespace {

// Moved from edge/decode_test.cc (DecodeTest.Rfc3339), assertions unchanged.
TEST(Rfc3339Test, Rfc3339) {
  EXPECT_EQ(*ParseRfc3339("1970-01-01T00:00:00Z"), 0);
  EXPECT_EQ(*ParseRfc3339("2000-03-01T00:00:00.5Z"), 951868800500);
  EXPECT_EQ(*ParseRfc3339("2000-03-01T01:00:00+01:00"), 951868800000);
  EXPECT_EQ(*ParseRfc3339("2024-02-29t12:00:00.123456z"), 1709208000123);
  EXPECT_FALSE(ParseRfc3339("2023-02-29T00:00:00Z").ok());
  EXPECT_FALSE(ParseRfc3339("2024-01-01T00:00:00").ok());
  EXPECT_FALSE(ParseRfc3339("2024-01-01T24:00:00Z").ok());
  EXPECT_FALSE(ParseRfc3339("2024-01-01T00:00:00Zjunk").ok());
}

// The hub's strictness cases (hub/query_test.cc TimestampsStrict) that are about the date-time
// form, now the rule of both sides.
TEST(Rfc3339Test, Strict) {
  EXPECT_EQ(*ParseRfc3339("2025-11-25T00:00:00Z"), 1764028800000);
  EXPECT_EQ(*ParseRfc3339("2025-11-25T08:00:00.250+08:00"), 1764028800250);
  EXPECT_EQ(*ParseRfc3339("2024-02-29T00:00:00Z"), 1709164800000);
  EXPECT_EQ(*ParseRfc3339("1970-01-01T00:00:00.5Z"), 500);
  for (const char* bad : {"", "yesterday", "2025-11-25", "2025-11-25T00:00:00", "2025-02-29T00:00:00Z",
                          "2025-11-31T00:00:00Z", "2025-11-25T-1:00:00Z", "2025-11-25T 1:00:00Z", "+025-11-25T00:00:00Z",
                          "2025-11-25T24:00:00Z", "2025-11-25T00:00:00.Z", "2025-11-25T00:00:00+8:00",
                          "2025-11-25T00:00:00+08:00x", "2025-11-25T00:00:00+24:00", "2025-11-25T00:60:00Z",
                          "2025-00-25T00:00:00Z", "2025-11-00T00:00:00Z",
                          // A space for "T" (RFC 3339's note allows it; this parser does not).
                          "2025-11-25 00:00:00Z"}) {
    EXPECT_FALSE(ParseRfc3339(bad).ok()) << bad;
  }
}

TEST(Rfc3339Test, LeapSecondAndEarlyDates) {
  // :60 counts as :59 of the same minute.
  EXPECT_EQ(*ParseRfc3339("2016-12-31T23:59:60.5Z"), *ParseRfc3339("2016-12-31T23:59:59.5Z"));
  // Before 1970: negative (the hub's query parameters refuse them, device timestamps do not).
  EXPECT_EQ(*ParseRfc3339("1969-12-31T23:59:59Z"), -1000);
  EXPECT_EQ(*ParseRfc3339("1970-01-01T00:00:00+01:00"), -3600000);
  EXPECT_EQ(ParseRfc3339("x").status().message(), "not an RFC 3339 timestamp (e.g. 2026-11-25T08:00:00Z)");
}

}  // namespace
}  // namespace freshsync::wire
