// Token-bucket rate limits of the hub: one bucket per HQ bearer token (pulls) and one per site
// (pushes and the other site routes), config [rate_limits] (docs/operations.md).
//
// A bucket holds up to `burst` requests and refills at `per_s` requests per second (monotonic
// clock). Acquire() takes one request from the key's bucket, or says how long until one is
// available; the server answers 429 with that as Retry-After. Keys are token names and site
// ids, both bounded by configuration and the PKI, so the table does not grow without bound.
//
// Thread-safety: all methods are safe from any thread (one mutex; the critical section is a
// hash lookup and a few flops). Ownership: borrows the clock, which must outlive the limiter.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/clock.h"

namespace freshsync::hub {

struct RateLimit {
  double per_s = 0;  // 0: unlimited
  double burst = 0;  // bucket size, >= 1 when per_s > 0
};

class RateLimiter {
 public:
  RateLimiter(const RateLimit& limit, Clock& clock) : limit_(limit), clock_(clock) {}

  struct Decision {
    bool allowed = true;
    int64_t retry_after_ms = 0;   // when refused: until one request is available again
    uint64_t refused_since_report = 0;  // when refused: refusals for this key not yet reported
    bool report = false;          // when refused: the first refusal of this key in report_every_ms
  };
  // Refusals are reported (audited) at most once per key per this interval, so a caller
  // hammering the hub cannot turn each refused request into an fsync'ed audit row.
  static constexpr int64_t kReportEveryMs = 60'000;

  Decision Acquire(const std::string& key);
  // Total refusals since start, for /metrics.
  uint64_t refused_total() const;

 private:
  struct Bucket {
    double tokens = 0;
    int64_t last_ms = 0;
    int64_t last_report_ms = INT64_MIN / 2;
    uint64_t unreported = 0;
  };
  const RateLimit limit_;
  Clock& clock_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
  uint64_t refused_total_ = 0;
};

}  // namespace freshsync::hub
