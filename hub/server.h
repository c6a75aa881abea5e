// HubServer: the HTTPS front of hubd. Site endpoints (batches, digest) authenticated by the
// client certificate; HQ endpoints by bearer token. Routes and answers: docs/api.md.
//
// TLS: 1.2 or later, ECDHE with AES-GCM or ChaCha20 only. A client certificate is requested
// and, if presented, must chain to tls.ca (else the handshake fails); it is optional at the
// TLS layer because HQ callers come without one, and required by the site routes.
//
// Limits: a request claiming more than max_body_bytes is answered 413 before its body is read;
// chunked bodies are refused (411) because they would bypass that check; decompression stops
// at max_decompressed_bytes (413). Batch requests beyond the in-flight budget get 503 with
// Retry-After, which bounds the memory held by decompressed batches.
//
// Thread-safety: Start() then Run() from one thread; Stop() from any thread (a signal
// thread). Ownership: borrows the store and the clock, which must outlive the server.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/config.h"
#include "common/status.h"
#include "hub/hub_metrics.h"
#include "hub/store.h"

namespace freshsync::hub {

// Fault injection for the integration tests, from FRESHSYNC_*_FOR_TEST variables: read once,
// by hubd's main (FromEnvironment), never in a request handler.
struct HubTestHooks {
  // FRESHSYNC_HUB_SHED_FILE_FOR_TEST: while this file exists, batches are shed with 503 and
  // Retry-After set to the file's first line (seconds), as under overload. Empty: never.
  std::string shed_file;

  static HubTestHooks FromEnvironment();
};

class HubServer {
 public:
  HubServer(const HubConfig& config, HubStore& store, Clock& clock, HubTestHooks hooks = {});
  ~HubServer();
  HubServer(const HubServer&) = delete;
  HubServer& operator=(const HubServer&) = delete;

  // Loads the TLS material and binds `listen`. kInvalidArgument naming the tls.* key when a
  // certificate or key cannot be loaded; kUnavailable when the address cannot be bound.
  Status Start();
  // The bound port (useful with port 0).
  int port() const;
  // Serves until Stop(). Returns when the listener has closed.
  void Run();
  void Stop();
  // Replaces the HQ token table (SIGHUP). Requests in flight finish with the table they
  // started with. Thread-safe.
  void ReloadTokens(const std::vector<HubToken>& tokens);
  // The relay's series in this server's /metrics (hub/relay/amqp_relay.h writes them).
  RelayMetrics& relay_metrics();
  // The webhook notifiers' series (hub/notify/notifier.h writes them).
  NotifyMetrics& notify_metrics();
  // The route table after Start(): each route's method and name (its template, as the metrics'
  // route label spells it: "/v1/sites/{site}/batches"; groups other than the site stay regex
  // groups, e.g. "/v1/catalog/(.+)"). tests/hub/openapi_test.cc compares it with hub/openapi.json.
  struct RouteInfo {
    std::string method;
    std::string name;
  };
  std::vector<RouteInfo> RoutesForTest() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace freshsync::hub
