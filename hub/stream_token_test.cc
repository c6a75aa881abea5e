#include "hub/stream_token.h"

#include <gtest/gtest.h>

namespace freshsync::hub {
namespace {

const std::string kKey(32, 'k');

TEST(StreamTokenTest, AcceptsItsOrderUntilExpiry) {
  const std::string t = MintStreamToken(kKey, "o-42", 2000);
  EXPECT_EQ(CheckStreamToken(kKey, t, "o-42", 1999), StreamTokenCheck::kOk);
  EXPECT_EQ(CheckStreamToken(kKey, t, "o-42", 2000), StreamTokenCheck::kExpired);
  EXPECT_EQ(CheckStreamToken(kKey, t, "o-43", 1000), StreamTokenCheck::kWrongOrder);
  // A URL-safe token: EventSource sends it in the query.
  EXPECT_EQ(t.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."), std::string::npos);
}

TEST(StreamTokenTest, RefusesTamperedForgedAndMalformed) {
  const std::string t = MintStreamToken(kKey, "o-42", 2000);
  EXPECT_EQ(CheckStreamToken(std::string(32, 'x'), t, "o-42", 1000), StreamTokenCheck::kBadSignature);
  // Another order's payload with the first token's MAC.
  const std::string other = MintStreamToken(kKey, "o-43", 2000);
  const std::string swapped = other.substr(0, other.find('.')) + t.substr(t.find('.'));
  EXPECT_EQ(CheckStreamToken(kKey, swapped, "o-43", 1000), StreamTokenCheck::kBadSignature);
  // A later expiry with the old MAC.
  const std::string later = Base64UrlEncode("o-42\n999999") + t.substr(t.find('.'));
  EXPECT_EQ(CheckStreamToken(kKey, later, "o-42", 1000), StreamTokenCheck::kBadSignature);
  std::string flipped = t;
  flipped.back() = flipped.back() == 'A' ? 'B' : 'A';
  EXPECT_NE(CheckStreamToken(kKey, flipped, "o-42", 1000), StreamTokenCheck::kOk);
  for (const char* bad : {"", ".", "abc", "a.b.c", "!!!.???", "a"})
    EXPECT_NE(CheckStreamToken(kKey, bad, "o-42", 1000), StreamTokenCheck::kOk) << bad;
}

TEST(StreamTokenTest, Base64UrlHasNoPadding) {
  EXPECT_EQ(Base64UrlEncode(""), "");
  EXPECT_EQ(Base64UrlEncode("f"), "Zg");
  EXPECT_EQ(Base64UrlEncode("fo"), "Zm8");
  EXPECT_EQ(Base64UrlEncode("foo"), "Zm9v");
  EXPECT_EQ(Base64UrlEncode("\xfb\xff"), "-_8");
}

}  // namespace
}  // namespace freshsync::hub
