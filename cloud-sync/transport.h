// Transport seam between the sync agent and the hub: one HTTP exchange at a time.
//
// Production uses CurlTransport (curl_transport.h). Tests use a fake (tests/support/sync_fakes.h)
// to inject 503 + Retry-After, resets and timeouts on demand.
//
// Status codes from Send():
//   ok            an HTTP answer arrived (any status code, including 4xx and 5xx)
//   kUnavailable  no HTTP answer: connect refused, TLS failure, timeout, reset, interrupted.
//                 The message starts with the kind ("connect:", "timeout:", "reset:", "tls:",
//                 "interrupted:", "other:") so that logs and stats can tell them apart.
//   kInvalidArgument  the request itself is malformed (bad URL); retrying will not help.
// Thread-safety: Send() is called from one thread (the agent's). Interrupt() may be called
// from any thread, and makes an in-flight and every later Send() fail fast with "interrupted:".
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace freshsync::sync {

struct HttpRequest {
  std::string method = "POST";   // "POST" or "GET"
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  // Retry-After in seconds (delta-seconds form only), -1 when absent or unparseable.
  int RetryAfterSeconds() const;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual Result<HttpResponse> Send(const HttpRequest& request) = 0;
  virtual void Interrupt() {}
};

}  // namespace freshsync::sync
