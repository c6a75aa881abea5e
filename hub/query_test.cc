#include "hub/query.h"

#include <gtest/gtest.h>

namespace freshsync::hub {
namespace {

TEST(QueryTest, FeedDefaultsAndBounds) {
  FeedQuery q;
  EXPECT_FALSE(ParseFeedQuery({}, &q));
  EXPECT_EQ(q.after, 0u);
  EXPECT_EQ(q.limit, 1000u);
  EXPECT_FALSE(ParseFeedQuery({{"after", "42"}, {"limit", "10000"}, {"other", "x"}}, &q));
  EXPECT_EQ(q.after, 42u);
  EXPECT_EQ(q.limit, 10000u);
  for (const char* bad : {"0", "10001", "-1", "+5", " 5", "5 ", "1e3", "", "99999999999999999999999"}) {
    auto e = ParseFeedQuery({{"limit", bad}}, &q);
    ASSERT_TRUE(e) << bad;
    EXPECT_EQ(e->parameter, "limit");
    EXPECT_EQ(e->message, "limit: must be an integer in 1..10000");
  }
  auto e = ParseFeedQuery({{"after", "9223372036854775808"}}, &q);  // INT64_MAX + 1
  ASSERT_TRUE(e);
  EXPECT_EQ(e->parameter, "after");
}

TEST(QueryTest, RepeatedParameterTakesTheFirst) {
  QueryParams p;
  p.emplace("limit", "7");
  p.emplace("limit", "junk");
  FeedQuery q;
  EXPECT_FALSE(ParseFeedQuery(p, &q));
  EXPECT_EQ(q.limit, 7u);
}

TEST(QueryTest, TimestampsStrict) {
  EXPECT_EQ(ParseTimestampMs("0"), 0);
  EXPECT_EQ(ParseTimestampMs("1764028800000"), 1764028800000);
  EXPECT_EQ(ParseTimestampMs("2025-11-25T00:00:00Z"), 1764028800000);
  EXPECT_EQ(ParseTimestampMs("2025-11-25T08:00:00.250+08:00"), 1764028800250);
  EXPECT_EQ(ParseTimestampMs("2024-02-29T00:00:00Z"), 1709164800000);
  EXPECT_EQ(ParseTimestampMs("1970-01-01T00:00:00.5Z"), 500);
  for (const char* bad : {"", "yesterday", "2025-11-25", "2025-11-25T00:00:00", "2025-02-29T00:00:00Z",
                          "2025-11-31T00:00:00Z", "2025-11-25T-1:00:00Z", "2025-11-25T 1:00:00Z", "+025-11-25T00:00:00Z",
                          "2025-11-25T24:00:00Z", "2025-11-25T00:00:00.Z", "2025-11-25T00:00:00+8:00",
                          "2025-11-25T00:00:00+08:00x", "1970-01-01T00:00:00+01:00", "9223372036854775808"}) {
    EXPECT_FALSE(ParseTimestampMs(bad)) << bad;
  }
}

TEST(QueryTest, RangeAndDigest) {
  RangeQuery r;
  EXPECT_FALSE(ParseRangeQuery({{"from", "10"}, {"to", "20"}}, {10000, 100000, true}, &r));
  EXPECT_EQ(r.from, 10);
  EXPECT_EQ(r.to, 20);
  EXPECT_EQ(r.limit, 10000u);
  auto e = ParseRangeQuery({{"from", "10"}, {"to", "5"}}, {10000, 100000, true}, &r);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->parameter, "to");
  EXPECT_FALSE(ParseRangeQuery({{"from", "10"}, {"to", "5"}}, {1000, 10000, false}, &r));
  e = ParseRangeQuery({{"limit", "100001"}}, {10000, 100000, true}, &r);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->parameter, "limit");

  DigestQuery d;
  e = ParseDigestQuery({{"from", "1"}, {"to", "9"}}, &d);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->parameter, "buckets");
  EXPECT_EQ(e->message, "buckets: required query parameter is missing");
  EXPECT_FALSE(ParseDigestQuery({{"from", "1"}, {"to", "9"}, {"buckets", "4"}}, &d));
  EXPECT_EQ(d.to, 9u);
  EXPECT_TRUE(ParseDigestQuery({{"from", "9"}, {"to", "1"}, {"buckets", "4"}}, &d));
  EXPECT_TRUE(ParseDigestQuery({{"from", "1"}, {"to", "9"}, {"buckets", "1025"}}, &d));
}

TEST(QueryTest, EtagMatchesAnyListedTagWeakOrStrongAndTheWildcard) {
  for (const char* hit : {"\"3\"", " \"3\" ", "\"1\", \"3\"", "W/\"3\"", "*", "\"x\",*"})
    EXPECT_TRUE(EtagMatches(hit, "\"3\"")) << hit;
  for (const char* miss : {"", "\"33\"", "3", "\"1\", \"2\"", "\"3", ","})
    EXPECT_FALSE(EtagMatches(miss, "\"3\"")) << miss;
}

TEST(QueryTest, PrefersProtobufOnlyWhenAcceptAsksForIt) {
  // JSON by default.
  for (const char* json : {"", "*/*", "application/*", "application/json", "text/html, */*;q=0.8",
                           "application/x-protobuf;q=0", "application/x-protobuf;q=0.000, application/json",
                           "application/json, application/x-protobuf;q=0.5", "application/x-protobufs",
                           "application/protobuf"}) {
    EXPECT_FALSE(PrefersProtobuf(json)) << json;
  }
  for (const char* proto : {"application/x-protobuf", "Application/X-Protobuf", " application/x-protobuf ",
                            "application/x-protobuf; charset=binary", "application/json;q=0.5, application/x-protobuf",
                            "application/x-protobuf;q=0.9,application/json;q=0.9", "application/json, application/x-protobuf",
                            "application/x-protobuf;q=junk", "*/*;q=0.1, application/x-protobuf;q=0.2"}) {
    EXPECT_TRUE(PrefersProtobuf(proto)) << proto;
  }
}

TEST(QueryTest, StreamAfterLastEventIdAndFilters) {
  StreamQuery q;
  ASSERT_FALSE(ParseStreamQuery({}, "", &q));
  EXPECT_EQ(q.after, 0u);
  EXPECT_TRUE(q.site.empty());
  EXPECT_TRUE(q.entity.empty());
  ASSERT_FALSE(ParseStreamQuery({{"after", "7"}, {"site", "site-a"}, {"entity", "Stock"}}, "", &q));
  EXPECT_EQ(q.after, 7u);
  EXPECT_EQ(q.site, "site-a");
  EXPECT_EQ(q.entity, "stock");  // matched lower case, as the relay names entities
  // A reconnecting EventSource sends its first URL again, with the id it has: the id wins.
  ASSERT_FALSE(ParseStreamQuery({{"after", "7"}}, "42", &q));
  EXPECT_EQ(q.after, 42u);
  auto e = ParseStreamQuery({}, "-1", &q);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->parameter, "Last-Event-ID");
  EXPECT_EQ(ParseStreamQuery({}, "9223372036854775808", &q)->parameter, "Last-Event-ID");
  EXPECT_EQ(ParseStreamQuery({{"after", "x"}}, "", &q)->parameter, "after");
  EXPECT_EQ(ParseStreamQuery({{"site", "Site_A"}}, "", &q)->parameter, "site");
  EXPECT_EQ(ParseStreamQuery({{"entity", ""}}, "", &q)->parameter, "entity");
  EXPECT_EQ(ParseStreamQuery({{"entity", "st ock"}}, "", &q)->parameter, "entity");
}

}  // namespace
}  // namespace freshsync::hub
