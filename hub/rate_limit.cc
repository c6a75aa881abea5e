#include "hub/rate_limit.h"

#include <algorithm>
#include <cmath>

namespace freshsync::hub {

RateLimiter::Decision RateLimiter::Acquire(const std::string& key) {
  Decision d;
  if (limit_.per_s <= 0) return d;
  const int64_t now = clock_.MonotonicMs();
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, fresh] = buckets_.try_emplace(key);
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = limit_.burst;
    b.last_ms = now;
  }
  b.tokens = std::min(limit_.burst, b.tokens + static_cast<double>(now - b.last_ms) * limit_.per_s / 1000.0);
  b.last_ms = now;
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return d;
  }
  d.allowed = false;
  d.retry_after_ms = static_cast<int64_t>(std::ceil((1.0 - b.tokens) * 1000.0 / limit_.per_s));
  ++refused_total_;
  ++b.unreported;
  if (now - b.last_report_ms >= kReportEveryMs) {
    d.report = true;
    d.refused_since_report = b.unreported;
    b.unreported = 0;
    b.last_report_ms = now;
  }
  return d;
}

uint64_t RateLimiter::refused_total() const {
  std::lock_guard<std::mutex> lock(mu_);
  return refused_total_;
}

}  // namespace freshsync::hub
