#include "hub/decompress_budget.h"

namespace freshsync::hub {

bool DecompressBudget::TryReserve(uint64_t n) {
  uint64_t cur = used_.load(std::memory_order_acquire);
  while (true) {
    if (n > total_ || cur > total_ - n) {
      refused_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    if (used_.compare_exchange_weak(cur, cur + n, std::memory_order_acq_rel)) return true;
  }
}

DecompressBudget& DecompressBudget::Process(uint64_t total_bytes) {
  static DecompressBudget budget(total_bytes);
  return budget;
}

bool DecompressReservation::GrowTo(uint64_t bytes) {
  if (budget_ == nullptr || bytes <= held_) return true;
  if (!budget_->TryReserve(bytes - held_)) return false;
  held_ = bytes;
  return true;
}

}  // namespace freshsync::hub
