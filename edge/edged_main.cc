// edged: the site daemon. Thin main: flags, config, privacy key, logging, signals; the
// components and their start and stop order live in EdgeDaemon (edge/daemon.h).
#include <signal.h>
#include <unistd.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "common/config.h"
#include "common/logging.h"
#include "common/signals.h"
#include "edge/daemon.h"
#include "edge/ingest.h"
#include "privacy/sealer.h"
#include "edge/site_rules.h"

namespace {

// The privacy key and the old keys, if any. The key may come as a systemd credential
// (LoadCredential=privacy.key:...), see Sealer::ResolveKeyPath. An unset key_file makes the
// credential optional (absent = no key); a configured one is not.
freshsync::Result<std::optional<freshsync::Sealer>> LoadPrivacyKey(const freshsync::EdgeConfig& config) {
  const char* credentials = std::getenv("CREDENTIALS_DIRECTORY");
  std::string key_path = freshsync::Sealer::ResolveKeyPath(config.privacy_key_file, credentials);
  if (config.privacy_key_file.empty() && !key_path.empty() && access(key_path.c_str(), F_OK) != 0) key_path.clear();
  if (key_path.empty()) return std::optional<freshsync::Sealer>();
  std::vector<std::string> old_keys;
  for (const auto& f : config.privacy_old_key_files) old_keys.push_back(freshsync::Sealer::ResolveKeyPath(f, credentials));
  auto s = freshsync::Sealer::LoadKeyFiles(key_path, old_keys);
  if (!s.ok()) return s.status();
  return std::optional<freshsync::Sealer>(std::move(*s));
}

}  // namespace

int main(int argc, char** argv) {
  freshsync::edge::TuneProcessForIngest();  // before anything allocates or opens SQLite
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
  if (config->hub) config->hub->key = freshsync::Sealer::ResolveKeyPath(config->hub->key, std::getenv("CREDENTIALS_DIRECTORY"));
  auto sealer = LoadPrivacyKey(*config);
  if (!sealer.ok()) {
    std::cerr << "edged: invalid config: " << sealer.status().message() << "\n";
    return 2;
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
  const sigset_t signals = freshsync::BlockDaemonSignals();

  (void)freshsync::InitLogging("edged", config->log_level);
  freshsync::SetLogSite(config->site);
  spdlog::info("edged starting: site {}, store {}, broker {}", config->site, config->store.path, config->mqtt.uri);
  if (!*sealer) spdlog::warn("privacy: no privacy.key_file; customer personal data will be dropped, not stored");

  // Test hooks (FRESHSYNC_*_FOR_TEST): read here, once.
  freshsync::edge::EdgeDaemon daemon(*config, std::move(*sealer), freshsync::edge::EdgeTestHooks::FromEnvironment());
  if (!daemon.Start().ok()) return daemon.start_exit_code();

  int sig = 0;
  while (true) {
    sigwait(&signals, &sig);
    if (sig != SIGHUP) break;
    // Reload: the log level, then the site rules. Other keys (store, broker, hub) need a
    // restart; the new file is only validated for them.
    sd_notify(0, "RELOADING=1");
    auto fresh = freshsync::LoadEdgeConfig(config_path);
    if (!fresh.ok()) spdlog::error("reload: {}: keeping the running configuration", fresh.status().message());
    else daemon.Reload(*fresh);
    sd_notify(0, "READY=1");
  }
  spdlog::info("edged: signal {}, shutting down", sig);
  sd_notify(0, "STOPPING=1");
  // Not drained: the store failed; the journal keeps the rest for the next start.
  return daemon.Stop() ? 0 : 75;
}
