// Issue 11, "Must show -> Hub abuse": every attack on hubd at once, against ONE real hubd,
// while a real site (Mosquitto + edged, SiteHub) pushes a few thousand records through the
// fault proxy and an HQ client reads in a loop:
//   - 1,000 slow connections: half raw TCP dribbling a real TLS ClientHello one byte a second,
//     half TLS-completed dribbling a request head one byte a second; each one closed by hubd's
//     deadline is opened again, so about 1,000 are held for the whole attack;
//   - 8 concurrent requests with a million headers each, again and again;
//   - 16 parallel zstd bombs from a valid certificate of another site;
//   - batches with 1 MB keys from a valid certificate of a third site.
// Asserted: the HQ client's p99 < 1 s during and after the attack; every record of the real
// site arrives (hub holds them, edge backlog 0, feed exactly once); hubd's VmHWM stays under
// the bound documented in docs/security.md and docs/operations.md; hub.db + -wal grow by what
// the valid records need. Every loop stops by itself (a stop flag and a deadline, socket
// timeouts on every blocking call); the whole test is bounded (< 90 s).
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <thread>

#include <gtest/gtest.h>

#include "freshsync.pb.h"
#include "hub/codec.h"
#include "tests/ingest/workload.h"
#include "tests/support/site_hub.h"
#include "tests/support/zstd_bomb.h"

namespace freshsync::testing {
namespace {

using Clock = std::chrono::steady_clock;

// hubd's peak resident memory under all of this (VmHWM), documented in docs/security.md and
// docs/operations.md: the default decompression budget (148 MiB: 2 x 64 MiB + 20 MiB), about
// 1,000 TLS connections at ~75 kB (~75 MB), the baseline (~17 MB) and SQLite's caches. Measured
// 281-305 MB over six runs (RelWithDebInfo, 2-core VM at load average 7-12); 400 MiB leaves
// about 100 MB of margin.
constexpr long kMaxHubHwmKb = 400 * 1024;
// Store growth (hub.db after a clean stop, against hub.db + -wal at start) allowed per record
// the hub holds for the real site, per quarantined 1 MB-key record, plus a fixed slack.
// Measured: ~150 bytes per site record without attacks (FRESHSYNC_ABUSE_CONTROL=1, +507 kB),
// ~210-220 under attack (+695-753 kB: also the audit rows of the bombs' refused pushes and the
// quarantine rows). Storing the keys would cost 1 MB each.
constexpr int64_t kStoreBytesPerRecord = 512;
constexpr int64_t kRefusedRowBytes = 512;  // a refused record's quarantine row (no body, no invalid key)
constexpr int64_t kStoreSlackBytes = 1 << 20;

constexpr int kSlowConnections = 1000;
constexpr int kSlowAddresses = 10;  // 100 connections each, under the default per-address cap of 256
constexpr auto kAttack = std::chrono::seconds(25);

long StatusKb(pid_t pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::string(field).size()));
  return -1;
}

int64_t FileBytes(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(static_cast<double>(v.size()) * p))];
}

// A TCP connection to hubd from `source` (a loopback address). The per-address cap (default
// 256) counts by peer address, and the legitimate clients (HQ, the site through the proxy)
// all come from 127.0.0.1: attackers bind to other loopback addresses (127.0.1.x; on Linux all
// of 127/8 reaches lo without configuration) so that the cap applies per attacker address,
// as it would to attackers on the Internet, and the legit clients keep their own quota.
int ConnectFrom(const std::string& source, int port, int timeout_s) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  timeval tv{timeout_s, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in src{};
  src.sin_family = AF_INET;
  inet_pton(AF_INET, source.c_str(), &src.sin_addr);
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(static_cast<uint16_t>(port));
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof(src)) != 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof(dst)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// The bytes of a real ClientHello from `ctx` (a handshake driven into a memory BIO).
std::string ClientHelloBytes(SSL_CTX* ctx) {
  SSL* ssl = SSL_new(ctx);
  BIO* rb = BIO_new(BIO_s_mem());
  BIO* wb = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, rb, wb);
  SSL_set_connect_state(ssl);
  SSL_do_handshake(ssl);  // WANT_READ: the hello is in wb
  char* data = nullptr;
  const long n = BIO_get_mem_data(wb, &data);
  std::string out(data, static_cast<size_t>(std::max(0L, n)));
  SSL_free(ssl);
  return out;
}

struct SlowConn {
  int fd = -1;
  SSL* ssl = nullptr;
  size_t pos = 0;
  void Close() {
    if (ssl) SSL_free(ssl);
    if (fd >= 0) close(fd);
    ssl = nullptr;
    fd = -1;
    pos = 0;
  }
};

class HubAbuseCombinedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);
    rlimit r{};
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = r.rlim_max;
    setrlimit(RLIMIT_NOFILE, &r);
    ctx_ = SSL_CTX_new(TLS_client_method());
  }
  void TearDown() override { SSL_CTX_free(ctx_); }

  std::unique_ptr<httplib::SSLClient> Client(SiteHub& sh, const TestPki::Files* cert, int read_timeout_s) {
    auto c = cert ? std::make_unique<httplib::SSLClient>("127.0.0.1", sh.hub_port(), cert->cert, cert->key)
                  : std::make_unique<httplib::SSLClient>("127.0.0.1", sh.hub_port());
    c->set_ca_cert_path(sh.pki().ca_cert());
    c->enable_server_certificate_verification(true);
    c->set_connection_timeout(5);
    c->set_read_timeout(read_timeout_s);
    c->set_write_timeout(5);
    return c;
  }

  SSL_CTX* ctx_ = nullptr;
};

TEST_F(HubAbuseCombinedTest, SlowEveryAttackAtOnceWhileASitePushesAndHqReads) {
  const auto t_start = Clock::now();
  // FRESHSYNC_ABUSE_CONTROL=1: the same site traffic and HQ reads without any attack, to
  // measure the store growth and memory of a same-size run (docs/security.md has both).
  const bool control = std::getenv("FRESHSYNC_ABUSE_CONTROL") != nullptr;
  SiteHub sh;  // hubd with the shipped defaults for every [limits] key
  ASSERT_TRUE(sh.ok());
  SSL_CTX_load_verify_locations(ctx_, sh.pki().ca_cert().c_str(), nullptr);
  const TestPki::Files bomber = sh.pki().Client("bomber-site");
  const TestPki::Files keyer = sh.pki().Client("keyer-site");
  const pid_t hub_pid = sh.hub_pid();
  auto store_bytes = [&] { return FileBytes(sh.hub_db()) + FileBytes(sh.hub_db() + "-wal"); };

  Site& site = sh.site();
  ASSERT_TRUE(site.StartEdged()) << site.log();
  const int64_t store0 = store_bytes();
  const long hwm0 = StatusKb(hub_pid, "VmHWM:");
  ASSERT_GT(hwm0, 0);

  // The attack payloads, built before the clock starts.
  const std::string hello = ClientHelloBytes(ctx_);
  ASSERT_GT(hello.size(), 100u);
  const std::string slow_head =
      "GET /v1/changes HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + std::string(200, 'a') + "\r\n";
  std::string million = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  million.reserve(6u << 20);
  for (int i = 0; i < 1000000; ++i) million += "X: y\r\n";
  million += "\r\n";
  // A zstd bomb: 128 MiB of zeros (twice the default max_decompressed_bytes), no declared size.
  const std::string bomb = ZstdBombOfZeros(32, 3);

  std::atomic<bool> stop{false};  // the attack window is over
  std::atomic<bool> done{false};  // the whole test is over (HQ reader)
  const auto attack_deadline = Clock::now() + kAttack;
  auto attacking = [&] { return !stop && Clock::now() < attack_deadline; };
  std::vector<std::thread> threads;

  // ---- 1,000 slow connections, 100 per attacker address.
  std::atomic<int> slow_open{0}, slow_reopened{0}, slow_open_failed{0};
  for (int g = 0; !control && g < kSlowAddresses; ++g) {
    threads.emplace_back([&, g] {
      const bool tls = g % 2 == 1;  // even addresses dribble a ClientHello, odd ones a head over TLS
      const std::string source = "127.0.1." + std::to_string(g + 1);
      std::vector<SlowConn> conns(kSlowConnections / kSlowAddresses);
      auto open = [&](SlowConn& c) {
        c.fd = ConnectFrom(source, sh.hub_port(), 5);
        if (c.fd < 0) return false;
        if (tls) {
          c.ssl = SSL_new(ctx_);
          SSL_set_fd(c.ssl, c.fd);
          if (SSL_connect(c.ssl) != 1) {
            c.Close();
            return false;
          }
        }
        ++slow_open;
        return true;
      };
      for (auto& c : conns) {
        if (!attacking()) break;
        if (!open(c)) ++slow_open_failed;
      }
      while (attacking()) {
        const auto tick = Clock::now() + std::chrono::seconds(1);
        for (auto& c : conns) {
          if (!attacking()) break;
          if (c.fd >= 0) {
            pollfd p{c.fd, POLLRDHUP, 0};
            if (poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
              c.Close();  // closed by hubd's handshake or head deadline
              --slow_open;
            }
          }
          if (c.fd < 0) {
            if (open(c)) ++slow_reopened;
            else ++slow_open_failed;
            continue;
          }
          // One byte, never the whole thing.
          const std::string& msg = tls ? slow_head : hello;
          const char byte = msg[std::min(c.pos, msg.size() - 2)];
          ++c.pos;
          const bool ok = tls ? SSL_write(c.ssl, &byte, 1) == 1 : send(c.fd, &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == 1;
          if (!ok) {
            c.Close();
            --slow_open;
          }
        }
        std::this_thread::sleep_until(tick);
      }
      for (auto& c : conns)
        if (c.fd >= 0) c.Close(), --slow_open;
    });
  }

  // ---- 8 concurrent requests with a million headers each, repeated while the attack lasts.
  std::atomic<int> heads_sent{0}, heads_refused{0};
  for (int i = 0; !control && i < 8; ++i) {
    threads.emplace_back([&] {
      for (int round = 0; round < 10 && attacking(); ++round) {
        const int fd = ConnectFrom("127.0.2.1", sh.hub_port(), 10);
        if (fd < 0) continue;
        SSL* ssl = SSL_new(ctx_);
        SSL_set_fd(ssl, fd);
        if (SSL_connect(ssl) == 1) {
          ++heads_sent;
          const bool all_sent = SSL_write(ssl, million.data(), static_cast<int>(million.size())) == static_cast<int>(million.size());
          char buf[512];
          const int n = SSL_read(ssl, buf, sizeof(buf));
          const std::string resp = n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
          if (!all_sent || resp.rfind("HTTP/1.1 431", 0) == 0) ++heads_refused;
        }
        SSL_free(ssl);
        close(fd);
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
    });
  }

  // ---- 16 parallel zstd bombs from a valid certificate of another site.
  std::atomic<int> bomb_413{0}, bomb_503{0}, bomb_other{0};
  for (int i = 0; !control && i < 16; ++i) {
    threads.emplace_back([&] {
      auto c = Client(sh, &bomber, 20);
      while (attacking()) {
        auto r = c->Post("/v1/sites/bomber-site/batches", {{"Content-Encoding", "zstd"}}, bomb, "application/x-protobuf");
        if (r && r->status == 413) ++bomb_413;
        else if (r && r->status == 503) ++bomb_503;
        else ++bomb_other;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    });
  }

  // ---- Batches with a 1 MB key from a valid certificate of a third site.
  std::atomic<int> key_batches{0}, key_refused{0}, key_applied{0}, key_503{0}, key_other{0};
  if (!control) threads.emplace_back([&] {
    auto c = Client(sh, &keyer, 20);
    uint64_t seq = 1;
    while (attacking()) {
      v1::Batch b;
      b.set_site("keyer-site");
      // One 1 MB key a batch (a 1.5 KB request): its worst case (declared size + window, ~2.3 MB)
      // fits in the decompression budget beside a bomb's (~144 MiB of the default 148 MiB), as
      // the real site's small batches do; batches of ten would get 503 while any bomb runs.
      for (int k = 0; k < 1; ++k) {
        v1::ChangeRecord* r = b.add_records();
        r->set_seq(seq + static_cast<uint64_t>(k));
        r->set_entity(v1::STOCK);
        r->set_key(std::string(1 << 20, static_cast<char>('a' + k)));
        r->set_version(1);
        r->set_ts_ms(1764000000000);
        r->set_hlc(uint64_t{1764000000000} << 16);
        r->mutable_stock()->set_sku("k");  // refused for its key either way
        r->mutable_stock()->set_on_hand(1);
      }
      auto res = c->Post("/v1/sites/keyer-site/batches", {{"Content-Encoding", "zstd"}},
                         hub::ZstdCompress(b.SerializeAsString(), 1), "application/x-protobuf");
      v1::BatchAck ack;
      if (res && res->status == 200 && ack.ParseFromString(res->body)) {
        ++key_batches;
        key_refused += static_cast<int>(ack.refused());
        key_applied += static_cast<int>(ack.applied());
        seq = ack.contiguous_seq() + 1;
      } else if (res && res->status == 503) {
        ++key_503;  // the decompression budget is held by a bomb: try again at once
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      } else {
        ++key_other;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });

  // ---- HQ reads: the change feed and a site's state, one kept-alive connection, until the end.
  struct Lat {
    double s;
    bool during;
  };
  std::mutex lat_mu;
  std::vector<Lat> lats;
  std::atomic<int> hq_failures{0};
  std::atomic<long> conns_open_max{0};
  std::thread hq([&] {
    auto c = Client(sh, nullptr, 10);
    c->set_bearer_token_auth(SiteHub::kToken);
    const auto hq_deadline = Clock::now() + std::chrono::seconds(80);
    for (int i = 0; !done && Clock::now() < hq_deadline; ++i) {
      const bool during = !stop;
      const std::string path = i % 2 ? std::string("/v1/sites/") + SiteHub::kSiteId + "/stock"
                                     : "/v1/changes?after=" + std::to_string(i * 7) + "&limit=100";
      const auto t0 = Clock::now();
      auto r = c->Get(path);
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      if (!r || r->status != 200) ++hq_failures;
      {
        std::lock_guard<std::mutex> l(lat_mu);
        lats.push_back({s, during});
      }
      if (i % 40 == 0 && during) {  // about every 2 s: how many connections hubd holds
        auto m = c->Get("/metrics");
        const std::string key = "\nfreshsync_hub_connections_open ";
        const size_t at = m ? m->body.find(key) : std::string::npos;
        if (at != std::string::npos) conns_open_max = std::max(conns_open_max.load(), std::stol(m->body.substr(at + key.size())));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });

  // ---- The real site: a few thousand messages through Mosquitto into edged, paced over the
  // first 15 s of the attack, pushed by edged's sync agent through the proxy to the same hubd.
  Expected exp;
  const auto pool = MixedWorkload(3000, "abuse", exp, 1111);
  {
    auto pub = site.NewPublisher("abuse-pub");
    const auto t0 = Clock::now();
    for (size_t i = 0; i < pool.size(); ++i) {
      pub->Publish(pool[i], 100);
      std::this_thread::sleep_until(t0 + std::chrono::milliseconds(5 * static_cast<int64_t>(i)));
    }
    pub->Flush();
  }
  long rss_max = 0;
  int slow_open_max = 0;
  while (Clock::now() < attack_deadline) {
    rss_max = std::max(rss_max, StatusKb(hub_pid, "VmRSS:"));
    slow_open_max = std::max(slow_open_max, slow_open.load());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  stop = true;
  for (auto& t : threads) t.join();
  const double attack_s = std::chrono::duration<double>(Clock::now() - t_start).count();

  // ---- After: every record of the real site arrives, exactly once.
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM dedupe", exp.total(), std::chrono::seconds(30))) << "edged did not apply the workload";
  const int64_t last = sh.EdgeLastSeq();
  const bool synced = sh.WaitSynced(last, std::chrono::seconds(30));
  done = true;
  hq.join();
  EXPECT_TRUE(synced) << "hub " << sh.HubRecords() << " of " << last << ", edge backlog " << sh.EdgeBacklog();
  EXPECT_EQ(sh.EdgeBacklog(), 0);
  EXPECT_EQ(sh.CheckFeedExactlyOnce(last), "");

  const long hwm = StatusKb(hub_pid, "VmHWM:");
  const bool hub_alive = kill(hub_pid, 0) == 0;
  // The WAL holds whole pages per commit until the background checkpoint reuses it, so its size
  // follows the number of commits, not the bytes stored. hubd's clean stop checkpoints it into
  // hub.db and removes it: what is left is what the store holds.
  const int64_t wal_live = FileBytes(sh.hub_db() + "-wal");
  const int hub_exit = sh.StopHubd();
  const int64_t grown = store_bytes() - store0;
  const int64_t db_bytes = FileBytes(sh.hub_db()), wal_bytes = wal_live;
  std::vector<double> during, after;
  for (const auto& l : lats) (l.during ? during : after).push_back(l.s);
  const double p99 = Percentile(during, 0.99), p99_after = Percentile(after, 0.99);
  const double total_s = std::chrono::duration<double>(Clock::now() - t_start).count();
  std::fprintf(stderr,
               "FIGURES hub_abuse_combined: site records %lld synced=%d; HQ reads during %zu p50 %.3f s p99 %.3f s max %.3f s, "
               "after %zu p99 %.3f s, failures %d; slow conns held max %d, reopened %d, open failures %d, "
               "hubd connections_open max %ld; million-header requests %d refused %d; bombs 413 %d 503 %d other %d; "
               "1 MB-key batches %d (records refused %d applied %d), 503 %d, other %d; hubd VmHWM %ld -> %ld kB, "
               "VmRSS max %ld kB; store +%lld bytes (%.0f per site record; hub.db %lld bytes after a clean stop, -wal %lld bytes before it); control=%d; attack ended at %.1f s, total %.1f s\n",
               static_cast<long long>(last), synced, during.size(), Percentile(during, 0.5), p99,
               during.empty() ? 0 : *std::max_element(during.begin(), during.end()), after.size(), p99_after,
               hq_failures.load(), slow_open_max, slow_reopened.load(), slow_open_failed.load(), conns_open_max.load(),
               heads_sent.load(), heads_refused.load(), bomb_413.load(), bomb_503.load(), bomb_other.load(), key_batches.load(),
               key_refused.load(), key_applied.load(), key_503.load(), key_other.load(), hwm0, hwm, rss_max,
               static_cast<long long>(grown), last > 0 ? static_cast<double>(grown) / static_cast<double>(last) : 0.0,
               static_cast<long long>(db_bytes), static_cast<long long>(wal_bytes), control, attack_s,
               total_s);

  // The attacks happened at their sizes.
  if (!control) {
  EXPECT_GE(conns_open_max.load(), kSlowConnections * 8 / 10) << "hubd never held most of the slow connections";
  EXPECT_EQ(heads_refused.load(), heads_sent.load());
  EXPECT_GE(heads_sent.load(), 8);
  EXPECT_GT(bomb_413.load(), 0);
  EXPECT_EQ(bomb_other.load(), 0);
  EXPECT_GT(key_refused.load(), 0);
  EXPECT_EQ(key_applied.load(), 0);
  EXPECT_EQ(key_other.load(), 0);
  EXPECT_GE(key_refused.load(), 50);
  // Had the 1 MB keys been stored, the store would have grown by at least a megabyte each.
  EXPECT_LT(grown, static_cast<int64_t>(key_refused.load()) * (1 << 20) / 4);
  }
  // The legit clients were served.
  EXPECT_GT(during.size(), 100u);
  EXPECT_EQ(hq_failures.load(), 0);
  EXPECT_LT(p99, 1.0);
  EXPECT_LT(p99_after, 1.0);
  EXPECT_GT(last, 2000);
  // hubd's memory and disk.
#if !defined(__SANITIZE_ADDRESS__)
  EXPECT_LT(hwm, kMaxHubHwmKb) << "hubd peaked at " << hwm << " kB";
#endif
  EXPECT_TRUE(hub_alive);
  EXPECT_EQ(hub_exit, 0);
  EXPECT_LT(grown, last * kStoreBytesPerRecord + key_refused.load() * kRefusedRowBytes + kStoreSlackBytes)
      << "the store grew by " << grown << " bytes for " << last << " valid records (" << key_refused << " 1 MB keys refused)";
  EXPECT_LT(total_s, 90.0);
  if (HasFailure()) std::cerr << "---- hubd log (tail)\n" << sh.HubLog().substr(sh.HubLog().size() > 8000 ? sh.HubLog().size() - 8000 : 0) << "\n";
}

}  // namespace
}  // namespace freshsync::testing
