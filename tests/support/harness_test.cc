// Checks the harness itself against the real tools: a broker that starts and restarts on its
// port, and certificates that openssl verifies (or refuses, when expired or untrusted).
#include "tests/support/harness.h"

#include <gtest/gtest.h>

namespace freshsync::testing {
namespace {

TEST(HarnessTest, MosquittoStartsAndRestartsOnSamePort) {
  TempDir tmp;
  MosquittoBroker broker(tmp.File("broker"));
  ASSERT_TRUE(broker.Start());
  const int port = broker.port();
  EXPECT_GT(port, 0);
  ASSERT_TRUE(broker.Restart());
  EXPECT_EQ(broker.port(), port);
  EXPECT_EQ(RunShell("mosquitto_pub -h 127.0.0.1 -p " + std::to_string(port) + " -t t -m x -q 1"), 0);
}

TEST(HarnessTest, PkiMakesVerifiableAndExpiredCerts) {
  TempDir tmp;
  TestPki pki(tmp.File("pki"));
  ASSERT_TRUE(pki.Init());
  auto good = pki.Client("site-a");
  auto expired = pki.Client("site-b", -1);
  auto stranger = pki.Untrusted("site-a");
  EXPECT_EQ(RunShell("openssl verify -CAfile '" + pki.ca_cert() + "' '" + good.cert + "'", tmp.File("v.log")), 0);
  EXPECT_NE(RunShell("openssl verify -CAfile '" + pki.ca_cert() + "' '" + expired.cert + "'", tmp.File("v.log")), 0);
  EXPECT_NE(RunShell("openssl verify -CAfile '" + pki.ca_cert() + "' '" + stranger.cert + "'", tmp.File("v.log")), 0);
  EXPECT_EQ(RunShell("openssl verify -CAfile '" + pki.ca_cert() + "' '" + pki.server().cert + "'", tmp.File("v.log")), 0);
}

}  // namespace
}  // namespace freshsync::testing
