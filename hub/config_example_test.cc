// The shipped example config must stay valid as the config grows.
#include <gtest/gtest.h>

#include "common/config.h"

namespace freshsync {
namespace {

TEST(HubConfigExampleTest, ExampleParses) {
  auto c = LoadHubConfig(std::string(HUB_SOURCE_DIR) + "/hubd.example.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->listen, "0.0.0.0:8443");
  EXPECT_EQ(c->threads, 8);
  ASSERT_EQ(c->tokens.size(), 1u);
  EXPECT_EQ(c->tokens[0].role, "reader");
  EXPECT_EQ(c->max_decompressed_bytes, 64 << 20);
}

}  // namespace
}  // namespace freshsync
