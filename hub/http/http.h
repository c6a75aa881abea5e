// hub/http: hubd's HTTPS transport. Event-driven (Boost.Beast on Boost.Asio, TLS through
// tls_stream.h): a few I/O threads hold every connection, so a connection costs memory (about
// 35 kB idle, mostly OpenSSL's state), never a thread. It knows nothing of routes: a Handler sees each request
// head, then each whole request, and answers through its Exchange.
//
// What a client can hold, and for how long (all in Limits, from the config):
//   - a TCP connection without a finished TLS handshake: handshake_timeout;
//   - a request head (request line + headers): head_timeout for the whole head, however slowly
//     it trickles in, and at most max_header_bytes / max_header_count (431 beyond, then close);
//   - a body: body_timeout for the whole body, at most max_body_bytes (the Handler refuses a
//     larger Content-Length from the head, before any of the body is read);
//   - an idle keep-alive connection: idle_timeout between requests;
//   - an answer it does not read: write_timeout per answer (per chunk when streaming);
//   - connections: max_connections in all, max_connections_per_address per peer address; an
//     accepted connection over either cap is closed at once (no TLS, no answer) and counted.
// A deadline that passes closes the connection; nothing waits on a client with a thread.
//
// Threads: Start() binds; Run() runs the io_context on `io_threads` threads (the caller's is
// one of them) until Stop(), and the TLS handshakes on `io_threads` more of lower CPU priority
// (`Limits::handshake_nice`, 10 by default), from which each connection moves to the first once its handshake is done (a
// burst of handshakes does not delay requests of established connections). Every connection
// has its own strand. Handler::OnHead and
// Handler::OnRequest run on an I/O thread and must not block: work that may block (SQLite)
// goes to a WorkerPool (worker_pool.h) and answers from there; Exchange is thread-safe.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace freshsync::hub::http {

struct Limits {
  size_t max_header_bytes = 16 << 10;  // request line + headers, bytes
  int max_header_count = 100;
  uint64_t max_body_bytes = 16 << 20;
  // Bodies being read or handled, all connections together (by Content-Length): a request
  // beyond it gets 503 + Retry-After: 1 from its head, before its body is read.
  uint64_t max_body_bytes_in_flight = 128 << 20;
  std::chrono::milliseconds handshake_timeout{10000};
  std::chrono::milliseconds head_timeout{10000};
  std::chrono::milliseconds body_timeout{60000};
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds write_timeout{30000};
  int max_connections = 10000;
  int max_connections_per_address = 256;
  int io_threads = 2;
  // The handshake threads' nice increment over the process's own nice value (0..19; 0: the
  // request threads' priority). An increment, not an absolute value: a hubd started at nice 5
  // runs its handshakes at 15, and one at -5 (beside a database) at 5.
  int handshake_nice = 10;
};

// A request as the routes see it; the member names follow cpp-httplib's Request, which the
// hub's handlers were written against.
struct Request {
  std::string method;
  std::string target;  // as sent: path and query
  std::string path;    // %-decoded
  std::multimap<std::string, std::string> params;  // query, %-decoded, repeated names kept
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::vector<std::string> matches;  // filled by the router: [0] the path, then the groups
  std::string remote_addr;
  const SSL* ssl = nullptr;  // the connection's TLS state, valid while the request is answered

  bool has_header(std::string_view name) const;
  // The first value of `name` (case-insensitive), "" when absent.
  std::string get_header_value(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool close = false;  // close the connection after this answer

  void set_header(std::string name, std::string value);
  void set_content(std::string content, std::string content_type);
  std::string get_header_value(std::string_view name) const;
};

class Session;

// One request being answered. Respond() exactly once, from any thread; an Exchange dropped
// without an answer answers 500. Or stream: StartStream() sends the head (chunked), then
// Write() chunks one at a time (the next after `sent(true)`; `sent(false)` means the client
// is gone or did not read within write_timeout), then Finish(). The connection is held for
// the stream's life; a stream is not subject to idle_timeout.
class Exchange {
 public:
  Exchange(std::shared_ptr<Session> session, Request request);
  ~Exchange();
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  Request& request() { return request_; }
  void Respond(Response response);
  void StartStream(Response head, std::function<void(bool)> sent);
  void Write(std::string chunk, std::function<void(bool)> sent);
  void Finish();
  // Closes the connection at once, even with a write in flight (whose `sent` then gets false):
  // how a stream drops a client that stopped reading. Counts as the answer.
  void Abort();

 private:
  friend class Session;
  std::shared_ptr<Session> session_;
  Request request_;
  uint64_t body_reserved_ = 0;  // of Limits::max_body_bytes_in_flight, given back on destruction
  std::atomic<bool> answered_{false};
};

class Handler {
 public:
  virtual ~Handler() = default;
  // The head is read, the body not yet. An answer here is sent without reading the body and
  // closes the connection (a refusal by length, encoding, ...); nullopt reads the body.
  virtual std::optional<Response> OnHead(const Request& request) = 0;
  // The whole request (body read, at most Limits::max_body_bytes).
  virtual void OnRequest(std::shared_ptr<Exchange> exchange) = 0;
};

// Counters for /metrics. Monotonic except connections_open.
struct Stats {
  std::atomic<int64_t> connections_open{0};
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> refused_global_cap{0};
  std::atomic<uint64_t> refused_address_cap{0};
  std::atomic<uint64_t> handshake_failures{0};  // includes handshake timeouts and plain HTTP
  std::atomic<uint64_t> head_timeouts{0};       // head (or body) not complete by its deadline
  std::atomic<uint64_t> headers_too_large{0};   // 431: header bytes or count over the limit
  std::atomic<uint64_t> bad_requests{0};        // 400 from the parser (e.g. two Content-Lengths)
  std::atomic<uint64_t> body_budget_full{0};    // 503: max_body_bytes_in_flight reached
  std::atomic<uint64_t> heap_trims{0};          // malloc_trim after a burst of connections (server.cc)
};

class Server {
 public:
  // `configure_tls` sets up the SSL_CTX (certificates, verification); false fails Start().
  Server(Limits limits, Handler& handler, std::function<bool(SSL_CTX&)> configure_tls);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // kInvalidArgument when configure_tls fails; kUnavailable when the address cannot be bound.
  Status Start(const std::string& host, int port);
  int port() const;
  // Serves until Stop(); then waits (up to 10 s) for requests being handled, and returns.
  void Run();
  void Stop();  // any thread
  const Stats& stats() const;

 private:
  friend class Session;
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// %-decoding of a path or a query component ('+' is a space in a query only).
std::string PercentDecode(std::string_view s, bool plus_is_space);

}  // namespace freshsync::hub::http
