// edgectl: operator tool for a site store: status, backlog, dead letters (list, show, replay), backup,
// restore, verify, reconcile, rotate-key, and the cold-chain audit: audit-key, export-coldchain,
// verify-coldchain (the auditor's offline check; it needs no config). Thin main; the work is in
// edge/admin.h, edge/key_rotation.h and audit/export.h, and every read of the store goes
// through edge/store_reader.h.
#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <optional>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "audit/export.h"
#include "common/config.h"
#include "edge/admin.h"
#include "edge/disk_quota.h"
#include "edge/key_rotation.h"
#include "edge/rebuild.h"
#include "cloud-sync/curl_transport.h"
#include "privacy/sealer.h"
#include "edge/store_reader.h"
#include "wire/rfc3339.h"

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

// Epoch milliseconds or RFC 3339, as the hub's range queries take them.
std::optional<int64_t> ParseTime(const std::string& s) {
  if (!s.empty() && s.size() <= 18 && s.find_first_not_of("0123456789") == std::string::npos) return std::stoll(s);
  if (s == "9223372036854775807") return INT64_MAX;  // the default --to: the end of time
  auto t = freshsync::wire::ParseRfc3339(s);
  if (!t.ok()) return std::nullopt;
  return *t;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"edgectl: inspect a FreshSync site store"};
  std::string config_path;
  app.add_option("--config", config_path, "edged TOML config file (every command but verify-coldchain)");
  app.require_subcommand(1);
  bool status_json = false;
  auto* status = app.add_subcommand("status", "site, link, dead letters and outbox backlog");
  status->add_flag("--json", status_json, "machine-readable output");
  bool backlog_json = false;
  auto* backlog = app.add_subcommand("backlog", "change records the hub has not acknowledged, by sync lane");
  backlog->add_flag("--json", backlog_json, "machine-readable output");
  bool dl_json = false;
  int64_t dl_limit = 100;
  auto* dead = app.add_subcommand("dead-letters", "list refused messages, newest first");
  dead->add_flag("--json", dl_json, "machine-readable output");
  dead->add_option("--limit", dl_limit, "at most this many (default 100)");
  dead->require_subcommand(0, 1);
  int64_t show_id = 0;
  auto* dl_show = dead->add_subcommand("show", "one dead letter with its stored payload");
  dl_show->add_option("ID", show_id, "dead letter id")->required();
  dl_show->add_flag("--json", dl_json, "machine-readable output");
  int64_t replay_id = 0;
  bool replay_all = false;
  auto* dl_replay = dead->add_subcommand(
      "replay", "re-publish stored payloads to their topics, after the cause was fixed (order payloads lack customer data)");
  dl_replay->add_option("ID", replay_id, "dead letter id")->check(CLI::PositiveNumber);
  dl_replay->add_flag("--all", replay_all, "every dead letter refused by a rule (code 'conflict')");
  std::string backup_out, restore_in;
  auto* backup = app.add_subcommand("backup", "consistent copy of the store, safe while edged runs");
  backup->add_option("OUT", backup_out, "output file")->required();
  bool from_hub = false, restore_force = false;
  auto* restore = app.add_subcommand(
      "restore", "replace the store with a backup, or rebuild it from the hub with --from-hub (edged must be stopped)");
  restore->add_option("IN", restore_in, "backup file");
  restore->add_flag("--from-hub", from_hub,
                    "seed a fresh store from what the hub holds of this site (the edge server died with its disk)");
  restore->add_flag("--force", restore_force, "with --from-hub: keep an existing store as <store>.pre-rebuild and rebuild");
  auto* verify = app.add_subcommand("verify", "integrity check and domain invariants; exit 0 sound, 1 findings");
  auto* reconcile = app.add_subcommand("reconcile", "ask the running edged's sync agent to reconcile with the hub now");
  int rotate_batch = 500;
  bool rotate_json = false;
  auto* rotate = app.add_subcommand(
      "rotate-key",
      "re-seal stored customer data with privacy.key_file, opening it with privacy.old_key_files; safe while edged runs; "
      "exit 0 when no row needs an old key any more");
  rotate->add_option("--batch", rotate_batch, "rows per transaction (default 500)")->check(CLI::Range(1, 100000));
  rotate->add_flag("--json", rotate_json, "machine-readable output");
  bool key_pem = false;
  auto* audit_key = app.add_subcommand("audit-key", "the site's cold-chain signing key: public key (hex) and fingerprint");
  audit_key->add_flag("--pem", key_pem, "the public key as PEM, for openssl pkeyutl -verify");
  std::string ex_sensor, ex_from = "0", ex_to = "9223372036854775807", ex_out;
  auto* export_cc = app.add_subcommand(
      "export-coldchain", "a sensor's cold-chain audit chain (readings, alerts, seals) as a signed CSV (docs/formats.md)");
  export_cc->add_option("--sensor", ex_sensor, "sensor id")->required();
  export_cc->add_option("--from", ex_from, "device time, epoch ms or RFC 3339 (default: the beginning)");
  export_cc->add_option("--to", ex_to, "device time, epoch ms or RFC 3339 (default: the end)");
  export_cc->add_option("--out", ex_out, "output file")->required();
  std::string vc_file, vc_key;
  auto* verify_cc = app.add_subcommand(
      "verify-coldchain", "check a cold-chain export offline: its signature, every link and seal; exit 0 sound, 1 not");
  verify_cc->add_option("FILE", vc_file, "the export")->required();
  verify_cc->add_option("--key", vc_key, "the site's public key, 64 hex digits (edgectl audit-key)")->required();
  CLI11_PARSE(app, argc, argv);

  if (verify_cc->parsed()) {
    auto pk = freshsync::audit::FromHex(vc_key);
    if (!pk.ok() || pk->size() != freshsync::audit::kPublicKeyBytes) {
      std::cerr << "edgectl: verify-coldchain: --key must be 64 hex digits\n";
      return 2;
    }
    std::ifstream in(vc_file, std::ios::binary);
    if (!in) {
      std::cerr << "edgectl: verify-coldchain: cannot open " << vc_file << "\n";
      return 2;
    }
    std::ostringstream text;
    text << in.rdbuf();
    const auto c = freshsync::audit::VerifyExport(text.str(), *pk);
    if (!c.ok) {
      std::cout << "NOT OK: " << c.error << "\n";
      return 1;
    }
    std::cout << "ok: site " << c.site << ", sensor " << c.sensor << ", " << c.links << " links (" << c.thinned
              << " thinned at the site), " << c.seals << " seals, key " << c.key_fingerprint << "\n";
    return 0;
  }
  if (config_path.empty()) {
    std::cerr << "edgectl: --config is required\n";
    return 2;
  }
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
                        {"outbox", {{"last_seq", s->last_seq}, {"acked_seq", s->acked_seq}, {"backlog", s->backlog}}},
                        // HQ's commands (docs/operations.md, "Downstream"); enabled as configured.
                        {"downstream",
                         {{"enabled", config->hub.has_value() && config->downstream.enabled},
                          {"applied_seq", s->down_applied_seq},
                          {"commands_applied", s->down_commands},
                          {"last_applied_ms", s->down_last_applied_ms},
                          {"catalog_items", s->catalog_items}}}};
    // A store rebuilt from the hub (edgectl restore --from-hub) says so.
    if (s->rebuilt_from_hub_ms > 0)
      j["rebuilt_from_hub"] = {{"at", IsoTime(s->rebuilt_from_hub_ms)}, {"seq_floor", s->rebuilt_seq_floor}};
    // Escrow allotments (docs/escrow.md): what HQ may sell for this site, as the site holds it.
    auto escrow = freshsync::edge::ReadEscrow(config->store.path);
    if (!escrow.ok()) {
      std::cerr << "edgectl: " << escrow.status().message() << "\n";
      return 1;
    }
    j["escrow"] = nlohmann::json::array();
    for (const auto& e : *escrow)
      j["escrow"].push_back({{"sku", e.sku}, {"target", e.target}, {"given", e.given}, {"returned", e.returned_applied},
                             {"consumed", e.consumed_applied}, {"held", e.held}});
    // The disk quota: state and forecast as edged last published them (edge/disk_quota.h).
    auto q = freshsync::edge::ReadQuotaState(config->store.path);
    const double mib = 1 << 20;
    if (q.ok()) {
      j["disk"] = {{"quota_mb", config->store.quota_mb},
                   {"used_mb", std::round(static_cast<double>(q->used_bytes) / mib * 100) / 100},
                   {"state", q->state},
                   {"forecast_full_s", q->forecast_full_s ? nlohmann::json(*q->forecast_full_s) : nlohmann::json(nullptr)}};
    }
    if (status_json) {
      std::cout << j.dump() << "\n";
    } else {
      std::cout << "site          " << config->site << "\nlink          " << (s->link_up ? "up" : "down") << "\ndead letters  "
                << s->dead_letters << "\noutbox        last seq " << s->last_seq << ", acked " << s->acked_seq << ", backlog "
                << s->backlog << "\ndownstream    applied seq " << s->down_applied_seq << ", " << s->down_commands
                << " commands, " << s->catalog_items << " catalog items\n";
      if (s->rebuilt_from_hub_ms > 0)
        std::cout << "rebuilt       from the hub at " << IsoTime(s->rebuilt_from_hub_ms) << ", continuing after seq "
                  << s->rebuilt_seq_floor << "\n";
      for (const auto& e : *escrow)
        std::cout << "escrow        " << e.sku << ": held " << e.held << " of target " << e.target << " (given " << e.given
                  << ", returned " << e.returned_applied << ", consumed " << e.consumed_applied << ")\n";
      if (q.ok())
        std::cout << "disk          " << j["disk"]["used_mb"].dump() << " MiB used of "
                  << (config->store.quota_mb > 0 ? std::to_string(config->store.quota_mb) + " MiB" : std::string("no quota")) << ", "
                  << q->state << ", full in "
                  << (q->forecast_full_s ? std::to_string(*q->forecast_full_s) + " s" : std::string("never (not growing)")) << "\n";
    }
    return 0;
  }
  if (backlog->parsed()) {
    auto b = freshsync::edge::ReadBacklog(config->store.path);
    if (!b.ok()) {
      std::cerr << "edgectl: " << b.status().message() << "\n";
      return 1;
    }
    const int64_t now_ms = static_cast<int64_t>(std::time(nullptr)) * 1000;
    if (backlog_json) {
      nlohmann::json j = {{"site", config->site},
                          {"last_seq", b->last_seq},
                          {"acked_seq", b->acked_seq},
                          {"backlog", b->backlog},
                          {"lanes", {{"priority", b->priority}, {"bulk", b->bulk}}},
                          {"oldest_created_ms", b->backlog > 0 ? nlohmann::json(b->oldest_created_ms) : nlohmann::json(nullptr)}};
      std::cout << j.dump() << "\n";
    } else {
      std::cout << "site          " << config->site << "\nbacklog       " << b->backlog
                << " change records not acknowledged by the hub";
      if (b->backlog > 0) std::cout << " (seq " << b->acked_seq + 1 << ".." << b->last_seq << ")";
      std::cout << "\n  priority    " << b->priority << " (orders, stock, alerts, geofence: sent first)\n  bulk        "
                << b->bulk << " (vehicle positions, climate)\nacked seq     " << b->acked_seq << " of " << b->last_seq << "\n";
      if (b->backlog > 0)
        std::cout << "oldest        " << IsoTime(b->oldest_created_ms) << " ("
                  << std::max<int64_t>(0, (now_ms - b->oldest_created_ms) / 1000) << " s ago)\n";
    }
    return 0;
  }
  const std::string& db = config->store.path;
  if (audit_key->parsed() || export_cc->parsed()) {
    if (config->audit_signing_key_file.empty()) {
      std::cerr << "edgectl: no [audit] signing_key_file in the config\n";
      return 2;
    }
    auto key = freshsync::audit::SigningKey::Load(config->audit_signing_key_file);
    if (!key.ok()) {
      std::cerr << "edgectl: " << key.status().message() << "\n";
      return 2;
    }
    if (audit_key->parsed()) {
      if (key_pem) std::cout << freshsync::audit::PublicKeyPem(key->public_key());
      else
        std::cout << freshsync::audit::Hex(key->public_key()) << " " << freshsync::audit::Fingerprint(key->public_key())
                  << "\n";
      return 0;
    }
    const auto from = ParseTime(ex_from), to = ParseTime(ex_to);
    if (!from || !to || *to < *from) {
      std::cerr << "edgectl: export-coldchain: --from/--to must be epoch ms or RFC 3339, from <= to\n";
      return 2;
    }
    auto reader = freshsync::edge::StoreReader::Open(db, 2000);
    if (!reader.ok()) {
      std::cerr << "edgectl: " << reader.status().message() << "\n";
      return 1;
    }
    freshsync::audit::ExportHeader header;
    std::vector<freshsync::audit::ExportItem> items;
    if (auto st = reader->ColdchainExport(ex_sensor, *from, *to, &header, &items); !st.ok()) {
      std::cerr << "edgectl: export-coldchain: " << st.ToString() << "\n";
      return 1;
    }
    header.site = config->site;
    std::ofstream out(ex_out, std::ios::binary | std::ios::trunc);
    out << freshsync::audit::WriteExport(header, items, *key);
    out.close();
    if (!out) {
      std::cerr << "edgectl: export-coldchain: cannot write " << ex_out << "\n";
      return 1;
    }
    size_t links = 0;
    for (const auto& it : items) links += it.is_seal ? 0 : 1;
    std::cout << "exported " << links << " links and " << items.size() - links << " seals of " << ex_sensor << " to "
              << ex_out << "\n";
    return 0;
  }
  if (rotate->parsed()) {
    const char* creds = std::getenv("CREDENTIALS_DIRECTORY");
    const std::string current = freshsync::Sealer::ResolveKeyPath(config->privacy_key_file, creds);
    if (config->privacy_key_file.empty()) {
      std::cerr << "edgectl: rotate-key: privacy.key_file is not set: there is no key to rotate to\n";
      return 2;
    }
    std::vector<std::string> old;
    for (const auto& f : config->privacy_old_key_files) old.push_back(freshsync::Sealer::ResolveKeyPath(f, creds));
    auto sealer = freshsync::Sealer::LoadKeyFiles(current, old);
    if (!sealer.ok()) {
      std::cerr << "edgectl: rotate-key: " << sealer.status().message() << "\n";
      return 2;
    }
    auto r = freshsync::edge::ResealCustomerData(db, *sealer, rotate_batch);
    if (!r.ok()) {
      std::cerr << "edgectl: rotate-key: " << r.status().ToString() << "\n";
      return 1;
    }
    if (rotate_json) {
      std::cout << nlohmann::json{{"key_id", sealer->current_key_id_hex()}, {"scanned", r->scanned},
                                  {"resealed", r->resealed}, {"already_current", r->already_current},
                                  {"unreadable", r->unreadable}, {"remaining_old", r->remaining_old}}
                       .dump()
                << "\n";
    } else {
      std::cout << "key " << sealer->current_key_id_hex() << ": " << r->scanned << " sealed rows, " << r->resealed
                << " re-sealed, " << r->already_current << " already current, " << r->unreadable
                << " unreadable with the configured keys\n";
      std::cout << (r->remaining_old == 0 ? "no row needs an old key: privacy.old_key_files can be emptied\n"
                                          : "some rows still need an old key: keep privacy.old_key_files\n");
    }
    return r->remaining_old == 0 ? 0 : 1;
  }
  if (backup->parsed()) {
    if (auto st = freshsync::edge::BackupStore(db, backup_out); !st.ok()) {
      std::cerr << "edgectl: backup: " << st.ToString() << "\n";
      return 1;
    }
    std::cout << "backup written to " << backup_out << "\n";
    return 0;
  }
  if (restore->parsed() && from_hub) {
    if (!restore_in.empty()) {
      std::cerr << "edgectl: restore: give either a backup file or --from-hub\n";
      return 2;
    }
    if (!config->hub) {
      std::cerr << "edgectl: restore --from-hub: no [hub] in the config\n";
      return 2;
    }
    // The sync agent's link: the hub URL and the site's certificate from [hub].
    freshsync::sync::CurlTransportOptions t;
    t.ca = config->hub->ca;
    t.cert = config->hub->cert;
    // A bare key name is a systemd credential of edged.service, as edged resolves it.
    t.key = freshsync::Sealer::ResolveKeyPath(config->hub->key, std::getenv("CREDENTIALS_DIRECTORY"));
    t.timeout_ms = std::max(config->hub->timeout_ms, 60000);  // a large site's snapshot takes a while
    t.max_response_bytes = size_t{1} << 30;
    freshsync::sync::CurlTransport transport(std::move(t));
    auto snap = freshsync::edge::FetchRebuildSnapshot(*config, transport);
    if (!snap.ok()) {
      std::cerr << "edgectl: restore --from-hub: " << snap.status().ToString() << "\n";
      return 1;
    }
    const int64_t now_ms = static_cast<int64_t>(std::time(nullptr)) * 1000;
    auto r = freshsync::edge::SeedStoreFromSnapshot(db, *snap, restore_force, now_ms);
    if (!r.ok()) {
      std::cerr << "edgectl: restore --from-hub: " << r.status().ToString() << "\n";
      return 1;
    }
    if (!r->set_aside.empty()) std::cout << "previous store kept as " << r->set_aside << "\n";
    std::cout << "rebuilt " << db << " from the hub for site " << config->site << "\n"
              << "  seq           continues at " << r->seq_floor + 1 << " (hub's contiguous seq " << r->seq_floor
              << ", highest held " << r->hub_max_seq << ")\n"
              << "  stock         " << r->skus << " skus, " << r->lots << " lots, " << r->reservations
              << " orders' reservations\n"
              << "  orders        " << r->open_orders << " open\n"
              << "  downstream    applied seq " << r->down_applied_seq << " (the dead edge had acknowledged "
              << r->delivered_seq << "), " << r->commands_marked << " commands marked applied\n"
              << "  catalog       " << r->catalog << " items; fences v" << r->fences_version << ", rules v" << r->rules_version
              << "; " << r->escrow << " escrow allotments; " << r->dedupe_keys << " dedupe keys\n";
    for (const auto& w : r->warnings) std::cout << "  warning: " << w << "\n";
    std::cout << "records the dead edge wrote but never shipped are lost with its disk; start edged now\n";
    return 0;
  }
  if (restore->parsed()) {
    if (restore_in.empty()) {
      std::cerr << "edgectl: restore: give a backup file, or --from-hub\n";
      return 2;
    }
    if (auto st = freshsync::edge::RestoreStore(restore_in, db); !st.ok()) {
      std::cerr << "edgectl: restore: " << st.ToString() << "\n";
      return 1;
    }
    std::cout << "restored " << db << " from " << restore_in << " (previous store kept as " << db << ".pre-restore)\n";
    return 0;
  }
  if (verify->parsed()) {
    std::vector<std::string> findings;
    if (auto st = freshsync::edge::VerifyStore(db, &findings); !st.ok()) {
      std::cerr << "edgectl: verify: " << st.ToString() << "\n";
      return 2;
    }
    for (const auto& f : findings) std::cout << f << "\n";
    if (!findings.empty()) return 1;
    std::cout << "ok\n";
    return 0;
  }
  if (reconcile->parsed()) {
    if (!config->hub) {
      std::cerr << "edgectl: reconcile: no [hub] in the config, nothing to reconcile with\n";
      return 1;
    }
    if (auto st = freshsync::edge::RequestReconcile(db); !st.ok()) {
      std::cerr << "edgectl: reconcile: " << st.ToString() << "\n";
      return 1;
    }
    std::cout << "reconciliation requested; the running sync agent starts it within about a second\n";
    return 0;
  }
  if (dl_show->parsed()) {
    auto d = freshsync::edge::ReadDeadLetter(db, show_id);
    if (!d.ok()) {
      std::cerr << "edgectl: " << d.status().message() << "\n";
      return 1;
    }
    if (dl_json) {
      nlohmann::json j = {{"id", d->id},         {"received", IsoTime(d->received_ms)}, {"topic", d->topic},
                          {"code", d->code},     {"reason", d->reason},                 {"payload", d->payload},
                          {"payload_bytes", d->payload_bytes}};
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
    } else {
      std::cout << "id        " << d->id << "\nreceived  " << IsoTime(d->received_ms) << "\ntopic     " << d->topic
                << "\ncode      " << d->code << "\nreason    " << d->reason << "\npayload   (" << d->payload_bytes
                << " bytes received, " << d->payload.size() << " kept)\n"
                << d->payload << "\n";
    }
    return 0;
  }
  if (dl_replay->parsed()) {
    std::vector<freshsync::edge::DeadLetterFull> letters;
    if (replay_all == (replay_id > 0)) {
      std::cerr << "edgectl: dead-letters replay: give either an ID or --all\n";
      return 2;
    }
    if (replay_all) {
      auto all = freshsync::edge::ReadReplayableDeadLetters(db);
      if (!all.ok()) {
        std::cerr << "edgectl: " << all.status().message() << "\n";
        return 1;
      }
      letters = std::move(*all);
    } else {
      auto d = freshsync::edge::ReadDeadLetter(db, replay_id);
      if (!d.ok()) {
        std::cerr << "edgectl: " << d.status().message() << "\n";
        return 1;
      }
      letters.push_back(std::move(*d));
    }
    auto n = freshsync::edge::ReplayDeadLetters(*config, letters);
    if (!n.ok()) {
      std::cerr << "edgectl: replay: " << n.status().ToString() << "\n";
      return 1;
    }
    std::cout << "replayed " << *n << " of " << letters.size()
              << " dead letter(s); edged applies or refuses them again (see dead-letters)\n";
    return 0;
  }
  auto rows = freshsync::edge::ReadDeadLetters(db, dl_limit);
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
