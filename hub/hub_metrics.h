// What an operator of a hub watches, beyond the transport's counters (server.cc MetricsText):
// requests by route and status with their latency, batches and records applied, store call
// latency and errors, and per site the contiguous seq and the age of its last batch
// (docs/operations.md, "Hub metrics"; packaging/grafana-dashboard.json plots them).
//
// Thread-safe: the server's I/O threads and workers record, a scrape reads.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/prometheus.h"
#include "hub/downstream_log.h"
#include "hub/store.h"

namespace freshsync::hub {

// The change-feed relay's state (hub/relay/amqp_relay.h), written by its thread. Exported only
// when a relay is configured (`enabled`).
struct RelayMetrics {
  std::atomic<bool> enabled{false};
  std::atomic<bool> active{false};            // holds the lease: this replica is the one relaying
  std::atomic<bool> connected{false};         // to the broker, channel in confirm mode
  std::atomic<uint64_t> published{0};         // messages sent, repeats after a reconnect included
  std::atomic<uint64_t> confirmed{0};         // messages the broker confirmed
  std::atomic<uint64_t> errors{0};            // AMQP and store errors, each followed by a backoff
  std::atomic<uint64_t> cursor{0};            // feed cursor up to which every message is confirmed
  std::atomic<uint64_t> lag_records{0};       // feed items after the cursor (counted up to a page)
  std::atomic<double> lag_seconds{0};         // since the oldest of them was first read
};

// The webhook notifiers' series (hub/notify/notifier.h), labelled by webhook name; a webhook's
// gauges appear once its notifier has registered it (Register, before its thread starts).
class NotifyMetrics {
 public:
  void Register(const std::string& webhook);
  void Delivered(const std::string& webhook, const std::string& event) { delivered_.Add({webhook, event}); }
  void FailedAttempt(const std::string& webhook) { failed_.Add({webhook}); }
  void DeadLettered(const std::string& webhook) { dead_.Add({webhook}); }
  // State of a webhook's notifier: holds the lease, dead letters waiting in the store, and
  // seconds since the oldest undelivered event of its queue was read (0: caught up).
  void SetState(const std::string& webhook, bool active, uint64_t dead_pending, double lag_seconds);
  void Write(prometheus::TextWriter& w) const;

 private:
  struct State {
    bool active = false;
    uint64_t dead_pending = 0;
    double lag_seconds = 0;
  };
  prometheus::LabeledCounters delivered_{{"webhook", "event"}};
  prometheus::LabeledCounters failed_{{"webhook"}};
  prometheus::LabeledCounters dead_{{"webhook"}};
  mutable std::mutex mu_;
  std::map<std::string, State> state_;
};

// The downstream logs' series (hub/downstream.h), written by the HQ write routes and the pulls.
struct DownstreamMetrics {
  std::atomic<uint64_t> appended[8] = {};  // commands appended, by v1::DownKind (repeats not counted)
  std::atomic<uint64_t> escrow_accepted{0}; // HQ orders the hub accepted against an allotment
  std::atomic<uint64_t> pulls{0};          // pulls answered
  std::atomic<int64_t> parked{0};          // pulls waiting now (long poll)
};

class HubMetrics {
 public:
  RelayMetrics relay;
  DownstreamMetrics downstream;
  NotifyMetrics notify;
  // `route` is the route's template ("/v1/sites/{site}/batches"), never the path itself, so
  // that the series stay few whatever callers send; "unmatched" for a 404 without a route.
  void Request(std::string_view method, std::string_view route, int status, double seconds);
  void BatchApplied(uint64_t records_applied, uint64_t duplicates, uint64_t refused);
  // One store call: `op` names the HubStore call ("apply_batch", "changes", ...). An error is
  // a Status that is not the caller's fault (kInvalidArgument, kNotFound are not counted).
  void StoreCall(std::string_view op, double seconds, bool error);
  // Appends the series; `sites` from HubStore::Sites() and `lanes` from DownstreamLog::Lanes()
  // at scrape time (nullptr: the store did not answer, and freshsync_hub_store_errors_total
  // counts it).
  void Write(prometheus::TextWriter& w, const std::vector<SiteInfo>* sites, int64_t now_ms,
             const std::vector<std::pair<std::string, LaneState>>* lanes = nullptr) const;

 private:
  prometheus::LabeledCounters requests_{{"method", "route", "status"}};
  prometheus::LabeledHistograms request_seconds_{{"method", "route"}};
  prometheus::LabeledHistograms store_seconds_{{"op"}};
  prometheus::LabeledCounters store_errors_{{"op"}};
  std::atomic<uint64_t> batches_applied_{0};
  std::atomic<uint64_t> records_applied_{0};
  std::atomic<uint64_t> records_duplicate_{0};
  std::atomic<uint64_t> records_refused_{0};
};

// Times a store call and records it in `m`: `auto r = TimedStoreCall(m, "changes", [&] {...})`.
// `call` returns a Status or a Result<T>.
template <typename Call>
auto TimedStoreCall(HubMetrics& m, std::string_view op, Call&& call) {
  const auto start = std::chrono::steady_clock::now();
  auto result = call();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const Status& st = [&]() -> const Status& {
    if constexpr (requires { result.status(); }) return result.status();
    else return result;
  }();
  const bool error = !st.ok() && st.code() != StatusCode::kInvalidArgument && st.code() != StatusCode::kNotFound;
  m.StoreCall(op, seconds, error);
  return result;
}

}  // namespace freshsync::hub
