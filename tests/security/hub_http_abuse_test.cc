// hubd's HTTPS transport under abuse (docs/security.md): slow
// clients, oversized heads, connection floods and request smuggling, against the real hubd
// over real TLS (hubd started by the shared fixture, tests/hub/hubd_fixture.h). Raw OpenSSL
// clients, since a well-behaved client cannot express the attacks.
//
// The default suite runs the attacks at a few hundred connections; the cases named *Slow* run
// them at the sizes (1,000 slowloris connections, 5,000 idle keep-alive connections)
// and are labelled `slow`.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "tests/hub/hubd_fixture.h"

namespace freshsync::testing {
namespace {

long RssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

void RaiseNoFile() {
  rlimit r{};
  getrlimit(RLIMIT_NOFILE, &r);
  r.rlim_cur = r.rlim_max;
  setrlimit(RLIMIT_NOFILE, &r);
}

int ConnectTcp(int port, int timeout_s) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  timeval tv{timeout_s, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// One TLS connection held by the test (no client certificate: an anonymous stranger).
struct TlsConn {
  int fd = -1;
  SSL* ssl = nullptr;
  TlsConn() = default;
  TlsConn(const TlsConn&) = delete;
  TlsConn& operator=(const TlsConn&) = delete;
  TlsConn(TlsConn&& o) noexcept : fd(o.fd), ssl(o.ssl) { o.fd = -1, o.ssl = nullptr; }
  ~TlsConn() { Close(); }
  bool Open(SSL_CTX* ctx, int port, int timeout_s = 10) {
    fd = ConnectTcp(port, timeout_s);
    if (fd < 0) return false;
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    return SSL_connect(ssl) == 1;
  }
  bool Write(const std::string& s) { return ssl && SSL_write(ssl, s.data(), static_cast<int>(s.size())) == static_cast<int>(s.size()); }
  // Reads until the peer closes, the timeout passes, or `until` appears.
  std::string Read(const std::string& until = "") {
    std::string out;
    char buf[4096];
    int n;
    while (ssl && (n = SSL_read(ssl, buf, sizeof(buf))) > 0) {
      out.append(buf, static_cast<size_t>(n));
      if (!until.empty() && out.find(until) != std::string::npos) break;
    }
    return out;
  }
  // True when the server has closed the connection (EOF or reset), within the socket timeout.
  // (Bytes still unread, such as TLS 1.3 session tickets, are skipped.)
  bool ClosedByPeer() {
    char buf[4096];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
    }
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }
  void Close() {
    if (ssl) SSL_free(ssl);
    if (fd >= 0) close(fd);
    ssl = nullptr;
    fd = -1;
  }
};

double P99(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(v.size() * 0.99))];
}

// The shared fixture (tests/hub/hubd_fixture.h) on hubd's default [limits] but the keys each
// test sets; each test starts hubd itself. ctx_ is the raw OpenSSL clients' context.
class HubHttpAbuseTest : public HubdTest {
 protected:
  void SetUp() override {
    RaiseNoFile();
    read_timeout_s_ = 10;
    ASSERT_NO_FATAL_FAILURE(Prepare());
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(ctx_, pki_.ca_cert().c_str(), nullptr);
  }
  void TearDown() override {
    HubdTest::TearDown();
    SSL_CTX_free(ctx_);
  }

  // A metric's value from /metrics ("name" or "name{labels}").
  long Metric(const std::string& series) {
    const std::string m = Metrics();
    const size_t at = m.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::stol(m.substr(at + series.size() + 2));
  }

  std::string Raw(const std::string& request) {
    TlsConn c;
    if (!c.Open(ctx_, port_, 5)) return "";
    c.Write(request);
    return c.Read("}");
  }

  // HQ reads on one kept-alive connection for `secs`, each one's latency in seconds.
  std::vector<double> HqReads(std::atomic<bool>& stop) {
    std::vector<double> lat;
    auto c = Hq(kReaderToken);
    while (!stop) {
      const auto t0 = std::chrono::steady_clock::now();
      auto r = c->Get("/v1/changes?limit=10");
      lat.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      EXPECT_TRUE(r && r->status == 200);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return lat;
  }

  // Slowloris: `n` TLS connections each send one byte of a request head per second. The HQ
  // reader's p99 stays under 1 s, and every slow connection is closed by the head deadline.
  void Slowloris(int n) {
    ASSERT_NO_FATAL_FAILURE(StartWithLimits("head_timeout_s = 3\nmax_connections_per_address = 10000\n"));
    std::vector<TlsConn> slow(static_cast<size_t>(n));
    for (auto& c : slow) ASSERT_TRUE(c.Open(ctx_, port_));
    std::atomic<bool> stop{false};
    std::vector<double> lat;
    std::thread reader([&] { lat = HqReads(stop); });
    const std::string head = "GET /v1/changes HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    const auto t0 = std::chrono::steady_clock::now();
    int refused_writes = 0;
    for (size_t i = 0; i < 8; ++i) {  // 8 s: well past the 3 s head deadline
      refused_writes = 0;
      for (auto& c : slow)
        if (!c.Write(head.substr(i, 1))) ++refused_writes;
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    stop = true;
    reader.join();
    int closed = 0;
    for (auto& c : slow) {
      timeval tv{1, 0};
      setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      if (c.ClosedByPeer()) ++closed;
    }
    const double p99 = P99(lat);
    std::printf("slowloris x%d: HQ reads %zu, p99 %.3f s; %d closed by hubd, %.1f s\n", n, lat.size(), p99, closed,
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    EXPECT_GT(lat.size(), 20u);
    EXPECT_LT(p99, 1.0);
    EXPECT_EQ(closed, n);
    EXPECT_GE(Metric("freshsync_hub_request_timeouts_total"), n);
    EXPECT_TRUE(hubd_.Running());
  }

  // `n` idle keep-alive TLS connections, each after one answered request: all stay open (a
  // sample answers a second request), and hubd's RSS stays bounded.
  void IdleKeepAlive(int n, long max_rss_kb) {
    ASSERT_NO_FATAL_FAILURE(StartWithLimits("max_connections_per_address = 10000\nidle_timeout_s = 600\n"));
    const long rss0 = RssKb(hubd_.pid());
    std::vector<TlsConn> conns(static_cast<size_t>(n));
    const std::string req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    for (auto& c : conns) {
      ASSERT_TRUE(c.Open(ctx_, port_));
      ASSERT_TRUE(c.Write(req));
      ASSERT_NE(c.Read("ok\n").find("200"), std::string::npos);
    }
    EXPECT_GE(Metric("freshsync_hub_connections_open"), n);
    const long rss = RssKb(hubd_.pid());
    for (size_t i = 0; i < conns.size(); i += std::max<size_t>(1, conns.size() / 50)) {
      ASSERT_TRUE(conns[i].Write(req));
      EXPECT_NE(conns[i].Read("ok\n").find("200"), std::string::npos) << i;
    }
    std::printf("%d idle keep-alive connections: hubd VmRSS %ld kB -> %ld kB (%.1f kB each)\n", n, rss0, rss,
                static_cast<double>(rss - rss0) / n);
#if !defined(__SANITIZE_ADDRESS__)  // ASan's shadow memory and redzones are not hubd's footprint
    EXPECT_LT(rss, max_rss_kb);
#else
    (void)max_rss_kb;
#endif
    EXPECT_TRUE(hubd_.Running());
  }

  SSL_CTX* ctx_ = nullptr;
};

// Request smuggling: two differing Content-Lengths, or Transfer-Encoding with Content-Length,
// are refused with 400 and the connection closed.
TEST_F(HubHttpAbuseTest, ConflictingLengthsAreRefused) {
  ASSERT_NO_FATAL_FAILURE(StartWithLimits(""));
  for (const std::string& req :
       {std::string("POST /v1/sites/site-a/batches HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        std::string("GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 4\r\n\r\nabcd"),
        std::string("POST /v1/sites/site-a/batches HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        std::string("POST /v1/sites/site-a/batches HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n")}) {
    const std::string resp = Raw(req);
    EXPECT_EQ(resp.rfind("HTTP/1.1 400", 0), 0u) << req << "\n->\n" << resp;
  }
  EXPECT_GE(Metric("freshsync_hub_bad_requests_total"), 4);
  // The same value twice is one length, as RFC 9112 6.3 allows.
  EXPECT_EQ(Raw("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n").rfind("HTTP/1.1 200", 0), 0u);
}

TEST_F(HubHttpAbuseTest, BearerSchemeIgnoresCase) {
  ASSERT_NO_FATAL_FAILURE(StartWithLimits(""));
  for (const std::string scheme : {"bearer", "BEARER", "Bearer"}) {
    auto r = Hq("")->Get("/v1/changes", {{"Authorization", scheme + " " + kReaderToken}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << scheme << ": " << r->body;
  }
  auto r = Hq("")->Get("/v1/changes", {{"Authorization", std::string("Basic ") + kReaderToken}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
}

TEST_F(HubHttpAbuseTest, PerAddressConnectionCap) {
  ASSERT_NO_FATAL_FAILURE(StartWithLimits("max_connections_per_address = 5\n"));
  std::vector<TlsConn> held(5);
  for (auto& c : held) ASSERT_TRUE(c.Open(ctx_, port_));
  // The sixth from the same address is closed at accept: no handshake.
  {
    TlsConn extra;
    EXPECT_FALSE(extra.Open(ctx_, port_, 5));
  }
  // Giving one back makes room (for the metrics read too: it comes from the same address).
  held[0].Close();
  EXPECT_TRUE(WaitFor([&] { return Metric("freshsync_hub_connections_refused_total{cap=\"address\"}") >= 1; },
                      std::chrono::seconds(5)));
  EXPECT_TRUE(WaitFor(
      [&] {
        TlsConn again;
        return again.Open(ctx_, port_, 5);
      },
      std::chrono::seconds(5)));
}

// Eight concurrent requests with a million small headers each (8 MB of head apiece): each is
// refused once its head passes limits.max_header_bytes (431, or the connection closed while
// the client is still sending), and hubd's RSS stays under 200 MB and comes back.
TEST_F(HubHttpAbuseTest, MillionHeadersAreRefusedWithinBoundedMemory) {
  ASSERT_NO_FATAL_FAILURE(StartWithLimits(""));
  const long rss0 = RssKb(hubd_.pid());
  std::atomic<long> peak{rss0};
  std::atomic<bool> done{false};
  std::thread sampler([&] {
    while (!done) {
      peak = std::max(peak.load(), RssKb(hubd_.pid()));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  std::string headers = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (int i = 0; i < 1000000; ++i) headers += "X: y\r\n";
  headers += "\r\n";
  std::atomic<int> refused{0};
  std::vector<std::thread> attackers;
  for (int i = 0; i < 8; ++i) {
    attackers.emplace_back([&] {
      TlsConn c;
      if (!c.Open(ctx_, port_)) return;
      const bool all_sent = c.Write(headers);
      const std::string resp = c.Read();
      if (resp.rfind("HTTP/1.1 431", 0) == 0 || !all_sent) ++refused;
    });
  }
  for (auto& t : attackers) t.join();
  done = true;
  sampler.join();
  auto ok = Hq("")->Get("/healthz");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  const long rss1 = RssKb(hubd_.pid());
  std::printf("million headers x8: hubd VmRSS %ld kB, peak %ld kB, after %ld kB\n", rss0, peak.load(), rss1);
  EXPECT_EQ(refused, 8);
  EXPECT_GE(Metric("freshsync_hub_headers_too_large_total"), 1);
#if !defined(__SANITIZE_ADDRESS__)
  EXPECT_LT(peak.load(), 200 * 1024);
  EXPECT_LT(rss1 - rss0, 16 * 1024);
#endif
  // Many headers, each small, under the byte limit: the count limit answers 431.
  std::string many = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (int i = 0; i < 200; ++i) many += "X: y\r\n";
  EXPECT_EQ(Raw(many + "\r\n").rfind("HTTP/1.1 431", 0), 0u);
}

TEST_F(HubHttpAbuseTest, LorisConnectionsDoNotHoldTheHub) { Slowloris(200); }  // not "Slow*": default suite
TEST_F(HubHttpAbuseTest, SlowSlowlorisThousandConnections) { Slowloris(1000); }

TEST_F(HubHttpAbuseTest, IdleKeepAliveConnections) { IdleKeepAlive(500, 200 * 1024); }
// About 75 kB per idle TLS connection (asio's ssl engine keeps two 17 kB record buffers per
// stream, plus OpenSSL's state): 5,000 stay under 450 MB.
TEST_F(HubHttpAbuseTest, SlowIdleKeepAliveFiveThousand) { IdleKeepAlive(5000, 450 * 1024); }

}  // namespace
}  // namespace freshsync::testing
