#include "hub/feed_lease.h"

#include <unistd.h>

namespace freshsync::hub {

std::string DefaultLeaseHolder() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return std::string(host) + ":" + std::to_string(getpid());
}

FeedLease::FeedLease(HubStore& store, Clock& clock, std::string name, std::string holder, int64_t ttl_ms)
    : store_(store), clock_(clock), name_(std::move(name)), holder_(holder.empty() ? DefaultLeaseHolder() : std::move(holder)),
      ttl_ms_(ttl_ms) {}

FeedLease::Outcome FeedLease::Keep() {
  const int64_t mono = clock_.MonotonicMs();
  if (held_ && mono - renewed_ms_ < ttl_ms_ / 3) return Outcome::kHeld;
  auto r = store_.HoldLease(name_, holder_, clock_.NowMs(), ttl_ms_);
  if (!r.ok()) {
    error_ = r.status();
    held_ = false;
    return Outcome::kError;
  }
  if (!*r) {
    held_ = false;
    return Outcome::kOther;
  }
  renewed_ms_ = mono;
  const bool taken = !held_;
  held_ = true;
  return taken ? Outcome::kTaken : Outcome::kHeld;
}

void FeedLease::Release() {
  if (held_) (void)store_.HoldLease(name_, holder_, clock_.NowMs(), 0);
  held_ = false;
}

}  // namespace freshsync::hub
