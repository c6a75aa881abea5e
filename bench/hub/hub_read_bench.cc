// Cost of an HQ read's answer: the store read with the handler's row-to-protobuf (the route's
// `read`), then the JSON through ToJson (reflection, hub/codec.h) or the protobuf bytes, against
// a hand-written JSON of the same answer as the baseline for ToJson (checked equal first). Runs
// in-process on a SQLite store in a temp directory, so no HTTPS or token check is counted.
// See docs/benchmarks.md, "HQ read answers".
//
//   build/bin/hub_read_bench --rows 1000 --reps 200 [--dir /tmp]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "hub/codec.h"
#include "hub/entity_routes.h"
#include "hub/sqlite_store.h"

namespace {

using Clock = std::chrono::steady_clock;
using freshsync::hub::EntityAnswer;
using freshsync::hub::EntityRoute;
namespace v1 = freshsync::v1;

double Micros(Clock::time_point t0) { return std::chrono::duration<double, std::micro>(Clock::now() - t0).count(); }

// The answers as the JSON the golden files pin (tests/hub/golden/site-a_stock.json,
// site-a_dock-scans.json), written by hand: what ToJson replaced.
nlohmann::json HandStockJson(const v1::StockReply& r) {
  nlohmann::json items = nlohmann::json::array();
  for (const auto& s : r.stock()) {
    items.push_back({{"sku", s.sku()}, {"on_hand", s.on_hand()}, {"reserved", s.reserved()}, {"version", s.version()},
                     {"hlc", s.hlc()}, {"ts", s.ts_ms()}, {"seq", s.seq()}});
  }
  return {{"site", r.site()}, {"stock", items}};
}

nlohmann::json HandDockScansJson(const v1::DockScansReply& r) {
  nlohmann::json items = nlohmann::json::array();
  for (const auto& i : r.scans()) {
    const auto& d = i.scan();
    items.push_back({{"scan_id", d.scan_id()}, {"door", d.door()}, {"pallet_id", d.pallet_id()}, {"sku", d.sku()},
                     {"lot", d.lot()}, {"qty", d.qty()}, {"direction", d.direction()}, {"ts", i.ts_ms()},
                     {"seq", i.seq()}});
  }
  return {{"site", r.site()}, {"scans", items}};
}

template <typename Reply>
void Measure(freshsync::hub::HubStore& store, const char* path, const freshsync::hub::QueryParams& params, int reps,
             nlohmann::json (*hand)(const Reply&)) {
  const EntityRoute* route = nullptr;
  static const std::vector<EntityRoute> routes = freshsync::hub::EntityRoutes();
  for (const auto& r : routes) {
    if (r.path == path) route = &r;
  }
  if (route == nullptr) std::abort();
  const std::string site = "site-a";
  const std::vector<std::string> matches = {"", site};
  double read_us = 0, tojson_us = 0, hand_us = 0, proto_us = 0;
  size_t rows = 0, json_bytes = 0, proto_bytes = 0;
  for (int i = 0; i < reps; ++i) {
    auto t0 = Clock::now();
    EntityAnswer a = route->read(store, {site, matches, params});
    read_us += Micros(t0);
    if (!a.status.ok() || a.reply == nullptr) {
      std::fprintf(stderr, "%s: %s\n", path, a.status.ToString().c_str());
      std::exit(1);
    }
    rows = a.rows;
    const auto& reply = dynamic_cast<const Reply&>(*a.reply);
    if (i == 0 && freshsync::hub::ToJson(reply) != hand(reply)) {
      std::fprintf(stderr, "%s: the hand-written JSON differs from ToJson's; the comparison would not be fair\n", path);
      std::exit(1);
    }
    t0 = Clock::now();
    const std::string json = freshsync::hub::ToJson(reply).dump();
    tojson_us += Micros(t0);
    t0 = Clock::now();
    const std::string hand_json = hand(reply).dump();
    hand_us += Micros(t0);
    t0 = Clock::now();
    std::string bytes;
    reply.SerializeToString(&bytes);
    proto_us += Micros(t0);
    json_bytes = json.size();
    proto_bytes = bytes.size();
  }
  std::printf("%-12s %5zu rows  read+fill %8.1f us  ToJson+dump %8.1f us  hand JSON+dump %8.1f us  (x%.2f)  "
              "protobuf %6.1f us  (%zu B JSON, %zu B protobuf)\n",
              path, rows, read_us / reps, tojson_us / reps, hand_us / reps, tojson_us / hand_us, proto_us / reps,
              json_bytes, proto_bytes);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hub_read_bench"};
  int rows = 1000, reps = 200;
  std::string dir = std::filesystem::temp_directory_path().string();
  app.add_option("--rows", rows, "stock rows and dock scans of the site");
  app.add_option("--reps", reps, "answers per route");
  app.add_option("--dir", dir, "where the store's temp directory goes");
  CLI11_PARSE(app, argc, argv);

  const std::string db_dir = dir + "/hub_read_bench." + std::to_string(getpid());
  std::filesystem::create_directories(db_dir);
  {
    auto store = freshsync::hub::SqliteHubStore::Open({db_dir + "/hub.db", 2, false});
    if (!store.ok()) {
      std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
      return 1;
    }
    v1::Batch b;
    b.set_site("site-a");
    uint64_t seq = 0;
    for (int i = 0; i < rows; ++i) {
      auto* r = b.add_records();
      r->set_seq(++seq);
      r->set_entity(v1::STOCK);
      r->set_key("sku-" + std::to_string(i));
      r->set_version(1);
      r->set_hlc((uint64_t{1764000000000} + seq) << 16);
      r->set_ts_ms(1764000000000 + static_cast<int64_t>(seq));
      r->mutable_stock()->set_sku(r->key());
      r->mutable_stock()->set_on_hand(i);
    }
    for (int i = 0; i < rows; ++i) {
      auto* r = b.add_records();
      r->set_seq(++seq);
      r->set_entity(v1::DOCK_SCAN);
      r->set_key("sc-" + std::to_string(i));
      r->set_version(1);
      r->set_hlc((uint64_t{1764000000000} + seq) << 16);
      r->set_ts_ms(1764000000000 + static_cast<int64_t>(seq));
      auto* d = r->mutable_dock_scan();
      d->set_scan_id(r->key());
      d->set_door("door-" + std::to_string(i % 8));
      d->set_pallet_id("P-" + std::to_string(i));
      d->set_sku("sku-" + std::to_string(i % 50));
      d->set_lot("L" + std::to_string(i % 9));
      d->set_qty(1 + i % 40);
      d->set_direction(i % 2 == 0 ? "in" : "out");
    }
    auto applied = (*store)->ApplyBatch("site-a", b, 0);
    if (!applied.ok()) {
      std::fprintf(stderr, "%s\n", applied.status().ToString().c_str());
      return 1;
    }
    Measure<v1::StockReply>(**store, "/stock", {}, reps, HandStockJson);
    Measure<v1::DockScansReply>(**store, "/dock-scans", {{"limit", std::to_string(rows)}}, reps, HandDockScansJson);
  }
  std::filesystem::remove_all(db_dir);
  return 0;
}
