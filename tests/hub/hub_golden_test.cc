// Golden tests of every hubd read route, in JSON and in protobuf, against the real hubd over
// HTTPS (the HubdTest fixture, tests/hub/hubd_fixture.h).
//
// A fixed, deterministic set of batches (fixed seqs, versions, HLCs and timestamps, pushed in a
// fixed order into a fresh store) is pushed by two sites; then every GET route of docs/api.md
// and of the route table in hub/server.cc (Register()) is fetched in both forms, in a fixed
// order, and compared with the files under tests/hub/golden/:
//   NAME.json    the JSON answer, parsed and pretty-printed with sorted keys (2 spaces)
//   NAME.pb.txt  the protobuf answer, in protobuf text format (google::protobuf::TextFormat)
// The answers are pinned before the refactor of the hub's entity handlers and JSON mapping:
// that refactor must keep every file unchanged. A difference fails with a unified diff (diff -u).
//
// Intended change of an answer: regenerate with
//   FRESHSYNC_UPDATE_GOLDEN=1 ./build/bin/hub_golden_test
// (or `FRESHSYNC_UPDATE_GOLDEN=1 ctest -R hub_golden_test`) and review the diff in git.
//
// Normalised, because only these are not deterministic: the hub's wall clock where it reaches an
// answer, i.e. `last_push_ms` of GET /v1/sites (SiteInfo::last_push_ms) and `ts_ms` of
// GET /v1/audit (AuditEntry::ts_ms). Each is first checked to be a plausible time (after
// 2020-01-01), then replaced by 0 in both forms. Nothing else is touched: cursors, audit ids,
// HLCs and timestamps all follow from the fixed input on a fresh database.
#include <google/protobuf/text_format.h>
#include <httplib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "freshsync.pb.h"
#include "hub/codec.h"
#include "tests/hub/hubd_fixture.h"
#include "tests/support/harness.h"
#include "tests/support/postgres.h"

#ifndef FRESHSYNC_GOLDEN_DIR
#error "FRESHSYNC_GOLDEN_DIR must name tests/hub/golden (set by tests/hub/CMakeLists.txt)"
#endif

namespace freshsync::testing {
namespace {

using nlohmann::json;

constexpr int64_t kPlausibleWallClockMs = 1577836800000;  // 2020-01-01T00:00:00Z

bool UpdateGolden() {
  const char* v = std::getenv("FRESHSYNC_UPDATE_GOLDEN");
  return v != nullptr && std::string(v) == "1";
}

// `expected` vs `actual` as `diff -u` shows it (the actual text is written beside the build
// outputs, golden-actual/NAME, so that it can be inspected or copied).
std::string UnifiedDiff(const std::string& golden_path, const std::string& name, const std::string& actual) {
  const std::string dir = BinDir() + "/golden-actual";
  std::filesystem::create_directories(dir);
  const std::string actual_path = dir + "/" + name;
  WriteFile(actual_path, actual);
  std::string out;
  const std::string cmd = "diff -u '" + golden_path + "' '" + actual_path + "' 2>&1 | head -n 200";
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    pclose(p);
  }
  return out;
}

// Compares `actual` with tests/hub/golden/NAME, or writes it there with FRESHSYNC_UPDATE_GOLDEN=1.
void ExpectGolden(const std::string& name, const std::string& actual) {
  const std::string path = std::string(FRESHSYNC_GOLDEN_DIR) + "/" + name;
  if (UpdateGolden()) {
    std::filesystem::create_directories(FRESHSYNC_GOLDEN_DIR);
    WriteFile(path, actual);
    std::printf("golden: wrote %s\n", path.c_str());
    return;
  }
  if (!std::filesystem::exists(path)) {
    ADD_FAILURE() << "no golden file " << path << "; create it with FRESHSYNC_UPDATE_GOLDEN=1";
    return;
  }
  const std::string expected = ReadFile(path);
  if (expected == actual) return;
  ADD_FAILURE() << "answer differs from golden " << path
                << " (intended? regenerate with FRESHSYNC_UPDATE_GOLDEN=1 and review the diff)\n"
                << UnifiedDiff(path, name, actual);
}

std::string PrettyJson(const json& j) { return j.dump(2) + "\n"; }  // json = std::map: keys sorted

std::string ProtoText(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::TextFormat::Printer printer;
  printer.SetUseUtf8StringEscaping(false);  // bytes (digests, sealed blobs) as octal escapes
  EXPECT_TRUE(printer.PrintToString(m, &out));
  return out;
}

// Every golden answer is checked on both stores: hubd on its SQLite file, and hubd on a
// PostgreSQL 15 of the test's own ([store] backend = "postgresql"), with the same files.
class HubGoldenTest : public HubdTest, public ::testing::WithParamInterface<std::string> {
 protected:
  bool OnPostgres() const override { return GetParam() == "Postgres"; }

  // The fixed input. site-a: Record() 1..40 (stock, positions, orders, alerts); then 41..49: an
  // order with lines and sealed customer data, two geofence events, an alert with every field,
  // a climate reading, a bodiless STOCK_MOVEMENT, the close of alert al-3, a position with every
  // field and a stock change with every movement field; then an urgent record at 50 (held above
  // contiguous). site-b: Record() 1..12, then order o-2 at a higher status than site-a's (site b
  // wins it) and one record refused by the field rules.
  void PushFixedBatches() {
    auto a = Site(site_a_);
    auto b = Site(site_b_);
    ExpectAck("push_site-a_1-40", Push(*a, "site-a", BatchBody("site-a", 1, 40)));
    v1::Batch extra;
    extra.set_site("site-a");
    v1::ChangeRecord extra_tail;
    {
      auto r = Record(41);
      r.clear_body();
      r.set_entity(v1::ORDER);
      r.set_key("o-lines");
      auto* o = r.mutable_order();
      o->set_order_id("o-lines");
      o->set_status("created");
      o->set_actor("terminal-3");
      auto* l = o->add_lines();
      l->set_sku("tomato-5kg");
      l->set_qty(4);
      l = o->add_lines();
      l->set_sku("leek-1kg");
      l->set_qty(12);
      o->set_customer_sealed(std::string("\x00\x01sealed\xff", 9));
      *extra.add_records() = r;
    }
    for (uint64_t seq : {42, 43}) {
      auto r = Record(seq);
      r.clear_body();
      r.set_entity(v1::GEOFENCE_EVENT);
      r.set_key("truck-1");
      auto* g = r.mutable_geofence();
      g->set_vehicle("truck-1");
      g->set_fence("depot");
      g->set_kind("depot");
      g->set_event(seq == 42 ? "enter" : "exit");
      *extra.add_records() = r;
    }
    {
      auto r = Record(44);
      r.clear_body();
      r.set_entity(v1::COLDCHAIN_ALERT);
      r.set_key("al-full");
      auto* al = r.mutable_alert();
      al->set_alert_id("al-full");
      al->set_sensor("cold-2");
      al->set_state("open");
      al->set_kind("excursion");
      al->set_min_c(0.5);
      al->set_max_c(4.25);
      al->set_started_ts_ms(1764000050000);
      *extra.add_records() = r;
    }
    {
      auto r = Record(45);
      r.clear_body();
      r.set_entity(v1::CLIMATE);
      r.set_key("cold-2");
      auto* c = r.mutable_climate();
      c->set_sensor("cold-2");
      c->set_device_seq(77);
      c->set_temp_dc(-125);  // -1.25 degC
      c->set_rh_d(613);      // 61.3 %
      c->set_battery_d(875); // 87.5 %
      *extra.add_records() = r;
    }
    {
      auto r = Record(46);  // STOCK_MOVEMENT carries no body today (wire/record_rules.h)
      r.clear_body();
      r.set_entity(v1::STOCK_MOVEMENT);
      r.set_key("m-992");
      *extra.add_records() = r;
    }
    {
      auto r = Record(49);  // a stock change caused by a movement: every StockState field
      r.clear_body();
      r.set_seq(49);
      r.set_entity(v1::STOCK);
      r.set_key("sku-4");
      auto* s = r.mutable_stock();
      s->set_sku("sku-4");
      s->set_on_hand(35);
      s->set_reserved(2);
      s->set_movement_id("m-991");
      s->set_delta(-5);
      s->set_reason("pick");
      s->set_lot("lot-7");
      s->set_order_id("o-lines");
      extra_tail = r;
    }
    {
      auto r = Record(47);  // closes al-3 (opened at seq 3, version 3)
      r.clear_body();
      r.set_entity(v1::COLDCHAIN_ALERT);
      r.set_key("al-3");
      auto* al = r.mutable_alert();
      al->set_alert_id("al-3");
      al->set_sensor("cold-1");
      al->set_state("closed");
      al->set_ended_ts_ms(1764000047000);
      *extra.add_records() = r;
    }
    {
      auto r = Record(48);  // a position with every field (units: 0.1 km/h, 0.1 hdop)
      r.clear_body();
      r.set_entity(v1::VEHICLE_POSITION);
      r.set_key("truck-1");
      auto* v = r.mutable_position();
      v->set_vehicle("truck-1");
      v->set_device_seq(4242);
      v->set_lat_e6(31230416);
      v->set_lon_e6(-121473701);
      v->set_speed_dkmh(523);
      v->set_heading_deg(271);
      v->set_hdop_d(9);
      *extra.add_records() = r;
    }
    *extra.add_records() = extra_tail;
    ExpectAck("push_site-a_41-49", Push(*a, "site-a", hub::ZstdCompress(extra.SerializeAsString())));
    ExpectAck("push_site-a_urgent-50", Push(*a, "site-a", BatchBody("site-a", 50, 50, true)));
    ExpectAck("push_site-b_1-12", Push(*b, "site-b", BatchBody("site-b", 1, 12)));
    v1::Batch handover;
    handover.set_site("site-b");
    {
      auto r = Record(13);
      r.clear_body();
      r.set_entity(v1::ORDER);
      r.set_key("o-2");
      r.set_version(9);
      r.mutable_order()->set_order_id("o-2");
      r.mutable_order()->set_status("picking");
      r.mutable_order()->set_actor("picker-9");
      *handover.add_records() = r;
    }
    {
      auto r = Record(14);  // refused and quarantined: not a status (pinned in the ack)
      r.clear_body();
      r.set_entity(v1::ORDER);
      r.set_key("o-14");
      r.mutable_order()->set_order_id("o-14");
      r.mutable_order()->set_status("picked");
      *handover.add_records() = r;
    }
    ExpectAck("push_site-b_13-14", Push(*b, "site-b", hub::ZstdCompress(handover.SerializeAsString())));
  }

  // A push's BatchAck (protobuf, the sync agent's form), pinned too.
  void ExpectAck(const std::string& name, const httplib::Result& r) {
    ASSERT_TRUE(r) << name;
    ASSERT_EQ(r->status, 200) << name << ": " << r->body;
    v1::BatchAck ack;
    ASSERT_TRUE(ack.ParseFromString(r->body)) << name;
    ExpectGolden(name + ".pb.txt", ProtoText(ack));
  }

  // An HQ GET route in both forms; `normalise` replaces the wall-clock fields (see the top).
  template <typename Msg>
  void Golden(const std::string& name, const std::string& path, const std::string& token = kReaderToken,
              void (*normalise)(json&, Msg&) = nullptr) {
    SCOPED_TRACE(path);
    auto [j, p] = GetBoth<Msg>(path, token);
    ASSERT_TRUE(j.is_object()) << path;
    if (normalise != nullptr) normalise(j, p);
    ExpectGolden(name + ".json", PrettyJson(j));
    ExpectGolden(name + ".pb.txt", ProtoText(p));
  }

  // A site route (client certificate): protobuf by default, JSON with Accept: application/json.
  template <typename Msg>
  void GoldenSite(const std::string& name, const std::string& path) {
    SCOPED_TRACE(path);
    auto a = Site(site_a_);
    auto p = a->Get(path.c_str());
    ASSERT_TRUE(p);
    ASSERT_EQ(p->status, 200) << p->body;
    Msg m;
    ASSERT_TRUE(m.ParseFromString(p->body));
    ExpectGolden(name + ".pb.txt", ProtoText(m));
    auto j = a->Get(path.c_str(), {{"Accept", "application/json"}});
    ASSERT_TRUE(j);
    ASSERT_EQ(j->status, 200) << j->body;
    ExpectGolden(name + ".json", PrettyJson(json::parse(j->body)));
  }
};

void NormaliseSites(json& j, v1::SitesReply& p) {
  for (auto& s : j["sites"]) {
    EXPECT_GT(s["last_push_ms"].get<int64_t>(), kPlausibleWallClockMs);
    s["last_push_ms"] = 0;
  }
  for (auto& s : *p.mutable_sites()) {
    EXPECT_GT(s.last_push_ms(), kPlausibleWallClockMs);
    s.set_last_push_ms(0);
  }
}

void NormaliseAudit(json& j, v1::AuditReply& p) {
  for (auto& e : j["entries"]) {
    EXPECT_GT(e["ts_ms"].get<int64_t>(), kPlausibleWallClockMs);
    e["ts_ms"] = 0;
  }
  for (auto& e : *p.mutable_entries()) {
    EXPECT_GT(e.ts_ms(), kPlausibleWallClockMs);
    e.set_ts_ms(0);
  }
}

TEST_P(HubGoldenTest, EveryReadRouteAnswersAsPinned) {
  PushFixedBatches();
  if (HasFatalFailure()) return;

  // The order matters: every HQ pull writes an audit row, which the last route reads.
  Golden<v1::Feed>("changes", "/v1/changes");
  Golden<v1::Feed>("changes_after-20_limit-5", "/v1/changes?after=20&limit=5");
  Golden<v1::Feed>("changes_at-end", "/v1/changes?after=1000");
  Golden<v1::SitesReply>("sites", "/v1/sites", kReaderToken, NormaliseSites);
  for (const std::string site : {"site-a", "site-b"}) {
    const std::string base = "/v1/sites/" + site;
    Golden<v1::StockReply>(site + "_stock", base + "/stock");
    Golden<v1::OrdersReply>(site + "_orders", base + "/orders");
    Golden<v1::VehiclesReply>(site + "_vehicles", base + "/vehicles");
    Golden<v1::AlertsReply>(site + "_alerts", base + "/alerts");
    Golden<v1::GeofenceReply>(site + "_geofence", base + "/geofence");
  }
  Golden<v1::StockReply>("site-unknown_stock", "/v1/sites/site-c/stock");
  Golden<v1::GeofenceReply>("site-a_geofence_range",
                            "/v1/sites/site-a/geofence?from=2025-11-24T16:00:42Z&to=1764000042999&limit=10");
  Golden<v1::TrackReply>("site-a_track_truck-1", "/v1/sites/site-a/vehicles/truck-1/track");
  Golden<v1::TrackReply>("site-a_track_truck-1_range",
                         "/v1/sites/site-a/vehicles/truck-1/track?from=1764000013000&to=2025-11-24T16:00:37.000Z");
  Golden<v1::TrackReply>("site-a_track_truck-1_limit-2", "/v1/sites/site-a/vehicles/truck-1/track?limit=2");
  Golden<v1::TrackReply>("site-b_track_truck-2", "/v1/sites/site-b/vehicles/truck-2/track");

  // Site routes (deterministic: digests of seqs, versions and keys, and of the stock rows).
  GoldenSite<v1::DigestReply>("site-a_digest", "/v1/sites/site-a/digest?from=1&to=64&buckets=4");
  GoldenSite<v1::DigestReply>("site-a_digest_uneven", "/v1/sites/site-a/digest?from=1&to=10&buckets=6");
  GoldenSite<v1::StateDigestReply>("site-a_state-digest", "/v1/sites/site-a/state-digest");

  // Last: the audit log of everything above (admin).
  Golden<v1::AuditReply>("audit", "/v1/audit?limit=1000", kAdminToken, NormaliseAudit);
}

// GET /v1/sites/{site}/dock-scans on a hub of its own, so that the fixed input above and every
// answer pinned from it stay as they are: three scans of site-a pushed out of device-time order
// (and a fourth resending scan sc-1 under a new seq, which changes nothing), all of it and a range.
TEST_P(HubGoldenTest, DockScansAnswerAsPinned) {
  auto a = Site(site_a_);
  v1::Batch batch;
  batch.set_site("site-a");
  const struct {
    const char* id;
    const char* door;
    const char* lot;
    int64_t qty;
    const char* direction;
    int64_t ts_ms;
  } kScans[] = {{"sc-2", "door-1", "L7", 12, "out", 1764000020000},
                {"sc-1", "door-3", "", 40, "in", 1764000010000},
                {"sc-3", "door-3", "L8", 1, "in", 1764000030000},
                {"sc-1", "door-9", "", 99, "out", 1764000040000}};
  uint64_t seq = 0;
  for (const auto& s : kScans) {
    auto* r = batch.add_records();
    r->set_seq(++seq);
    r->set_entity(v1::DOCK_SCAN);
    r->set_key(s.id);
    r->set_version(1);
    r->set_ts_ms(s.ts_ms);
    r->set_hlc(static_cast<uint64_t>(s.ts_ms) << 16);
    auto* d = r->mutable_dock_scan();
    d->set_scan_id(s.id);
    d->set_door(s.door);
    d->set_pallet_id(std::string("P-") + s.id);
    d->set_sku("sku-apple");
    d->set_lot(s.lot);
    d->set_qty(s.qty);
    d->set_direction(s.direction);
  }
  auto pushed = Push(*a, "site-a", hub::ZstdCompress(batch.SerializeAsString()));
  ASSERT_TRUE(pushed);
  ASSERT_EQ(pushed->status, 200) << pushed->body;
  Golden<v1::DockScansReply>("site-a_dock-scans", "/v1/sites/site-a/dock-scans");
  Golden<v1::DockScansReply>("site-a_dock-scans_range",
                             "/v1/sites/site-a/dock-scans?from=1764000015000&to=2025-11-24T16:00:45Z&limit=1");
  Golden<v1::DockScansReply>("site-b_dock-scans", "/v1/sites/site-b/dock-scans");
}

INSTANTIATE_TEST_SUITE_P(Stores, HubGoldenTest, ::testing::Values("Sqlite", "Postgres"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace freshsync::testing
