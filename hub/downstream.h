// Downstream: HQ to sites, the hub's side (docs/sync-protocol.md "Downstream: HQ to sites",
// docs/api.md "HQ writes" and "Downstream pull"). HubServer routes the requests here after
// authentication (writer token for the writes, reader for the reads, the site's certificate
// for the pull); this class validates the bodies, turns them into commands in the per-site
// logs (hub/downstream_log.h) and serves the site's long poll.
//
// Long poll without a thread per waiter: a pull that finds nothing past its `after` is parked
// (its Exchange's answer callback, a deadline) in a per-site list. One thread wakes parked
// pulls: at once when this replica appends to the site's log (Notify), and every
// kRecheckInterval by one read of every lane's last_seq, which sees appends of other replicas
// sharing a PostgreSQL store. A woken or expired pull is answered from the worker pool. The
// same thread trims delivered commands older than [downstream] retention_h, every
// kTrimInterval.
//
// Customer data: an order's customer is sealed with the hub's [privacy] key before it is
// stored, and opened only to build the pull's answer (inside the site's mutual-TLS link).
//
// Thread-safety: every method may be called from any thread. Ownership: borrows the store,
// the clock and the metrics, which must outlive it.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/status.h"
#include "freshsync.pb.h"
#include "hub/downstream_log.h"
#include "hub/hub_metrics.h"
#include "hub/store.h"
#include "privacy/sealer.h"

namespace freshsync::hub {

// What a downstream call answers: an error (status, message), a JSON body, or the pull's batch.
struct DownAnswer {
  int status = 200;
  std::string error;             // non-empty: the answer is {"error": error}
  nlohmann::json body;           // otherwise, unless `batch` is set
  std::optional<v1::DownBatch> batch;
  std::string etag;              // a versioned read's ETag ("\"3\"": the version), for If-None-Match
  bool audited = false;          // the call's audit row committed with the write (PostOrder)
};

class Downstream {
 public:
  static constexpr int kMaxCommandsPerPull = 2000;
  static constexpr int64_t kMaxWaitMs = 25000;
  static constexpr auto kRecheckInterval = std::chrono::milliseconds(150);
  static constexpr auto kTrimInterval = std::chrono::minutes(10);

  // `sealer`: the hub's privacy key, nullopt when none is configured (orders with a customer
  // are then refused). `submit` runs a task on the worker pool; false when it is full.
  Downstream(HubStore& store, Clock& clock, DownstreamMetrics& metrics, int retention_h, std::optional<Sealer> sealer,
             std::function<bool(std::function<void()>)> submit);
  ~Downstream();  // Stop()
  Downstream(const Downstream&) = delete;
  Downstream& operator=(const Downstream&) = delete;

  // HQ writes; `issued_by` is the token's name. 202 with the command's place in the log.
  // `audit` (ts_ms, kind, actor, path): the call's audit row, committed with an accepted or
  // repeated order (DownstreamLog::OrderAppend::audit; the answer says `audited`); a refused
  // order is left to the caller to audit.
  DownAnswer PostOrder(const std::string& site, const std::string& body, const std::string& issued_by,
                       std::optional<AuditEntry> audit = std::nullopt);
  DownAnswer PostCancel(const std::string& site, const std::string& order_id, const std::string& body,
                        const std::string& issued_by);
  DownAnswer PutCatalog(const std::string& sku, const std::string& body, const std::string& issued_by);
  DownAnswer PutFences(const std::string& site, const std::string& body, const std::string& issued_by);
  DownAnswer PutColdchainRules(const std::string& site, const std::string& body, const std::string& issued_by);
  // HQ asks the site for a different escrow allotment of `sku` ({"target": N}); the site grants
  // it as its free stock allows (docs/escrow.md). Every call is a new command.
  DownAnswer PutEscrowTarget(const std::string& site, const std::string& sku, const std::string& body,
                             const std::string& issued_by);
  // HQ reads.
  DownAnswer GetLane(const std::string& site);
  DownAnswer GetCatalog();
  // The site's current HQ fences (the FeatureCollection as PUT) or rules ({"rules": [...]}, as
  // PUT), whatever retention trimmed since; the version in `etag`. 404 when HQ never set any.
  DownAnswer GetFences(const std::string& site);
  DownAnswer GetColdchainRules(const std::string& site);

  // The site's pull: `respond` is called exactly once, now or when the pull is woken or its
  // wait ends (from the worker pool or this class's thread).
  void Pull(const std::string& site, const std::multimap<std::string, std::string>& params,
            std::function<void(DownAnswer)> respond);

  // Starts the waker/trimmer thread.
  void Start();
  // Answers every parked pull with an empty batch and stops the thread; later pulls are
  // answered at once. Idempotent.
  void Stop();

  DownstreamLog& log() { return log_; }

 private:
  struct Impl;
  // Wakes the loop: this replica appended to a log.
  void Notify();
  // Appends an HQ order together with the orders other callers are appending at the same
  // moment: one transaction, one commit for all of them (DownstreamLog::AppendOrders).
  Result<DownAppend> CommitOrder(const DownstreamLog::OrderAppend& order);
  // One read of the site's commands past `after`, of `kinds` (bit per v1::DownKind).
  // *nothing: nothing to send and the position would not move (the pull may wait).
  DownAnswer RunPull(const std::string& site, uint64_t after, uint32_t kinds, bool* nothing, uint64_t* last_seq);
  void Loop();
  Clock& clock_;
  DownstreamLog log_;
  DownstreamMetrics& metrics_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace freshsync::hub
