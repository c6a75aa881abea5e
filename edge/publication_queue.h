// PublicationQueue: the bounded queue between ingest's applier and its publication thread
// (edge/ingest.h, "Who waits on whom" in ingest.cc). Pushing never waits: beyond either bound
// a notification is dropped and counted. Dead-letter notifications are the first to go: an
// order state, event or alert that finds the queue full takes the place of the oldest queued
// dead-letter notifications, so a flood of refusals never costs the terminals a retained order
// state.
//
// Thread-safety: none of its own; ingest holds its pub_mu_ around every call.
#pragma once

#include <cstddef>
#include <deque>
#include <string>

#include "edge/store.h"

namespace freshsync::edge {

class PublicationQueue {
 public:
  // `deadletter_topic`: {root}/deadletter, the notifications that may be evicted.
  PublicationQueue(std::string deadletter_topic, size_t max_entries, size_t max_bytes)
      : deadletter_topic_(std::move(deadletter_topic)), max_entries_(max_entries), max_bytes_(max_bytes) {}

  // Queues `p`; returns how many notifications were dropped for it (`p` itself, or evicted
  // dead-letter notifications).
  size_t Push(Publication p);
  // The oldest entry. Not empty() first.
  Publication Pop();
  // Drops everything; returns how many were dropped.
  size_t Clear();
  bool empty() const { return queue_.empty(); }
  size_t size() const { return queue_.size(); }
  size_t bytes() const { return bytes_; }

 private:
  static size_t Bytes(const Publication& p) { return p.topic.size() + p.payload.size(); }
  bool Full(size_t more) const { return queue_.size() >= max_entries_ || bytes_ + more > max_bytes_; }

  const std::string deadletter_topic_;
  const size_t max_entries_;
  const size_t max_bytes_;
  std::deque<Publication> queue_;
  size_t bytes_ = 0;
};

}  // namespace freshsync::edge
