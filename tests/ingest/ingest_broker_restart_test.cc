// The broker restarts (twice) while messages are being published: nothing is lost, nothing
// is applied twice. The publisher resends anything whose PUBACK it did not get.
#include <thread>

#include <gtest/gtest.h>

#include "tests/ingest/workload.h"

namespace freshsync::testing {
namespace {

TEST(IngestBrokerRestartTest, NothingLost) {
  Site site;
  ASSERT_TRUE(site.StartEdged());
  Expected exp;
  const auto msgs = MixedWorkload(6000, "b", exp, 11);
  std::atomic<size_t> sent{0};
  std::thread publisher([&] {
    auto pub = site.NewPublisher("restart-pub");
    for (const auto& m : msgs) {
      pub->PublishReliably(m);
      ++sent;
    }
    pub->PublishReliably(Sentinel("b", 1));
  });
  for (size_t at : {1500u, 3500u}) {
    ASSERT_TRUE(WaitFor([&] { return sent >= at; }, std::chrono::seconds(120)));
    ASSERT_TRUE(site.broker().Restart());
    std::cerr << "broker restarted after " << sent << " published\n";
  }
  publisher.join();
  ASSERT_TRUE(site.WaitInt(SentinelSql("b", 1), 1, std::chrono::seconds(120)));
  ExpectWorkloadApplied(site, exp, 1);
  EXPECT_TRUE(site.EdgedRunning());
  EXPECT_NE(site.log().find("connection to"), std::string::npos);  // it did lose the broker
}

}  // namespace
}  // namespace freshsync::testing
