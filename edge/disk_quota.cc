#include "edge/disk_quota.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace freshsync::edge {

const char* QuotaStateName(QuotaState s) {
  switch (s) {
    case QuotaState::kOk: return "ok";
    case QuotaState::kDownsampling: return "downsampling";
    case QuotaState::kDropping: return "dropping";
    case QuotaState::kFull: return "full";
  }
  return "ok";
}

DiskQuota::DiskQuota(QuotaOptions options, QuotaStore& store, TelemetryGate* gate, Clock& clock)
    : options_(options), store_(store), gate_(gate), clock_(clock) {
  status_.quota_bytes = options_.quota_bytes;
}

QuotaStatus DiskQuota::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void DiskQuota::Sample(int64_t now_ms, int64_t used) {
  samples_.emplace_back(now_ms, used);
  // Keep one sample older than the window, so the rate spans the whole window.
  while (samples_.size() > 2 && now_ms - samples_[1].first >= options_.forecast_window_ms) samples_.pop_front();
}

std::optional<int64_t> DiskQuota::Forecast(int64_t used) const {
  if (options_.quota_bytes <= 0 || samples_.size() < 2) return std::nullopt;
  if (used >= options_.quota_bytes) return 0;
  const auto& [t0, u0] = samples_.front();
  const auto& [t1, u1] = samples_.back();
  if (t1 <= t0 || u1 <= u0) return std::nullopt;  // not growing
  const double bytes_per_ms = static_cast<double>(u1 - u0) / static_cast<double>(t1 - t0);
  return static_cast<int64_t>(static_cast<double>(options_.quota_bytes - used) / bytes_per_ms / 1000.0);
}

Status DiskQuota::Tick() {
  const int64_t now_ms = clock_.NowMs();
  auto used = store_.UsedBytes();
  if (!used.ok()) return used.status();
  int64_t u = *used;
  const int64_t q = options_.quota_bytes;
  QuotaState state = QuotaState::kOk;
  int64_t downsampled = 0, dropped = 0;
  bool exhausted = false;  // nothing left to free this round
  Status error;
  if (q > 0) {
    const auto soft = static_cast<int64_t>(static_cast<double>(q) * options_.soft_ratio);
    bool downsample_left = true;
    // The ladder: downsampling until it frees nothing, only then dropping.
    for (int step = 0; u >= soft && step < options_.max_steps; ++step) {
      if (downsample_left) {
        auto n = store_.Downsample(options_.rows_per_step);
        if (!n.ok()) {
          error = n.status();
          break;
        }
        if (*n == 0) {
          downsample_left = false;
          continue;
        }
        downsampled += *n;
        state = QuotaState::kDownsampling;
      } else {
        auto n = store_.DropAcked(options_.rows_per_step, now_ms);
        if (!n.ok()) {
          error = n.status();
          break;
        }
        if (*n == 0) {
          exhausted = true;
          break;
        }
        dropped += *n;
        state = QuotaState::kDropping;
      }
      auto again = store_.UsedBytes();
      if (!again.ok()) {
        error = again.status();
        break;
      }
      u = *again;
    }
    // Above the soft mark with downsampling spent: we are in the dropping stage even if this
    // round found nothing to drop.
    if (u >= soft && !downsample_left && state == QuotaState::kOk) state = QuotaState::kDropping;

    if (!paused_ && exhausted && u >= q) {
      paused_ = true;
      alert_started_ms_ = now_ms;
      spdlog::error("disk quota: store uses {} KiB of {} KiB and nothing more can be freed (stock, orders, alerts and "
                    "unacknowledged records are kept); pausing telemetry: the broker keeps it until space frees",
                    u >> 10, q >> 10);
      if (gate_) gate_->Pause();
      if (Status s = store_.RecordAlert(true, alert_started_ms_, now_ms); !s.ok())
        spdlog::error("disk quota: alert not recorded: {}", s.ToString());
      std::lock_guard<std::mutex> lock(mu_);
      ++status_.pauses;
    } else if (paused_ && u < static_cast<int64_t>(static_cast<double>(q) * options_.resume_ratio)) {
      paused_ = false;
      spdlog::warn("disk quota: store back to {} KiB of {} KiB; resuming telemetry", u >> 10, q >> 10);
      if (gate_) gate_->Resume();
      if (Status s = store_.RecordAlert(false, alert_started_ms_, now_ms); !s.ok())
        spdlog::error("disk quota: alert close not recorded: {}", s.ToString());
    }
    if (paused_) state = QuotaState::kFull;
  }
  Sample(clock_.MonotonicMs(), u);
  const std::optional<int64_t> forecast = Forecast(u);
  {
    std::lock_guard<std::mutex> lock(mu_);
    status_.used_bytes = u;
    status_.state = state;
    status_.forecast_full_s = forecast;
    status_.alert_open = paused_;
    status_.downsampled_rows += downsampled;
    status_.dropped_rows += dropped;
  }
  if (downsampled > 0 || dropped > 0)
    spdlog::info("disk quota: {}: downsampled {} and dropped {} acknowledged telemetry rows; store uses {} KiB of {} KiB",
                 QuotaStateName(state), downsampled, dropped, u >> 10, q >> 10);
  if (Status s = store_.PublishState(state, u, forecast); !s.ok() && error.ok()) error = s;
  return error;
}

}  // namespace freshsync::edge
