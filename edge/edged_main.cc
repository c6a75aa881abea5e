// edged: the site daemon. Thin main: config, logging, store, ingest, signals, systemd.
#include <malloc.h>
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <cstdlib>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "cloud-sync/sync_agent.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/logging.h"
#include "edge/admin.h"
#include "edge/disk_quota.h"
#include "edge/ingest.h"
#include "edge/metrics.h"
#include "edge/service.h"
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

// Test-only: FRESHSYNC_FAIL_JOURNAL_FOR_TEST="AFTER:COUNT" makes intake journal appends fail
// (as on a full disk) after AFTER successful ones, COUNT times (COUNT < 0: forever).
// FRESHSYNC_APPLIER_PACE_FOR_TEST="MAX_BATCH:DELAY_MS" makes the journal applier lag behind.
void InstallIngestHooksForTest(freshsync::edge::Ingest& ingest) {
  long after = 0, count = 0;
  if (const char* spec = std::getenv("FRESHSYNC_FAIL_JOURNAL_FOR_TEST"); spec && std::sscanf(spec, "%ld:%ld", &after, &count) == 2) {
    spdlog::warn("test hook: failing journal appends after {} for {}", after, count);
    ingest.SetJournalFaultForTest([after, count, n = 0L, failed = 0L]() mutable {
      if (n < after) {
        ++n;
        return freshsync::Status::Ok();
      }
      if (count >= 0 && failed >= count) return freshsync::Status::Ok();
      ++failed;
      return freshsync::Status::IOError("injected journal failure (test hook)");
    });
  }
  long batch = 0, delay = 0;
  if (const char* spec = std::getenv("FRESHSYNC_APPLIER_PACE_FOR_TEST"); spec && std::sscanf(spec, "%ld:%ld", &batch, &delay) == 2 && batch > 0) {
    spdlog::warn("test hook: applier takes at most {} entries per batch, {} ms apart", batch, delay);
    ingest.SetApplierPaceForTest(static_cast<size_t>(batch), static_cast<int>(delay));
  }
}

// SIGHUP reload hook for the site rules (geofences, cold-chain rules): called with the freshly
// parsed config after the log level has been applied; set to SiteRules::Reload once the rules
// are attached. A non-ok Status is logged and the old rules stay (docs/operations.md).
std::function<freshsync::Status(const freshsync::EdgeConfig&)> g_reload_site_rules;

// The disk quota pauses and resumes telemetry through ingest (edge/disk_quota.h).
class IngestTelemetryGate final : public freshsync::edge::TelemetryGate {
 public:
  explicit IngestTelemetryGate(freshsync::edge::Ingest& ingest) : ingest_(ingest) {}
  void Pause() override { ingest_.PauseTelemetry(); }
  void Resume() override { ingest_.ResumeTelemetry(); }

 private:
  freshsync::edge::Ingest& ingest_;
};

// How often the disk quota measures and frees (FRESHSYNC_QUOTA_TICK_MS_FOR_TEST overrides).
constexpr int64_t kQuotaTickMs = 2000;

// A message inside the ingest callback longer than this makes the watchdog go silent
// (edge/service.h): systemd restarts edged, the broker redelivers.
constexpr int64_t kIngestStuckMs = 60'000;

}  // namespace

int main(int argc, char** argv) {
  // glibc trims the Paho receive thread's malloc arena with madvise(MADV_DONTNEED) whenever
  // its top chunk passes the trim threshold; every madvise is a TLB shootdown across CPUs,
  // and profiling showed that alone costing about a quarter of the per-message CPU. Keep
  // freed memory in the arena instead (bounded: the working set per message is small).
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  // SQLite's memory statistics take a process-wide mutex around every allocation it makes
  // (several per statement); nothing here reads them. Must precede sqlite3_initialize.
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
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
  // [hub] key = "site.key", a bare name, is the credential edged.service loads
  // (LoadCredential=site.key:/etc/freshsync/site.key), so the key need not be readable by the
  // freshsync user in /etc; an absolute path is read as it is.
  if (config->hub) config->hub->key = freshsync::edge::Sealer::ResolveKeyPath(config->hub->key, std::getenv("CREDENTIALS_DIRECTORY"));
  std::optional<freshsync::edge::Sealer> sealer;
  // The key may come as a systemd credential (LoadCredential=privacy.key:...), see ResolveKeyPath.
  std::string key_path = freshsync::edge::Sealer::ResolveKeyPath(config->privacy_key_file, std::getenv("CREDENTIALS_DIRECTORY"));
  // Unset key_file: the credential is optional (absent = no key, as before); a configured one is not.
  if (config->privacy_key_file.empty() && !key_path.empty() && access(key_path.c_str(), F_OK) != 0) key_path.clear();
  if (!key_path.empty()) {
    std::vector<std::string> old_keys;
    for (const auto& f : config->privacy_old_key_files)
      old_keys.push_back(freshsync::edge::Sealer::ResolveKeyPath(f, std::getenv("CREDENTIALS_DIRECTORY")));
    auto s = freshsync::edge::Sealer::LoadKeyFiles(key_path, old_keys);
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
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  (void)freshsync::InitLogging("edged", config->log_level);
  freshsync::SetLogSite(config->site);
  spdlog::info("edged starting: site {}, store {}, broker {}", config->site, config->store.path, config->mqtt.uri);
  if (!sealer) spdlog::warn("privacy: no privacy.key_file; customer personal data will be dropped, not stored");

  // Held for the life of the process: `edgectl restore` refuses while it is held (edge/admin.h).
  auto store_lock = freshsync::edge::StoreLock::Acquire(config->store.path);
  if (!store_lock.ok()) {
    spdlog::critical("store: {}", store_lock.status().ToString());
    return 1;
  }

  freshsync::edge::StoreOptions so;
  so.path = config->store.path;
  so.durability = config->store.durability;
  so.busy_timeout_ms = config->store.busy_timeout_ms;
  so.sealer = sealer;
  so.topic_root = config->mqtt.topic_root;  // for the store's own notices (refused orders)
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
  // Reload validates and stages on this (the signal) thread; the ingest thread adopts the new
  // rules at its next GPS fix or climate reading (edge/site_rules.h).
  g_reload_site_rules = [r = rules->get()](const freshsync::EdgeConfig& fresh) { return r->Reload(fresh); };
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
    // Woken on every commit that appends to the outbox, instead of polling for rows.
    (*store)->SetOutboxListener([a = agent.get()] { a->Notify(); });
  } else {
    spdlog::info("sync: no [hub] configured; records stay in the outbox");
  }

  // Ingest: the Paho callback journals each message (edge/intake_journal.h) and the applier
  // thread commits the journal to the store in batches; journal entries left by a previous
  // run are applied first.
  freshsync::edge::Ingest ingest(*config, **store);
  InstallIngestHooksForTest(ingest);
  if (auto s = ingest.Start(); !s.ok()) {
    spdlog::critical("ingest: {}", s.ToString());
    return 2;
  }

  // Disk quota: its own store connection and thread; measures even without a quota, for the
  // forecast in `edgectl status` and /metrics.
  IngestTelemetryGate gate(ingest);
  std::unique_ptr<freshsync::edge::QuotaStore> quota_store;
  std::unique_ptr<freshsync::edge::DiskQuota> quota;
  if (auto qs = freshsync::edge::OpenSqliteQuotaStore(config->store.path, config->store.busy_timeout_ms, freshsync::SystemClock());
      qs.ok()) {
    quota_store = std::move(*qs);
    freshsync::edge::QuotaOptions qo;
    qo.quota_bytes = config->store.quota_mb << 20;
    quota = std::make_unique<freshsync::edge::DiskQuota>(qo, *quota_store, &gate, freshsync::SystemClock());
    if (qo.quota_bytes > 0) spdlog::info("disk quota: {} MiB (docs/operations.md, Disk quota)", config->store.quota_mb);
  } else {
    spdlog::error("disk quota: {}; running without it", qs.status().ToString());
  }
  std::mutex quota_mu;
  std::condition_variable quota_cv;
  bool quota_done = false;
  std::thread quota_loop([&] {
    if (!quota) return;
    int64_t tick_ms = kQuotaTickMs;
    if (const char* t = std::getenv("FRESHSYNC_QUOTA_TICK_MS_FOR_TEST")) tick_ms = std::max<int64_t>(10, std::atoll(t));
    std::unique_lock<std::mutex> lock(quota_mu);
    while (!quota_done) {
      lock.unlock();
      // An error (the store busy past busy_timeout, a disk error) skips a round; the next one starts over.
      if (auto s = quota->Tick(); !s.ok()) spdlog::warn("disk quota: {}", s.ToString());
      lock.lock();
      quota_cv.wait_for(lock, std::chrono::milliseconds(tick_ms), [&] { return quota_done; });
    }
  });

  // The watchdog and /readyz judge ingest against the same limit.
  int64_t stuck_ms = kIngestStuckMs;
  if (const char* t = std::getenv("FRESHSYNC_INGEST_STUCK_MS_FOR_TEST")) stuck_ms = std::atoll(t);
  std::unique_ptr<freshsync::edge::MetricsServer> metrics;
  if (!config->metrics_listen.empty()) {
    freshsync::edge::MetricsSources ms;
    ms.site = config->site;
    ms.store_path = config->store.path;
    ms.ingest = &ingest.counters();
    ms.ingest_connected = [&ingest] { return ingest.subscribed(); };
    ms.agent = agent.get();
    if (quota) ms.quota = [&quota] { return quota->status(); };
    ms.ingest_stuck_ms = stuck_ms;
    ms.customers_dropped = [&s = **store] { return s.customers_dropped(); };
    metrics = std::make_unique<freshsync::edge::MetricsServer>(
        config->metrics_listen, std::move(ms), freshsync::edge::MetricsTls{config->metrics_tls_cert, config->metrics_tls_key});
    // Metrics are for operators: a port in use must not stop the site from ingesting.
    if (auto s = metrics->Start(); !s.ok()) {
      spdlog::error("{}; running without metrics", s.ToString());
      metrics.reset();
    }
  }

  // READY once subscribed (or after a few seconds if the broker is down: ingest retries on
  // its own and the unit must not fail to start because the broker is late).
  std::thread notifier([&ingest] {
    for (int i = 0; i < 100 && !ingest.subscribed(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    sd_notify(0, "READY=1");
  });
  // Every tick: STATUS= (link state, backlog) and, only while healthy, WATCHDOG=1.
  uint64_t watchdog_usec = 0;
  const bool watchdog_on = sd_watchdog_enabled(0, &watchdog_usec) > 0;
  std::chrono::milliseconds tick(2000);
  if (watchdog_on) tick = std::min(tick, std::chrono::milliseconds(std::max<uint64_t>(watchdog_usec / 3000, 10)));
  std::mutex tick_mu;
  std::condition_variable tick_cv;
  bool done = false;
  std::thread notifier_loop([&] {
    freshsync::edge::ServiceMonitor monitor(config->store.path, &ingest.counters(), [&ingest] { return ingest.subscribed(); },
                                            agent.get(), stuck_ms);
    bool was_healthy = true;
    std::unique_lock<std::mutex> lock(tick_mu);
    while (!done) {
      lock.unlock();
      std::string why;
      const bool healthy = monitor.Healthy(&why);
      const std::string status = "STATUS=" + monitor.StatusLine() + (healthy ? "" : " (unhealthy: " + why + ")");
      if (watchdog_on && healthy) sd_notify(0, (status + "\nWATCHDOG=1").c_str());
      else sd_notify(0, status.c_str());
      if (healthy != was_healthy) {
        if (healthy) spdlog::info("watchdog: healthy again");
        else spdlog::error("watchdog: unhealthy ({}); withholding WATCHDOG=1", why);
        was_healthy = healthy;
      }
      lock.lock();
      tick_cv.wait_for(lock, tick, [&] { return done; });
    }
  });

  int sig = 0;
  while (true) {
    sigwait(&signals, &sig);
    if (sig != SIGHUP) break;
    // Reload: the log level, then the site rules through their hook. Other keys (store,
    // broker, hub) need a restart; the new file is only validated for them.
    sd_notify(0, "RELOADING=1");
    auto fresh = freshsync::LoadEdgeConfig(config_path);
    if (!fresh.ok()) {
      spdlog::error("reload: {}: keeping the running configuration", fresh.status().message());
    } else {
      if (auto st = freshsync::SetLogLevel(fresh->log_level); !st.ok()) spdlog::error("reload: {}", st.ToString());
      else spdlog::info("reload: log level {}", fresh->log_level);
      if (g_reload_site_rules) {
        if (auto st = g_reload_site_rules(*fresh); !st.ok())
          spdlog::error("reload: site rules: {}; keeping the running rules", st.message());
        else spdlog::info("reload: site rules reloaded");
      }
    }
    sd_notify(0, "READY=1");
  }
  spdlog::info("edged: signal {}, shutting down", sig);
  sd_notify(0, "STOPPING=1");
  notifier.join();
  {
    std::lock_guard<std::mutex> lock(quota_mu);
    quota_done = true;
  }
  quota_cv.notify_all();
  quota_loop.join();  // before ingest stops: a Pause/Resume in flight must not race Stop
  // Drain: Stop() disconnects (everything not yet acknowledged stays with the broker for the
  // next run), then the applier commits what is in the journal (at most
  // Ingest::kMaxUnappliedEntries, about a second's work) and stops.
  const bool drained = ingest.Stop();
  if (agent) agent->Stop();
  if (metrics) metrics->Stop();
  {
    std::lock_guard<std::mutex> lock(tick_mu);
    done = true;
  }
  tick_cv.notify_all();
  notifier_loop.join();
  const auto& c = ingest.counters();
  spdlog::info("edged: stopped; applied {}, duplicates {}, dead letters {}", c.applied.load(), c.duplicates.load(), c.refused.load());
  // Not drained: the store failed; the journal keeps the rest for the next start.
  return drained ? 0 : 75;
}
