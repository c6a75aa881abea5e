// SyncAgent: ships the edge outbox to hubd, exactly once in effect, through any failure.
//
// What it does, in the order of one Step():
//   1. trims acknowledged outbox rows older than store.outbox_retention_h (small chunks);
//   2. reconciles with the hub after every reconnect and every hub.reconcile_interval_s
//      (digest of seq ranges; rewinds, re-sends differing ranges, or records 'seq_floor');
//   3. re-sends ranges that reconciliation found different;
//   4. sends priority rows (orders, stock, alerts, geofence) that lie beyond the next normal
//      batch as `urgent` batches, once each ('urgent_sent_seq');
//   5. sends the dense normal stream after 'acked_seq', batched by count, bytes and age.
// Batches are protobuf `Batch`, zstd-compressed, POSTed to {hub.url}/v1/sites/{site}/batches.
//
// Durability: 'acked_seq' is written to sync_state only after the hub's 200 names it as its
// contiguous seq; a crash before that resends the batch and the hub counts duplicates. So the
// hub sees every record at least once and applies it once.
//
// Failures: transport errors, 429 and 5xx back off exponentially with full jitter and a cap,
// Retry-After being a floor; 409 rewinds to the hub's expected seq; other 4xx are logged and
// retried at the cap (records are never dropped). While the link is down the thread sleeps.
//
// Ownership: the agent owns its thread, its SQLite connection and (unless injected) its
// transport. The Clock and an injected Transport must outlive it.
// Thread-safety: Start/Stop from one controlling thread; GetStats() and Notify() from any
// thread. Step() is for tests only, and only while the thread is not running.
#pragma once

#include <array>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cloud-sync/backoff.h"
#include "wire/batch_format.h"
#include "cloud-sync/sync_store.h"
#include "cloud-sync/transport.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/status.h"

namespace freshsync::sync {

// Tuning that is not operator configuration.
struct SyncAgentOptions {
  int zstd_level = 3;
  // How often an idle agent looks for new rows anyway. Notify() (edged calls it on every
  // commit that appends to the outbox) wakes it at once; the poll remains for the rows that
  // arrive without a Notify: the disk quota's notices, written on its own connection, and
  // `edgectl reconcile`'s request, which the agent reads about once a second.
  int idle_poll_ms = 1000;
  int retention_check_s = 60;         // how often to trim
  int retention_chunk = 1000;         // rows per trim transaction
  int retention_max_chunks = 50;      // trim transactions per check
  uint32_t digest_buckets = 256;      // per reconciliation request (hub allows at most 1024)
  uint64_t rng_seed = 0;              // 0: random; tests fix it
  int max_batch_format = wire::BatchEncoder::kMaxFormat;  // 1 forces the original format (tests, benchmarks)
};

struct SyncStats {
  bool link_up = false;
  uint64_t last_seq = 0;        // highest seq in the outbox
  uint64_t acked_seq = 0;       // hub's contiguous seq as last acknowledged
  uint64_t backlog = 0;         // last_seq - acked_seq: records the hub has not acknowledged
  uint64_t urgent_sent_seq = 0;
  uint64_t batches_sent = 0;    // answered with 200
  uint64_t urgent_batches_sent = 0;
  uint64_t records_sent = 0;
  // Records the hub refused by the shared field rules and quarantined (BatchAck.refused): held
  // by the hub as refused, never applied. Non-zero means this edge wrote what it should not.
  uint64_t records_refused_by_hub = 0;
  uint64_t bytes_sent = 0;      // compressed request bodies
  uint64_t retries = 0;         // failed exchanges that will be retried
  uint64_t rewinds = 0;         // 409s and reconciliation rewinds
  uint64_t reconciliations = 0;
  uint64_t reconcile_resends = 0;  // buckets found different and re-sent
  uint64_t trimmed = 0;
  uint64_t state_compares = 0;      // stock state digests compared with the hub
  uint64_t state_rebuilds = 0;      // rebuild-state requests sent (hub stock differed)
  uint64_t state_repaired = 0;      // rebuilds after which the digests agreed
  uint64_t state_mismatches = 0;    // digests still different after a rebuild (logged as an error)
  uint64_t state_skipped = 0;       // comparisons skipped: edge not fully acked, or it moved meanwhile
  uint64_t seq_floor = 0;    // see outbox_schema.h kStateSeqFloor
  int last_http_status = 0;     // 0: no answer (transport error) or nothing sent yet
  std::string last_error;
  int64_t last_ack_ms = 0;      // wall clock
  // For metrics: every hub answer by HTTP status (0: transport error, no answer).
  std::map<int, uint64_t> http_codes;
  // For metrics: records per batch answered 200, counted per bucket of kBatchSizeBounds
  // (the last bucket is everything above the last bound). Sum: records_sent; count: batches_sent.
  static constexpr std::array<uint64_t, 5> kBatchSizeBounds = {1, 10, 100, 1000, 5000};
  std::array<uint64_t, 6> batch_size_buckets{};
};

class SyncAgent {
 public:
  // `config.hub` must be set. A null transport makes a CurlTransport from config.hub.
  SyncAgent(EdgeConfig config, Clock& clock, std::unique_ptr<Transport> transport = nullptr,
            SyncAgentOptions options = {});
  ~SyncAgent();  // Stop()s
  SyncAgent(const SyncAgent&) = delete;
  SyncAgent& operator=(const SyncAgent&) = delete;

  // Opens the store connection and starts the thread. kNotFound if the store file or its
  // tables are missing, kInvalidArgument without a [hub] section.
  Status Start();
  // Returns promptly: wakes the thread from any wait and interrupts an in-flight request.
  void Stop();
  // New rows were committed: look now instead of at the next idle poll. Ends only an idle
  // wait; a backoff and a partial batch waiting for batch_max_age_ms run their course.
  void Notify();
  SyncStats GetStats() const;

  // --- test seams ---
  // Opens the store without starting the thread.
  Status OpenForTest() { return Open(); }
  // One unit of work; returns how long the thread would wait before the next one (ms).
  int64_t StepForTest() { return Step(); }
  // Forces a reconciliation on the next step.
  void RequestReconcileForTest() { reconcile_due_ = true; }

  // sync_state row an operator sets to 1 (`edgectl reconcile`) to ask the running agent for
  // a reconciliation now; the agent polls it about once a second and clears it.
  static constexpr const char* kStateReconcileRequested = "reconcile_requested";

 private:
  enum class Kind { kNormal, kUrgent, kResend };

  Status Open();
  void Run();
  int64_t Step();
  Status LoadState();
  int64_t SendRows(const std::vector<OutboxRow>& rows, Kind kind);
  void LearnFormat(uint32_t announced_max_format);  // from a BatchAck
  // Handles a non-200 answer or a transport failure; returns the wait before the next try.
  int64_t Failure(const Result<HttpResponse>& r, const char* what);
  int64_t Reconcile();
  // Current-state step of a reconciliation round (docs/sync-agent.md): compares the edge's
  // stock digest with the hub's, asks the hub to rebuild on a difference, compares again.
  void CompareState();
  void MaybeTrim();
  void PollReconcileRequest();
  void CountAnswer(const Result<HttpResponse>& r);
  Status PersistAcked(uint64_t acked, bool advanced);
  void SetLink(bool up);
  void SetError(std::string e);
  void Publish();  // copies the working state into stats_
  std::string BaseUrl() const;

  EdgeConfig config_;
  HubLinkConfig hub_;
  Clock& clock_;
  std::unique_ptr<Transport> owned_transport_;
  Transport* transport_;
  SyncAgentOptions options_;
  Backoff backoff_;

  // Working state: the agent thread only.
  std::unique_ptr<SyncStore> store_;
  bool loaded_ = false;
  // sync_state.restored_last_seq (outbox_schema.h): nonzero after `edgectl restore` until the
  // first successful reconciliation; nothing is sent while it is set.
  uint64_t restored_last_ = 0;
  uint64_t acked_ = 0;
  uint64_t urgent_scanned_ = 0;
  uint64_t last_seq_ = 0;
  int link_ = -1;                // -1 unknown, 0 down, 1 up
  bool reconcile_due_ = true;    // at start-up, after a reconnect, and periodically
  int64_t next_reconcile_ms_ = 0;
  int64_t next_trim_ms_ = 0;
  int64_t next_request_poll_ms_ = 0;  // kStateReconcileRequested
  int consecutive_409_ = 0;
  bool idle_wait_ = false;  // the last Step() found nothing to send: a Notify() ends its wait
  // Batch format to send: 1 until the hub's BatchAck announces max_format >= 2 (an older hub
  // never does, so it keeps getting format 1). Re-learnt from every ack, so a hub downgraded
  // behind the same URL is followed after one refused batch.
  int hub_format_ = 1;
  std::deque<std::pair<uint64_t, uint64_t>> resend_;  // inclusive seq ranges
  // Edge digest + hub digest of the last rebuild that did not help: the same pair again means
  // a rebuild cannot help either (it re-derives the same rows), so none is requested.
  std::string unrepairable_pair_;
  std::vector<OutboxRow> rows_;
  wire::BatchEncoder encoder_;
  int64_t last_error_log_ms_ = -1'000'000;
  SyncStats work_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool notified_ = false;
  SyncStats stats_;
  std::thread thread_;
};

}  // namespace freshsync::sync
