// DownstreamPuller: pulls HQ's commands for this site from hubd and hands them to the edge
// (docs/sync-protocol.md, "Downstream: HQ to sites"; docs/sync-agent.md, "Downstream").
//
// One loop on its own thread and its own Transport (its own mutual-TLS connection): a long
// poll held by the hub for up to wait_ms must never delay the upstream agent's batches.
//   GET {hub.url}/v1/sites/{site}/downstream/commands?after=A&wait_ms=W&kinds=K
//   200: decode DownBatch, CommandSink::Apply (each command committed with its dedupe row and
//        the new position), then pull again at once with the new `after`. That `after` is the
//        acknowledgement: the hub learns the position only once the site has committed it.
//   transport error, 429, 5xx: backoff with full jitter (cloud-sync/backoff.h), Retry-After
//        honoured, a refused connect probed on hub.probe_interval_ms; other 4xx and a body that
//        does not decode: retried at the cap (never skipped: the position does not move).
//   a failing sink (the store): backoff, then the position is read again from the sink.
// K is the capability set: every kind this release applies (wire::kDownKindNames), or
// [downstream] kinds to act as an older site.
//
// Ownership: owns its thread and (unless injected) its transport; the sink and the clock must
// outlive it. Thread-safety: Start/Stop from one controlling thread; GetStats from any thread;
// StepForTest only while the thread is not running.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "cloud-sync/backoff.h"
#include "cloud-sync/transport.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/status.h"

namespace freshsync::v1 {
class DownBatch;
}

namespace freshsync::sync {

// Where HQ's commands take effect (edge/downstream.h). Called from the puller's thread only.
class CommandSink {
 public:
  virtual ~CommandSink() = default;
  // The highest down_seq applied (sync_state 'down_applied_seq'): the next pull's `after`.
  virtual Result<uint64_t> AppliedSeq() = 0;
  // Applies the batch's commands in order, each in a transaction of its own, then moves the
  // position to through_seq; returns the new applied seq. On a failure the commands committed
  // before it stay committed; the puller reads AppliedSeq() again before its next pull.
  virtual Result<uint64_t> Apply(const v1::DownBatch& batch) = 0;
};

struct DownstreamStats {
  bool link_up = false;         // the last pull was answered 200
  uint64_t applied_seq = 0;     // the site's position, as last pulled with or applied
  uint64_t hub_last_seq = 0;    // DownBatch.last_seq of the last answer
  uint64_t pulls = 0;           // answered 200 (empty long polls included)
  uint64_t commands = 0;        // commands received and handed to the sink
  uint64_t pull_errors = 0;     // transport errors and non-200 answers
  uint64_t apply_errors = 0;    // the sink failed (the batch is pulled again)
  int last_http_status = 0;     // 0: no answer
  int64_t last_ok_ms = 0;       // wall clock of the last 200
  int64_t last_error_ms = 0;    // wall clock of the last failure
  std::string last_error;
};

struct DownstreamPullerOptions {
  uint64_t rng_seed = 0;  // backoff jitter; 0: random
};

class DownstreamPuller {
 public:
  // The `kinds` query value: config.downstream.kinds, or every kind this release applies.
  static std::string KindsParam(const EdgeConfig& config);
  // The pull's URL for `after` (config.hub must be set).
  static std::string PullUrl(const EdgeConfig& config, uint64_t after);

  // `config.hub` must be set. A null transport makes a CurlTransport from config.hub whose
  // timeout covers the long poll (hub.timeout_ms + downstream.wait_ms).
  DownstreamPuller(EdgeConfig config, CommandSink& sink, Clock& clock, std::unique_ptr<Transport> transport = nullptr,
                   DownstreamPullerOptions options = {});
  ~DownstreamPuller();  // Stop()s
  DownstreamPuller(const DownstreamPuller&) = delete;
  DownstreamPuller& operator=(const DownstreamPuller&) = delete;

  Status Start();
  // Returns promptly: interrupts a long poll in flight and any backoff wait.
  void Stop();
  DownstreamStats GetStats() const;

  // One pull and its application; returns how long the thread would wait before the next (ms).
  int64_t StepForTest() { return Step(); }

 private:
  void Run();
  int64_t Step();
  int64_t Failure(const Result<HttpResponse>& r, const std::string& what);

  EdgeConfig config_;
  CommandSink& sink_;
  Clock& clock_;
  std::unique_ptr<Transport> transport_;
  Backoff backoff_;
  std::string kinds_;

  // The thread's own state.
  bool have_position_ = false;
  uint64_t after_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  DownstreamStats stats_;
  std::thread thread_;
};

}  // namespace freshsync::sync
