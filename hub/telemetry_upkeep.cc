#include "hub/telemetry_upkeep.h"

#include <chrono>

#include <spdlog/spdlog.h>

namespace freshsync::hub {
TelemetryUpkeepRunner::TelemetryUpkeepRunner(HubStore& store, Clock& clock, int keep_days, int64_t interval_ms)
    : store_(store),
      clock_(clock),
      keep_days_(keep_days),
      interval_ms_(interval_ms),
      // The lease outlives one interval: the holder keeps it round after round; if it dies
      // another replica takes over one interval later.
      lease_(store, clock, kLeaseName, "", interval_ms + 60 * 1000) {}

void TelemetryUpkeepRunner::Start() { thread_ = std::thread([this] { Loop(); }); }

void TelemetryUpkeepRunner::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool TelemetryUpkeepRunner::RunOnce() {
  switch (lease_.Keep()) {
    case FeedLease::Outcome::kError:
      spdlog::warn("telemetry upkeep: lease: {}", lease_.error().ToString());
      return false;
    case FeedLease::Outcome::kOther:
      return false;
    case FeedLease::Outcome::kTaken:
    case FeedLease::Outcome::kHeld:
      break;
  }
  auto done = store_.MaintainTelemetry(clock_.NowMs(), keep_days_);
  if (!done.ok()) {
    spdlog::warn("telemetry upkeep: {}", done.status().ToString());
    return false;
  }
  if (done->partitions_created + done->partitions_dropped + done->rows_deleted + done->readings_deleted > 0)
    spdlog::info("telemetry upkeep: {} day partitions made, {} dropped past {} days, {} old chunks and {} old climate "
                 "readings deleted",
                 done->partitions_created, done->partitions_dropped, keep_days_, done->rows_deleted,
                 done->readings_deleted);
  return true;
}

void TelemetryUpkeepRunner::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    l.unlock();
    RunOnce();
    l.lock();
    cv_.wait_for(l, std::chrono::milliseconds(interval_ms_), [this] { return stop_; });
  }
}

}  // namespace freshsync::hub
