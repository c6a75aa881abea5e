// edged: the site daemon. Thin main: config, logging, store, ingest, signals, systemd.
#include <malloc.h>
#include <signal.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "cloud-sync/sync_agent.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/logging.h"
#include "edge/ingest.h"
#include "edge/site_rules.h"
#include "edge/store.h"

namespace {

// Test-only: FRESHSYNC_FAIL_COMMITS_FOR_TEST="AFTER:COUNT" makes commits fail with an I/O
// error (as on a full disk) after AFTER successful ones, COUNT times (COUNT < 0: forever).
void InstallCommitFaultForTest(freshsync::edge::EdgeStore& store) {
  const char* spec = std::getenv("FRESHSYNC_FAIL_COMMITS_FOR_TEST");
  if (spec == nullptr) return;
  long after = 0, count = 0;
  if (std::sscanf(spec, "%ld:%ld", &after, &count) != 2) return;
  spdlog::warn("test hook: failing commits after {} for {}", after, count);
  store.SetCommitFaultForTest([after, count, n = 0L, failed = 0L]() mutable {
    if (n < after) {
      ++n;
      return freshsync::Status::Ok();
    }
    if (count >= 0 && failed >= count) return freshsync::Status::Ok();
    ++failed;
    return freshsync::Status::IOError("injected commit failure (test hook)");
  });
}

}  // namespace

int main(int argc, char** argv) {
  // glibc trims the Paho receive thread's malloc arena with madvise(MADV_DONTNEED) whenever
  // its top chunk passes the trim threshold; every madvise is a TLB shootdown across CPUs,
  // and profiling showed that alone costing about a quarter of the per-message CPU. Keep
  // freed memory in the arena instead (bounded: the working set per message is small).
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  CLI::App app{"edged: FreshSync site daemon (MQTT ingest into the site store)"};
  std::string config_path;
  bool check_only = false;
  app.add_option("--config", config_path, "TOML config file")->required();
  app.add_flag("--check-config", check_only, "validate the config file and exit (0 ok, 2 invalid)");
  CLI11_PARSE(app, argc, argv);

  auto config = freshsync::LoadEdgeConfig(config_path);
  if (!config.ok()) {
    std::cerr << "edged: invalid config: " << config.status().message() << "\n";
    return 2;
  }
  std::optional<freshsync::edge::Sealer> sealer;
  // The key may come as a systemd credential (LoadCredential=privacy.key:...), see ResolveKeyPath.
  std::string key_path = freshsync::edge::Sealer::ResolveKeyPath(config->privacy_key_file, std::getenv("CREDENTIALS_DIRECTORY"));
  // Unset key_file: the credential is optional (absent = no key, as before); a configured one is not.
  if (config->privacy_key_file.empty() && !key_path.empty() && access(key_path.c_str(), F_OK) != 0) key_path.clear();
  if (!key_path.empty()) {
    auto s = freshsync::edge::Sealer::LoadKeyFile(key_path);
    if (!s.ok()) {
      std::cerr << "edged: invalid config: " << s.status().message() << "\n";
      return 2;
    }
    sealer = std::move(*s);
  }
  // Fences are part of the config: a bad file refuses to start, naming the feature.
  if (auto s = freshsync::edge::SiteRules::CheckConfig(*config); !s.ok()) {
    std::cerr << "edged: invalid config: " << s.message() << "\n";
    return 2;
  }
  if (check_only) {
    std::cout << "edged: " << config_path << ": ok\n";
    return 0;
  }

  // Signals are taken synchronously by sigwait below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  (void)freshsync::InitLogging("edged", config->log_level);
  spdlog::info("edged starting: site {}, store {}, broker {}", config->site, config->store.path, config->mqtt.uri);
  if (!sealer) spdlog::warn("privacy: no privacy.key_file; customer personal data will be dropped, not stored");

  freshsync::edge::StoreOptions so;
  so.path = config->store.path;
  so.durability = config->store.durability;
  so.busy_timeout_ms = config->store.busy_timeout_ms;
  so.sealer = sealer;
  auto store = freshsync::edge::EdgeStore::Open(so);
  if (!store.ok()) {
    spdlog::critical("store: {}", store.status().ToString());
    return 1;
  }
  (void)(*store)->ResetLinkState();
  // Rule engines (docs/rules.md): restored from the store before any message is applied.
  auto rules = freshsync::edge::SiteRules::Create(*config);
  if (!rules.ok()) {
    spdlog::critical("rules: {}", rules.status().ToString());
    return 2;
  }
  if (auto s = (*rules)->Attach(**store); !s.ok()) {
    spdlog::critical("rules: {}", s.ToString());
    return 1;
  }
  (*store)->SetApplyHook(rules->get());
  InstallCommitFaultForTest(**store);

  // The sync agent (cloud-sync/): its own thread and store connection. Started before ingest
  // because its first step is a reconciliation with the hub (which, after an edge restore,
  // moves the seq counter past the hub's via 'seq_floor'); ingest does not wait for it, as
  // the site must work with the link down (docs/sync-agent.md, Limits).
  std::unique_ptr<freshsync::sync::SyncAgent> agent;
  if (config->hub) {
    agent = std::make_unique<freshsync::sync::SyncAgent>(*config, freshsync::SystemClock());
    if (auto s = agent->Start(); !s.ok()) {
      spdlog::critical("sync: {}", s.ToString());
      return 2;
    }
  } else {
    spdlog::info("sync: no [hub] configured; records stay in the outbox");
  }

  freshsync::edge::Ingest ingest(*config, **store);
  if (auto s = ingest.Start(); !s.ok()) {
    spdlog::critical("ingest: {}", s.ToString());
    return 2;
  }

  // READY once subscribed (or after a few seconds if the broker is down: ingest retries on
  // its own and the unit must not fail to start because the broker is late).
  std::thread notifier([&ingest] {
    for (int i = 0; i < 100 && !ingest.subscribed(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    sd_notify(0, "READY=1");
  });
  uint64_t watchdog_usec = 0;
  std::atomic<bool> done{false};
  std::thread watchdog;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0) {
    watchdog = std::thread([&] {
      while (!done) {
        sd_notify(0, "WATCHDOG=1");
        std::this_thread::sleep_for(std::chrono::microseconds(watchdog_usec / 2));
      }
    });
  }

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("edged: signal {}, shutting down", sig);
  sd_notify(0, "STOPPING=1");
  notifier.join();
  ingest.Stop();
  if (agent) agent->Stop();
  done = true;
  if (watchdog.joinable()) watchdog.join();
  const auto& c = ingest.counters();
  spdlog::info("edged: stopped; applied {}, duplicates {}, dead letters {}", c.applied.load(), c.duplicates.load(), c.refused.load());
  return 0;
}
