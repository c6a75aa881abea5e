// hubd: the cloud receiver of site batches and the HQ pull API. Thin main: config, logging,
// store, server, signals. Everything else lives in the freshsync_hub_* libraries.
//
// Exit codes: 0 clean stop (SIGTERM/SIGINT) or valid --check-config; 2 invalid config (the
// message names the key); 1 a runtime failure at start-up (store, bind).
// SIGHUP re-reads the config file and applies log.level and [[tokens]]; other keys need a
// restart. Under systemd: READY=1 once listening, WATCHDOG=1 while the store answers.
// systemd credentials: a tls.* file whose name exists in $CREDENTIALS_DIRECTORY is read from
// there (the unit passes the key with LoadCredential=, readable by this service only).
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/logging.h"
#include "common/signals.h"
#include "hub/notify/notifier.h"
#include "hub/notify/webhook.h"
#include "hub/relay/amqp_relay.h"
#include "hub/server.h"
#include "hub/pg_store.h"
#include "hub/sqlite_store.h"
#include "hub/store_copy.h"
#include "hub/telemetry_upkeep.h"

namespace {

// Files named by the config must be readable; report the key, as for any other config error.
freshsync::Status CheckFiles(const freshsync::HubConfig& c) {
  const std::pair<const char*, const std::string*> files[] = {
      {"tls.ca", &c.tls_ca},
      {"tls.cert", &c.tls_cert},
      {"tls.key", &c.tls_key},
      {"fanout.amqp.ca_file", &c.amqp_ca_file},
      {"fanout.amqp.cert_file", &c.amqp_cert_file},
      {"fanout.amqp.key_file", &c.amqp_key_file}};
  for (const auto& [key, path] : files) {
    if (path->empty()) continue;  // the relay's files are optional
    std::ifstream in(*path);
    if (!in) return freshsync::Status::InvalidArgument(std::string(key) + ": cannot read " + *path);
  }
  return freshsync::Status::Ok();
}

// Points tls.* paths at systemd credentials when the unit provides them.
void UseCredentials(freshsync::HubConfig& c) {
  const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
  if (dir == nullptr || *dir == '\0') return;
  for (std::string* path : {&c.tls_ca, &c.tls_cert, &c.tls_key}) {
    const std::filesystem::path candidate = std::filesystem::path(dir) / std::filesystem::path(*path).filename();
    std::error_code ec;
    if (std::filesystem::is_regular_file(candidate, ec)) *path = candidate.string();
  }
}

}  // namespace

// hubd --migrate-from-sqlite FILE: the one-off move of a single-machine hub into the
// PostgreSQL store of the config (hub/store_copy.h). Exit 0 when everything is copied, 1 when
// a store failed (what was committed stays; run it again), 2 when the config is not PostgreSQL.
int MigrateFromSqlite(const std::string& path, bool postgres, freshsync::hub::HubStore& target) {
  if (!postgres) {
    spdlog::critical("--migrate-from-sqlite: the config's [store] backend must be \"postgresql\" (the target)");
    return 2;
  }
  freshsync::hub::SqliteHubStoreOptions from_options;
  from_options.path = path;
  from_options.read_connections = 2;
  auto from = freshsync::hub::SqliteHubStore::Open(from_options);
  if (!from.ok()) {
    spdlog::critical("--migrate-from-sqlite {}: {}", path, from.status().ToString());
    return 1;
  }
  freshsync::hub::StoreCopyOptions options;
  options.progress = [](const std::string& line) { spdlog::info("migrate: {}", line); };
  if (const char* stop = std::getenv("FRESHSYNC_MIGRATE_STOP_AFTER_BATCHES_FOR_TEST")) options.stop_after_batches_for_test = std::atoll(stop);
  auto report = freshsync::hub::CopyHubStore(**from, target, freshsync::SystemClock().NowMs(), options);
  if (!report.ok()) {
    spdlog::critical("migrate: {} (what was copied stays; run the same command again to continue)", report.status().ToString());
    return 1;
  }
  spdlog::info("migrate: done: {} sites, {} records applied, {} refused seqs, {} downstream commands, {} catalog items, "
               "{} audit entries", report->sites, report->records, report->refused, report->commands, report->catalog,
               report->audit);
  return 0;
}

int main(int argc, char** argv) {
  // Batches are decoded on many worker threads, each with its own glibc arena; with the default
  // dynamic thresholds glibc trimmed those arenas and re-faulted the pages for the next batch
  // (page faults, memset and sysmalloc were ~10 % of hubd's CPU under fan-in, perf,
  // docs/benchmarks.md). Keep up to 16 MB free per arena; blocks of 2 MB and more (a
  // decompression bomb's buffers) still go straight back to the kernel.
  mallopt(M_TRIM_THRESHOLD, 16 << 20);
  mallopt(M_MMAP_THRESHOLD, 2 << 20);
  CLI::App app{"FreshSync hub: receives site batches over mutual TLS and serves the HQ API"};
  std::string config_path;
  bool check_only = false;
  std::string migrate_from;
  app.add_option("--config", config_path, "TOML config file")->required();
  app.add_flag("--check-config", check_only, "validate the config and exit (0 valid, 2 invalid)");
  app.add_option("--migrate-from-sqlite", migrate_from,
                 "copy the SQLite hub store FILE into the config's PostgreSQL store, site by site, and exit; "
                 "resumable: run it again after an interruption (docs/operations.md)")
      ->check(CLI::ExistingFile);
  CLI11_PARSE(app, argc, argv);

  auto config = freshsync::LoadHubConfig(config_path);
  if (config.ok()) UseCredentials(*config);
  freshsync::Status files = config.ok() ? CheckFiles(*config) : config.status();
  if (files.ok() && !config->amqp_url.empty()) {
    if (auto s = freshsync::hub::CheckAmqpUrl(config->amqp_url); !s.ok())
      files = freshsync::Status::InvalidArgument("fanout.amqp.url: " + s.message());
  }
  if (files.ok()) {
    for (const freshsync::HubWebhook& hook : config->webhooks) {
      if (auto s = freshsync::hub::CheckWebhook(hook); !s.ok()) {
        files = s;
        break;
      }
    }
  }
  if (!files.ok()) {
    std::fprintf(stderr, "hubd: invalid config: %s\n", files.message().c_str());
    return 2;
  }
  if (check_only) {
    std::printf("hubd: %s: ok\n", config_path.c_str());
    return 0;
  }
  if (auto s = freshsync::InitLogging("hubd", config->log_level); !s.ok()) {
    std::fprintf(stderr, "hubd: %s\n", s.message().c_str());
    return 2;
  }

  // Signals are taken synchronously by one thread; block them before any other thread starts
  // so that none of the I/O or worker threads receives them.
  const sigset_t signals = freshsync::BlockDaemonSignals();
  signal(SIGPIPE, SIG_IGN);  // a peer that hangs up mid-response must not kill the hub

  // Every connection is a descriptor, and limits.max_connections may exceed the default soft
  // limit (1024): take the hard limit, which the unit's LimitNOFILE= sets.
  if (rlimit nofile{}; getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    if (nofile.rlim_cur < nofile.rlim_max) {
      nofile.rlim_cur = nofile.rlim_max;
      setrlimit(RLIMIT_NOFILE, &nofile);
    }
    if (nofile.rlim_cur != RLIM_INFINITY && static_cast<rlim_t>(config->max_connections) + 64 > nofile.rlim_cur)
      spdlog::warn("limits.max_connections={} but RLIMIT_NOFILE is {}: connections beyond it fail at accept",
                   config->max_connections, static_cast<uint64_t>(nofile.rlim_cur));
  }

  // [store] backend: SQLite (one hubd) or PostgreSQL (replicas sharing one database). The
  // PostgreSQL URL is not logged: it may hold a password.
  const bool postgres = config->store_backend == "postgresql";
  const std::string store_name = postgres ? "postgresql" : config->store_path;
  freshsync::Result<std::unique_ptr<freshsync::hub::HubStore>> store = freshsync::Status::Internal("no store");
  if (postgres) {
    freshsync::hub::PgHubStoreOptions o;
    o.url = config->store_url;
    o.connections = std::max(2, config->threads);  // as many as workers that may apply or read at once
    auto pg = freshsync::hub::PgHubStore::Open(o);
    if (pg.ok()) store = std::unique_ptr<freshsync::hub::HubStore>(std::move(*pg));
    else store = pg.status();
  } else {
    freshsync::hub::SqliteHubStoreOptions store_options;
    store_options.path = config->store_path;
    store_options.read_connections = std::max(2, config->threads);
    auto sq = freshsync::hub::SqliteHubStore::Open(store_options);
    if (sq.ok()) store = std::unique_ptr<freshsync::hub::HubStore>(std::move(*sq));
    else store = sq.status();
  }
  if (!store.ok()) {
    spdlog::critical("store {}: {}", store_name, store.status().ToString());
    return 1;
  }
  if (!migrate_from.empty()) return MigrateFromSqlite(migrate_from, postgres, **store);
  // Test hooks (FRESHSYNC_*_FOR_TEST): read here, once.
  freshsync::hub::HubServer server(*config, **store, freshsync::SystemClock(), freshsync::hub::HubTestHooks::FromEnvironment());
  if (auto s = server.Start(); !s.ok()) {
    spdlog::critical("start: {}", s.ToString());
    return s.code() == freshsync::StatusCode::kInvalidArgument ? 2 : 1;
  }
  spdlog::info("hubd listening on {} (port {}), store {}", config->listen, server.port(), store_name);
  // Telemetry partitions and retention: every replica runs the thread, the lease lets one act.
  freshsync::hub::TelemetryUpkeepRunner upkeep(**store, freshsync::SystemClock(), config->telemetry_days);
  upkeep.Start();
  // Every replica runs a relay; the store's lease lets one of them publish at a time.
  std::unique_ptr<freshsync::hub::AmqpRelay> relay;
  if (!config->amqp_url.empty()) {
    freshsync::hub::AmqpRelayOptions relay_options;
    relay_options.url = config->amqp_url;
    relay_options.exchange = config->amqp_exchange;
    relay_options.ca_file = config->amqp_ca_file;
    relay_options.cert_file = config->amqp_cert_file;
    relay_options.key_file = config->amqp_key_file;
    relay = std::make_unique<freshsync::hub::AmqpRelay>(relay_options, **store, freshsync::SystemClock(), server.relay_metrics());
    relay->Start();
  }
  // [[notify.webhook]]: a notifier per webhook on every replica; the store's lease per webhook
  // lets one of them deliver.
  freshsync::hub::CurlWebhookPoster poster;
  std::vector<std::unique_ptr<freshsync::hub::WebhookNotifier>> notifiers;
  for (auto& options : freshsync::hub::NotifierOptionsFrom(*config)) {
    notifiers.push_back(std::make_unique<freshsync::hub::WebhookNotifier>(std::move(options), **store, freshsync::SystemClock(),
                                                                          poster, server.notify_metrics()));
    notifiers.back()->Start();
  }

  std::mutex stop_mu;
  std::condition_variable stop_cv;
  bool stopping = false;
  std::thread signal_thread([&] {
    while (true) {
      int sig = 0;
      sigwait(&signals, &sig);
      if (sig == SIGHUP) {
        auto fresh = freshsync::LoadHubConfig(config_path);
        if (!fresh.ok()) {
          spdlog::error("SIGHUP: config not reloaded: {}", fresh.status().message());
          continue;
        }
        (void)freshsync::SetLogLevel(fresh->log_level);
        server.ReloadTokens(fresh->tokens);
        spdlog::info("SIGHUP: reloaded log.level={} and {} tokens", fresh->log_level, fresh->tokens.size());
        continue;
      }
      spdlog::info("signal {}: stopping", sig);
      sd_notify(0, "STOPPING=1");
      {
        std::lock_guard<std::mutex> lock(stop_mu);
        stopping = true;
      }
      stop_cv.notify_all();
      server.Stop();
      return;
    }
  });
  // The watchdog is fed only while the store answers a read: a wedged database gets hubd
  // restarted by systemd instead of accepting connections it cannot serve.
  std::thread watchdog_thread;
  uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
    watchdog_thread = std::thread([&] {
      const auto period = std::chrono::microseconds(watchdog_usec / 2);
      std::unique_lock<std::mutex> lock(stop_mu);
      while (!stop_cv.wait_for(lock, period, [&] { return stopping; })) {
        lock.unlock();
        const bool healthy = (*store)->ContiguousSeq("").ok();
        if (healthy) sd_notify(0, "WATCHDOG=1");
        else spdlog::error("watchdog: store does not answer; not feeding the watchdog");
        lock.lock();
      }
    });
  }
  sd_notify(0, "READY=1");
  server.Run();
  // Run() also returns if the listener fails; wake the signal thread so that it can be joined.
  kill(getpid(), SIGTERM);
  signal_thread.join();
  if (relay) relay->Stop();  // before the store and the server's metrics go
  upkeep.Stop();
  for (auto& n : notifiers) n->Stop();
  if (watchdog_thread.joinable()) watchdog_thread.join();
  spdlog::info("hubd stopped");
  return 0;
}
