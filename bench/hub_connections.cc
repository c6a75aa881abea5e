// Hub connections benchmark (issue 13, "Connections" and "Slow clients"): what one hubd does
// when a national network holds its connections open.
//
// Phase 1, baseline: B site connections (default 50) push small batches at R batches/s in all
// (default 1,000) for D seconds. Phase 2: N site connections (default 5,000; one site and one
// client certificate each) connect, then push at the same R in all for D seconds. Reported:
// p50/p99 from a batch's first byte out to its acknowledgement in, hubd's RSS, and the p99
// ratio of phase 2 to phase 1. Targets: p99 <= 100 ms and RSS <= 512 MB with 5,000 connections.
// Phase 3, slow clients: an HQ caller reads a site's stock every 20 ms over a kept-alive
// connection, first alone (baseline), then while S slowloris connections (default 1,000) trickle
// request heads a byte at a time and reconnect when hubd drops them. Target: HQ p99 <= 50 ms.
//
// One hubd (Release, SQLite store, as shipped but with the per-address cap raised: every
// connection comes from 127.0.0.1). The sites and the slowloris connections run on one
// Boost.Asio thread; the HQ caller on a thread and io_context of its own, as a real HQ caller is
// another machine: on the lorises' thread its answers waited behind the client's own share of
// each reconnect burst (1,000 client handshakes), which is not hubd's latency. Client
// certificates are minted in-process from the test CA (openssl's CLI would take minutes for
// 5,000).
//
// Usage: hub_connections [--connections 5000] [--baseline 50] [--rate 1000] [--seconds 20]
//                        [--slowloris 1000]
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <httplib.h>

#include "bench/bench_util.h"
#include "freshsync.pb.h"
#include "hub/codec.h"
#include "tests/support/harness.h"
#include "wire/digest.h"

namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using SteadyClock = std::chrono::steady_clock;
namespace ft = freshsync::testing;

constexpr const char* kReaderToken = "bench-reader-token-0123456789";

// ---- Client certificates, minted from the test CA's files ----

struct Identity {
  X509* cert = nullptr;
  EVP_PKEY* key = nullptr;
};

class Minter {
 public:
  Minter(const std::string& ca_cert, const std::string& ca_key) {
    FILE* f = std::fopen(ca_cert.c_str(), "r");
    ca_ = PEM_read_X509(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    f = std::fopen(ca_key.c_str(), "r");
    ca_key_ = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    if (!ca_ || !ca_key_) {
      std::fprintf(stderr, "cannot read the test CA\n");
      std::exit(1);
    }
  }
  // A P-256 key and a certificate with CN = `cn`, valid for a day, signed by the CA.
  Identity Mint(const std::string& cn) {
    Identity id;
    id.key = EVP_EC_gen("P-256");
    id.cert = X509_new();
    X509_set_version(id.cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(id.cert), ++serial_);
    X509_gmtime_adj(X509_getm_notBefore(id.cert), -60);
    X509_gmtime_adj(X509_getm_notAfter(id.cert), 86400);
    X509_set_pubkey(id.cert, id.key);
    X509_NAME* name = X509_get_subject_name(id.cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
    X509_set_issuer_name(id.cert, X509_get_subject_name(ca_));
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, NID_ext_key_usage, "clientAuth");
    X509_add_ext(id.cert, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(id.cert, ca_key_, EVP_sha256());
    return id;
  }

 private:
  X509* ca_ = nullptr;
  EVP_PKEY* ca_key_ = nullptr;
  long serial_ = 1000;
};

// ---- Latencies ----

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

struct Phase {
  bool measuring = false;
  std::vector<double> latencies_ms;
  int errors = 0;
  int late = 0;  // a send came due while the previous request was still out
  std::map<std::string, int> why;  // errors by cause: an HTTP status, or the socket's error
  void Error(const std::string& cause) {
    if (!measuring) return;
    ++errors;
    ++why[cause];
  }
};

std::string BatchBody(const std::string& site, uint64_t first, int records) {
  freshsync::v1::Batch b;
  b.set_site(site);
  for (int i = 0; i < records; ++i) {
    auto* r = b.add_records();
    const uint64_t seq = first + static_cast<uint64_t>(i);
    r->set_seq(seq);
    r->set_entity(freshsync::v1::STOCK);
    r->set_key("sku-" + std::to_string(seq % 50));
    r->set_version(seq);
    r->set_hlc((uint64_t{1764000000000} + seq) << 16);
    r->set_ts_ms(1764000000000 + static_cast<int64_t>(seq));
    r->mutable_stock()->set_sku(r->key());
    r->mutable_stock()->set_on_hand(static_cast<int64_t>(seq % 1000));
  }
  return freshsync::hub::ZstdCompress(b.SerializeAsString(), 1);
}

// ---- A site: one kept-alive mutual-TLS connection pushing a batch every `period` ----

class SiteConn : public std::enable_shared_from_this<SiteConn> {
 public:
  SiteConn(net::io_context& io, ssl::context& ctx, tcp::endpoint ep, std::string site, Identity id, Phase* phase)
      : stream_(io, ctx), timer_(io), ep_(ep), site_(std::move(site)), phase_(phase) {
    SSL_use_certificate(stream_.native_handle(), id.cert);
    SSL_use_PrivateKey(stream_.native_handle(), id.key);
  }
  // Connects and handshakes; `done(ok)` once.
  void Open(std::function<void(bool)> done) {
    auto self = shared_from_this();
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(60));
    beast::get_lowest_layer(stream_).async_connect(ep_, [self, done](beast::error_code ec) {
      if (ec) return done(false);
      self->stream_.async_handshake(ssl::stream_base::client, [self, done](beast::error_code ec2) {
        beast::get_lowest_layer(self->stream_).expires_never();
        done(!ec2);
      });
    });
  }
  void Start(SteadyClock::time_point first, std::chrono::microseconds period) {
    next_ = first;
    period_ = period;
    Arm();
  }
  void Stop() {
    stopped_ = true;
    timer_.cancel();
  }
  void Close() {
    Stop();
    beast::error_code ec;
    beast::get_lowest_layer(stream_).socket().close(ec);
  }

 private:
  void Arm() {
    if (stopped_) return;
    timer_.expires_at(next_);
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (ec || self->stopped_) return;
      self->next_ += self->period_;
      if (self->busy_) {
        if (self->phase_->measuring) ++self->phase_->late;
      } else {
        self->Send();
      }
      self->Arm();
    });
  }
  void Send() {
    busy_ = true;
    req_ = {http::verb::post, "/v1/sites/" + site_ + "/batches", 11};
    req_.set(http::field::host, "127.0.0.1");
    req_.set(http::field::content_type, "application/x-protobuf");
    req_.set(http::field::content_encoding, "zstd");
    req_.keep_alive(true);
    req_.body() = BatchBody(site_, seq_ + 1, 5);
    req_.prepare_payload();
    sent_at_ = SteadyClock::now();
    http::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->Fail(ec);
      self->res_ = {};
      http::async_read(self->stream_, self->buf_, self->res_, [self](beast::error_code ec2, size_t) {
        if (ec2) return self->Fail(ec2);
        const double ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - self->sent_at_).count();
        if (self->res_.result_int() == 200) {
          self->seq_ += 5;
          if (self->phase_->measuring) self->phase_->latencies_ms.push_back(ms);
        } else {
          self->phase_->Error("HTTP " + std::to_string(self->res_.result_int()) + " " + self->res_.body().substr(0, 80));
        }
        self->busy_ = false;
      });
    });
  }
  void Fail(beast::error_code ec) {
    phase_->Error(ec.message());
    stopped_ = true;  // a dropped connection is an error, not retried: the count says it
    busy_ = false;
  }

  beast::ssl_stream<beast::tcp_stream> stream_;
  net::steady_timer timer_;
  tcp::endpoint ep_;
  std::string site_;
  Phase* phase_;
  uint64_t seq_ = 0;
  bool busy_ = false;
  bool stopped_ = false;
  SteadyClock::time_point next_, sent_at_;
  std::chrono::microseconds period_{0};
  http::request<http::string_body> req_;
  http::response<http::string_body> res_;
  beast::flat_buffer buf_;
};

// ---- A slowloris: a TLS connection that sends a request head a byte per second ----

class Slowloris : public std::enable_shared_from_this<Slowloris> {
 public:
  Slowloris(net::io_context& io, ssl::context& ctx, tcp::endpoint ep) : io_(io), ctx_(ctx), ep_(ep), timer_(io) {}
  void Start() { Connect(); }
  void Stop() {
    stopped_ = true;
    timer_.cancel();
    if (stream_) {
      beast::error_code ec;
      beast::get_lowest_layer(*stream_).socket().close(ec);
    }
  }
  int reconnects = 0;

 private:
  void Connect() {
    if (stopped_) return;
    stream_ = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(io_, ctx_);
    sent_ = 0;
    beast::get_lowest_layer(*stream_).async_connect(ep_, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->Retry();
      self->stream_->async_handshake(ssl::stream_base::client, [self](beast::error_code ec2) {
        if (ec2) return self->Retry();
        self->Trickle();
      });
    });
  }
  void Trickle() {
    static const std::string head = "GET /v1/sites HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + std::string(4000, 'a');
    if (stopped_) return;
    net::async_write(*stream_, net::buffer(head.data() + sent_ % head.size(), 1),
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return self->Retry();
                       ++self->sent_;
                       self->timer_.expires_after(std::chrono::seconds(1));
                       self->timer_.async_wait([self](beast::error_code ec2) {
                         if (!ec2) self->Trickle();
                       });
                     });
  }
  void Retry() {
    if (stopped_) return;
    ++reconnects;
    timer_.expires_after(std::chrono::milliseconds(100));
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->Connect();
    });
  }
  net::io_context& io_;
  ssl::context& ctx_;
  tcp::endpoint ep_;
  net::steady_timer timer_;
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> stream_;
  size_t sent_ = 0;
  bool stopped_ = false;
};

// ---- HQ: a kept-alive reader polling one route ----

// Measures the answers to requests sent in [from, until), and stops sending at `until`; runs
// on its own io_context (one thread), so `phase` is its own until that thread is joined.
class HqPoller : public std::enable_shared_from_this<HqPoller> {
 public:
  HqPoller(net::io_context& io, ssl::context& ctx, tcp::endpoint ep, std::string path, Phase* phase,
           SteadyClock::time_point from, SteadyClock::time_point until)
      : stream_(io, ctx), timer_(io), ep_(ep), path_(std::move(path)), phase_(phase), from_(from), until_(until) {}
  void Start() {
    beast::get_lowest_layer(stream_).async_connect(ep_, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->Fail();
      self->stream_.async_handshake(ssl::stream_base::client, [self](beast::error_code ec2) {
        if (ec2) return self->Fail();
        self->Get();
      });
    });
  }

 private:
  void Get() {
    if (SteadyClock::now() >= until_) return;  // done: the io_context runs out of work
    req_ = {http::verb::get, path_, 11};
    req_.set(http::field::host, "127.0.0.1");
    req_.set(http::field::authorization, std::string("Bearer ") + kReaderToken);
    req_.keep_alive(true);
    sent_at_ = SteadyClock::now();
    phase_->measuring = sent_at_ >= from_ && sent_at_ < until_;
    http::async_write(stream_, req_, [self = shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->Fail();
      self->res_ = {};
      http::async_read(self->stream_, self->buf_, self->res_, [self](beast::error_code ec2, size_t) {
        if (ec2) return self->Fail();
        const double ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - self->sent_at_).count();
        if (self->res_.result_int() != 200) self->phase_->Error("HTTP " + std::to_string(self->res_.result_int()));
        else if (self->phase_->measuring) self->phase_->latencies_ms.push_back(ms);
        self->timer_.expires_after(std::chrono::milliseconds(20));
        self->timer_.async_wait([self](beast::error_code ec3) {
          if (!ec3) self->Get();
        });
      });
    });
  }
  void Fail() {
    ++phase_->errors;
    ++phase_->why["HQ connection failed"];
  }
  beast::ssl_stream<beast::tcp_stream> stream_;
  net::steady_timer timer_;
  tcp::endpoint ep_;
  std::string path_;
  Phase* phase_;
  SteadyClock::time_point from_, until_, sent_at_;
  http::request<http::empty_body> req_;
  http::response<http::string_body> res_;
  beast::flat_buffer buf_;
};

long RssKb(pid_t pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field)));
  return -1;
}

// Runs the io_context until `until` (the clients keep it busy; polling keeps this one thread).
void RunFor(net::io_context& io, std::chrono::milliseconds d) {
  io.restart();
  io.run_for(d);
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  freshsync::bench::DefaultBinDirToOwn(argv[0]);
  int connections = 5000, baseline = 50, rate = 1000, seconds = 20, slowloris = 1000;
  CLI::App app{"hubd with thousands of kept-alive site connections, and under slow clients"};
  app.add_option("--connections", connections, "site connections in the measured phase");
  app.add_option("--baseline", baseline, "site connections in the baseline phase");
  app.add_option("--rate", rate, "batches per second across all connections");
  app.add_option("--seconds", seconds, "length of each measured phase");
  app.add_option("--slowloris", slowloris, "slow connections in the slow-client phase");
  CLI11_PARSE(app, argc, argv);

  ft::TempDir dir;
  ft::TestPki pki(dir.File("pki"));
  if (!pki.Init()) return 1;
  const int port = ft::PickFreePort();
  ft::WriteFile(dir.File("hubd.toml"),
                "listen = \"127.0.0.1:" + std::to_string(port) + "\"\n[tls]\nca = \"" + pki.ca_cert() + "\"\ncert = \"" +
                    pki.server().cert + "\"\nkey = \"" + pki.server().key + "\"\n[store]\npath = \"" + dir.File("hub.db") +
                    "\"\n[limits]\nmax_connections = 12000\nmax_connections_per_address = 12000\n"
                    "[[tokens]]\nname = \"hq\"\nrole = \"reader\"\nsha256 = \"" +
                    freshsync::digest::Sha256Hex(kReaderToken) + "\"\n[log]\nlevel = \"warn\"\n");
  ft::ChildProcess hubd({ft::BinDir() + "/hubd", "--config", dir.File("hubd.toml")}, dir.File("hubd.log"));
  if (!hubd.Start()) return 1;
  {
    httplib::SSLClient c("127.0.0.1", port);
    c.set_ca_cert_path(pki.ca_cert());
    if (!ft::WaitFor([&] { auto r = c.Get("/healthz"); return r && r->status == 200; }, std::chrono::seconds(20))) {
      std::fprintf(stderr, "hubd did not come up:\n%s\n", ft::ReadFile(dir.File("hubd.log")).c_str());
      return 1;
    }
  }
  const long rss_idle = RssKb(hubd.pid(), "VmRSS:");

  Minter minter(pki.ca_cert(), dir.File("pki") + "/ca.key");
  net::io_context io;
  ssl::context ctx(ssl::context::tls_client);
  ctx.load_verify_file(pki.ca_cert());
  ctx.set_verify_mode(ssl::verify_peer);
  const tcp::endpoint ep(net::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port));
  std::mt19937 rng(42);

  // Pushes at `rate` in all through `n` connections for `seconds`; returns the phase.
  auto push_phase = [&](int n, const std::string& prefix, long* rss_peak, double* connect_s) {
    Phase phase;
    std::vector<std::shared_ptr<SiteConn>> conns;
    const auto c0 = SteadyClock::now();
    int opened = 0, failed = 0;
    for (int i = 0; i < n; ++i) {
      const std::string site = prefix + std::to_string(i);
      conns.push_back(std::make_shared<SiteConn>(io, ctx, ep, site, minter.Mint(site), &phase));
      conns.back()->Open([&](bool ok) { ok ? ++opened : ++failed; });
      if (i % 200 == 199) RunFor(io, std::chrono::milliseconds(1));  // keep the accept queue moving
    }
    while (opened + failed < n) RunFor(io, std::chrono::milliseconds(50));
    *connect_s = freshsync::bench::Secs(c0, SteadyClock::now());
    const auto period = std::chrono::microseconds(static_cast<int64_t>(1e6 * n / rate));
    const auto start = SteadyClock::now() + std::chrono::milliseconds(200);
    std::uniform_int_distribution<int64_t> offset(0, period.count());
    for (auto& c : conns) c->Start(start + std::chrono::microseconds(offset(rng)), period);
    RunFor(io, std::chrono::milliseconds(200) + std::chrono::duration_cast<std::chrono::milliseconds>(period));  // warm-up: every connection has sent once
    phase.measuring = true;
    const auto m0 = SteadyClock::now();
    while (SteadyClock::now() - m0 < std::chrono::seconds(seconds)) {
      RunFor(io, std::chrono::milliseconds(250));
      *rss_peak = std::max(*rss_peak, RssKb(hubd.pid(), "VmRSS:"));
    }
    phase.measuring = false;
    for (auto& c : conns) c->Stop();
    RunFor(io, std::chrono::seconds(2));  // let the last answers in
    for (auto& c : conns) c->Close();
    RunFor(io, std::chrono::milliseconds(200));
    std::printf("%s: %d connections (%d failed to open, in %.1f s), %zu batches acknowledged in %d s, %d errors, %d late sends\n",
                prefix.c_str(), n, failed, *connect_s, phase.latencies_ms.size(), seconds, phase.errors, phase.late);
    for (const auto& [cause, count] : phase.why) std::printf("  error x%d: %s\n", count, cause.c_str());
    return phase;
  };

  long rss_base = 0, rss_many = 0;
  double connect_base = 0, connect_many = 0;
  const Phase base = push_phase(baseline, "base-", &rss_base, &connect_base);
  const Phase many = push_phase(connections, "site-", &rss_many, &connect_many);
  const double p99_base = Percentile(base.latencies_ms, 0.99), p99_many = Percentile(many.latencies_ms, 0.99);
  std::printf("hubd RSS: idle %.0f MB, %d connections %.0f MB, %d connections %.0f MB (peak VmHWM %.0f MB)\n", rss_idle / 1024.0,
              baseline, rss_base / 1024.0, connections, rss_many / 1024.0, RssKb(hubd.pid(), "VmHWM:") / 1024.0);
  // Latencies are of acknowledged batches; a batch shed with 503 + Retry-After is counted
  // apart (the site would retry it after a second), so both numbers are needed to judge.
  auto acked_per_s = [&](const Phase& p) { return static_cast<double>(p.latencies_ms.size()) / seconds; };
  std::printf("RESULT|%d connections, %d batches/s offered: ack p50 / p99, acknowledged/s, errors (baseline %d connections)|"
              "%.1f / %.1f ms, %.0f/s, %d (%.1f / %.1f ms, %.0f/s, %d), p99 ratio %.2f|p99 <= 100 ms, %d/s, 0\n",
              connections, rate, baseline, Percentile(many.latencies_ms, 0.5), p99_many, acked_per_s(many), many.errors,
              Percentile(base.latencies_ms, 0.5), p99_base, acked_per_s(base), base.errors, p99_base > 0 ? p99_many / p99_base : 0.0,
              rate);
  std::printf("RESULT|hubd RSS holding %d connections (idle)|%.0f MB (%.0f MB)|<= 512 MB\n", connections, rss_many / 1024.0, rss_idle / 1024.0);
  const bool push_errors = many.errors > 0 || base.errors > 0;

  // Slow clients: HQ reads alone, then beside the slowloris connections.
  auto hq_phase = [&](int slow) {
    Phase phase;
    std::vector<std::shared_ptr<Slowloris>> lorises;
    for (int i = 0; i < slow; ++i) {
      lorises.push_back(std::make_shared<Slowloris>(io, ctx, ep));
      lorises.back()->Start();
    }
    RunFor(io, std::chrono::seconds(slow ? 3 : 0) + std::chrono::milliseconds(100));  // the slow ones are in
    // HQ on its own thread: connects now, measures after 500 ms for `seconds`, then stops.
    net::io_context hq_io;
    ssl::context hq_ctx(ssl::context::tls_client);
    hq_ctx.load_verify_file(pki.ca_cert());
    hq_ctx.set_verify_mode(ssl::verify_peer);
    const auto from = SteadyClock::now() + std::chrono::milliseconds(500);
    const auto until = from + std::chrono::seconds(seconds);
    std::make_shared<HqPoller>(hq_io, hq_ctx, ep, "/v1/sites/site-0/stock", &phase, from, until)->Start();
    std::thread hq_thread([&hq_io] { hq_io.run(); });
    RunFor(io, std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now()));
    hq_thread.join();  // the last request's answer is in (or failed)
    phase.measuring = false;
    int reconnects = 0;
    for (auto& l : lorises) {
      reconnects += l->reconnects;
      l->Stop();
    }
    RunFor(io, std::chrono::milliseconds(500));
    std::printf("HQ reads beside %d slowloris connections: %zu answered, %d errors; the slow ones were dropped and came back %d times\n",
                slow, phase.latencies_ms.size(), phase.errors, reconnects);
    for (const auto& [cause, count] : phase.why) std::printf("  error x%d: %s\n", count, cause.c_str());
    return phase;
  };
  const Phase hq_alone = hq_phase(0);
  const Phase hq_slow = hq_phase(slowloris);
  const double hq_p99 = Percentile(hq_slow.latencies_ms, 0.99), hq_p99_base = Percentile(hq_alone.latencies_ms, 0.99);
  std::printf("RESULT|HQ read p50 / p99 beside %d slowloris connections (alone)|%.1f / %.1f ms (%.1f / %.1f ms), ratio %.2f|p99 <= 50 ms\n",
              slowloris, Percentile(hq_slow.latencies_ms, 0.5), hq_p99, Percentile(hq_alone.latencies_ms, 0.5), hq_p99_base,
              hq_p99_base > 0 ? hq_p99 / hq_p99_base : 0.0);
  hubd.Stop();
  const bool met = !push_errors && acked_per_s(many) >= 0.95 * rate && hq_slow.errors == 0 && p99_many <= 100 && rss_many <= 512 * 1024 && hq_p99 <= 50;
  std::printf("targets %s\n", met ? "met" : "MISSED");
  // One MISSED line per target, for the summary of scripts/bench.sh.
  if (push_errors) std::printf("MISSED|hub_connections: %d push errors\n", many.errors + base.errors);
  if (acked_per_s(many) < 0.95 * rate) std::printf("MISSED|hub_connections: %.0f batches/s acknowledged, under 95 %% of the %d offered\n", acked_per_s(many), rate);
  if (hq_slow.errors != 0) std::printf("MISSED|hub_connections: %d HQ read errors beside slowloris\n", hq_slow.errors);
  if (p99_many > 100) std::printf("MISSED|hub_connections: ack p99 %.1f ms > 100 ms\n", p99_many);
  if (rss_many > 512 * 1024) std::printf("MISSED|hub_connections: hubd RSS %.0f MB > 512 MB\n", rss_many / 1024.0);
  if (hq_p99 > 50) std::printf("MISSED|hub_connections: HQ p99 beside slowloris %.1f ms > 50 ms\n", hq_p99);
  return met ? 0 : 2;
}
