#include "common/logging.h"

#include <gtest/gtest.h>

namespace freshsync {
namespace {

TEST(LogComponent, LeadingWordBeforeColon) {
  EXPECT_EQ(LogComponent("ingest: subscribed to fs/# (QoS 1)"), "ingest");
  EXPECT_EQ(LogComponent("sync: link to hub down"), "sync");
  EXPECT_EQ(LogComponent("cold-chain: alert"), "cold-chain");
  EXPECT_EQ(LogComponent("edged starting: site x"), "");     // a space before the colon
  EXPECT_EQ(LogComponent("Store: capitalised"), "");
  EXPECT_EQ(LogComponent("no colon at all"), "");
  EXPECT_EQ(LogComponent(""), "");
  EXPECT_EQ(LogComponent("abcdefghijklmnopqrstuvwxyz: too long"), "");
}

}  // namespace
}  // namespace freshsync
