#include "hub/auth.h"

#include <gtest/gtest.h>

#include "wire/digest.h"

namespace freshsync::hub {
namespace {

TokenAuth MakeAuth() {
  return TokenAuth({HubToken{"hq-analytics", "reader", digest::Sha256Hex("reader-secret")},
                    HubToken{"hq-ops", "admin", digest::Sha256Hex("admin-secret")},
                    HubToken{"hq-orders", "writer", digest::Sha256Hex("writer-secret")}});
}

TEST(TokenAuthTest, ChecksTokensByTheirHash) {
  const TokenAuth auth = MakeAuth();
  Caller c;
  EXPECT_EQ(auth.Check("Bearer reader-secret", Role::kReader, &c), AuthOutcome::kOk);
  EXPECT_EQ(c.name, "hq-analytics");
  EXPECT_EQ(c.role, Role::kReader);
  EXPECT_EQ(auth.Check("Bearer admin-secret", Role::kAdmin, &c), AuthOutcome::kOk);
  EXPECT_EQ(c.name, "hq-ops");
  EXPECT_EQ(auth.Check("Bearer admin-secret", Role::kReader, &c), AuthOutcome::kOk);
}

TEST(TokenAuthTest, RolesAreOrderedReaderWriterAdmin) {
  const TokenAuth auth = MakeAuth();
  Caller c;
  EXPECT_EQ(auth.Check("Bearer writer-secret", Role::kReader, &c), AuthOutcome::kOk);
  EXPECT_EQ(c.role, Role::kWriter);
  EXPECT_EQ(auth.Check("Bearer writer-secret", Role::kWriter, &c), AuthOutcome::kOk);
  EXPECT_EQ(auth.Check("Bearer writer-secret", Role::kAdmin, &c), AuthOutcome::kForbidden);
  EXPECT_EQ(auth.Check("Bearer reader-secret", Role::kWriter, &c), AuthOutcome::kForbidden);
  EXPECT_EQ(auth.Check("Bearer admin-secret", Role::kWriter, &c), AuthOutcome::kOk);
  EXPECT_STREQ(RoleName(Role::kWriter), "writer");
}

TEST(TokenAuthTest, RefusesMissingWrongAndWeakTokens) {
  const TokenAuth auth = MakeAuth();
  Caller c;
  EXPECT_EQ(auth.Check("", Role::kReader, &c), AuthOutcome::kMissing);
  EXPECT_EQ(auth.Check("Bearer ", Role::kReader, &c), AuthOutcome::kMissing);
  EXPECT_EQ(auth.Check("Basic cmVhZGVy", Role::kReader, &c), AuthOutcome::kMissing);
  EXPECT_EQ(auth.Check("Bearer wrong", Role::kReader, &c), AuthOutcome::kInvalid);
  // The hash itself is not a token.
  EXPECT_EQ(auth.Check("Bearer " + digest::Sha256Hex("reader-secret"), Role::kReader, &c), AuthOutcome::kInvalid);
  EXPECT_EQ(auth.Check("Bearer reader-secret", Role::kAdmin, &c), AuthOutcome::kForbidden);
}

// RFC 9110 11.1: auth scheme names are case-insensitive.
TEST(TokenAuthTest, SchemeNameIgnoresCase) {
  const TokenAuth auth = MakeAuth();
  Caller c;
  EXPECT_EQ(auth.Check("bearer reader-secret", Role::kReader, &c), AuthOutcome::kOk);
  EXPECT_EQ(auth.Check("BEARER reader-secret", Role::kReader, &c), AuthOutcome::kOk);
  EXPECT_EQ(auth.Check("bEaReR  reader-secret", Role::kReader, &c), AuthOutcome::kOk);
  EXPECT_EQ(c.name, "hq-analytics");
  EXPECT_EQ(auth.Check("Bearerreader-secret", Role::kReader, &c), AuthOutcome::kMissing);
  EXPECT_EQ(auth.Check("Bearer    ", Role::kReader, &c), AuthOutcome::kMissing);
  EXPECT_EQ(auth.Check("Bearex reader-secret", Role::kReader, &c), AuthOutcome::kMissing);
}

TEST(PeerSiteIdTest, NoSslNoSite) { EXPECT_FALSE(PeerSiteId(nullptr).has_value()); }

}  // namespace
}  // namespace freshsync::hub
