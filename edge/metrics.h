// MetricsServer: the Prometheus text endpoint of edged on [metrics] listen, plus /healthz and
// /readyz. It exposes counts, never payloads. Plain HTTP by default, meant for loopback (the
// packaged config binds 127.0.0.1); with [metrics] tls_cert/tls_key it speaks HTTPS only,
// TLS 1.2 or later with ECDHE+AEAD ciphers (the hub's policy), for a scrape across a network.
//
// Where the numbers come from:
//   - Ingest counters (IngestCounters): atomics, read with relaxed loads. The ingest path
//     never takes a lock for metrics.
//   - SyncAgent::GetStats(): a snapshot copied under the agent's own short lock.
//   - The store file, through a StoreReader (edge/store_reader.h) owned by this server (WAL lets it
//     read while ingest writes): outbox backlog and the age of the oldest unacknowledged
//     record, dead letters by code, open cold-chain alerts (from rule_state; 0 without it).
// Scrapes are serialised by a mutex of this server (never shared with ingest).
//
// /healthz: 200 while the process serves HTTP at all.
// /readyz:  200 when the store is open, ingest is subscribed to the broker and the journal
//           applier makes progress (IngestProgressing, edge/service.h: no batch committed for
//           ingest_stuck_ms while entries wait), 503 otherwise (the body says which).
//
// Thread-safety: Start/Stop from one thread; Render() from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"

namespace httplib {
class Server;
}

namespace freshsync::sync {
class SyncAgent;
class DownstreamPuller;
}

namespace freshsync::edge {

struct DownstreamCounters;
struct IngestCounters;
struct QuotaStatus;
class StoreReader;

struct MetricsSources {
  std::string site;
  std::string store_path;
  const IngestCounters* ingest = nullptr;      // required
  std::function<bool()> ingest_connected;      // required: ingest subscribed
  const sync::SyncAgent* agent = nullptr;      // null when running without [hub]
  std::function<QuotaStatus()> quota;          // the disk quota (edge/disk_quota.h); empty: none
  int64_t ingest_stuck_ms = 60'000;            // /readyz: the applier's progress limit
  std::function<int64_t()> customers_dropped;  // EdgeStore::customers_dropped; empty: not exported
  // Downstream (edge/downstream.h): null when not pulling HQ's commands.
  const sync::DownstreamPuller* downstream = nullptr;
  const DownstreamCounters* downstream_counters = nullptr;
};

// PEM files; both empty: plain HTTP.
struct MetricsTls {
  std::string cert;
  std::string key;
};

class MetricsServer {
 public:
  MetricsServer(std::string listen, MetricsSources sources, MetricsTls tls = {});
  ~MetricsServer();  // Stop()s
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds `listen` (host:port) and serves on its own thread. kInvalidArgument for a bad
  // address or TLS material that does not load (naming metrics.tls_cert/tls_key), kIOError
  // when the port cannot be bound (e.g. another edged runs).
  Status Start();
  void Stop();

  // The whole /metrics body (Prometheus text exposition format 0.0.4).
  std::string Render();
  // Ready as /readyz defines it; `why` says what is missing.
  bool Ready(std::string* why);

 private:
  bool StoreQueries(std::string* out);

  std::string listen_;
  MetricsSources src_;
  MetricsTls tls_;
  std::string tls_error_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  std::mutex mu_;                        // scrapes; guards reader_
  std::unique_ptr<StoreReader> reader_;  // opened lazily
};

}  // namespace freshsync::edge
