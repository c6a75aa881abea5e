#include "edge/publication_queue.h"

#include <utility>

namespace freshsync::edge {

size_t PublicationQueue::Push(Publication p) {
  const size_t bytes = Bytes(p);
  size_t dropped = 0;
  if (Full(bytes) && p.topic != deadletter_topic_) {
    // In a flood the oldest entries are dead-letter notifications: erasing at the front is O(1).
    for (auto it = queue_.begin(); it != queue_.end() && Full(bytes);) {
      if (it->topic != deadletter_topic_) {
        ++it;
        continue;
      }
      bytes_ -= Bytes(*it);
      it = queue_.erase(it);
      ++dropped;
    }
  }
  if (Full(bytes)) return dropped + 1;
  bytes_ += bytes;
  queue_.push_back(std::move(p));
  return dropped;
}

Publication PublicationQueue::Pop() {
  Publication p = std::move(queue_.front());
  queue_.pop_front();
  bytes_ -= Bytes(p);
  return p;
}

size_t PublicationQueue::Clear() {
  const size_t n = queue_.size();
  queue_.clear();
  bytes_ = 0;
  return n;
}

}  // namespace freshsync::edge
