#include "common/clock.h"

#include <chrono>

namespace freshsync {
namespace {

class RealClock final : public Clock {
 public:
  int64_t NowMs() override {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  }
  int64_t MonotonicMs() override {
    using namespace std::chrono;
    return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
  }
};

}  // namespace

Clock& SystemClock() {
  static RealClock* clock = new RealClock();  // never destroyed: used from detached threads at exit
  return *clock;
}

uint64_t HybridLogicalClock::Now() {
  const uint64_t wall = Pack(clock_.NowMs(), 0);
  std::lock_guard<std::mutex> lock(mu_);
  // Either the wall clock moved past us, or we tick the logical counter. When the counter
  // would overflow, borrow the next millisecond: order matters more than exactness.
  last_ = wall > last_ ? wall : last_ + 1;
  return last_;
}

uint64_t HybridLogicalClock::Observe(uint64_t remote) {
  const uint64_t wall = Pack(clock_.NowMs(), 0);
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t next = last_ + 1;
  if (remote + 1 > next) next = remote + 1;
  if (wall > next) next = wall;
  last_ = next;
  return last_;
}

uint64_t HybridLogicalClock::Last() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_;
}

}  // namespace freshsync
