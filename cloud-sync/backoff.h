// Retry delays: exponential backoff with full jitter and a cap (docs/sync-protocol.md, Retries):
//   delay = random(0, min(cap, initial * 2^attempt)), and Retry-After (seconds) is a floor.
// Full jitter spreads many sites' retries after a hub outage instead of having them return
// in lockstep. Two answers bypass the growing delay (docs/sync-agent.md, "Fast return"):
//   - nothing listens at the hub (connection refused): Probe(), a short fixed interval with
//     jitter, because a refused connect costs the hub nothing and the site then learns within
//     about that interval that the hub is back;
//   - the hub answered 429/503 with Retry-After: Hinted(), that time plus a little jitter,
//     because the hub said when it wants the site back (a grown backoff would only add up to
//     the cap on top).
// Thread-safety: a value owned by one thread.
#pragma once

#include <cstdint>
#include <random>

namespace freshsync::sync {

class Backoff {
 public:
  // seed 0: seeded from std::random_device.
  Backoff(int64_t initial_ms, int64_t max_ms, uint64_t seed = 0);

  // The delay before the next retry, then counts the attempt. retry_after_s < 0: none given.
  int64_t Next(int retry_after_s = -1);
  // The cap itself (for answers that retrying soon cannot fix, e.g. 403), Retry-After a floor.
  int64_t AtCap(int retry_after_s = -1);
  // The next connect attempt while nothing listens: Next(), but once the ceiling has grown
  // past `interval_ms`, random(interval/2, 3*interval/2) instead. Counts the attempt.
  int64_t Probe(int64_t interval_ms);
  // Retry-After (>= 0) plus random(0, min(Retry-After/2, 1 s)); bounded at an hour.
  int64_t Hinted(int retry_after_s);
  void Reset() { attempt_ = 0; }
  int attempt() const { return attempt_; }
  int64_t Ceiling() const;  // min(cap, initial * 2^attempt) for the current attempt

 private:
  int64_t Floor(int64_t delay, int retry_after_s) const;
  int64_t initial_ms_;
  int64_t max_ms_;
  int attempt_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace freshsync::sync
