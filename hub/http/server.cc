#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <limits>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <mutex>
#include <strings.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <unordered_map>

#include "hub/http/http.h"
#include "hub/http/tls_stream.h"

namespace freshsync::hub::http {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace bh = boost::beast::http;
using tcp = boost::asio::ip::tcp;

// ---------- Request / Response ----------

bool Request::has_header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0) return true;
  return false;
}

std::string Request::get_header_value(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0) return v;
  return "";
}

void Response::set_header(std::string name, std::string value) {
  for (auto& [k, v] : headers) {
    if (strcasecmp(k.c_str(), name.c_str()) == 0) {
      v = std::move(value);
      return;
    }
  }
  headers.emplace_back(std::move(name), std::move(value));
}

void Response::set_content(std::string content, std::string content_type) {
  body = std::move(content);
  set_header("Content-Type", std::move(content_type));
}

std::string Response::get_header_value(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0) return v;
  return "";
}

std::string PercentDecode(std::string_view s, bool plus_is_space) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

namespace {

void ParseTarget(Request& r) {
  const size_t q = r.target.find('?');
  r.path = PercentDecode(std::string_view(r.target).substr(0, q), false);
  if (q == std::string::npos) return;
  std::string_view rest = std::string_view(r.target).substr(q + 1);
  while (!rest.empty()) {
    const size_t amp = rest.find('&');
    const std::string_view part = rest.substr(0, amp);
    if (!part.empty()) {
      const size_t eq = part.find('=');
      r.params.emplace(PercentDecode(part.substr(0, eq), true),
                       eq == std::string_view::npos ? std::string() : PercentDecode(part.substr(eq + 1), true));
    }
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
}

bool IsParserError(const beast::error_code& ec) {
  static const auto& kHttpCategory = bh::make_error_code(bh::error::bad_method).category();
  if (ec.category() != kHttpCategory) return false;
  return ec != bh::error::end_of_stream && ec != bh::error::partial_message && ec != bh::error::need_more &&
         ec != bh::error::header_limit && ec != bh::error::body_limit && ec != bh::error::buffer_overflow;
}

}  // namespace

// ---------- server state shared by the acceptor and the sessions ----------

struct Server::Impl {
  Limits limits;
  Handler& handler;
  std::function<bool(SSL_CTX&)> configure_tls;
  Stats stats;
  ssl::context ssl_ctx{ssl::context::tls_server};
  std::mutex addr_mu;
  std::unordered_map<std::string, int> per_address;
  std::atomic<int> active_requests{0};
  std::atomic<uint64_t> body_bytes{0};  // reserved by requests with a body (Limits::max_body_bytes_in_flight)
  std::atomic<bool> stopping{false};
  int port = 0;
  // Declared last: destroying the io_contexts destroys the handlers still queued on them, and
  // with them the sessions, which give back their slots in the members above.
  // `ioc` serves the requests of connections whose TLS handshake is done; `handshake_ioc`
  // does the handshakes, on threads of lower CPU priority (kHandshakeNice), and then hands
  // each connection to `ioc`. A burst of handshakes (1,000 slowloris coming back at once after
  // head_timeout, every site reconnecting after a restart) is ~1 ms of CPU each; on one queue
  // with the requests, an HQ call on an established connection waited behind hundreds of them
  // (slowloris bench, docs/benchmarks.md "Hub connections"). Now the kernel runs the request
  // threads first, and the handshakes take the CPU they leave: no handshake is refused or
  // delayed when requests are few (sites retry anyway, but need not).
  // handshake_ioc is declared first so that it outlives ioc: the acceptor's pending accept,
  // queued on ioc, holds a socket bound to handshake_ioc, and destroying ioc destroys it.
  net::io_context handshake_ioc;
  net::io_context ioc;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::unique_ptr<net::steady_timer> retry_timer;
  std::unique_ptr<net::steady_timer> drain_timer;
  // TrimHeapAfterBursts runs on a thread of its own, never on an I/O thread: a trim can take
  // tens of ms, which HQ's requests would otherwise wait for (slowloris bench).
  std::mutex trim_mu;
  std::condition_variable trim_cv;
  bool trim_stop = false;  // under trim_mu
  std::thread trimmer;

  Impl(Limits l, Handler& h, std::function<bool(SSL_CTX&)> tls)
      : limits(l), handler(h), configure_tls(std::move(tls)), handshake_ioc(std::max(1, l.io_threads)),
        ioc(std::max(1, l.io_threads)) {}
  ~Impl() { StopTrimmer(); }
  void StopTrimmer() {
    {
      std::lock_guard<std::mutex> lock(trim_mu);
      trim_stop = true;
    }
    trim_cv.notify_all();
    if (trimmer.joinable() && trimmer.get_id() != std::this_thread::get_id()) trimmer.join();
  }

  bool Admit(const std::string& addr) {
    if (stats.connections_open.load() >= limits.max_connections) {
      ++stats.refused_global_cap;
      return false;
    }
    std::lock_guard<std::mutex> lock(addr_mu);
    int& n = per_address[addr];
    if (n >= limits.max_connections_per_address) {
      ++stats.refused_address_cap;
      if (n == 0) per_address.erase(addr);
      return false;
    }
    ++n;
    ++stats.connections_open;
    ++stats.connections_accepted;
    return true;
  }

  void Release(const std::string& addr) {
    std::lock_guard<std::mutex> lock(addr_mu);
    auto it = per_address.find(addr);
    if (it != per_address.end() && --it->second <= 0) per_address.erase(it);
    --stats.connections_open;
  }

  void Accept();
  void Drain(std::chrono::steady_clock::time_point deadline);
  void TrimHeapAfterBursts();
};

// ---------- one connection ----------

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Server::Impl& impl, tcp::socket&& socket, std::string addr)
      : impl_(impl),
        limits_(impl.limits),
        stream_(std::move(socket), impl.ssl_ctx),
        buffer_(limits_.max_header_bytes + (64 << 10)),
        addr_(std::move(addr)) {}
  ~Session() {
    ReleaseBody(reserved_);
    impl_.Release(addr_);
  }

  void Start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->Handshake(); });
  }

  void RequestStarted() { ++impl_.active_requests; }
  void RequestEnded() { --impl_.active_requests; }
  void ReleaseBody(uint64_t n) {
    if (n) impl_.body_bytes -= n;
  }

  // From Exchange (any thread): everything below runs on the connection's strand.
  void PostRespond(Response r) {
    net::post(stream_.get_executor(), [self = shared_from_this(), r = std::move(r)]() mutable { self->Write(std::move(r)); });
  }
  void PostStartStream(Response head, std::function<void(bool)> sent) {
    net::post(stream_.get_executor(), [self = shared_from_this(), head = std::move(head), sent = std::move(sent)]() mutable {
      self->StreamHead(std::move(head), std::move(sent));
    });
  }
  void PostClose() {
    net::post(stream_.get_executor(), [self = shared_from_this()] { self->Close(); });
  }
  void PostChunk(std::string chunk, bool last, std::function<void(bool)> sent) {
    net::post(stream_.get_executor(), [self = shared_from_this(), chunk = std::move(chunk), last, sent = std::move(sent)]() mutable {
      self->StreamChunk(std::move(chunk), last, std::move(sent));
    });
  }

 private:
  beast::tcp_stream& tcp() { return beast::get_lowest_layer(stream_); }

  void Handshake() {
    tcp().expires_after(limits_.handshake_timeout);
    stream_.async_handshake([self = shared_from_this()](beast::error_code ec) {
      if (ec) {
        ++self->impl_.stats.handshake_failures;
        return self->Close();
      }
      // From the handshake threads to the request threads (Server::Impl::handshake_ioc).
      self->tcp().expires_never();
      self->stream_.Rebind(net::make_strand(self->impl_.ioc), ec);
      if (ec) {
        spdlog::debug("{}: after the handshake: {}", self->addr_, ec.message());
        return self->Close();
      }
      net::post(self->stream_.get_executor(), [self] { self->ReadHead(); });
    });
  }

  // Between requests: wait for the first byte of the next head for up to idle_timeout.
  void WaitIdle() {
    if (impl_.stopping) return Shutdown();
    if (buffer_.size() > 0) return ReadHead();  // pipelined: the next head has begun
    buffer_.shrink_to_fit();
    tcp().expires_after(limits_.idle_timeout);
    stream_.async_read_some(buffer_.prepare(512), [self = shared_from_this()](beast::error_code ec, size_t n) {
      if (ec) return self->Close();
      self->buffer_.commit(n);
      self->ReadHead();
    });
  }

  void ReadHead() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(limits_.max_header_bytes));
    // The Handler checks Content-Length against the head. (Not boost::none: Beast 1.74 compares
    // the length with the optional, and anything is greater than none.)
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    // One deadline for the whole head, however slowly it trickles in.
    tcp().expires_after(limits_.head_timeout);
    bh::async_read_header(stream_, buffer_, *parser_,
                          [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHead(ec); });
  }

  void OnHead(beast::error_code ec) {
    if (ec == beast::error::timeout) {
      ++impl_.stats.head_timeouts;
      return Close();
    }
    if (ec == bh::error::header_limit || ec == bh::error::buffer_overflow) {
      ++impl_.stats.headers_too_large;
      return Refuse(431, "request header fields too large");
    }
    if (IsParserError(ec)) {
      ++impl_.stats.bad_requests;
      return Refuse(400, "malformed request: " + ec.message());
    }
    if (ec) {
      spdlog::debug("{}: head read: {}", addr_, ec.message());
      return Close();
    }
    const auto& head = parser_->get();
    const auto count = std::distance(head.begin(), head.end());
    if (count > limits_.max_header_count) {
      ++impl_.stats.headers_too_large;
      return Refuse(431, "more than " + std::to_string(limits_.max_header_count) + " header fields");
    }
    version_ = head.version();
    keep_alive_ = head.keep_alive();
    Request req;
    req.method = std::string(head.method_string());
    req.target = std::string(head.target());
    ParseTarget(req);
    req.headers.reserve(static_cast<size_t>(count));
    for (const auto& f : head) req.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    req.remote_addr = addr_;
    req.ssl = stream_.native_handle();
    if (auto early = impl_.handler.OnHead(req)) {
      early->close = true;
      return Write(std::move(*early));
    }
    request_ = std::move(req);
    if (const auto len = parser_->content_length(); len && *len > 0) {
      // Bounds the memory of bodies across connections; refused before any of it is read.
      if (impl_.body_bytes.fetch_add(*len) + *len > limits_.max_body_bytes_in_flight) {
        impl_.body_bytes -= *len;
        ++impl_.stats.body_budget_full;
        Response busy;
        busy.status = 503;
        busy.set_header("Retry-After", "1");
        busy.set_content("{\"error\":\"hub busy, retry later\"}", "application/json");
        busy.close = true;
        return Write(std::move(busy));
      }
      reserved_ = *len;
    }
    parser_->body_limit(limits_.max_body_bytes);
    if (parser_->is_done()) return Dispatch();
    if (beast::iequals(head[bh::field::expect], "100-continue")) {
      // libcurl waits for this (or a second) before sending a large body.
      auto cont = std::make_shared<bh::response<bh::empty_body>>(bh::status::continue_, version_);
      tcp().expires_after(limits_.write_timeout);
      return bh::async_write(stream_, *cont, [self = shared_from_this(), cont](beast::error_code wec, size_t) {
        if (wec) return self->Close();
        self->ReadBody();
      });
    }
    ReadBody();
  }

  void ReadBody() {
    tcp().expires_after(limits_.body_timeout);
    bh::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec == beast::error::timeout) {
        ++self->impl_.stats.head_timeouts;
        return self->Close();
      }
      if (ec == bh::error::body_limit) return self->Refuse(413, "body exceeds limits.max_body_bytes");
      if (IsParserError(ec)) {
        ++self->impl_.stats.bad_requests;
        return self->Refuse(400, "malformed request: " + ec.message());
      }
      if (ec) {
        spdlog::debug("{}: body read: {}", self->addr_, ec.message());
        return self->Close();
      }
      self->request_->body = std::move(self->parser_->get().body());
      self->Dispatch();
    });
  }

  void Dispatch() {
    parser_.reset();
    // No read is outstanding while the handler works: the deadline is off until the answer.
    tcp().expires_never();
    auto ex = std::make_shared<Exchange>(shared_from_this(), std::move(*request_));
    ex->body_reserved_ = reserved_;  // given back when the request has been answered
    reserved_ = 0;
    request_.reset();
    impl_.handler.OnRequest(std::move(ex));
  }

  void Refuse(int status, const std::string& message) {
    Response r;
    r.status = status;
    r.set_content("{\"error\":\"" + message + "\"}", "application/json");
    r.close = true;
    if (version_ == 0) version_ = 11;
    Write(std::move(r));
  }

  void Write(Response r) {
    auto res = std::make_shared<bh::response<bh::string_body>>();
    res->version(version_ ? version_ : 11);
    res->result(static_cast<unsigned>(r.status));
    for (auto& [k, v] : r.headers) res->insert(k, v);
    res->body() = std::move(r.body);
    const bool keep = keep_alive_ && !r.close && !impl_.stopping;
    res->keep_alive(keep);
    res->prepare_payload();
    tcp().expires_after(limits_.write_timeout);
    bh::async_write(stream_, *res, [self = shared_from_this(), res, keep](beast::error_code ec, size_t) {
      if (ec) {
        spdlog::debug("{}: write: {}", self->addr_, ec.message());
        return self->Close();
      }
      if (!keep) return self->Shutdown();
      self->WaitIdle();
    });
  }

  void StreamHead(Response head, std::function<void(bool)> sent) {
    stream_res_ = std::make_unique<bh::response<bh::empty_body>>();
    stream_res_->version(version_ ? version_ : 11);
    stream_res_->result(static_cast<unsigned>(head.status));
    for (auto& [k, v] : head.headers) stream_res_->insert(k, v);
    stream_res_->keep_alive(false);  // the stream ends with the connection
    stream_res_->chunked(true);
    stream_sr_ = std::make_unique<bh::response_serializer<bh::empty_body>>(*stream_res_);
    tcp().expires_after(limits_.write_timeout);
    bh::async_write_header(stream_, *stream_sr_, [self = shared_from_this(), sent = std::move(sent)](beast::error_code ec, size_t) {
      if (ec) self->Close();
      if (sent) sent(!ec);
    });
  }

  void StreamChunk(std::string chunk, bool last, std::function<void(bool)> sent) {
    chunk_ = std::move(chunk);
    tcp().expires_after(limits_.write_timeout);
    auto done = [self = shared_from_this(), last, sent = std::move(sent)](beast::error_code ec, size_t) {
      if (ec) self->Close();
      else if (last) self->Shutdown();
      if (sent) sent(!ec);
    };
    if (last) net::async_write(stream_, bh::make_chunk_last(), std::move(done));
    else net::async_write(stream_, bh::make_chunk(net::buffer(chunk_)), std::move(done));
  }

  // TLS close_notify, then close; bounded, since the peer may never answer it.
  void Shutdown() {
    tcp().expires_after(std::chrono::seconds(2));
    stream_.async_shutdown([self = shared_from_this()](beast::error_code) { self->Close(); });
  }

  void Close() {
    beast::error_code ignored;
    tcp().socket().shutdown(tcp::socket::shutdown_both, ignored);
    tcp().close();
  }

  Server::Impl& impl_;
  const Limits& limits_;
  TlsStream stream_;  // not asio's ssl::stream: its fixed buffers were 70 kB a connection (tls_stream.h)
  beast::flat_buffer buffer_;
  std::optional<bh::request_parser<bh::string_body>> parser_;
  std::optional<Request> request_;
  unsigned version_ = 11;
  bool keep_alive_ = true;
  std::string addr_;
  uint64_t reserved_ = 0;  // body bytes reserved for the request being read
  std::unique_ptr<bh::response<bh::empty_body>> stream_res_;
  std::unique_ptr<bh::response_serializer<bh::empty_body>> stream_sr_;
  std::string chunk_;
};

// ---------- Exchange ----------

Exchange::Exchange(std::shared_ptr<Session> session, Request request)
    : session_(std::move(session)), request_(std::move(request)) {
  session_->RequestStarted();
}

Exchange::~Exchange() {
  if (!answered_.exchange(true)) {
    Response r;
    r.status = 500;
    r.set_content("{\"error\":\"internal error: no answer\"}", "application/json");
    r.close = true;
    session_->PostRespond(std::move(r));
  }
  session_->ReleaseBody(body_reserved_);
  session_->RequestEnded();
}

void Exchange::Respond(Response response) {
  if (answered_.exchange(true)) return;
  session_->PostRespond(std::move(response));
}

void Exchange::StartStream(Response head, std::function<void(bool)> sent) {
  if (answered_.exchange(true)) return;
  session_->PostStartStream(std::move(head), std::move(sent));
}

void Exchange::Write(std::string chunk, std::function<void(bool)> sent) {
  session_->PostChunk(std::move(chunk), false, std::move(sent));
}

void Exchange::Finish() { session_->PostChunk("", true, nullptr); }

void Exchange::Abort() {
  answered_ = true;
  session_->PostClose();
}

// ---------- acceptor ----------

void Server::Impl::Accept() {
  acceptor->async_accept(net::make_strand(handshake_ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || stopping) return;
    if (ec) {
      // EMFILE and friends: back off briefly instead of spinning on the error.
      spdlog::warn("accept: {}", ec.message());
      retry_timer->expires_after(std::chrono::milliseconds(100));
      retry_timer->async_wait([this](beast::error_code tec) {
        if (!tec && !stopping) Accept();
      });
      return;
    }
    beast::error_code aec;
    const auto remote = socket.remote_endpoint(aec);
    std::string addr = aec ? std::string("?") : remote.address().to_string();
    if (Admit(addr)) {
      socket.set_option(tcp::no_delay(true), aec);
      // The session (SSL_new, tens of µs) is made on the handshake threads too: the accept
      // loop runs on the request threads.
      const auto strand = socket.get_executor();
      net::post(strand, [this, socket = std::move(socket), addr = std::move(addr)]() mutable {
        std::make_shared<Session>(*this, std::move(socket), std::move(addr))->Start();
      });
    } else {
      // Over a cap: closed at once, before any TLS work.
      socket.close(aec);
    }
    Accept();
  });
}

// A TLS handshake allocates about 90 kB for a moment (OpenSSL's handshake and record buffers,
// our ciphertext buffer), and OpenSSL keeps its 17 kB read buffer until the connection's first
// request; what stays is about 35 kB a connection. A burst of thousands of connections (every site
// reconnecting after a hub restart, 1,000 slowloris coming back at once) so leaves glibc's heaps
// full of free holes between the connections' live objects, which glibc does not give back by
// itself (it trims only the top of a heap): RSS would stay at the burst's high water. Every 3 s,
// when the heaps' free bytes grew by kFreeBytes since the last trim, malloc_trim(0) hands the
// free pages back (they stay counted as free bytes, hence the growth): a few ms with the arenas
// locked, after a burst, not in a steady state (docs/benchmarks.md, "Hub connections"). 64 MB:
// 1,000 slowloris coming back every head_timeout should not trim each time (a trim stalls the
// arenas' allocations for up to ~60 ms). glibc's thresholds are set in hub/main.cc.
void Server::Impl::TrimHeapAfterBursts() {
#if defined(__GLIBC__)
  constexpr size_t kFreeBytes = 64 << 20;
  size_t free_at_trim = 0;  // the heaps' free bytes after the last trim (or fewer since)
  std::unique_lock<std::mutex> lock(trim_mu);
  while (!trim_cv.wait_for(lock, std::chrono::seconds(3), [this] { return trim_stop; })) {
    lock.unlock();
    const struct mallinfo2 mi = mallinfo2();
    if (mi.fordblks > free_at_trim + kFreeBytes) {
      const auto t0 = std::chrono::steady_clock::now();
      malloc_trim(0);
      ++stats.heap_trims;
      free_at_trim = mi.fordblks;
      spdlog::debug("heap trimmed: {} MB free of {} MB, in {} ms", mi.fordblks >> 20, mi.arena >> 20,
                    std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count());
    } else {
      free_at_trim = std::min(free_at_trim, mi.fordblks);  // reused since: growth counts from here
    }
    lock.lock();
  }
#endif
}

void Server::Impl::Drain(std::chrono::steady_clock::time_point deadline) {
  if (active_requests.load() == 0 || std::chrono::steady_clock::now() >= deadline) {
    ioc.stop();
    return;
  }
  drain_timer->expires_after(std::chrono::milliseconds(50));
  drain_timer->async_wait([this, deadline](beast::error_code) { Drain(deadline); });
}

// ---------- Server ----------

Server::Server(Limits limits, Handler& handler, std::function<bool(SSL_CTX&)> configure_tls)
    : impl_(std::make_shared<Impl>(limits, handler, std::move(configure_tls))) {}

Server::~Server() = default;

Status Server::Start(const std::string& host, int port) {
  auto& im = *impl_;
  if (!im.configure_tls(*im.ssl_ctx.native_handle())) return Status::InvalidArgument("tls: setup failed");
  // Idle connections give their TLS read/write buffers back (~34 KB each).
  SSL_CTX_set_mode(im.ssl_ctx.native_handle(), SSL_MODE_RELEASE_BUFFERS);
  beast::error_code ec;
  const auto address = net::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) return Status::Unavailable("listen: bad address " + host);
  const tcp::endpoint ep(address, static_cast<uint16_t>(port));
  im.acceptor = std::make_unique<tcp::acceptor>(im.ioc);
  im.acceptor->open(ep.protocol(), ec);
  if (!ec) im.acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) im.acceptor->bind(ep, ec);
  if (!ec) im.acceptor->listen(net::socket_base::max_listen_connections, ec);
  if (ec) return Status::Unavailable("listen: cannot bind " + host + ":" + std::to_string(port) + ": " + ec.message());
  im.port = im.acceptor->local_endpoint().port();
  im.retry_timer = std::make_unique<net::steady_timer>(im.ioc);
  im.drain_timer = std::make_unique<net::steady_timer>(im.ioc);
  im.trimmer = std::thread([&im] { im.TrimHeapAfterBursts(); });
  im.Accept();
  return Status::Ok();
}

int Server::port() const { return impl_->port; }

const Stats& Server::stats() const { return impl_->stats; }

void Server::Run() {
  auto& im = *impl_;
  std::vector<std::thread> threads;
  // The handshake threads run until the request threads are done, with connections or not.
  auto handshake_work = net::make_work_guard(im.handshake_ioc);
  for (int i = 0; i < im.limits.io_threads; ++i) {
    threads.emplace_back([&im] {
      // Lower priority for this thread only (Linux: a thread's nice value is its own). At the
      // default increment of 10, a weight of 110 to the request threads' 1024: a request thread
      // that wakes gets a core within a fraction of a millisecond, while handshakes still get
      // all the CPU nothing else wants.
      if (im.limits.handshake_nice > 0) {
        const auto tid = static_cast<id_t>(syscall(SYS_gettid));
        errno = 0;
        const int own = getpriority(PRIO_PROCESS, tid);  // -1 is a valid nice value: errno tells
        if (errno != 0 || setpriority(PRIO_PROCESS, tid, std::min(19, own + im.limits.handshake_nice)) != 0)
          spdlog::warn("handshake thread priority: {}", std::strerror(errno));
      }
      im.handshake_ioc.run();
    });
  }
  for (int i = 1; i < im.limits.io_threads; ++i) threads.emplace_back([&im] { im.ioc.run(); });
  im.ioc.run();
  handshake_work.reset();
  im.handshake_ioc.stop();  // its connections are not done with their handshakes: no request to drain
  for (auto& t : threads) t.join();
}

void Server::Stop() {
  auto im = impl_;
  net::post(im->ioc, [im] {
    if (im->stopping.exchange(true)) return;
    beast::error_code ec;
    if (im->acceptor) im->acceptor->close(ec);
    if (!im->retry_timer) return im->ioc.stop();
    im->retry_timer->cancel();
    im->StopTrimmer();
    im->Drain(std::chrono::steady_clock::now() + std::chrono::seconds(10));
  });
}

}  // namespace freshsync::hub::http
