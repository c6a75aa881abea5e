#include "cloud-sync/backoff.h"

#include <algorithm>

namespace freshsync::sync {
namespace {
// A Retry-After beyond this is treated as a misconfigured hub, not obeyed literally.
constexpr int64_t kMaxRetryAfterMs = 3600 * 1000;
}  // namespace

Backoff::Backoff(int64_t initial_ms, int64_t max_ms, uint64_t seed)
    : initial_ms_(std::max<int64_t>(1, initial_ms)), max_ms_(std::max(max_ms, initial_ms_)),
      rng_(seed != 0 ? seed : std::random_device{}()) {}

int64_t Backoff::Ceiling() const {
  int64_t c = initial_ms_;
  for (int i = 0; i < attempt_ && c < max_ms_; ++i) c *= 2;
  return std::min(c, max_ms_);
}

int64_t Backoff::Floor(int64_t delay, int retry_after_s) const {
  if (retry_after_s >= 0) delay = std::max(delay, std::min<int64_t>(int64_t{retry_after_s} * 1000, kMaxRetryAfterMs));
  return delay;
}

int64_t Backoff::Next(int retry_after_s) {
  std::uniform_int_distribution<int64_t> dist(0, Ceiling());
  const int64_t d = dist(rng_);
  if (attempt_ < 62) ++attempt_;
  return Floor(d, retry_after_s);
}

int64_t Backoff::Probe(int64_t interval_ms) {
  interval_ms = std::max<int64_t>(1, interval_ms);
  if (Ceiling() <= interval_ms) return Next();
  std::uniform_int_distribution<int64_t> dist(interval_ms / 2, interval_ms + interval_ms / 2);
  if (attempt_ < 62) ++attempt_;  // still a failure: the caller's loop must not treat it as idle
  return dist(rng_);
}

int64_t Backoff::Hinted(int retry_after_s) {
  const int64_t base = std::min<int64_t>(int64_t{std::max(0, retry_after_s)} * 1000, kMaxRetryAfterMs);
  std::uniform_int_distribution<int64_t> dist(0, std::min<int64_t>(base / 2, 1000));
  if (attempt_ < 62) ++attempt_;
  return std::min(base + dist(rng_), kMaxRetryAfterMs);
}

int64_t Backoff::AtCap(int retry_after_s) {
  if (attempt_ < 62) ++attempt_;
  return Floor(max_ms_, retry_after_s);
}

}  // namespace freshsync::sync
