#include "wire/site_id.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>

namespace freshsync::wire {
namespace {

// (No std::regex here: it trips GCC 12's -Wmaybe-uninitialized under ASan.)
TEST(SiteIdTest, Rule) {
  for (const std::string& s : std::initializer_list<std::string>{"s1", "site-a", "0", "a-", std::string(63, 'a')}) EXPECT_TRUE(IsSiteId(s)) << s;
  for (const std::string& s : std::initializer_list<std::string>{"", "-a", "Site", "a_b", "a.b", "a/b", "a b", std::string(64, 'a')})
    EXPECT_FALSE(IsSiteId(s)) << s;
  EXPECT_STREQ(kSiteIdPattern, "([a-z0-9][a-z0-9-]{0,62})");
}

}  // namespace
}  // namespace freshsync::wire
