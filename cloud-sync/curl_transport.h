// Transport over libcurl: HTTPS with mutual TLS, one reused easy handle so that consecutive
// batches ride the same TLS connection (keep-alive), TLS 1.2 or later, connect and total
// timeouts, no signals (the agent is one thread of a multi-threaded daemon).
//
// Ownership: owns the curl handle. Thread-safety: as Transport (one sending thread).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "cloud-sync/transport.h"

namespace freshsync::sync {

struct CurlTransportOptions {
  std::string ca;            // CA bundle that signed the hub's certificate
  std::string cert;          // client certificate (CN = site)
  std::string key;           // its private key
  int connect_timeout_ms = 5000;
  int timeout_ms = 10000;    // whole exchange
  size_t max_response_bytes = 4 << 20;  // a hub answer is small; anything larger is refused
};

class CurlTransport final : public Transport {
 public:
  // Calls curl_global_init once per process (thread-safe since curl 7.84; guarded anyway).
  explicit CurlTransport(CurlTransportOptions options);
  ~CurlTransport() override;
  CurlTransport(const CurlTransport&) = delete;
  CurlTransport& operator=(const CurlTransport&) = delete;

  Result<HttpResponse> Send(const HttpRequest& request) override;
  void Interrupt() override { interrupted_.store(true); }

 private:
  static int OnProgress(void* self, long long, long long, long long, long long);
  static size_t OnBody(char* data, size_t size, size_t n, void* self);
  static size_t OnHeader(char* data, size_t size, size_t n, void* self);

  CurlTransportOptions options_;
  void* curl_ = nullptr;  // CURL*
  std::atomic<bool> interrupted_{false};
  HttpResponse* current_ = nullptr;
  bool overflow_ = false;
};

}  // namespace freshsync::sync
