// edged with a huge backlog: start-up time and memory (docs/benchmarks.md, "Memory and start-up").
//
// A store is created by edged's own migrations (EdgeStore::Open), then N outbox rows (default
// 10,000,000 GPS change records, as edged writes them, none acknowledged) are bulk-inserted
// straight into it. Then, in the same run:
// - baseline: a bare child process opens the same SQLite file and reads max(seq) (what any
//   process must do to know the backlog); wall time and peak RSS;
// - edged, link down: the real daemon with a real Mosquitto and a [hub] that refuses
//   connections; time from exec to READY=1 (sd_notify on a NOTIFY_SOCKET this bench listens
//   on) and VmRSS sampled every 100 ms for --watch seconds; VmHWM at the end;
// - edged, draining: the same store against a real hubd; RSS while the agent ships the
//   backlog, for --watch seconds, and the records acknowledged in that time.
//
// Usage: edge_backlog [--records N] [--watch S] [--no-drain]
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "bench/bench_util.h"
#include "cloud-sync/outbox_schema.h"
#include "common/config.h"
#include "edge/store.h"
#include "freshsync.pb.h"
#include "tests/support/harness.h"

namespace fs = freshsync;
using Clock = std::chrono::steady_clock;

namespace {

using freshsync::bench::Secs;

using freshsync::bench::Exec;

// GPS records of 50 trucks at 1 Hz, as in bench/sync_drain.cc (simpler motion model).
void Fill(const std::string& path, uint64_t n) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  Exec(db, "PRAGMA synchronous=OFF");
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO outbox(seq, entity, key, version, hlc, priority, created_ms, record) "
                         "VALUES(?,?,?,?,?,?,?,?)", -1, &st, nullptr);
  constexpr int kTrucks = 50;
  const int64_t t0 = fs::SystemClock().NowMs() - 3'600'000;
  fs::v1::ChangeRecord r;
  std::string blob;
  char id[32];
  Exec(db, "BEGIN");
  for (uint64_t s = 1; s <= n; ++s) {
    const int t = static_cast<int>((s - 1) % kTrucks);
    const uint64_t version = (s - 1) / kTrucks + 1;
    const int64_t ts = t0 + static_cast<int64_t>(version) * 1000;
    const uint64_t hlc = (static_cast<uint64_t>(ts + 50) << 16) + static_cast<uint64_t>(t);
    std::snprintf(id, sizeof(id), "truck-%03d", t);
    r.Clear();
    r.set_seq(s);
    r.set_entity(fs::v1::VEHICLE_POSITION);
    r.set_key(id);
    r.set_version(version);
    r.set_hlc(hlc);
    r.set_ts_ms(ts);
    auto* p = r.mutable_position();
    p->set_vehicle(id);
    p->set_device_seq(version);
    p->set_lat_e6(31'200'000 + static_cast<int32_t>(version * 7 % 100000) + t * 1000);
    p->set_lon_e6(121'500'000 + static_cast<int32_t>(version * 11 % 100000) + t * 1000);
    p->set_speed_dkmh(static_cast<uint32_t>(300 + s % 200));
    p->set_heading_deg(static_cast<uint32_t>(version % 360));
    p->set_hdop_d(9);
    r.SerializeToString(&blob);
    sqlite3_bind_int64(st, 1, static_cast<int64_t>(s));
    sqlite3_bind_int(st, 2, r.entity());
    sqlite3_bind_text(st, 3, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, static_cast<int64_t>(version));
    sqlite3_bind_int64(st, 5, static_cast<int64_t>(hlc));
    sqlite3_bind_int(st, 6, 0);
    sqlite3_bind_int64(st, 7, ts + 50);
    sqlite3_bind_blob(st, 8, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
      std::fprintf(stderr, "insert: %s\n", sqlite3_errmsg(db));
      std::exit(1);
    }
    sqlite3_reset(st);
    if (s % 1'000'000 == 0) {
      Exec(db, "COMMIT");
      Exec(db, "BEGIN");
    }
  }
  Exec(db, "COMMIT");
  sqlite3_finalize(st);
  Exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite3_close(db);
}

// kB value of a /proc/PID/status line ("VmRSS", "VmHWM"); -1 if gone.
long StatusKb(pid_t pid, const char* name) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  const size_t n = std::strlen(name);
  while (std::getline(in, line)) {
    if (line.compare(0, n, name) == 0 && line.size() > n && line[n] == ':') return std::atol(line.c_str() + n + 1);
  }
  return -1;
}

// Baseline: a bare process opens the store and reads the backlog's end, as edged must.
void Baseline(const std::string& path) {
  int fds[2];
  if (pipe(fds) != 0) return;
  const auto t0 = Clock::now();
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    sqlite3* db = nullptr;
    sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
    sqlite3_stmt* st = nullptr;
    long long max_seq = -1;
    if (sqlite3_prepare_v2(db, "SELECT max(seq) FROM outbox", -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
      max_seq = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    char buf[128];
    const int len = std::snprintf(buf, sizeof(buf), "%lld %ld\n", max_seq, StatusKb(getpid(), "VmHWM"));
    (void)!write(fds[1], buf, static_cast<size_t>(len));
    _exit(0);
  }
  close(fds[1]);
  char buf[128] = {};
  (void)!read(fds[0], buf, sizeof(buf) - 1);
  const double s = Secs(t0, Clock::now());
  close(fds[0]);
  waitpid(pid, nullptr, 0);
  long long max_seq = 0;
  long hwm = 0;
  std::sscanf(buf, "%lld %ld", &max_seq, &hwm);
  std::printf("baseline  bare process opens the store, reads max(seq) = %lld: %.3f s, peak RSS %.1f MB\n", max_seq, s,
              static_cast<double>(hwm) / 1024);
  std::printf("RESULT|bare process: open + max(seq) (baseline)|%.3f s, peak RSS %.1f MB|\n", s,
              static_cast<double>(hwm) / 1024);
}

// A unix datagram socket for sd_notify.
struct NotifySocket {
  int fd = -1;
  std::string path;
  explicit NotifySocket(std::string p) : path(std::move(p)) {
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof(a.sun_path), "%s", path.c_str());
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) std::perror("bind notify socket");
  }
  ~NotifySocket() {
    close(fd);
    unlink(path.c_str());
  }
  // Waits for a datagram containing `what`; false after timeout_ms.
  bool WaitFor(const char* what, int timeout_ms) {
    const auto end = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (Clock::now() < end) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 10) <= 0) continue;
      char buf[4096];
      const ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
      if (n <= 0) continue;
      buf[n] = 0;
      if (std::strstr(buf, what) != nullptr) return true;
    }
    return false;
  }
};

struct RunResult {
  double ready_s = -1;
  long rss_min_kb = 0, rss_max_kb = 0, hwm_kb = 0;
};

RunResult RunEdged(fs::testing::TempDir& dir, const std::string& toml, double watch_s, const char* label) {
  RunResult out;
  fs::testing::WriteFile(dir.File("edged.toml"), toml);
  NotifySocket notify(dir.File(std::string("notify-") + label + ".sock"));
  fs::testing::ChildProcess edged({fs::testing::BinDir() + "/edged", "--config", dir.File("edged.toml")},
                                  dir.File(std::string("edged-") + label + ".log"),
                                  {{"NOTIFY_SOCKET", notify.path}});
  const auto t0 = Clock::now();
  if (!edged.Start()) return out;
  if (!notify.WaitFor("READY=1", 60000)) {
    std::fprintf(stderr, "edged (%s) sent no READY=1 within 60 s; log:\n%s\n", label,
                 fs::testing::ReadFile(edged.log_path()).c_str());
    return out;
  }
  out.ready_s = Secs(t0, Clock::now());
  out.rss_min_kb = 1L << 40;
  const auto until = Clock::now() + std::chrono::duration<double>(watch_s);
  while (Clock::now() < until && edged.Running()) {
    const long rss = StatusKb(edged.pid(), "VmRSS");
    if (rss > 0) {
      out.rss_min_kb = std::min(out.rss_min_kb, rss);
      out.rss_max_kb = std::max(out.rss_max_kb, rss);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  out.hwm_kb = StatusKb(edged.pid(), "VmHWM");
  edged.Stop();
  return out;
}

int64_t AckedSeq(const std::string& path) {
  sqlite3* db = nullptr;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* st = nullptr;
  int64_t v = 0;
  if (sqlite3_prepare_v2(db, "SELECT value FROM sync_state WHERE name = 'acked_seq'", -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t n = 10'000'000;
  double watch_s = 10;
  bool drain = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string("0"); };
    if (a == "--records") n = std::stoull(next());
    else if (a == "--watch") watch_s = std::stod(next());
    else if (a == "--no-drain") drain = false;
    else {
      std::fprintf(stderr, "usage: %s [--records N] [--watch S] [--no-drain]\n", argv[0]);
      return 2;
    }
  }
  freshsync::bench::DefaultBinDirToOwn(argv[0]);
  fs::testing::TempDir dir;
  const std::string db_path = dir.File("edge.db");
  {
    fs::edge::StoreOptions so;
    so.path = db_path;
    auto store = fs::edge::EdgeStore::Open(so);  // edged's migrations
    if (!store.ok()) {
      std::fprintf(stderr, "store: %s\n", store.status().ToString().c_str());
      return 1;
    }
  }
  auto t0 = Clock::now();
  Fill(db_path, n);
  std::printf("backlog   %llu GPS records bulk-inserted in %.1f s, store file %.0f MB\n",
              static_cast<unsigned long long>(n), Secs(t0, Clock::now()),
              static_cast<double>(std::filesystem::file_size(db_path)) / 1e6);
  Baseline(db_path);

  fs::testing::MosquittoBroker broker(dir.File("mosq"));
  std::filesystem::create_directories(dir.File("mosq"));
  if (!broker.Start()) {
    std::fprintf(stderr, "mosquitto did not start\n");
    return 1;
  }
  std::filesystem::create_directories(dir.File("pki"));
  fs::testing::TestPki pki(dir.File("pki"));
  if (!pki.Init()) return 1;
  auto client = pki.Client("bench-site");
  const std::string base = "site = \"bench-site\"\n[mqtt]\nuri = \"" + broker.Uri() +
                           "\"\ntopic_root = \"fs\"\n[store]\npath = \"" + db_path + "\"\ndurability = \"normal\"\n";
  auto hub_toml = [&](int port) {
    return "[hub]\nurl = \"https://127.0.0.1:" + std::to_string(port) + "\"\nca = \"" + pki.ca_cert() + "\"\ncert = \"" +
           client.cert + "\"\nkey = \"" + client.key + "\"\n";
  };
  // Link down: a port nobody listens on.
  const auto down = RunEdged(dir, base + hub_toml(fs::testing::PickFreePort()), watch_s, "down");
  if (down.ready_s < 0) return 1;
  std::printf("edged     link down: READY=1 after %.3f s; VmRSS %.1f - %.1f MB over %.0f s, VmHWM %.1f MB\n",
              down.ready_s, down.rss_min_kb / 1024.0, down.rss_max_kb / 1024.0, watch_s, down.hwm_kb / 1024.0);
  std::printf("RESULT|edged start to READY=1, %llu-record backlog|%.3f s|< 1 s\n", static_cast<unsigned long long>(n),
              down.ready_s);
  std::printf("RESULT|edged RSS, link down (min - max over %.0f s; VmHWM)|%.1f - %.1f MB; %.1f MB|<= 64 MB, flat\n",
              watch_s, down.rss_min_kb / 1024.0, down.rss_max_kb / 1024.0, down.hwm_kb / 1024.0);
  if (!drain) return 0;

  const int hub_port = fs::testing::PickFreePort();
  fs::testing::WriteFile(dir.File("hubd.toml"), "listen = \"127.0.0.1:" + std::to_string(hub_port) +
                                                    "\"\n[log]\nlevel = \"warn\"\n[tls]\nca = \"" + pki.ca_cert() +
                                                    "\"\ncert = \"" + pki.server().cert + "\"\nkey = \"" +
                                                    pki.server().key + "\"\n[store]\npath = \"" + dir.File("hub.db") +
                                                    "\"\n");
  fs::testing::ChildProcess hub({fs::testing::BinDir() + "/hubd", "--config", dir.File("hubd.toml")}, dir.File("hubd.log"));
  if (!hub.Start()) return 1;
  const int64_t acked_before = AckedSeq(db_path);
  const auto up = RunEdged(dir, base + hub_toml(hub_port), watch_s, "drain");
  if (up.ready_s < 0) return 1;
  const int64_t acked = AckedSeq(db_path) - acked_before;
  std::printf("edged     draining to hubd: READY=1 after %.3f s; VmRSS %.1f - %.1f MB over %.0f s, VmHWM %.1f MB; "
              "%lld records acknowledged meanwhile\n",
              up.ready_s, up.rss_min_kb / 1024.0, up.rss_max_kb / 1024.0, watch_s, up.hwm_kb / 1024.0,
              static_cast<long long>(acked));
  std::printf("RESULT|edged RSS while draining to hubd (min - max over %.0f s; VmHWM)|%.1f - %.1f MB; %.1f MB "
              "(%lld records acked)|<= 64 MB, flat\n",
              watch_s, up.rss_min_kb / 1024.0, up.rss_max_kb / 1024.0, up.hwm_kb / 1024.0, static_cast<long long>(acked));
  hub.Stop();
  return 0;
}
