// FeedLease: one follower of the change feed active across the hub replicas that share a store
// (the RabbitMQ relay, each webhook's notifier). It holds the store's lease `name`
// (HubStore::HoldLease) and renews it every ttl/3, so a holder that stops renewing (killed,
// partitioned from the store) loses it after at most ttl and another replica takes over.
//
// Keep() is called at the top of every round of the follower's loop:
//   kTaken  the lease is ours from now on: the previous holder may have moved the stored cursor,
//           so the follower reads it again before it delivers anything
//   kHeld   still ours (renewed when due)
//   kOther  another replica holds it: the follower stops delivering and waits RetryMs()
//   kError  the store did not answer (error()): the follower stops delivering and backs off
// Release() hands the lease back (expires now) so that another replica need not wait the ttl.
//
// Thread-safety: a value owned by one follower thread. Borrows the store and the clock.
#pragma once

#include <cstdint>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "hub/store.h"

namespace freshsync::hub {

// hostname:pid, the default holder name of a replica's followers.
std::string DefaultLeaseHolder();

class FeedLease {
 public:
  enum class Outcome { kTaken, kHeld, kOther, kError };
  FeedLease(HubStore& store, Clock& clock, std::string name, std::string holder, int64_t ttl_ms);

  Outcome Keep();
  bool held() const { return held_; }
  int64_t RetryMs() const { return ttl_ms_ / 3; }
  const Status& error() const { return error_; }
  const std::string& holder() const { return holder_; }
  void Release();

 private:
  HubStore& store_;
  Clock& clock_;
  std::string name_;
  std::string holder_;
  int64_t ttl_ms_;
  bool held_ = false;
  int64_t renewed_ms_ = 0;  // monotonic
  Status error_;
};

}  // namespace freshsync::hub
