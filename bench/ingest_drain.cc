// ingest_drain: how fast does edged drain a backlog queued at the broker, compared with a
// bare Paho subscriber draining the same backlog in the same run?
//
//   1. a real Mosquitto (persistence, max_queued_messages 1000000) on a free port;
//   2. two persistent sessions subscribed to fs/#: "bench-bare" and edged's own;
//   3. both offline, N mixed JSON messages (~140 bytes: movements, GPS, climate) are
//      published at QoS 1, so the broker queues N for each session;
//   4. the bare subscriber (set_message_callback, clean_session=false, counts only) drains;
//   5. edged is started and drains into its store; done when the dedupe table holds N rows.
//   6. live: with edged running and caught up, one publisher sends L more messages at full
//      speed (QoS 1, 500 in flight); we sample how far edged's store is behind the publisher
//      while it runs and how long edged needs after the last PUBACK to have applied them all.
// Rates are messages / wall second from connect (bare) or process start (edged) until the
// last message is in. CPU per message comes from getrusage (bare, in process) and
// /proc/PID/stat (edged; utime+stime over the drain, start-up included).
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
#include "tests/support/harness.h"

using namespace freshsync::testing;
using Clock = std::chrono::steady_clock;

namespace {

using freshsync::bench::CpuSecondsOf;
using freshsync::bench::SelfCpuSeconds;

int64_t CountRows(const std::string& db_path) {
  sqlite3* db = nullptr;
  int64_t n = -1;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 1000);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM dedupe", -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
      n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return n;
}

std::string MessageFor(size_t i, std::string& topic) {
  const int64_t ts = 1764000000000 + static_cast<int64_t>(i);
  switch (i % 4) {
    case 0:
      topic = "fs/stock/movements";
      return nlohmann::json({{"id", "bench-m-" + std::to_string(i)}, {"sku", "sku-" + std::to_string(i % 50)}, {"delta", 5},
                             {"reason", "receive"}, {"lot", "L-2026-11-25"}, {"ts", ts}})
          .dump();
    case 1:
    case 2:
      topic = "fs/vehicles/truck-" + std::to_string(i % 10) + "/gps";
      return nlohmann::json({{"seq", i}, {"lat", 31.2304 + (i % 1000) / 1e5}, {"lon", 121.4737 - (i % 1000) / 1e5}, {"ts", ts},
                             {"speed_kmh", 42.5}, {"heading", 181.0}, {"hdop", 0.9}})
          .dump();
    default:
      topic = "fs/sensors/cold-" + std::to_string(i % 10) + "/climate";
      return nlohmann::json({{"seq", i}, {"ts", ts}, {"temp_c", 3.25}, {"rh", 88.5}, {"battery", 97.0}}).dump();
  }
}

mqtt::connect_options PersistentOpts() {
  return mqtt::connect_options_builder()
      .mqtt_version(MQTTVERSION_3_1_1)
      .clean_session(false)
      .keep_alive_interval(std::chrono::seconds(20))
      .finalize();
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
  CLI11_PARSE(app, argc, argv);
  const std::string bin_dir = std::getenv("FRESHSYNC_BIN_DIR") ? std::getenv("FRESHSYNC_BIN_DIR") : SelfDir();

  TempDir dir;
  MosquittoBroker broker(dir.File("broker"));
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
  std::atomic<size_t> received{0};
  mqtt::async_client bare(broker.Uri(), "bench-bare", mqtt::create_options_builder().mqtt_version(MQTTVERSION_3_1_1).finalize(), nullptr);
  bare.set_message_callback([&](mqtt::const_message_ptr) { ++received; });
  bare.connect(PersistentOpts())->wait();
  bare.subscribe("fs/#", 1)->wait();
  bare.disconnect()->wait();
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
      const std::string payload = MessageFor(i, topic);
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

  // The backlog, queued for both sessions.
  std::cerr << "publishing " << n << " messages...\n";
  std::cerr << "mean payload " << publish(0, n, nullptr) / n << " bytes\n";

  // Bare subscriber drain.
  received = 0;
  double cpu0 = SelfCpuSeconds();
  auto t0 = Clock::now();
  bare.connect(PersistentOpts())->wait();
  while (received < n) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  const double bare_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const double bare_cpu = SelfCpuSeconds() - cpu0;
  bare.disconnect()->wait();

  // Node.js drain (its wall time from process start, as edged's; its CPU from the reaped child).
  double node_s = 0, node_cpu = 0;
  if (!node_script.empty()) {
    rusage before{}, after{};
    getrusage(RUSAGE_CHILDREN, &before);
    ChildProcess node = node_drain(n);
    const auto n0 = Clock::now();
    node.Start();
    if (node.Wait(std::chrono::minutes(30)) != 0) {
      std::cerr << "node drain failed; see " << node_log << "\n";
      return 1;
    }
    node_s = std::chrono::duration<double>(Clock::now() - n0).count();
    getrusage(RUSAGE_CHILDREN, &after);
    auto secs = [](const rusage& r) {
      return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
    };
    node_cpu = secs(after) - secs(before);
  }

  // edged drain.
  std::vector<std::string> edged_argv = {bin_dir + "/edged", "--config", config};
  if (!profile.empty()) edged_argv.insert(edged_argv.begin(), {"perf", "record", "-F", "999", "-g", "-o", profile, "--"});
  ChildProcess edged(edged_argv, log);
  t0 = Clock::now();
  edged.Start();
  double edged_cpu = 0;
  while (true) {
    if (CountRows(db) >= static_cast<int64_t>(n)) break;
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

  const double bare_rate = n / bare_s, edged_rate = n / edged_s;
  std::printf("| path | messages | seconds | messages/s | CPU us/message |\n| --- | --- | --- | --- | --- |\n");
  std::printf("| bare Paho subscriber | %zu | %.2f | %.0f | %.1f |\n", n, bare_s, bare_rate, bare_cpu * 1e6 / n);
  std::printf("| edged (durability=%s) | %zu | %.2f | %.0f | %.1f |\n", durability.c_str(), n, edged_s, edged_rate, edged_cpu * 1e6 / n);
  if (node_s > 0)
    std::printf("| Node.js: mqtt.js + better-sqlite3 | %zu | %.2f | %.0f | %.1f |\n", n, node_s, n / node_s, node_cpu * 1e6 / n);
  std::printf("\nratio edged/bare: %.2f\n", edged_rate / bare_rate);
  if (node_s > 0) std::printf("ratio edged/Node.js: %.2f\n", edged_rate / (n / node_s));
  if (live > 0) {
    std::printf("\n| live, one publisher at full speed | value |\n| --- | --- |\n");
    std::printf("| messages | %zu |\n| publisher rate (PUBACKed by the broker) | %.0f msg/s |\n", live, live / live_pub_s);
    std::printf("| edged's store behind the publisher, max sampled | %lld messages |\n", static_cast<long long>(live_max_behind));
    std::printf("| time after the last PUBACK until edged applied all | %.3f s |\n", live_catchup_s);
    std::printf("| edged CPU per message, live | %.1f us |\n", live_cpu * 1e6 / static_cast<double>(live));
  }
  // Summary lines for scripts/bench.sh.
  std::printf("RESULT|bare Paho subscriber drain, %zu queued (baseline)|%.0f msg/s, %.1f us CPU/msg|\n", n, bare_rate,
              bare_cpu * 1e6 / n);
  std::printf("RESULT|edged drain (durability=%s), ratio to bare|%.0f msg/s, %.2f, %.1f us CPU/msg|ratio >= 0.7\n",
              durability.c_str(), edged_rate, edged_rate / bare_rate, edged_cpu * 1e6 / n);
  if (node_s > 0)
    std::printf("RESULT|Node.js subscriber (mqtt.js + better-sqlite3) drain; edged's rate over it|%.0f msg/s, %.1f us CPU/msg; edged %.2fx|edged faster\n",
                n / node_s, node_cpu * 1e6 / n, edged_rate / (n / node_s));
  if (live > 0)
    std::printf("RESULT|live: one publisher at full speed, edged behind (max) / catch-up after last PUBACK|%.0f msg/s, %lld msgs / "
                "%.3f s|keeps up (no growth)\n",
                live / live_pub_s, static_cast<long long>(live_max_behind), live_catchup_s);
  return 0;
}
