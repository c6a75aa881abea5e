// Clock seam. Production code asks a Clock for time so that tests can inject a FakeClock
// (tests/support/sync_fakes.h; a few unit tests keep a small clock of their own beside the
// test, e.g. edge/store_test.cc) and replay hours of traffic in milliseconds.
//
// Thread-safety: implementations must be safe to call from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

namespace freshsync {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time, epoch milliseconds. May jump (NTP); use for timestamps only.
  virtual int64_t NowMs() = 0;
  // Monotonic milliseconds from an arbitrary origin; use for timeouts and backoff.
  virtual int64_t MonotonicMs() = 0;
};

// The real clocks. Process-wide singleton; never destroyed.
Clock& SystemClock();

// Hybrid logical clock (Kulkarni et al.): 48 bits of physical milliseconds, 16 bits of logical
// counter. Timestamps it issues are strictly increasing, even when the wall clock steps back,
// and Observe() keeps causality with timestamps received from elsewhere.
// Thread-safety: Now() and Observe() are safe from any thread.
class HybridLogicalClock {
 public:
  explicit HybridLogicalClock(Clock& clock) : clock_(clock) {}

  static constexpr int kLogicalBits = 16;
  static uint64_t Pack(int64_t physical_ms, uint32_t logical) {
    return (static_cast<uint64_t>(physical_ms) << kLogicalBits) | (logical & 0xFFFFu);
  }
  static int64_t PhysicalMs(uint64_t hlc) { return static_cast<int64_t>(hlc >> kLogicalBits); }
  static uint32_t Logical(uint64_t hlc) { return static_cast<uint32_t>(hlc & 0xFFFFu); }

  // A new timestamp, greater than every one issued or observed before.
  uint64_t Now();
  // Merge a timestamp seen from elsewhere (a restored last value, a peer). Returns the new value.
  uint64_t Observe(uint64_t remote);
  // The last value issued, for persistence.
  uint64_t Last() const;

 private:
  Clock& clock_;
  mutable std::mutex mu_;
  uint64_t last_ = 0;
};

}  // namespace freshsync
