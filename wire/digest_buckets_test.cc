#include "wire/digest.h"

#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <string>

namespace freshsync::digest {
namespace {

TEST(DigestBuckets, LayoutFollowsTheProtocol) {
  auto b = DigestBuckets(1, 10, 4);  // w = 3
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0].from_seq, 1u);
  EXPECT_EQ(b[0].to_seq, 3u);
  EXPECT_EQ(b[3].from_seq, 10u);
  EXPECT_EQ(b[3].to_seq, 10u);
  // w = 2 with 6 buckets: the sixth would start past B and is not produced.
  EXPECT_EQ(DigestBuckets(1, 10, 6).size(), 5u);
  EXPECT_TRUE(DigestBuckets(5, 4, 3).empty());
  EXPECT_TRUE(DigestBuckets(1, 4, 0).empty());
}

TEST(RangeDigester, MatchesTheByteLayout) {
  BucketDigester d(100, 199, 2);
  d.Add(101, 3, 7, "truck-1");
  auto out = d.Finish();
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].count, 1u);
  EXPECT_EQ(out[1].count, 0u);
  std::string bytes;
  auto be = [&](uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) bytes.push_back(static_cast<char>(v >> (8 * i)));
  };
  be(101, 8);
  be(3, 4);
  be(7, 8);
  be(7, 4);
  bytes += "truck-1";
  unsigned char want[32];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), want);
  EXPECT_EQ(0, memcmp(out[0].digest.data(), want, 32));
  unsigned char empty[32];
  SHA256(nullptr, 0, empty);
  EXPECT_EQ(0, memcmp(out[1].digest.data(), empty, 32));
}

TEST(RangeDigester, OrderAndContentMatter) {
  auto one = [](uint64_t version) {
    BucketDigester d(1, 10, 1);
    d.Add(1, 1, 1, "a");
    d.Add(2, 1, version, "a");
    return d.Finish()[0].digest;
  };
  EXPECT_EQ(one(2), one(2));
  EXPECT_NE(one(2), one(3));
}

TEST(RangeDigester, IgnoresSeqsOutsideTheRange) {
  BucketDigester d(10, 19, 2);
  d.Add(9, 1, 1, "x");
  d.Add(20, 1, 1, "x");
  auto out = d.Finish();
  EXPECT_EQ(out[0].count + out[1].count, 0u);
}

}  // namespace
}  // namespace freshsync::digest
