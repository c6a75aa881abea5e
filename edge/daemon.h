// EdgeDaemon: edged's components and the order they start and stop in (edge/edged_main.cc
// parses flags, loads the config, sets up logging and signals, and drives this object).
//
// Start(), in order:
//   1. the store lock (held until destruction: `edgectl restore` refuses while it is held);
//   2. the store: open and migrate, link state reset, site rules restored and attached;
//   3. the sync agent (when [hub] is set): before ingest, because its first step is a
//      reconciliation with the hub; the store wakes it on every commit that appends to the
//      outbox (EdgeStore::SetOutboxListener -> SyncAgent::Notify);
//   4. ingest (journal replay, then MQTT);
//   4b. the downstream puller (when [hub] is set and [downstream] enabled): a second store
//      connection for HQ's commands (edge/downstream.h), its own thread and mTLS connection
//      (cloud-sync/downstream_puller.h); publishes through ingest, hands sets to the rules;
//   5. the disk quota thread (its own store connection; measures even without a quota);
//   6. the metrics server (optional; a failure to bind is logged, the site keeps ingesting);
//   7. the systemd notifier: READY=1 once subscribed (or after 5 s), then every tick STATUS=
//      and, only while healthy, WATCHDOG=1 (edge/service.h).
// Stop() undoes it: the READY notifier, the quota thread (before ingest: a Pause/Resume in
// flight must not race Ingest::Stop), the downstream puller (it publishes through ingest), ingest (drains the journal into the store), the sync
// agent, metrics, the STATUS/watchdog thread.
//
// Threads of its own: the disk quota loop, the READY notifier, the STATUS/watchdog loop; the
// components own theirs (ingest: Paho + applier; agent; metrics server).
// Thread-safety: Start/Reload/Stop from one controlling thread (edged's signal loop).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "common/config.h"
#include "common/status.h"
#include "privacy/sealer.h"

namespace freshsync::sync {
class DownstreamPuller;
class SyncAgent;
}

namespace freshsync::edge {

class DiskQuota;
class DownstreamApplier;
class EdgeStore;
class Ingest;
class MetricsServer;
class QuotaStore;
class SiteRules;
class StoreLock;
class TelemetryGate;

// Fault injection and pacing for the integration tests, from FRESHSYNC_*_FOR_TEST variables.
// Read once, by edged's main (FromEnvironment); nothing else in edged reads them.
struct EdgeTestHooks {
  struct Fault {
    long after = 0;  // succeed this many times,
    long count = 0;  // then fail this many times (< 0: forever)
  };
  // FRESHSYNC_FAIL_COMMITS_FOR_TEST="AFTER:COUNT": store commits fail with an I/O error (as on a full disk).
  std::optional<Fault> fail_commits;
  // FRESHSYNC_FAIL_JOURNAL_FOR_TEST="AFTER:COUNT": intake journal appends fail likewise.
  std::optional<Fault> fail_journal;
  // FRESHSYNC_APPLIER_PACE_FOR_TEST="MAX_BATCH:DELAY_MS": the journal applier lags behind.
  size_t applier_max_batch = 0;  // 0: not paced
  int applier_delay_ms = 0;
  // FRESHSYNC_QUOTA_TICK_MS_FOR_TEST: how often the disk quota runs (at least 10 ms).
  std::optional<int64_t> quota_tick_ms;
  // FRESHSYNC_INGEST_STUCK_MS_FOR_TEST: the ingest-stuck limit of the watchdog and /readyz.
  std::optional<int64_t> ingest_stuck_ms;

  static EdgeTestHooks FromEnvironment();
};

class EdgeDaemon {
 public:
  // How often the disk quota measures and frees.
  static constexpr int64_t kQuotaTickMs = 2000;
  // A message inside the ingest callback longer than this makes the watchdog go silent
  // (edge/service.h): systemd restarts edged, the broker redelivers.
  static constexpr int64_t kIngestStuckMs = 60'000;

  // `config` as validated by main (hub key path resolved); `sealer`: the privacy key, if any.
  EdgeDaemon(EdgeConfig config, std::optional<Sealer> sealer, EdgeTestHooks hooks = {});
  ~EdgeDaemon();  // Stop()s
  EdgeDaemon(const EdgeDaemon&) = delete;
  EdgeDaemon& operator=(const EdgeDaemon&) = delete;

  // Starts everything in order (above). On failure, logs it critical, returns it, and
  // start_exit_code() says how edged exits: 1 when the store could not be locked, opened or
  // its rules restored; 2 when a component refused the configuration. What had started is
  // stopped by Stop() or the destructor.
  Status Start();
  int start_exit_code() const { return start_exit_code_; }

  // SIGHUP: the log level, then the site rules (validated here, adopted by the ingest thread
  // at its next GPS fix or climate reading). Other keys need a restart. Each failure is
  // logged and leaves the running setting in place.
  void Reload(const EdgeConfig& fresh);

  // Stops in order (above). Returns false when ingest could not drain its journal into the
  // store (the store failed; the journal keeps the rest for the next start). Idempotent.
  bool Stop();

 private:
  void QuotaLoop();
  void ServiceLoop();

  EdgeConfig config_;
  std::optional<Sealer> sealer_;
  EdgeTestHooks hooks_;
  int64_t stuck_ms_ = kIngestStuckMs;
  int start_exit_code_ = 0;
  bool started_ = false;
  bool stopped_ = false;
  bool drained_ = true;

  // Declared in start order: destroyed in reverse.
  std::unique_ptr<StoreLock> store_lock_;
  std::unique_ptr<EdgeStore> store_;
  std::unique_ptr<SiteRules> rules_;
  std::unique_ptr<sync::SyncAgent> agent_;
  std::unique_ptr<Ingest> ingest_;
  std::unique_ptr<EdgeStore> down_store_;  // the downstream applier's connection
  std::unique_ptr<DownstreamApplier> down_applier_;
  std::unique_ptr<sync::DownstreamPuller> down_puller_;
  std::unique_ptr<TelemetryGate> gate_;
  std::unique_ptr<QuotaStore> quota_store_;
  std::unique_ptr<DiskQuota> quota_;
  std::unique_ptr<MetricsServer> metrics_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool quota_done_ = false;
  bool service_done_ = false;
  std::thread quota_thread_;
  std::thread ready_thread_;
  std::thread service_thread_;
};

}  // namespace freshsync::edge
