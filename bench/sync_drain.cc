// Sync drain benchmark: a backlog of GPS change records in an edge-store-shaped SQLite file,
// drained by the real SyncAgent to a real hubd over HTTPS (mutual TLS) on loopback.
//
// Baseline in the same run: reading the outbox and encoding the same batches (protobuf +
// zstd) with no network and no hub, i.e. the agent's own ceiling.
// Wire bytes are counted by a pass-through TCP proxy between agent and hub, so they include
// HTTP headers, TLS records and the acks.
//
// Usage: sync_drain [--records N] [--batch N] [--level L] [--no-hub] [--keep DIR]
// hubd is taken from $FRESHSYNC_BIN_DIR (default: this binary's directory).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>

#include "bench/bench_util.h"
#include "bench/gps_outbox.h"
#include "wire/batch_format.h"
#include "cloud-sync/outbox_schema.h"
#include "cloud-sync/sync_agent.h"
#include "cloud-sync/sync_store.h"
#include "common/clock.h"
#include "edge/migrations.h"
#include "freshsync.pb.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/harness.h"

namespace fs = freshsync;
using Clock = std::chrono::steady_clock;

namespace {

using freshsync::bench::Secs;

using freshsync::bench::Generate;
using freshsync::bench::WaitPort;

}  // namespace

int main(int argc, char** argv) {
  uint64_t n = 1'000'000;
  int batch = 5000;
  int level = 3;
  bool no_hub = false;
  int format = fs::wire::BatchEncoder::kMaxFormat;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--records") n = std::stoull(next());
    else if (a == "--batch") batch = std::stoi(next());
    else if (a == "--level") level = std::stoi(next());
    else if (a == "--no-hub") no_hub = true;
    else if (a == "--format") format = std::stoi(next());
    else {
      std::fprintf(stderr, "usage: %s [--records N] [--batch N] [--level L] [--format 1|2] [--no-hub]\n", argv[0]);
      return 2;
    }
  }
  freshsync::bench::DefaultBinDirToOwn(argv[0]);
  fs::testing::TempDir dir;
  const std::string db_path = dir.File("edge.db");
  auto t0 = Clock::now();
  Generate(db_path, n, fs::SystemClock().NowMs());
  std::printf("generated %llu GPS records in %.2f s (outbox file %.1f MB)\n", static_cast<unsigned long long>(n),
              Secs(t0, Clock::now()), static_cast<double>(std::filesystem::file_size(db_path)) / 1e6);

  // Baseline: the agent's read + encode path with no network, in both batch formats.
  for (int f = 1; f <= fs::wire::BatchEncoder::kMaxFormat; ++f) {
    auto store = fs::sync::SyncStore::Open(db_path, 2000);
    if (!store.ok()) return 1;
    fs::wire::BatchEncoder enc(level);
    std::vector<fs::sync::OutboxRow> rows;
    bool full = false;
    uint64_t after = 0, raw = 0, compressed = 0, record_bytes = 0;
    t0 = Clock::now();
    while (true) {
      if (!(*store)->ReadRange(after, UINT64_MAX, batch, 4 << 20, &rows, &full).ok()) return 1;
      if (rows.empty()) break;
      for (auto& r : rows) record_bytes += r.record.size();
      compressed += enc.Encode("sh-pudong-01", rows, false, f).size();
      raw += enc.raw_size();
      after = rows.back().seq;
    }
    const double s = Secs(t0, Clock::now());
    std::printf("baseline  read+encode format %d (no network): %.0f rec/s, %.1f raw protobuf B/rec, %.2f zstd-%d B/rec "
                "(stored record %.1f B/rec)\n",
                f, static_cast<double>(n) / s, static_cast<double>(raw) / n, static_cast<double>(compressed) / n, level,
                static_cast<double>(record_bytes) / n);
    std::printf("RESULT|read+encode format %d, no network (baseline)|%.0f rec/s, %.2f B/rec body|\n", f,
                static_cast<double>(n) / s, static_cast<double>(compressed) / n);
  }
  if (no_hub) return 0;

  const std::string hubd = fs::testing::BinDir() + "/hubd";
  if (!std::filesystem::exists(hubd)) {
    std::printf("drain: skipped, %s not built\n", hubd.c_str());
    return 0;
  }
  fs::testing::TestPki pki(dir.File("pki"));
  std::filesystem::create_directories(dir.File("pki"));
  if (!pki.Init()) return 1;
  auto client = pki.Client("sh-pudong-01");
  const int hub_port = fs::testing::PickFreePort();
  fs::testing::WriteFile(dir.File("hubd.toml"), "listen = \"127.0.0.1:" + std::to_string(hub_port) +
                                                    "\"\n[tls]\nca = \"" + pki.ca_cert() +
                                                    "\"\ncert = \"" + pki.server().cert + "\"\nkey = \"" +
                                                    pki.server().key + "\"\n[store]\npath = \"" +
                                                    dir.File("hub.db") + "\"\n");
  fs::testing::ChildProcess hub({hubd, "--config", dir.File("hubd.toml")}, dir.File("hubd.log"));
  if (!hub.Start() || !WaitPort(hub_port, 10000)) {
    std::fprintf(stderr, "hubd did not start; log:\n%s\n", fs::testing::ReadFile(dir.File("hubd.log")).c_str());
    return 1;
  }
  fs::testing::FaultProxy proxy("127.0.0.1", hub_port);
  if (!proxy.Start()) return 1;

  fs::EdgeConfig cfg;
  cfg.site = "sh-pudong-01";
  cfg.store.path = db_path;
  fs::HubLinkConfig h;
  h.url = "https://127.0.0.1:" + std::to_string(proxy.port());
  h.ca = pki.ca_cert();
  h.cert = client.cert;
  h.key = client.key;
  h.batch_max_records = batch;
  h.timeout_ms = 60000;
  cfg.hub = h;
  fs::sync::SyncAgentOptions o;
  o.zstd_level = level;
  o.max_batch_format = format;
  fs::sync::SyncAgent agent(cfg, fs::SystemClock(), nullptr, o);
  t0 = Clock::now();
  if (!agent.Start().ok()) return 1;
  while (agent.GetStats().acked_seq < n) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (Secs(t0, Clock::now()) > 600) {
      std::fprintf(stderr, "drain: timed out at acked %llu\n", static_cast<unsigned long long>(agent.GetStats().acked_seq));
      return 1;
    }
  }
  const double s = Secs(t0, Clock::now());
  agent.Stop();
  const auto st = agent.GetStats();
  std::printf("drain     agent -> hubd over HTTPS: %.0f rec/s (%.2f s), %llu batches, %llu retries\n",
              static_cast<double>(n) / s, s, static_cast<unsigned long long>(st.batches_sent),
              static_cast<unsigned long long>(st.retries));
  std::printf("wire      %.2f B/rec request bodies, %.2f B/rec on the wire up (TLS, HTTP), %.2f B/rec down\n",
              static_cast<double>(st.bytes_sent) / n, static_cast<double>(proxy.bytes_up()) / n,
              static_cast<double>(proxy.bytes_down()) / n);
  std::printf("RESULT|drain of %llu GPS records to hubd over HTTPS (format %d)|%.0f rec/s|>= 100000 rec/s\n",
              static_cast<unsigned long long>(n), format, static_cast<double>(n) / s);
  std::printf("RESULT|bytes on the wire per GPS record, upstream (TLS + HTTP)|%.2f B|<= 20 B\n",
              static_cast<double>(proxy.bytes_up()) / n);
  proxy.Stop();
  hub.Stop();
  return 0;
}
