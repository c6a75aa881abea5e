// ingest_drain: how fast does edged drain a backlog queued at the broker, compared with a
// bare Paho subscriber draining the same backlog in the same run?
//
//   1. a real Mosquitto on a free port, with the flow settings of the shipped broker config
//      (packaging/mosquitto/freshsync.conf: max_inflight_messages, max_queued_messages);
//   2. two persistent sessions subscribed to fs/#: "bench-bare" and edged's own;
//   3. both offline, N JSON messages of one workload (--workload: gps = 140-byte fixes from
//      20 vehicles; stock = 3/4 stock movements, 1/4 GPS; mix = 1/4 movements, 1/2 GPS,
//      1/4 climate) are published at QoS 1, so the broker queues N for each session;
//   4. the bare subscriber (this binary with --bare-client: Paho set_message_callback,
//      clean_session=false, counts only) drains, as a process of its own;
//   5. edged is started and drains into its store; done when its intake position (committed
//      with the messages) reaches N; after the run its dedupe table must hold every message.
//   6. live: with edged running and caught up, one publisher sends L more messages at full
//      speed (QoS 1, 500 in flight); we sample how far edged's store is behind the publisher
//      while it runs and how long edged needs after the last PUBACK to have applied them all.
// Every path is timed the same way, as a user sees it: from its process's start until the
// last message is in (bare, Node.js: the process exits once it counted N; edged: its intake
// position reaches N, polled every 20 ms). CPU per message: getrusage of the reaped child
// (bare, Node.js) and /proc/PID/stat (edged; utime+stime over the drain, start-up included).
// --min-ratio, --max-cpu-us and --min-node-ratio are targets: each one missed prints a
// "MISSED|..." line (scripts/bench.sh fails on them) and the exit status is 3.
// --node-script bench/node/drain.js adds what a team would otherwise write: a Node.js
// subscriber (mqtt.js + better-sqlite3, one transaction per message, PUBACK after the commit;
// bench/node/README.md) draining the same backlog from a third persistent session.
// --profile FILE runs the draining edged under `perf record -g` (FILE: perf.data) instead;
// its CPU column is then perf's and not meaningful.
#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <mqtt/async_client.h>
#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "bench/ingest_workload.h"
#include "tests/support/harness.h"

using namespace freshsync::testing;
using Clock = std::chrono::steady_clock;

namespace {

using freshsync::bench::CpuSecondsOf;
using freshsync::bench::MessageFor;
using freshsync::bench::Workload;

int64_t QueryInt(const std::string& db_path, const char* sql) {
  sqlite3* db = nullptr;
  int64_t n = -1;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 1000);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return n;
}

// Messages edged has committed: its intake position, written in the same transaction as the
// messages it covers (journal indices count from 1 in a fresh store). One row read: the
// COUNT(*) over the dedupe table this polled before took milliseconds every 20 ms at 100k
// rows, CPU the bare subscriber's run did not have to share.
int64_t CountRows(const std::string& db_path) {
  return QueryInt(db_path, "SELECT value FROM edge_meta WHERE name = 'intake_applied'");
}

// What was really applied, once, at the end: every message a dedupe row.
int64_t DedupeRows(const std::string& db_path) { return QueryInt(db_path, "SELECT COUNT(*) FROM dedupe"); }

mqtt::connect_options PersistentOpts() {
  return mqtt::connect_options_builder()
      .mqtt_version(MQTTVERSION_3_1_1)
      .clean_session(false)
      .keep_alive_interval(std::chrono::seconds(20))
      .finalize();
}

// The flow settings of the broker config we ship, so that the backlog drains through the
// same window as on a site: the lines of packaging/mosquitto/freshsync.conf that bound what a
// session queues and has in flight.
std::string ShippedFlowSettings(const std::string& path) {
  std::ifstream in(path);
  std::string line, out;
  while (std::getline(in, line))
    if (line.rfind("max_inflight_messages ", 0) == 0 || line.rfind("max_queued_messages ", 0) == 0) out += line + "\n";
  return out;
}

std::string OneLine(std::string s) {
  while (!s.empty() && s.back() == '\n') s.pop_back();
  for (char& c : s)
    if (c == '\n') c = ',';
  return s;
}

// --bare-client: the baseline as a process of its own, so that it is timed like edged and
// Node.js (from process start). Subscribes with its persistent session, counts `count`
// messages, leaves. count 0: only set up the session.
int BareClient(const std::string& uri, size_t count) {
  std::atomic<size_t> received{0};
  mqtt::async_client bare(uri, "bench-bare", mqtt::create_options_builder().mqtt_version(MQTTVERSION_3_1_1).finalize(), nullptr);
  bare.set_message_callback([&](mqtt::const_message_ptr) { ++received; });
  bare.connect(PersistentOpts())->wait();
  if (count == 0) bare.subscribe("fs/#", 1)->wait();
  while (received < count) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  bare.disconnect()->wait();
  return 0;
}

double ChildrenCpuSeconds() {
  rusage r{};
  getrusage(RUSAGE_CHILDREN, &r);
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) + static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

std::string SelfDir() {
  return std::filesystem::read_symlink("/proc/self/exe").parent_path().string();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ingest_drain: edged vs. bare Paho draining a queued backlog"};
  size_t n = 100000;
  std::string durability = "normal";
  app.add_option("--messages", n, "backlog size (default 100000)");
  app.add_option("--durability", durability, "edged store.durability: normal or strict");
  size_t live = 30000;
  std::string profile;
  app.add_option("--live", live, "messages for the live phase (0: skip)");
  app.add_option("--profile", profile, "perf.data file: profile the draining edged with perf record -g");
  std::string node_script;
  app.add_option("--node-script", node_script, "bench/node/drain.js: also drain with the Node.js comparison");
  std::string workload_name = "mix", broker_conf = FRESHSYNC_SOURCE_DIR "/packaging/mosquitto/freshsync.conf";
  app.add_option("--workload", workload_name, "gps (140-byte fixes, 20 vehicles), stock (3/4 stock movements) or mix (default)")
      ->check(CLI::IsMember({"gps", "stock", "mix"}));
  app.add_option("--broker-conf", broker_conf, "the shipped broker config whose flow settings the broker takes");
  double min_ratio = 0, max_cpu_us = 0, min_node_ratio = 0;
  app.add_option("--min-ratio", min_ratio, "target: edged's rate over the bare subscriber's (0: none)");
  app.add_option("--max-cpu-us", max_cpu_us, "target: edged's CPU per message, microseconds (0: none)");
  app.add_option("--min-node-ratio", min_node_ratio, "target: edged's rate over Node.js's, when it runs (0: none)");
  std::string bare_uri;
  size_t bare_count = 0;
  app.add_option("--bare-client", bare_uri, "(internal) run as the bare subscriber against this broker URI");
  app.add_option("--bare-count", bare_count, "(internal) messages the bare subscriber waits for (0: set up the session)");
  CLI11_PARSE(app, argc, argv);
  if (!bare_uri.empty()) return BareClient(bare_uri, bare_count);
  const Workload workload = freshsync::bench::WorkloadNamed(workload_name);
  const std::string flow = ShippedFlowSettings(broker_conf);
  if (flow.find("max_inflight_messages") == std::string::npos) {
    std::cerr << "no max_inflight_messages in " << broker_conf << "\n";
    return 1;
  }
  const std::string bin_dir = std::getenv("FRESHSYNC_BIN_DIR") ? std::getenv("FRESHSYNC_BIN_DIR") : SelfDir();

  TempDir dir;
  // Appended after the harness's own settings, so the shipped values are the ones in force.
  MosquittoBroker broker(dir.File("broker"), flow);
  if (!broker.Start()) {
    std::cerr << "cannot start mosquitto\n";
    return 1;
  }
  const std::string config = dir.File("edged.toml"), db = dir.File("edge.db"), log = dir.File("edged.log");
  WriteFile(config, "site = \"bench\"\n[mqtt]\nuri = \"" + broker.Uri() + "\"\n[store]\npath = \"" + db + "\"\ndurability = \"" +
                        durability + "\"\n[log]\nlevel = \"warn\"\n");

  // Sessions: edged's (start it once, let it subscribe, stop it) and the bare subscriber's.
  {
    ChildProcess edged({bin_dir + "/edged", "--config", config}, log);
    edged.Start();
    std::this_thread::sleep_for(std::chrono::seconds(2));  // connect + subscribe
    edged.Stop();
  }
  const std::string bare_log = dir.File("bare.log");
  auto bare_drain = [&](size_t count) {
    return ChildProcess({SelfDir() + "/ingest_drain", "--bare-client", broker.Uri(), "--bare-count", std::to_string(count)}, bare_log);
  };
  {
    ChildProcess bare = bare_drain(0);
    if (!bare.Start() || bare.Wait(std::chrono::seconds(30)) != 0) {
      std::cerr << "bare subscriber set-up failed; see " << bare_log << "\n";
      return 1;
    }
  }
  const std::string node_db = dir.File("node.db"), node_log = dir.File("node.log");
  auto node_drain = [&](size_t count) {
    return ChildProcess({"node", node_script, "--url=mqtt://127.0.0.1:" + std::to_string(broker.port()), "--client-id=bench-node",
                         "--db=" + node_db, "--count=" + std::to_string(count)},
                        node_log);
  };
  if (!node_script.empty()) {  // its session: subscribe once, then off
    ChildProcess node = node_drain(0);
    if (!node.Start() || node.Wait(std::chrono::seconds(30)) != 0) {
      std::cerr << "node " << node_script << " failed; see " << node_log << "\n";
      return 1;
    }
  }

  // Publishes messages [first, first + count) at full speed, 500 in flight; `on_ack` after each
  // PUBACK window step (for sampling).
  auto publish = [&](size_t first, size_t count, const std::function<void(size_t)>& on_progress) {
    mqtt::async_client pub(broker.Uri(), "bench-pub",
                           mqtt::create_options_builder().mqtt_version(MQTTVERSION_3_1_1).max_buffered_messages(10000).finalize(), nullptr);
    pub.connect(mqtt::connect_options_builder().mqtt_version(MQTTVERSION_3_1_1).max_inflight(1000).finalize())->wait();
    std::deque<mqtt::delivery_token_ptr> window;
    size_t bytes = 0;
    for (size_t i = first; i < first + count; ++i) {
      std::string topic;
      const std::string payload = MessageFor(workload, i, topic);
      bytes += payload.size();
      if (window.size() >= 500) {
        window.front()->wait();
        window.pop_front();
      }
      window.push_back(pub.publish(topic, payload.data(), payload.size(), 1, false));
      if (on_progress && (i - first) % 1000 == 999) on_progress(i - first + 1);
    }
    for (auto& t : window) t->wait();
    pub.disconnect()->wait();
    return bytes;
  };

  // The backlog, queued for every session.
  std::cerr << "publishing " << n << " messages (workload " << workload_name << ")...\n";
  const size_t mean_payload = publish(0, n, nullptr) / n;
  std::cerr << "mean payload " << mean_payload << " bytes\n";

  // A child process drained from its start until it exits: wall seconds and reaped CPU.
  auto timed_child = [&](ChildProcess child, const std::string& what, double* secs, double* cpu) {
    const double cpu0 = ChildrenCpuSeconds();
    const auto c0 = Clock::now();
    if (!child.Start() || child.Wait(std::chrono::minutes(30)) != 0) {
      std::cerr << what << " drain failed; see " << child.log_path() << "\n";
      return false;
    }
    *secs = std::chrono::duration<double>(Clock::now() - c0).count();
    *cpu = ChildrenCpuSeconds() - cpu0;
    return true;
  };
  double bare_s = 0, bare_cpu = 0;
  if (!timed_child(bare_drain(n), "bare subscriber", &bare_s, &bare_cpu)) return 1;
  double node_s = 0, node_cpu = 0;
  if (!node_script.empty() && !timed_child(node_drain(n), "node", &node_s, &node_cpu)) return 1;

  // edged drain.
  std::vector<std::string> edged_argv = {bin_dir + "/edged", "--config", config};
  if (!profile.empty()) edged_argv.insert(edged_argv.begin(), {"perf", "record", "-F", "999", "-g", "-o", profile, "--"});
  ChildProcess edged(edged_argv, log);
  const auto t0 = Clock::now();
  edged.Start();
  double edged_cpu = 0, edged_first_s = 0;
  while (true) {
    const int64_t rows = CountRows(db);
    if (rows > 0 && edged_first_s == 0) edged_first_s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (rows >= static_cast<int64_t>(n)) break;
    if (!edged.Running()) {
      std::cerr << "edged died; see " << log << "\n";
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double edged_s = std::chrono::duration<double>(Clock::now() - t0).count();
  edged_cpu = CpuSecondsOf(edged.pid());

  // Live: one publisher at full speed into the running, caught-up edged.
  double live_pub_s = 0, live_catchup_s = 0, live_cpu = 0;
  int64_t live_max_behind = 0;
  if (live > 0) {
    const double cpu_before = CpuSecondsOf(edged.pid());
    const auto l0 = Clock::now();
    publish(n, live, [&](size_t acked) {
      if (acked % 5000 == 0) live_max_behind = std::max<int64_t>(live_max_behind, static_cast<int64_t>(n + acked) - CountRows(db));
    });
    live_pub_s = std::chrono::duration<double>(Clock::now() - l0).count();
    const int64_t behind_at_end = static_cast<int64_t>(n + live) - CountRows(db);
    live_max_behind = std::max(live_max_behind, behind_at_end);
    const auto c0 = Clock::now();
    while (CountRows(db) < static_cast<int64_t>(n + live)) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    live_catchup_s = std::chrono::duration<double>(Clock::now() - c0).count();
    live_cpu = CpuSecondsOf(edged.pid()) - cpu_before;
  }
  edged.Stop(std::chrono::seconds(60));
  const int64_t applied = DedupeRows(db);
  if (applied != static_cast<int64_t>(n + live)) {
    std::cerr << "edged applied " << applied << " messages, not " << n + live << "; see " << log << "\n";
    return 1;
  }

  const double bare_rate = n / bare_s, edged_rate = n / edged_s;
  double loadavg[3] = {0, 0, 0};
  getloadavg(loadavg, 3);
  std::printf("workload %s: %zu messages, mean payload %zu bytes; broker flow settings as shipped: %s; load average %.2f %.2f %.2f\n\n",
              workload_name.c_str(), n, mean_payload, OneLine(flow).c_str(), loadavg[0], loadavg[1], loadavg[2]);
  std::printf("| path | messages | seconds | messages/s | CPU us/message |\n| --- | --- | --- | --- | --- |\n");
  std::printf("| bare Paho subscriber | %zu | %.2f | %.0f | %.1f |\n", n, bare_s, bare_rate, bare_cpu * 1e6 / n);
  std::printf("| edged (durability=%s) | %zu | %.2f | %.0f | %.1f |\n", durability.c_str(), n, edged_s, edged_rate, edged_cpu * 1e6 / n);
  if (node_s > 0)
    std::printf("| Node.js: mqtt.js + better-sqlite3 | %zu | %.2f | %.0f | %.1f |\n", n, node_s, n / node_s, node_cpu * 1e6 / n);
  std::printf("\nedged: first message in its store %.2f s after its start (start-up, connect, subscribe), then %.0f msg/s\n",
              edged_first_s, n / std::max(1e-9, edged_s - edged_first_s));
  std::printf("ratio edged/bare: %.2f\n", edged_rate / bare_rate);
  if (node_s > 0) std::printf("ratio edged/Node.js: %.2f\n", edged_rate / (n / node_s));
  if (live > 0) {
    std::printf("\n| live, one publisher at full speed | value |\n| --- | --- |\n");
    std::printf("| messages | %zu |\n| publisher rate (PUBACKed by the broker) | %.0f msg/s |\n", live, live / live_pub_s);
    std::printf("| edged's store behind the publisher, max sampled | %lld messages |\n", static_cast<long long>(live_max_behind));
    std::printf("| time after the last PUBACK until edged applied all | %.3f s |\n", live_catchup_s);
    std::printf("| edged CPU per message, live | %.1f us |\n", live_cpu * 1e6 / static_cast<double>(live));
  }
  // Summary lines for scripts/bench.sh.
  const double edged_cpu_us = edged_cpu * 1e6 / static_cast<double>(n), ratio = edged_rate / bare_rate;
  auto target = [](const char* what, double value) { return value > 0 ? std::string(what) + std::to_string(value).substr(0, 4) : std::string(); };
  std::printf("RESULT|%s: bare Paho subscriber drain, %zu queued (baseline)|%.0f msg/s, %.1f us CPU/msg|\n", workload_name.c_str(), n,
              bare_rate, bare_cpu * 1e6 / n);
  std::printf("RESULT|%s: edged drain (durability=%s), ratio to bare, CPU|%.0f msg/s, %.2f, %.1f us CPU/msg|%s%s%s\n",
              workload_name.c_str(), durability.c_str(), edged_rate, ratio, edged_cpu_us, target("ratio >= ", min_ratio).c_str(),
              min_ratio > 0 && max_cpu_us > 0 ? ", " : "", target("CPU <= ", max_cpu_us).c_str());
  if (node_s > 0)
    std::printf("RESULT|%s: Node.js subscriber (mqtt.js + better-sqlite3) drain; edged's rate over it|%.0f msg/s, %.1f us CPU/msg; edged %.2fx|%s\n",
                workload_name.c_str(), n / node_s, node_cpu * 1e6 / n, edged_rate / (n / node_s), target("edged >= ", min_node_ratio).c_str());
  if (live > 0)
    std::printf("RESULT|live: one publisher at full speed, edged behind (max) / catch-up after last PUBACK|%.0f msg/s, %lld msgs / "
                "%.3f s|keeps up (no growth)\n",
                live / live_pub_s, static_cast<long long>(live_max_behind), live_catchup_s);
  // The targets: scripts/bench.sh fails on a MISSED line.
  int missed = 0;
  auto judge = [&](bool ok, const std::string& line) {
    if (ok) return;
    std::printf("MISSED|%s: %s\n", workload_name.c_str(), line.c_str());
    ++missed;
  };
  char buf[160];
  std::snprintf(buf, sizeof buf, "edged/bare ratio %.2f < %.2f", ratio, min_ratio);
  judge(min_ratio <= 0 || ratio >= min_ratio, buf);
  std::snprintf(buf, sizeof buf, "edged CPU %.1f us/message > %.1f", edged_cpu_us, max_cpu_us);
  judge(max_cpu_us <= 0 || edged_cpu_us <= max_cpu_us, buf);
  if (node_s > 0) {
    std::snprintf(buf, sizeof buf, "edged/Node.js %.2fx < %.2fx", edged_rate / (n / node_s), min_node_ratio);
    judge(min_node_ratio <= 0 || edged_rate / (n / node_s) >= min_node_ratio, buf);
  }
  return missed > 0 ? 3 : 0;
}
