// edgectl: operator tool reading the site store (status, dead letters). Thin main.
#include <ctime>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "common/config.h"
#include "edge/store.h"

namespace {

std::string IsoTime(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms % 1000));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"edgectl: inspect a FreshSync site store"};
  std::string config_path;
  app.add_option("--config", config_path, "edged TOML config file")->required();
  app.require_subcommand(1);
  bool status_json = false;
  auto* status = app.add_subcommand("status", "site, link, dead letters and outbox backlog");
  status->add_flag("--json", status_json, "machine-readable output");
  bool dl_json = false;
  int64_t dl_limit = 100;
  auto* dead = app.add_subcommand("dead-letters", "list refused messages, newest first");
  dead->add_flag("--json", dl_json, "machine-readable output");
  dead->add_option("--limit", dl_limit, "at most this many (default 100)");
  CLI11_PARSE(app, argc, argv);

  auto config = freshsync::LoadEdgeConfig(config_path);
  if (!config.ok()) {
    std::cerr << "edgectl: invalid config: " << config.status().message() << "\n";
    return 2;
  }
  if (status->parsed()) {
    auto s = freshsync::edge::ReadStoreSummary(config->store.path);
    if (!s.ok()) {
      std::cerr << "edgectl: " << s.status().message() << "\n";
      return 1;
    }
    nlohmann::json j = {{"site", config->site},
                        {"link", s->link_up ? "up" : "down"},
                        {"dead_letters", s->dead_letters},
                        {"outbox", {{"last_seq", s->last_seq}, {"acked_seq", s->acked_seq}, {"backlog", s->backlog}}}};
    if (status_json) {
      std::cout << j.dump() << "\n";
    } else {
      std::cout << "site          " << config->site << "\nlink          " << (s->link_up ? "up" : "down") << "\ndead letters  "
                << s->dead_letters << "\noutbox        last seq " << s->last_seq << ", acked " << s->acked_seq << ", backlog "
                << s->backlog << "\n";
    }
    return 0;
  }
  auto rows = freshsync::edge::ReadDeadLetters(config->store.path, dl_limit);
  if (!rows.ok()) {
    std::cerr << "edgectl: " << rows.status().message() << "\n";
    return 1;
  }
  if (dl_json) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& r : *rows)
      a.push_back({{"id", r.id}, {"received", IsoTime(r.received_ms)}, {"topic", r.topic}, {"code", r.code}, {"reason", r.reason},
                   {"payload_bytes", r.payload_bytes}});
    std::cout << a.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  } else {
    for (const auto& r : *rows)
      std::cout << r.id << "  " << IsoTime(r.received_ms) << "  " << r.topic << "  [" << r.code << "] " << r.reason << "\n";
  }
  return 0;
}
