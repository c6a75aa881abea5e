#include "wire/digest.h"

#include <gtest/gtest.h>
#include <openssl/sha.h>

namespace freshsync::digest {
namespace {

TEST(DigestTest, SplitRangeFollowsTheProtocolFormula) {
  auto b = SplitRange(1, 10, 4);  // w = 3
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0].from_seq, 1u);
  EXPECT_EQ(b[0].to_seq, 3u);
  EXPECT_EQ(b[3].from_seq, 10u);
  EXPECT_EQ(b[3].to_seq, 10u);
  // w = 2: only buckets starting at or before `to` exist.
  b = SplitRange(1, 10, 6);
  ASSERT_EQ(b.size(), 5u);
  EXPECT_EQ(b[4].to_seq, 10u);
  b = SplitRange(5, 5, 1024);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(BucketIndex(1, 10, 4, 7), 2u);
  EXPECT_EQ(BucketIndex(1, 10, 4, 10), 3u);
}

TEST(DigestTest, ValidateNamesTheParameter) {
  EXPECT_EQ(ValidateRange(1, 10, 4), "");
  EXPECT_EQ(ValidateRange(10, 1, 4).rfind("to:", 0), 0u);
  EXPECT_EQ(ValidateRange(1, 10, 0).rfind("buckets:", 0), 0u);
  EXPECT_EQ(ValidateRange(1, 10, 1025).rfind("buckets:", 0), 0u);
  EXPECT_EQ(ValidateRange(1, kMaxSeq + 1, 1).rfind("to:", 0), 0u);
  EXPECT_TRUE(SplitRange(10, 1, 4).empty());
}

TEST(DigestTest, EmptyBucketIsSha256OfNothing) {
  RangeDigester d;
  EXPECT_EQ(d.count(), 0u);
  const auto got = d.Finish();
  uint8_t want[32];
  SHA256(nullptr, 0, want);
  EXPECT_EQ(0, memcmp(got.data(), want, 32));
}

TEST(DigestTest, MatchesTheByteLayoutOfTheProtocol) {
  // Built by hand from docs/sync-protocol.md: seq u64be, entity u32be, version u64be,
  // len(key) u32be, key.
  std::string bytes;
  auto put = [&](uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) bytes.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  };
  put(7, 8), put(2, 4), put(3, 8), put(5, 4), bytes += "o-123";
  put(8, 8), put(1, 4), put(0x0102030405060708ULL, 8), put(0, 4);
  uint8_t want[32];
  SHA256(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), want);

  RangeDigester d;
  d.Add(7, 2, 3, "o-123");
  d.Add(8, 1, 0x0102030405060708ULL, "");
  EXPECT_EQ(d.count(), 2u);
  const auto got = d.Finish();
  EXPECT_EQ(0, memcmp(got.data(), want, 32));
  EXPECT_EQ(d.count(), 0u);  // reset for reuse
}

TEST(DigestTest, OrderAndContentMatter) {
  RangeDigester a, b, c;
  a.Add(1, 1, 1, "x");
  a.Add(2, 1, 1, "y");
  b.Add(2, 1, 1, "y");
  b.Add(1, 1, 1, "x");
  c.Add(1, 1, 2, "x");
  c.Add(2, 1, 1, "y");
  const auto da = a.FinishAsString();
  EXPECT_NE(da, b.FinishAsString());
  EXPECT_NE(da, c.FinishAsString());
}

TEST(DigestTest, Sha256HexOfKnownInput) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(StateDigestTest, MatchesTheByteLayoutOfTheProtocol) {
  // Built by hand from docs/sync-protocol.md ("State digest"): per row in sku order,
  // len(sku) u32be, sku, on_hand i64be, reserved i64be, version u64be.
  std::string bytes;
  auto put = [&](uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) bytes.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  };
  put(5, 4), bytes += "sku-a", put(120, 8), put(3, 8), put(9, 8);
  put(0, 4), put(static_cast<uint64_t>(int64_t{-2}), 8), put(0, 8), put(0x0102030405060708ULL, 8);
  // The second row's on_hand is -2 as two's complement: ff..fe.
  EXPECT_EQ(static_cast<unsigned char>(bytes[4 + 5 + 24 + 4]), 0xFF);
  uint8_t want[32];
  SHA256(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), want);

  StateDigester d;
  d.AddStock("sku-a", 120, 3, 9);
  d.AddStock("", -2, 0, 0x0102030405060708ULL);
  EXPECT_EQ(d.count(), 2u);
  const std::string got = d.FinishAsString();
  ASSERT_EQ(got.size(), 32u);
  EXPECT_EQ(0, memcmp(got.data(), want, 32));
  EXPECT_EQ(d.count(), 0u);  // reset for reuse
  // No rows: SHA-256 of nothing.
  EXPECT_EQ(Hex(d.FinishAsString()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(StateDigestTest, EveryFieldMatters) {
  auto one = [](std::string_view sku, int64_t on_hand, int64_t reserved, uint64_t version) {
    StateDigester d;
    d.AddStock(sku, on_hand, reserved, version);
    return d.FinishAsString();
  };
  const std::string base = one("a", 1, 2, 3);
  EXPECT_NE(base, one("b", 1, 2, 3));
  EXPECT_NE(base, one("a", 9, 2, 3));
  EXPECT_NE(base, one("a", 1, 9, 3));
  EXPECT_NE(base, one("a", 1, 2, 9));
  // The length prefix keeps ("ab", ...) apart from ("a", ...) followed by other bytes.
  StateDigester two;
  two.AddStock("a", 1, 2, 3);
  two.AddStock("b", 1, 2, 3);
  StateDigester swapped;
  swapped.AddStock("b", 1, 2, 3);
  swapped.AddStock("a", 1, 2, 3);
  EXPECT_NE(two.FinishAsString(), swapped.FinishAsString());
  EXPECT_EQ(Hex(std::string("\x00\xff", 2)), "00ff");
}

}  // namespace
}  // namespace freshsync::digest
