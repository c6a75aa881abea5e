// Return after an outage (docs/benchmarks.md, "Return after an outage"): S sites (default 100),
// each a real SyncAgent in this process with its own edge store (a GPS backlog in its outbox)
// and its own client certificate, keep trying a hub that is down (nothing listens) for
// --outage seconds, long enough for an exponential backoff to reach its 30 s cap. Then hubd
// is started, as shipped (8 threads, so it sheds with 503 + Retry-After beyond 4 batches in
// flight), and we measure, per site, the time from hubd's start to the site's first
// acknowledged batch (p50, p99, max), and hubd's load during the return: its CPU, and the
// answers that were not a 200 (the agents' retries).
//
// Baseline in the same run (--baseline): the same with hub.probe_interval_ms at the backoff
// cap (30 s), i.e. the agent before the fast return: each site comes back after its grown,
// jittered backoff.
//
// Usage: outage_return [--sites 100] [--records 2000] [--outage 20] [--baseline]
//   hubd is taken from $FRESHSYNC_BIN_DIR (default: this binary's dir).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "bench/bench_util.h"
#include "bench/gps_outbox.h"
#include "cloud-sync/sync_agent.h"
#include "common/clock.h"
#include "tests/support/harness.h"

namespace fs = freshsync;
using Clock = std::chrono::steady_clock;

namespace {

using freshsync::bench::CpuSecondsOf;
using freshsync::bench::Secs;

struct Outcome {
  std::vector<double> first_ack_s;  // per site, from hubd's start
  double all_acked_s = 0;           // until every site's backlog is acknowledged
  double listening_s = 0;           // hubd's own start-up: from its start until it accepts connections
  double hub_cpu_s = 0;
  uint64_t retries = 0;             // agents' failed attempts after hubd's start (503s, refused)
  bool ok = false;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

Outcome Run(const fs::testing::TempDir& dir, fs::testing::TestPki& pki, const std::vector<fs::testing::TestPki::Files>& certs,
            int sites, uint64_t records, int outage_s, int probe_interval_ms, const std::string& tag) {
  Outcome out;
  const int hub_port = fs::testing::PickFreePort();
  std::vector<std::unique_ptr<fs::sync::SyncAgent>> agents;
  for (int i = 0; i < sites; ++i) {
    const std::string site = "site-" + std::to_string(i);
    const std::string db = dir.File(tag + "-" + site + ".db");
    fs::bench::Generate(db, records, fs::SystemClock().NowMs());
    fs::EdgeConfig cfg;
    cfg.site = site;
    cfg.store.path = db;
    fs::HubLinkConfig h;
    h.url = "https://127.0.0.1:" + std::to_string(hub_port);
    h.ca = pki.ca_cert();
    h.cert = certs[static_cast<size_t>(i)].cert;
    h.key = certs[static_cast<size_t>(i)].key;
    h.probe_interval_ms = probe_interval_ms;  // the rest as shipped: backoff 200 ms .. 30 s
    cfg.hub = h;
    agents.push_back(std::make_unique<fs::sync::SyncAgent>(cfg, fs::SystemClock()));
  }
  for (auto& a : agents)
    if (!a->Start().ok()) return out;
  std::printf("%s: %d sites trying a hub that is down for %d s...\n", tag.c_str(), sites, outage_s);
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(outage_s));
  uint64_t retries_before = 0;
  for (auto& a : agents) retries_before += a->GetStats().retries;

  const std::string hubd = fs::testing::BinDir() + "/hubd";
  fs::testing::WriteFile(dir.File(tag + "-hubd.toml"), "listen = \"127.0.0.1:" + std::to_string(hub_port) +
                                                           "\"\n[log]\nlevel = \"warn\"\n[tls]\nca = \"" + pki.ca_cert() +
                                                           "\"\ncert = \"" + pki.server().cert + "\"\nkey = \"" +
                                                           pki.server().key + "\"\n[store]\npath = \"" + dir.File(tag + "-hub.db") +
                                                           "\"\n");
  fs::testing::ChildProcess hub({hubd, "--config", dir.File(tag + "-hubd.toml")}, dir.File(tag + "-hubd.log"));
  const auto t0 = Clock::now();
  if (!hub.Start()) return out;
  out.first_ack_s.assign(static_cast<size_t>(sites), -1);
  int acked_sites = 0, done_sites = 0;
  std::thread listen_probe([&] {
    if (freshsync::bench::WaitPort(hub_port, 60000)) out.listening_s = Secs(t0, Clock::now());
  });
  while (done_sites < sites) {
    if (Secs(t0, Clock::now()) > 120) {
      std::fprintf(stderr, "%s: timed out with %d of %d sites acknowledged\n", tag.c_str(), acked_sites, sites);
      listen_probe.join();
      return out;
    }
    done_sites = 0;
    for (int i = 0; i < sites; ++i) {
      const auto st = agents[static_cast<size_t>(i)]->GetStats();
      if (st.acked_seq > 0 && out.first_ack_s[static_cast<size_t>(i)] < 0) {
        out.first_ack_s[static_cast<size_t>(i)] = Secs(t0, Clock::now());
        ++acked_sites;
      }
      if (st.acked_seq >= records) ++done_sites;
    }
    out.hub_cpu_s = CpuSecondsOf(hub.pid());  // while it runs (0 once it is gone)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  out.all_acked_s = Secs(t0, Clock::now());
  listen_probe.join();
  for (auto& a : agents) out.retries += a->GetStats().retries;
  out.retries -= retries_before;
  for (auto& a : agents) a->Stop();
  hub.Stop();
  out.ok = true;
  return out;
}

void Report(const Outcome& o, const char* what, int sites, uint64_t records, bool judged) {
  const double p50 = Percentile(o.first_ack_s, 0.5), p99 = Percentile(o.first_ack_s, 0.99),
               max = Percentile(o.first_ack_s, 1.0);
  std::printf("%-34s first acknowledged batch after hubd's start: p50 %.2f s, p99 %.2f s, max %.2f s (hubd listening after "
              "%.2f s of it); all %llu records of %d sites in %.2f s; hubd CPU %.2f s (%.0f %% of a core); %llu failed attempts "
              "(503s, refused) after its start\n",
              what, p50, p99, max, o.listening_s, static_cast<unsigned long long>(records), sites, o.all_acked_s, o.hub_cpu_s,
              100 * o.hub_cpu_s / std::max(1e-9, o.all_acked_s), static_cast<unsigned long long>(o.retries));
  std::printf("RESULT|%s: hub's return to each site's first acked batch, %d sites, p50 / p99|%.2f / %.2f s (hubd %.0f %% of a core, "
              "%llu shed or refused attempts)|%s\n",
              what, sites, p50, p99, 100 * o.hub_cpu_s / std::max(1e-9, o.all_acked_s), static_cast<unsigned long long>(o.retries),
              judged ? "p99 <= 2 s" : "");
}

}  // namespace

int main(int argc, char** argv) {
  // A hundred in-process agents log every start, stop, retry and lost link: the results would
  // drown in them (and scripts/bench.sh copies the output into docs/benchmarks.md).
  spdlog::set_level(spdlog::level::err);
  int sites = 100, outage_s = 20;
  uint64_t records = 2000;
  bool baseline = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
    if (a == "--sites") sites = std::stoi(next());
    else if (a == "--records") records = std::stoull(next());
    else if (a == "--outage") outage_s = std::stoi(next());
    else if (a == "--baseline") baseline = true;
    else {
      std::fprintf(stderr, "usage: %s [--sites 100] [--records 2000] [--outage 20] [--baseline]\n", argv[0]);
      return 2;
    }
  }
  freshsync::bench::DefaultBinDirToOwn(argv[0]);
  if (!std::filesystem::exists(fs::testing::BinDir() + "/hubd")) {
    std::printf("outage_return: skipped, hubd not built\n");
    return 0;
  }
  fs::testing::TempDir dir;
  std::filesystem::create_directories(dir.File("pki"));
  fs::testing::TestPki pki(dir.File("pki"));
  if (!pki.Init()) return 1;
  std::vector<fs::testing::TestPki::Files> certs;
  for (int i = 0; i < sites; ++i) certs.push_back(pki.Client("site-" + std::to_string(i)));
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  std::printf("load average %.2f %.2f %.2f\n", load[0], load[1], load[2]);

  const fs::HubLinkConfig defaults;
  const Outcome fast = Run(dir, pki, certs, sites, records, outage_s, defaults.probe_interval_ms, "probe");
  if (!fast.ok) return 1;
  const std::string shipped = "probe every " + std::to_string(defaults.probe_interval_ms) + " ms (as shipped)";
  Report(fast, shipped.c_str(), sites, records, true);
  if (baseline) {
    const Outcome slow = Run(dir, pki, certs, sites, records, outage_s, defaults.backoff_max_ms, "backoff");
    if (!slow.ok) return 1;
    Report(slow, "backoff only (before; baseline)", sites, records, false);
  }
  const double p99 = Percentile(fast.first_ack_s, 0.99);
  if (p99 > 2.0) {
    std::printf("MISSED|outage_return: p99 %.2f s > 2 s\n", p99);
    return 3;
  }
  return 0;
}
