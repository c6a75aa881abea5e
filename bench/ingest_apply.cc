// ingest_apply: edged's own CPU per message on the ingest path, without a broker and without
// Paho: the messages of an ingest_drain workload (bench/ingest_workload.h) go through
// Ingest::Accept (classification, personal-data scan, the intake journal's write) while the
// journal applier decodes them and commits them to a real EdgeStore in batches, as in edged
// (the store's hook aside: no site rules). Timed from the first Accept until the last entry is
// committed; CPU is this process's (getrusage), so it is the sum of both threads.
//
// Baseline, same run, same settings (WAL, synchronous=NORMAL, batches of Ingest::kMaxBatch):
// the floor a store of these messages cannot go under, raw SQLite inserting each message as
// one row (topic, payload) with prepared statements and no journal, decode, dedupe, version
// or change record.
//
// The stable metric on a loaded machine is the instruction count: run under callgrind, the
// timed part alone is counted (CALLGRIND_ZERO_STATS / DUMP_STATS around it):
//   valgrind --tool=callgrind build/bin/ingest_apply --messages 20000
// and divide the Ir of the first dump (callgrind.out.PID.1) by the messages (docs/benchmarks.md, "Ingest drain").
#include <sqlite3.h>
#include <valgrind/callgrind.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "bench/bench_util.h"
#include "bench/ingest_workload.h"
#include "edge/ingest.h"
#include "edge/store.h"
#include "tests/support/harness.h"

using namespace freshsync;
using bench::SelfCpuSeconds;
using Steady = std::chrono::steady_clock;

namespace {

struct Run {
  double wall_s = 0, cpu_s = 0;
};

Run Baseline(const std::string& path, const std::vector<std::pair<std::string, std::string>>& msgs, size_t batch) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  bench::Exec(db, "PRAGMA journal_mode=WAL");
  bench::Exec(db, "PRAGMA synchronous=NORMAL");
  bench::Exec(db, "CREATE TABLE m(id INTEGER PRIMARY KEY, topic TEXT NOT NULL, payload BLOB NOT NULL)");
  sqlite3_stmt* put = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO m(topic, payload) VALUES (?1, ?2)", -1, &put, nullptr);
  const double c0 = SelfCpuSeconds();
  const auto t0 = Steady::now();
  for (size_t i = 0; i < msgs.size(); ++i) {
    if (i % batch == 0) bench::Exec(db, "BEGIN IMMEDIATE");
    sqlite3_bind_text(put, 1, msgs[i].first.data(), static_cast<int>(msgs[i].first.size()), SQLITE_STATIC);
    sqlite3_bind_blob(put, 2, msgs[i].second.data(), static_cast<int>(msgs[i].second.size()), SQLITE_STATIC);
    if (sqlite3_step(put) != SQLITE_DONE) std::exit(1);
    sqlite3_reset(put);
    if (i % batch == batch - 1 || i + 1 == msgs.size()) bench::Exec(db, "COMMIT");
  }
  Run r{bench::Secs(t0, Steady::now()), SelfCpuSeconds() - c0};
  sqlite3_finalize(put);
  sqlite3_close(db);
  return r;
}

Run Edge(const std::string& path, const std::vector<std::pair<std::string, std::string>>& msgs) {
  EdgeConfig config;
  config.store.path = path;
  edge::StoreOptions so;
  so.path = path;
  auto store = edge::EdgeStore::Open(so);
  if (!store.ok()) {
    std::fprintf(stderr, "store: %s\n", store.status().ToString().c_str());
    std::exit(1);
  }
  edge::Ingest ingest(config, **store);
  if (Status s = ingest.StartIntake(); !s.ok()) {
    std::fprintf(stderr, "journal: %s\n", s.ToString().c_str());
    std::exit(1);
  }
  CALLGRIND_ZERO_STATS;
  const double c0 = SelfCpuSeconds();
  const auto t0 = Steady::now();
  uint64_t last = 0;
  for (const auto& [topic, payload] : msgs) last = ingest.Accept(topic, payload);
  ingest.WaitApplied(last);
  Run r{bench::Secs(t0, Steady::now()), SelfCpuSeconds() - c0};
  CALLGRIND_DUMP_STATS_AT("ingest_apply: edged, timed part");
  if (ingest.counters().applied.load() != static_cast<int64_t>(msgs.size())) {
    std::fprintf(stderr, "applied %lld of %zu\n", static_cast<long long>(ingest.counters().applied.load()), msgs.size());
    std::exit(1);
  }
  ingest.Stop();
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ingest_apply: edged's CPU per message without the broker, raw SQLite inserts as baseline"};
  size_t n = 100000;
  std::string workload_name = "gps";
  app.add_option("--messages", n, "messages (default 100000)");
  app.add_option("--workload", workload_name, "gps (default), stock or mix (bench/ingest_workload.h)")
      ->check(CLI::IsMember({"gps", "stock", "mix"}));
  CLI11_PARSE(app, argc, argv);
  edge::TuneProcessForIngest();  // as edged does
  spdlog::set_level(spdlog::level::warn);
  const bench::Workload workload = bench::WorkloadNamed(workload_name);
  std::vector<std::pair<std::string, std::string>> msgs(n);
  for (size_t i = 0; i < n; ++i) msgs[i].second = bench::MessageFor(workload, i, msgs[i].first);

  testing::TempDir dir;
  const Run base = Baseline(dir.File("raw.db"), msgs, edge::Ingest::kMaxBatch);
  const Run edge = Edge(dir.File("edge.db"), msgs);
  double load[3] = {0, 0, 0};
  getloadavg(load, 3);
  std::printf("workload %s, %zu messages, load average %.2f %.2f %.2f\n", workload_name.c_str(), n, load[0], load[1], load[2]);
  std::printf("baseline  raw SQLite insert, one row per message: %.0f msg/s, %.2f us CPU/msg\n", n / base.wall_s, base.cpu_s * 1e6 / n);
  std::printf("edged     Accept (journal) + applier (decode, store): %.0f msg/s, %.2f us CPU/msg (%.1fx the baseline's CPU)\n",
              n / edge.wall_s, edge.cpu_s * 1e6 / n, edge.cpu_s / base.cpu_s);
  std::printf("RESULT|%s: edged's own CPU per message, no broker (raw SQLite insert baseline)|%.2f us (%.2f us)|\n",
              workload_name.c_str(), edge.cpu_s * 1e6 / n, base.cpu_s * 1e6 / n);
  return 0;
}
