#include "edge/publication_queue.h"

#include <gtest/gtest.h>

namespace freshsync::edge {
namespace {

Publication Note(int i) { return {"fs/deadletter", "refused " + std::to_string(i), false}; }
Publication State(const std::string& order) { return {"fs/orders/" + order + "/state", "{\"state\":\"reserved\"}", true}; }

TEST(PublicationQueueTest, BeyondItsBoundsANotificationIsDroppedAndCounted) {
  PublicationQueue q("fs/deadletter", 3, 1 << 20);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(q.Push(Note(i)), 0u);
  EXPECT_EQ(q.Push(Note(3)), 1u);  // the newest dead-letter notification goes
  ASSERT_EQ(q.size(), 3u);
  EXPECT_EQ(q.Pop().payload, "refused 0");
}

TEST(PublicationQueueTest, OrderStatesTakeThePlaceOfDeadLetterNotifications) {
  PublicationQueue q("fs/deadletter", 3, 1 << 20);
  EXPECT_EQ(q.Push(State("o-1")), 0u);
  EXPECT_EQ(q.Push(Note(1)), 0u);
  EXPECT_EQ(q.Push(Note(2)), 0u);
  EXPECT_EQ(q.Push(State("o-2")), 1u);  // evicts "refused 1", the oldest notification
  ASSERT_EQ(q.size(), 3u);
  EXPECT_EQ(q.Pop().topic, "fs/orders/o-1/state");
  EXPECT_EQ(q.Pop().payload, "refused 2");
  EXPECT_EQ(q.Pop().topic, "fs/orders/o-2/state");
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.bytes(), 0u);
}

TEST(PublicationQueueTest, WithNoNotificationToEvictAnOrderStateIsDropped) {
  PublicationQueue q("fs/deadletter", 2, 1 << 20);
  EXPECT_EQ(q.Push(State("o-1")), 0u);
  EXPECT_EQ(q.Push(State("o-2")), 0u);
  EXPECT_EQ(q.Push(State("o-3")), 1u);
  EXPECT_EQ(q.Pop().topic, "fs/orders/o-1/state");
}

TEST(PublicationQueueTest, TheByteBoundHoldsAsWellAsTheCount) {
  const size_t one = Note(1).topic.size() + Note(1).payload.size();
  PublicationQueue q("fs/deadletter", 100, 2 * one);
  EXPECT_EQ(q.Push(Note(1)), 0u);
  EXPECT_EQ(q.Push(Note(2)), 0u);
  EXPECT_EQ(q.Push(Note(3)), 1u);
  EXPECT_EQ(q.bytes(), 2 * one);
  EXPECT_EQ(q.Clear(), 2u);
  EXPECT_EQ(q.bytes(), 0u);
}

}  // namespace
}  // namespace freshsync::edge
