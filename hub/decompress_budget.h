// DecompressBudget: one process-wide bound on the memory that batch decompression holds across
// all concurrent requests. The per-request cap (limits.max_decompressed_bytes) alone let
// sixteen parallel zstd bombs peak at 489 MB, about twice what one request may use.
//
// A request takes a Reservation and grows it *before* it allocates (ZstdDecompressCapped
// reserves its worst case up front, all or nothing, and any growth beyond it ahead of the
// allocation); when the budget cannot cover it the request stops with kUnavailable and the
// server answers 503 + Retry-After, so memory held never exceeds the budget by construction. The reservation is
// released when it goes out of scope, after the decompressed bytes are freed.
//
// Thread-safety: all methods are safe from any thread (one mutex-free atomic counter).
#pragma once

#include <atomic>
#include <cstdint>

namespace freshsync::hub {

class DecompressBudget {
 public:
  explicit DecompressBudget(uint64_t total_bytes) : total_(total_bytes) {}
  // Adds n bytes if the total stays within the budget; false (nothing taken) otherwise.
  bool TryReserve(uint64_t n);
  void Release(uint64_t n) { used_.fetch_sub(n, std::memory_order_acq_rel); }
  uint64_t total() const { return total_; }
  uint64_t used() const { return used_.load(std::memory_order_acquire); }
  // Requests refused because the budget was exhausted (exported in /metrics).
  uint64_t refused_total() const { return refused_.load(std::memory_order_relaxed); }

  // The process's budget, created with `total_bytes` on first use (hubd has one config).
  static DecompressBudget& Process(uint64_t total_bytes);

 private:
  const uint64_t total_;
  std::atomic<uint64_t> used_{0};
  std::atomic<uint64_t> refused_{0};
};

// What one request holds; released on destruction.
class DecompressReservation {
 public:
  explicit DecompressReservation(DecompressBudget* budget) : budget_(budget) {}
  ~DecompressReservation() {
    if (budget_ && held_) budget_->Release(held_);
  }
  DecompressReservation(const DecompressReservation&) = delete;
  DecompressReservation& operator=(const DecompressReservation&) = delete;
  // Makes the reservation at least `bytes`; false when the budget cannot cover the growth.
  bool GrowTo(uint64_t bytes);
  uint64_t held() const { return held_; }
  // Gives everything back early (the decompressed bytes have been freed).
  void ReleaseAll() {
    if (budget_ && held_) budget_->Release(held_);
    held_ = 0;
  }

 private:
  DecompressBudget* budget_;
  uint64_t held_ = 0;
};

}  // namespace freshsync::hub
