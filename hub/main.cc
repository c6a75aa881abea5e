// hubd: the cloud receiver of site batches and the HQ pull API. Thin main: config, logging,
// store, server, signals. Everything else lives in the freshsync_hub_* libraries.
//
// Exit codes: 0 clean stop (SIGTERM/SIGINT) or valid --check-config; 2 invalid config (the
// message names the key); 1 a runtime failure at start-up (store, bind).
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <thread>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "common/config.h"
#include "common/logging.h"
#include "hub/server.h"
#include "hub/sqlite_store.h"

namespace {

// Files named by the config must be readable; report the key, as for any other config error.
freshsync::Status CheckFiles(const freshsync::HubConfig& c) {
  const std::pair<const char*, const std::string*> files[] = {{"tls.ca", &c.tls_ca}, {"tls.cert", &c.tls_cert}, {"tls.key", &c.tls_key}};
  for (const auto& [key, path] : files) {
    std::ifstream in(*path);
    if (!in) return freshsync::Status::InvalidArgument(std::string(key) + ": cannot read " + *path);
  }
  return freshsync::Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"FreshSync hub: receives site batches over mutual TLS and serves the HQ API"};
  std::string config_path;
  bool check_only = false;
  app.add_option("--config", config_path, "TOML config file")->required();
  app.add_flag("--check-config", check_only, "validate the config and exit (0 valid, 2 invalid)");
  CLI11_PARSE(app, argc, argv);

  auto config = freshsync::LoadHubConfig(config_path);
  freshsync::Status files = config.ok() ? CheckFiles(*config) : config.status();
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
  // so that none of httplib's workers receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a peer that hangs up mid-response must not kill the hub

  freshsync::hub::SqliteHubStoreOptions store_options;
  store_options.path = config->store_path;
  store_options.read_connections = std::max(2, config->threads);
  auto store = freshsync::hub::SqliteHubStore::Open(store_options);
  if (!store.ok()) {
    spdlog::critical("store {}: {}", config->store_path, store.status().ToString());
    return 1;
  }
  freshsync::hub::HubServer server(*config, **store, freshsync::SystemClock());
  if (auto s = server.Start(); !s.ok()) {
    spdlog::critical("start: {}", s.ToString());
    return s.code() == freshsync::StatusCode::kInvalidArgument ? 2 : 1;
  }
  spdlog::info("hubd listening on {} (port {}), store {}", config->listen, server.port(), config->store_path);

  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("signal {}: stopping", sig);
    sd_notify(0, "STOPPING=1");
    server.Stop();
  });
  sd_notify(0, "READY=1");
  server.Run();
  // Run() also returns if the listener fails; wake the signal thread so that it can be joined.
  kill(getpid(), SIGTERM);
  signal_thread.join();
  spdlog::info("hubd stopped");
  return 0;
}
