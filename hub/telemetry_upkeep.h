// TelemetryUpkeep runner: hubd's thread for HubStore::MaintainTelemetry ([retention]
// telemetry_days; docs/operations.md "Telemetry retention"). A round runs at start (so a fresh
// or just-migrated database gets its day partitions at once) and then every `interval_ms`.
// Among replicas sharing a store one runs it: the round is done only while this replica holds
// the store's lease kLeaseName (FeedLease, as the relay and the webhooks hold theirs), so two replicas never race on the DDL.
// Errors are logged and counted; the next round tries again.
//
// Thread-safety: Start() and Stop() from one thread. Ownership: borrows the store and the
// clock, which must outlive it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "common/clock.h"
#include "hub/feed_lease.h"
#include "hub/store.h"

namespace freshsync::hub {

class TelemetryUpkeepRunner {
 public:
  static constexpr const char* kLeaseName = "telemetry-upkeep";
  TelemetryUpkeepRunner(HubStore& store, Clock& clock, int keep_days, int64_t interval_ms = 3600 * 1000);
  ~TelemetryUpkeepRunner() { Stop(); }
  void Start();
  void Stop();
  // One round now, on the calling thread (what the thread does each interval): false when
  // another replica holds the lease or the store failed.
  bool RunOnce();

 private:
  void Loop();
  HubStore& store_;
  Clock& clock_;
  const int keep_days_;
  const int64_t interval_ms_;
  FeedLease lease_;  // used by the runner's thread only
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace freshsync::hub
