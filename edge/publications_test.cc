// The payloads edged publishes, as docs/formats.md describes them: terminals and HQ tools
// parse these, so a changed field name or topic is a broken contract.
#include "edge/publications.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace freshsync::edge {
namespace {

using nlohmann::json;

OrderStatus Order() {
  OrderStatus o;
  o.order_id = "o-7";
  o.status = "created";
  o.ts_ms = 1700000000123;
  o.actor = "clerk-2";
  o.lines = {{"apple", 3}, {"pear", 1}};
  o.customer = Customer{"Li Wei", "+86 138", "2 Lane"};
  return o;
}

TEST(PublicationsTest, DeadLetterNoticeNamesTopicReasonCodeAndTime) {
  const Publication p = publish::DeadLetterNotice("fs", "fs/stock/movements", "delta: must not be 0", "invalid", 42);
  EXPECT_EQ(p.topic, "fs/deadletter");
  EXPECT_FALSE(p.retained);
  EXPECT_EQ(json::parse(p.payload),
            json({{"topic", "fs/stock/movements"}, {"reason", "delta: must not be 0"}, {"code", "invalid"}, {"received_ms", 42}}));
}

TEST(PublicationsTest, AReasonThatIsNotUtf8IsPublishedWithReplacementCharacters) {
  const Publication p = publish::DeadLetterNotice("fs", "fs/x", std::string("bad \xff byte"), "invalid", 1);
  EXPECT_EQ(json::parse(p.payload)["reason"], "bad \xEF\xBF\xBD byte");
}

TEST(PublicationsTest, OrderStateIsRetainedAndCarriesNoCustomer) {
  const Publication applied = publish::OrderState("fs", Order(), "created");
  EXPECT_EQ(applied.topic, "fs/orders/o-7/state");
  EXPECT_TRUE(applied.retained);
  EXPECT_EQ(json::parse(applied.payload), json({{"order_id", "o-7"}, {"status", "created"}, {"ts", 1700000000123}, {"actor", "clerk-2"}}));
  const Publication refused = publish::OrderState("fs", Order(), "refused", "insufficient stock");
  EXPECT_EQ(json::parse(refused.payload)["reason"], "insufficient stock");
  for (const auto* p : {&applied, &refused}) {
    EXPECT_EQ(p->payload.find("Li Wei"), std::string::npos);
    EXPECT_EQ(p->payload.find("+86"), std::string::npos);
  }
}

TEST(PublicationsTest, OrderEventListsTheLines) {
  const Publication p = publish::OrderEvent("site-9", Order(), "refused", "insufficient stock");
  EXPECT_EQ(p.topic, "site-9/events/orders");
  EXPECT_FALSE(p.retained);
  const json j = json::parse(p.payload);
  EXPECT_EQ(j["event"], "refused");
  EXPECT_EQ(j["lines"], json::array({{{"sku", "apple"}, {"qty", 3}}, {{"sku", "pear"}, {"qty", 1}}}));
  EXPECT_EQ(p.payload.find("Li Wei"), std::string::npos);
}

}  // namespace
}  // namespace freshsync::edge
