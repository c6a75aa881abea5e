#include "hub/sqlite_store.h"
#include "hub/pg_store.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>
#include <filesystem>
#include <cstdio>
#include <chrono>
#include <thread>
#include <map>
#include <set>
#include <mutex>

#include "wire/digest.h"
#include "hub/downstream_log.h"
#include "audit/chain.h"
#include "hub/entity_routes.h"
#include "hub/notify/dead_letters.h"
#include "hub/position_chunk.h"
#include "hub/rebuild_snapshot.h"
#include "tests/support/harness.h"
#include "tests/support/postgres.h"

namespace freshsync::hub {
namespace {

using freshsync::testing::TempDir;

v1::ChangeRecord Stock(uint64_t seq, const std::string& sku, int64_t on_hand, uint64_t version) {
  v1::ChangeRecord r;
  r.set_seq(seq);
  r.set_entity(v1::STOCK);
  r.set_key(sku);
  r.set_version(version);
  r.set_hlc((uint64_t{1700000000000} + seq) << 16);
  r.set_ts_ms(1700000000000 + static_cast<int64_t>(seq));
  r.mutable_stock()->set_sku(sku);
  r.mutable_stock()->set_on_hand(on_hand);
  return r;
}

v1::ChangeRecord Order(uint64_t seq, const std::string& id, const std::string& status, uint64_t hlc, uint64_t version) {
  v1::ChangeRecord r;
  r.set_seq(seq);
  r.set_entity(v1::ORDER);
  r.set_key(id);
  r.set_version(version);
  r.set_hlc(hlc);
  r.mutable_order()->set_order_id(id);
  r.mutable_order()->set_status(status);
  return r;
}

v1::ChangeRecord Position(uint64_t seq, const std::string& vehicle, int64_t ts_ms, int32_t lat_e6) {
  v1::ChangeRecord r;
  r.set_seq(seq);
  r.set_entity(v1::VEHICLE_POSITION);
  r.set_key(vehicle);
  r.set_version(seq);
  r.set_hlc(static_cast<uint64_t>(ts_ms) << 16);
  r.set_ts_ms(ts_ms);
  r.mutable_position()->set_vehicle(vehicle);
  r.mutable_position()->set_lat_e6(lat_e6);
  r.mutable_position()->set_lon_e6(121000000);
  return r;
}

v1::ChangeRecord Alert(uint64_t seq, const std::string& id, const std::string& state, uint64_t version) {
  v1::ChangeRecord r;
  r.set_seq(seq);
  r.set_entity(v1::COLDCHAIN_ALERT);
  r.set_key(id);
  r.set_version(version);
  r.mutable_alert()->set_alert_id(id);
  r.mutable_alert()->set_sensor("cold-1");
  r.mutable_alert()->set_state(state);
  r.mutable_alert()->set_kind("excursion");
  return r;
}

// A climate reading of `sensor`; `named` false leaves ClimateReading.sensor empty (batch format
// 2 omits it when it equals the key).
v1::ChangeRecord Climate(uint64_t seq, const std::string& sensor, int64_t ts_ms, int32_t temp_dc, bool named = true) {
  v1::ChangeRecord r;
  r.set_seq(seq);
  r.set_entity(v1::CLIMATE);
  r.set_key(sensor);
  r.set_version(seq);
  r.set_hlc(static_cast<uint64_t>(ts_ms) << 16);
  r.set_ts_ms(ts_ms);
  if (named) r.mutable_climate()->set_sensor(sensor);
  r.mutable_climate()->set_device_seq(seq + 100);
  r.mutable_climate()->set_temp_dc(temp_dc);
  r.mutable_climate()->set_rh_d(655);
  r.mutable_climate()->set_battery_d(970);
  return r;
}

v1::Batch MakeBatch(const std::string& site, std::vector<v1::ChangeRecord> recs, bool urgent = false) {
  v1::Batch b;
  b.set_site(site);
  b.set_urgent(urgent);
  for (auto& r : recs) *b.add_records() = std::move(r);
  return b;
}

// Stock records seq first..last for sku "sku-<seq % 10>".
v1::Batch Range(const std::string& site, uint64_t first, uint64_t last) {
  std::vector<v1::ChangeRecord> recs;
  for (uint64_t s = first; s <= last; ++s) recs.push_back(Stock(s, "sku-" + std::to_string(s % 10), static_cast<int64_t>(s), s));
  return MakeBatch(site, recs);
}

// ---------------------------------------------------------------------------------------------
// The HubStore contract (hub/store.h), run against every implementation.
//
// A backend is a name and a factory that opens the store whose data lives in a test's own
// directory: created on the first open, and the same data again on the next open (Reopen(),
// as after a restart). Adding a backend is one line in Backends(), e.g. for PostgreSQL
//   {"Postgres", [](const std::string& dir) { return AsHubStore(PostgresHubStore::Open(...)); }},
// and every HubStoreContractTest runs against it as Backends/HubStoreContractTest.NAME/Postgres.
// ---------------------------------------------------------------------------------------------

template <typename Store>
Result<std::unique_ptr<HubStore>> AsHubStore(Result<std::unique_ptr<Store>> s) {
  if (!s.ok()) return s.status();
  return std::unique_ptr<HubStore>(std::move(*s));
}

struct HubStoreBackend {
  std::string name;
  std::function<Result<std::unique_ptr<HubStore>>(const std::string& dir)> open;
};

// The SQLite store as every test of this file used to open it: hub.db, two read connections.
Result<std::unique_ptr<HubStore>> OpenSqlite(const std::string& dir) {
  return AsHubStore(SqliteHubStore::Open({dir + "/hub.db", 2, false}));
}

// One PostgreSQL cluster per test binary (tests/support/postgres.h); each test's directory gets
// a database of its own (creating one is fast), the same one on Reopen().
Result<std::unique_ptr<HubStore>> OpenPostgres(const std::string& dir) {
  return AsHubStore(PgHubStore::Open({freshsync::testing::SharedPostgresDatabase(dir), 2}));
}

std::vector<HubStoreBackend> Backends() {
  return {
      {"Sqlite", OpenSqlite},
      {"Postgres", OpenPostgres},
  };
}

// What both fixtures share: a temp dir, the store under test, and Apply/FeedSize.
class HubStoreFixtureBase {
 protected:
  virtual ~HubStoreFixtureBase() = default;
  virtual Result<std::unique_ptr<HubStore>> OpenStore() = 0;
  void Reopen() {
    store_.reset();
    auto s = OpenStore();
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }
  ApplyResult Apply(const v1::Batch& b) {
    auto r = store_->ApplyBatch(b.site(), b, 1000);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ApplyResult{};
  }
  size_t FeedSize() {
    auto c = store_->Changes(0, 100000);
    return c.ok() ? c->size() : 0;
  }
  // The per-site reads as HQ makes them, through the entity's handler (hub/entity_routes.h):
  // the items of the route's answer, or the store's error.
  template <typename Reply, typename Items>
  Result<std::remove_cv_t<std::remove_reference_t<Items>>> ReadRoute(const char* suffix, const std::string& site, Items (Reply::*items)() const,
                          const QueryParams& params = {}) {
    for (const EntityRoute& route : EntityRoutes()) {
      if (route.path != suffix) continue;
      const std::vector<std::string> matches = {std::string("/v1/sites/") + site + suffix, site};
      EntityAnswer answer = route.read(*store_, {site, matches, params});
      EXPECT_FALSE(answer.bad_query) << answer.bad_query->message;
      if (!answer.status.ok()) return answer.status;
      if (answer.reply == nullptr) return Status::Internal("no answer");
      return (dynamic_cast<const Reply&>(*answer.reply).*items)();
    }
    return Status::Internal(std::string("no route ") + suffix);
  }
  // GET .../sensors/{sensor}/climate through its handler: the whole answer (a bad query too).
  EntityAnswer ReadClimate(const std::string& site, const std::string& sensor, const QueryParams& params = {}) {
    for (const EntityRoute& route : EntityRoutes()) {
      if (route.path != "/sensors/([^/]+)/climate") continue;
      const std::vector<std::string> matches = {"/v1/sites/" + site + "/sensors/" + sensor + "/climate", site, sensor};
      return route.read(*store_, {site, matches, params});
    }
    ADD_FAILURE() << "no climate route";
    return {};
  }
  std::vector<v1::ClimateItem> ClimateItems(const std::string& site, const std::string& sensor, const QueryParams& params = {}) {
    EntityAnswer a = ReadClimate(site, sensor, params);
    EXPECT_FALSE(a.bad_query);
    EXPECT_TRUE(a.status.ok()) << a.status.ToString();
    if (!a.reply) return {};
    const auto& items = dynamic_cast<const v1::ClimateReply&>(*a.reply).readings();
    return {items.begin(), items.end()};
  }
  static QueryParams TimeRange(int64_t from_ms, int64_t to_ms, int limit) {
    return {{"from", std::to_string(from_ms)}, {"to", std::to_string(to_ms)}, {"limit", std::to_string(limit)}};
  }
  auto ReadStock(const std::string& site) { return ReadRoute("/stock", site, &v1::StockReply::stock); }
  auto ReadOrders(const std::string& site) { return ReadRoute("/orders", site, &v1::OrdersReply::orders); }
  auto ReadVehicles(const std::string& site) { return ReadRoute("/vehicles", site, &v1::VehiclesReply::vehicles); }
  auto ReadOpenAlerts(const std::string& site) { return ReadRoute("/alerts", site, &v1::AlertsReply::alerts); }
  auto ReadGeofenceEvents(const std::string& site, int64_t from_ms, int64_t to_ms, int limit) {
    return ReadRoute("/geofence", site, &v1::GeofenceReply::events, TimeRange(from_ms, to_ms, limit));
  }
  auto ReadDockScans(const std::string& site, int64_t from_ms, int64_t to_ms, int limit) {
    return ReadRoute("/dock-scans", site, &v1::DockScansReply::scans, TimeRange(from_ms, to_ms, limit));
  }
  // An order's lines as the JSON array the store's rows used to carry, sorted keys.
  static std::string LinesJson(const v1::OrderItem& o) {
    nlohmann::json lines = nlohmann::json::array();
    for (const auto& l : o.lines()) lines.push_back({{"sku", l.sku()}, {"qty", l.qty()}});
    return o.lines_size() == 0 ? "" : lines.dump();
  }
  TempDir dir_;
  std::unique_ptr<HubStore> store_;
};

// Contract tests: only through the HubStore interface, valid for any implementation.
class HubStoreContractTest : public ::testing::TestWithParam<HubStoreBackend>, protected HubStoreFixtureBase {
 protected:
  void SetUp() override { Reopen(); }
  Result<std::unique_ptr<HubStore>> OpenStore() override { return GetParam().open(dir_.path()); }
};

INSTANTIATE_TEST_SUITE_P(Backends, HubStoreContractTest, ::testing::ValuesIn(Backends()),
                         [](const ::testing::TestParamInfo<HubStoreBackend>& info) { return info.param.name; });

// Telemetry retention ([retention] telemetry_days): position history whose newest fix is older
// than the whole days kept is removed; the rest, including a site's fixes from weeks back that
// arrived late, stays readable. Positions written after an upkeep round land in place.
TEST_P(HubStoreContractTest, TelemetryUpkeepRemovesPositionHistoryPastRetentionAndKeepsTheRest) {
  constexpr int64_t kDay = 86400000;
  const int64_t now = 20000 * kDay + 12 * 3600000;  // noon
  Apply(MakeBatch("a", {Position(1, "t-100d", now - 100 * kDay, 1), Position(2, "t-30d", now - 30 * kDay, 2),
                        Position(3, "t-1d", now - kDay, 3), Position(4, "t-now", now, 4)}));
  auto track = [&](const std::string& vehicle) {
    auto t = store_->Track("a", vehicle, 0, now + 400 * kDay, 100);
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return t.ok() ? t->size() : size_t{999};
  };
  auto round1 = store_->MaintainTelemetry(now, 90);
  ASSERT_TRUE(round1.ok()) << round1.status().ToString();
  EXPECT_EQ(track("t-100d"), 0u);
  EXPECT_EQ(track("t-30d"), 1u);
  EXPECT_EQ(track("t-1d"), 1u);
  EXPECT_EQ(track("t-now"), 1u);
  Apply(MakeBatch("a", {Position(5, "t-now", now + 1000, 5)}));  // after the round
  EXPECT_EQ(track("t-now"), 2u);
  // keep_days 0 keeps everything.
  ASSERT_TRUE(store_->MaintainTelemetry(now + 400 * kDay, 0).ok());
  EXPECT_EQ(track("t-30d"), 1u);
  // 95 days on, everything but nothing newer is past 90 days.
  auto round2 = store_->MaintainTelemetry(now + 95 * kDay, 90);
  ASSERT_TRUE(round2.ok()) << round2.status().ToString();
  for (const char* v : {"t-30d", "t-1d", "t-now"}) EXPECT_EQ(track(v), 0u) << v;
  Apply(MakeBatch("a", {Position(6, "t-later", now + 95 * kDay, 6)}));
  EXPECT_EQ(track("t-later"), 1u);
}

// SQLite-only tests: they reach behind the interface into the SQLite file (hand edits of its
// tables, position_chunks layout, the -wal file, PRAGMA user_version, migrations from a
// version-1 or version-2 store made with OpenAtSchemaVersionForTest). Which, and why, is at the
// end of this file, where they are grouped.
class SqliteHubStoreTest : public ::testing::Test, protected HubStoreFixtureBase {
 protected:
  void SetUp() override { Reopen(); }
  Result<std::unique_ptr<HubStore>> OpenStore() override { return OpenSqlite(dir_.path()); }
};

TEST_P(HubStoreContractTest, AppliesConsecutiveBatchesAndMovesContiguous) {
  auto r = Apply(Range("a", 1, 10));
  EXPECT_FALSE(r.gap);
  EXPECT_EQ(r.contiguous_seq, 10u);
  EXPECT_EQ(r.applied, 10u);
  r = Apply(Range("a", 11, 15));
  EXPECT_EQ(r.contiguous_seq, 15u);
  EXPECT_EQ(*store_->ContiguousSeq("a"), 15u);
  EXPECT_EQ(*store_->ContiguousSeq("nowhere"), 0u);
  EXPECT_EQ(FeedSize(), 15u);
}

// Two relays (hub replicas) on one store: only the holder of the lease is active, it keeps the
// lease by renewing it, and the other takes over only once the holder stops renewing.
TEST_P(HubStoreContractTest, LeaseHasOneHolderUntilItExpires) {
  const int64_t ttl = 10000;
  auto a = store_->HoldLease("amqp", "replica-a", 1000, ttl);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_TRUE(*a);
  EXPECT_FALSE(*store_->HoldLease("amqp", "replica-b", 1001, ttl));
  EXPECT_TRUE(*store_->HoldLease("amqp", "replica-a", 9000, ttl));      // renewed: runs to 19000
  EXPECT_FALSE(*store_->HoldLease("amqp", "replica-b", 18999, ttl));   // still a's
  EXPECT_TRUE(*store_->HoldLease("other", "replica-b", 18999, ttl));   // leases are per name
  EXPECT_TRUE(*store_->HoldLease("amqp", "replica-b", 19000, ttl));    // a stopped renewing
  EXPECT_FALSE(*store_->HoldLease("amqp", "replica-a", 19001, ttl));   // and a has lost it
  Reopen();  // the lease is durable state of the store, not of a process
  EXPECT_FALSE(*store_->HoldLease("amqp", "replica-a", 20000, ttl));
  EXPECT_TRUE(*store_->HoldLease("amqp", "replica-b", 20000, ttl));
}

TEST_P(HubStoreContractTest, RelayCursorIsKeptPerName) {
  auto c = store_->RelayCursor("amqp");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(*c, 0u);
  ASSERT_TRUE(store_->SetRelayCursor("amqp", 42).ok());
  ASSERT_TRUE(store_->SetRelayCursor("amqp", 57).ok());
  ASSERT_TRUE(store_->SetRelayCursor("other", 3).ok());
  Reopen();
  EXPECT_EQ(*store_->RelayCursor("amqp"), 57u);
  EXPECT_EQ(*store_->RelayCursor("other"), 3u);
}

// Webhook dead letters (hub/notify/dead_letters.h): listed per webhook in id order, paged by
// id; a replay marks one row or all of a webhook's, a delivered replay deletes the row, a
// failed one puts it back unmarked with the new error. Durable across a reopen.
TEST_P(HubStoreContractTest, WebhookDeadLettersListReplayAndDeliver) {
  WebhookDeadLetters dl(*store_);
  auto letter = [](const std::string& hook, const std::string& key) {
    WebhookDeadLetter d;
    d.webhook = hook;
    d.event = "coldchain.open";
    d.site = "a";
    d.key = key;
    d.body = "{\"event\":\"coldchain.open\",\"key\":\"" + key + "\"}";
    d.attempts = 5;
    d.last_error = "HTTP 500";
    d.dead_ms = 1000;
    return d;
  };
  ASSERT_TRUE(dl.Add(letter("ops", "a:1")).ok());
  ASSERT_TRUE(dl.Add(letter("sms", "a:2")).ok());
  ASSERT_TRUE(dl.Add(letter("ops", "a:3")).ok());
  Reopen();
  WebhookDeadLetters again(*store_);
  auto ops = again.List("ops", 0, 10);
  ASSERT_TRUE(ops.ok()) << ops.status().ToString();
  ASSERT_EQ(ops->size(), 2u);
  EXPECT_EQ((*ops)[0].key, "a:1");
  EXPECT_EQ((*ops)[1].key, "a:3");
  EXPECT_EQ((*ops)[0].body, letter("ops", "a:1").body);
  EXPECT_EQ((*ops)[0].attempts, 5);
  EXPECT_EQ((*ops)[0].last_error, "HTTP 500");
  EXPECT_FALSE((*ops)[0].replay);
  EXPECT_LT((*ops)[0].id, (*ops)[1].id);
  EXPECT_EQ(again.List("", 0, 10)->size(), 3u);
  EXPECT_EQ(again.List("", 0, 1)->size(), 1u);
  auto after = again.List("ops", (*ops)[0].id, 10);
  ASSERT_EQ(after->size(), 1u);
  EXPECT_EQ((*after)[0].key, "a:3");
  EXPECT_EQ(*again.Count("ops"), 2u);

  auto none = again.RequestReplay(999999);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  auto one = again.RequestReplay((*ops)[0].id);
  ASSERT_TRUE(one.ok() && one->has_value());
  EXPECT_EQ((*one)->webhook, "ops");
  EXPECT_EQ(*again.RequestReplayAll("ops"), 1u);  // a:3; a:1 is marked already
  EXPECT_EQ(*again.RequestReplayAll("ops"), 0u);
  auto replays = again.Replays("ops", 10);
  ASSERT_EQ(replays->size(), 2u);
  EXPECT_TRUE(again.Replays("sms", 10)->empty());

  ASSERT_TRUE(again.Delivered((*replays)[0].id).ok());
  ASSERT_TRUE(again.FailedAgain((*replays)[1].id, 8, "timeout", 2000).ok());
  auto left = again.List("ops", 0, 10);
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].key, "a:3");
  EXPECT_FALSE((*left)[0].replay);
  EXPECT_EQ((*left)[0].replays, 1);
  EXPECT_EQ((*left)[0].attempts, 8);
  EXPECT_EQ((*left)[0].last_error, "timeout");
  EXPECT_EQ((*left)[0].dead_ms, 2000);
  EXPECT_TRUE(again.Replays("ops", 10)->empty());
}

TEST_P(HubStoreContractTest, DuplicatesAreAcknowledgedAndAppliedOnce) {
  Apply(Range("a", 1, 10));
  auto r = Apply(Range("a", 1, 10));
  EXPECT_EQ(r.applied, 0u);
  EXPECT_EQ(r.duplicates, 10u);
  r = Apply(Range("a", 5, 12));  // overlap
  EXPECT_EQ(r.applied, 2u);
  EXPECT_EQ(r.duplicates, 6u);
  EXPECT_EQ(r.contiguous_seq, 12u);
  EXPECT_EQ(FeedSize(), 12u);
  auto sites = store_->Sites();
  ASSERT_EQ(sites->size(), 1u);
  EXPECT_EQ((*sites)[0].records, 12u);
}

TEST_P(HubStoreContractTest, GapIsRefusedWithNothingWritten) {
  Apply(Range("a", 1, 5));
  auto r = Apply(Range("a", 7, 9));
  EXPECT_TRUE(r.gap);
  EXPECT_EQ(r.contiguous_seq, 5u);
  EXPECT_EQ(FeedSize(), 5u);
  // A brand-new site must start at 1.
  r = Apply(Range("b", 2, 3));
  EXPECT_TRUE(r.gap);
  EXPECT_EQ(r.contiguous_seq, 0u);
}

TEST_P(HubStoreContractTest, StructuralErrorsAreInvalidArgument) {
  auto bad = MakeBatch("a", {Stock(1, "x", 1, 1), Stock(3, "x", 1, 2)});
  EXPECT_EQ(store_->ApplyBatch("a", bad, 0).status().code(), StatusCode::kInvalidArgument);
  bad = MakeBatch("a", {Stock(0, "x", 1, 1)});
  EXPECT_EQ(store_->ApplyBatch("a", bad, 0).status().code(), StatusCode::kInvalidArgument);
  bad = MakeBatch("a", {Stock(5, "x", 1, 1), Stock(4, "x", 1, 2)}, true);
  EXPECT_EQ(store_->ApplyBatch("a", bad, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(FeedSize(), 0u);
}

TEST_P(HubStoreContractTest, UrgentRecordsApplyAtOnceWithoutMovingContiguous) {
  Apply(Range("a", 1, 3));
  auto r = Apply(MakeBatch("a", {Order(7, "o-1", "created", 100, 1), Alert(9, "al-1", "open", 1)}, true));
  EXPECT_FALSE(r.gap);
  EXPECT_EQ(r.applied, 2u);
  EXPECT_EQ(r.contiguous_seq, 3u);
  EXPECT_EQ(ReadOrders("a")->size(), 1u);
  EXPECT_EQ(ReadOpenAlerts("a")->size(), 1u);
  EXPECT_EQ(FeedSize(), 5u);
  // The normal stream reaches 7 and 9: held, not applied twice.
  std::vector<v1::ChangeRecord> recs;
  for (uint64_t s = 4; s <= 10; ++s) {
    if (s == 7) recs.push_back(Order(7, "o-1", "created", 100, 1));
    else if (s == 9) recs.push_back(Alert(9, "al-1", "open", 1));
    else recs.push_back(Stock(s, "sku", 1, s));
  }
  r = Apply(MakeBatch("a", recs));
  EXPECT_EQ(r.applied, 5u);
  EXPECT_EQ(r.duplicates, 2u);
  EXPECT_EQ(r.contiguous_seq, 10u);
  EXPECT_EQ(FeedSize(), 10u);
  auto sites = store_->Sites();
  EXPECT_EQ((*sites)[0].records, 10u);
}

TEST_P(HubStoreContractTest, StockIsOwnedByItsSiteAndNewerVersionWins) {
  Apply(MakeBatch("a", {Stock(1, "tomato", 10, 1)}));
  Apply(MakeBatch("b", {Stock(1, "tomato", 99, 1)}));
  // Out of order through the urgent lane: version 3 first, then version 2 must not overwrite.
  Apply(MakeBatch("a", {Stock(3, "tomato", 30, 3)}, true));
  Apply(MakeBatch("a", {Stock(2, "tomato", 20, 2), Stock(3, "tomato", 30, 3)}));
  auto a = ReadStock("a");
  ASSERT_EQ(a->size(), 1u);
  EXPECT_EQ((*a)[0].on_hand(), 30);
  EXPECT_EQ((*a)[0].version(), 3u);
  auto b = ReadStock("b");
  ASSERT_EQ(b->size(), 1u);
  EXPECT_EQ((*b)[0].on_hand(), 99);
}

TEST_P(HubStoreContractTest, OrderHandedBetweenSitesHigherRankThenHlcWins) {
  auto created = Order(1, "o-9", "created", 100, 1);
  auto* line = created.mutable_order()->add_lines();
  line->set_sku("kale");
  line->set_qty(2);
  Apply(MakeBatch("a", {created, Order(2, "o-9", "dispatched", 200, 2)}));
  // Site b received the hand-over and reports a lower rank with a later HLC: rank wins.
  Apply(MakeBatch("b", {Order(1, "o-9", "packed", 300, 1)}));
  auto a = ReadOrders("a");
  ASSERT_EQ(a->size(), 1u);
  EXPECT_EQ((*a)[0].status(), "dispatched");
  EXPECT_EQ(LinesJson((*a)[0]), R"([{"qty":2,"sku":"kale"}])");
  EXPECT_TRUE(ReadOrders("b")->empty());
  // Higher rank from b wins and moves the order to b.
  Apply(MakeBatch("b", {Order(2, "o-9", "delivered", 400, 2)}));
  EXPECT_TRUE(ReadOrders("a")->empty());
  ASSERT_EQ(ReadOrders("b")->size(), 1u);
  EXPECT_EQ((*ReadOrders("b"))[0].status(), "delivered");
  // Equal rank (terminal states): the later HLC wins; an earlier one does not.
  Apply(MakeBatch("a", {Order(3, "o-9", "cancelled", 350, 3)}));
  EXPECT_EQ((*ReadOrders("b"))[0].status(), "delivered");
  Apply(MakeBatch("a", {Order(4, "o-9", "cancelled", 500, 4)}));
  ASSERT_EQ(ReadOrders("a")->size(), 1u);
  EXPECT_EQ((*ReadOrders("a"))[0].status(), "cancelled");
  // Lines survive status changes that carry none.
  EXPECT_EQ(LinesJson((*ReadOrders("a"))[0]), R"([{"qty":2,"sku":"kale"}])");
}

// An edge refuses a created order that stock cannot cover (docs/rules.md): `refused` is
// terminal at the hub too, so a lower-ranked status with a later HLC does not undo it.
TEST_P(HubStoreContractTest, RefusedOrderIsTerminal) {
  EXPECT_EQ(OrderStatusRank("refused"), OrderStatusRank("cancelled"));
  Apply(MakeBatch("a", {Order(1, "o-r", "refused", 100, 1)}));
  Apply(MakeBatch("b", {Order(1, "o-r", "accepted", 300, 1)}));
  ASSERT_EQ(ReadOrders("a")->size(), 1u);
  EXPECT_EQ((*ReadOrders("a"))[0].status(), "refused");
  EXPECT_TRUE(ReadOrders("b")->empty());
}

TEST_P(HubStoreContractTest, LateCreatedRecordStillContributesLines) {
  Apply(MakeBatch("a", {Order(1, "o-1", "accepted", 200, 2)}, true));
  auto created = Order(1, "o-1", "created", 100, 1);
  created.set_seq(1);
  auto* line = created.mutable_order()->add_lines();
  line->set_sku("leek");
  line->set_qty(1);
  created.mutable_order()->set_customer_sealed("sealed");
  // seq 1 was taken by the urgent record; use site b's stream for the created record.
  Apply(MakeBatch("b", {created}));
  auto rows = ReadOrders("a");
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].status(), "accepted");
  EXPECT_EQ(LinesJson((*rows)[0]), R"([{"qty":1,"sku":"leek"}])");
  EXPECT_EQ((*rows)[0].customer_sealed(), "sealed");
}

TEST_P(HubStoreContractTest, TruckSeenByTwoSitesNewestDeviceTimestampWins) {
  Apply(MakeBatch("a", {Position(1, "truck-1", 5000, 1), Position(2, "truck-1", 7000, 2)}));
  Apply(MakeBatch("b", {Position(1, "truck-1", 6000, 3)}));  // older than a's latest
  auto a = ReadVehicles("a");
  ASSERT_EQ(a->size(), 1u);
  EXPECT_EQ((*a)[0].ts_ms(), 7000);
  EXPECT_EQ((*a)[0].position().lat_e6(), 2);
  EXPECT_TRUE(ReadVehicles("b")->empty());
  Apply(MakeBatch("b", {Position(2, "truck-1", 8000, 4)}));
  EXPECT_TRUE(ReadVehicles("a")->empty());
  EXPECT_EQ((*ReadVehicles("b"))[0].position().lat_e6(), 4);
  // History keeps every position, per site, in device time.
  auto track = store_->Track("a", "truck-1", 0, 10000, 100);
  ASSERT_EQ(track->size(), 2u);
  EXPECT_EQ((*track)[0].ts_ms(), 5000);
  EXPECT_EQ(store_->Track("a", "truck-1", 6000, 10000, 100)->size(), 1u);
  EXPECT_EQ(store_->Track("b", "truck-1", 0, 10000, 100)->size(), 2u);
}

TEST_P(HubStoreContractTest, AlertsCloseByVersion) {
  Apply(MakeBatch("a", {Alert(1, "al-1", "open", 1), Alert(2, "al-2", "open", 1), Alert(3, "al-1", "closed", 2)}));
  auto open = ReadOpenAlerts("a");
  ASSERT_EQ(open->size(), 1u);
  EXPECT_EQ((*open)[0].alert().alert_id(), "al-2");
}

// The cold-chain audit chain (docs/formats.md): chained readings, an alert link and a signed
// seal verify; a link claimed again with other content (an edge restored from an older
// backup) does not replace the first; a record without chain fields is accepted, unchained.
TEST_P(HubStoreContractTest, ColdchainChainIsKeptAndVerifies) {
  const auto key = audit::SigningKey::FromSeed(std::string(32, '\x05'));
  std::string prev = audit::GenesisHash();
  std::vector<v1::ChangeRecord> recs;
  for (uint64_t i = 1; i <= 4; ++i) {
    v1::ChangeRecord r;
    r.set_seq(i);
    r.set_entity(i == 3 ? v1::COLDCHAIN_ALERT : v1::CLIMATE);
    r.set_version(i);
    r.set_ts_ms(1000 * static_cast<int64_t>(i));
    if (i == 3) {
      r.set_key("al-1");
      auto* a = r.mutable_alert();
      a->set_alert_id("al-1");
      a->set_sensor("cold-1");
      a->set_state("open");
      a->set_kind("excursion");
      a->set_min_c(9.5);
      a->set_max_c(12.25);
      a->set_started_ts_ms(2500);
    } else {
      r.set_key("cold-1");
      r.mutable_climate()->set_sensor("cold-1");
      r.mutable_climate()->set_device_seq(i);
      r.mutable_climate()->set_temp_dc(-100 + static_cast<int32_t>(i));
    }
    r.set_chain_index(i);
    r.set_chain_prev(prev);
    prev = audit::NextHash(prev, audit::CanonicalBytes(audit::LinkOf(r)));
    r.set_chain_hash(prev);
    recs.push_back(r);
  }
  v1::ChangeRecord seal;
  seal.set_seq(5);
  seal.set_entity(v1::COLDCHAIN_SEAL);
  seal.set_key("cold-1");
  seal.set_version(1);
  auto* s = seal.mutable_seal();
  s->set_sensor("cold-1");
  s->set_first_index(1);
  s->set_last_index(4);
  s->set_count(4);
  s->set_first_ts_ms(1000);
  s->set_last_ts_ms(4000);
  s->set_last_hash(prev);
  s->set_public_key(key.public_key());
  s->set_signature(key.Sign(audit::SealBytes(*s)));
  recs.push_back(seal);
  v1::ChangeRecord unchained = recs[0];  // an older edge's reading: no chain fields
  unchained.set_seq(6);
  unchained.clear_chain_index();
  unchained.clear_chain_prev();
  unchained.clear_chain_hash();
  recs.push_back(unchained);
  v1::ChangeRecord again = recs[1];  // link 2 once more, other content
  again.set_seq(7);
  again.mutable_climate()->set_temp_dc(500);
  recs.push_back(again);
  Apply(MakeBatch("a", recs));

  auto verify = [&](int64_t from, int64_t to) {
    for (const EntityRoute& route : EntityRoutes()) {
      if (route.path != "/coldchain/verify") continue;
      const std::vector<std::string> matches = {"/v1/sites/a/coldchain/verify", "a"};
      QueryParams params = TimeRange(from, to, 1000);
      params.emplace("sensor", "cold-1");
      EntityAnswer answer = route.read(*store_, {"a", matches, params});
      EXPECT_FALSE(answer.bad_query);
      EXPECT_TRUE(answer.status.ok()) << answer.status.ToString();
      return answer.reply ? dynamic_cast<const v1::ColdchainVerifyReply&>(*answer.reply) : v1::ColdchainVerifyReply();
    }
    return v1::ColdchainVerifyReply();
  };
  auto all = verify(0, 10000);
  EXPECT_TRUE(all.ok()) << all.first_bad().reason();
  EXPECT_EQ(all.records(), 4u);
  EXPECT_EQ(all.seals(), 1u);
  EXPECT_EQ(all.key(), audit::Fingerprint(key.public_key()));
  auto tail = verify(2000, 3000);  // anchored on link 1
  EXPECT_TRUE(tail.ok()) << tail.first_bad().reason();
  EXPECT_EQ(tail.records(), 2u);
  EXPECT_EQ(tail.seals(), 0u);
  EXPECT_TRUE(verify(90000, 99000).ok());  // nothing chained there
}

TEST_P(HubStoreContractTest, GeofenceEventsAreKept) {
  v1::ChangeRecord g;
  g.set_seq(1);
  g.set_entity(v1::GEOFENCE_EVENT);
  g.set_key("truck-1");
  g.set_version(1);
  g.set_ts_ms(1234);
  g.mutable_geofence()->set_fence("dc-north");
  g.mutable_geofence()->set_event("enter");
  Apply(MakeBatch("a", {g}));
  auto ev = ReadGeofenceEvents("a", 0, 2000, 10);
  ASSERT_EQ(ev->size(), 1u);
  EXPECT_EQ((*ev)[0].event().vehicle(), "truck-1");
  EXPECT_EQ((*ev)[0].event().event(), "enter");
}

v1::ChangeRecord Scan(uint64_t seq, const std::string& scan_id, int64_t ts_ms, int64_t qty) {
  v1::ChangeRecord r;
  r.set_seq(seq);
  r.set_entity(v1::DOCK_SCAN);
  r.set_key(scan_id);
  r.set_version(1);
  r.set_ts_ms(ts_ms);
  auto* d = r.mutable_dock_scan();
  d->set_scan_id(scan_id);
  d->set_door("door-3");
  d->set_pallet_id("P-" + scan_id);
  d->set_sku("apple");
  d->set_qty(qty);
  d->set_direction("in");
  return r;
}

// Dock scans: kept per site, read by device time then seq within [from, to] up to the limit; the
// first record of a scan id wins; no stock row comes of them.
TEST_P(HubStoreContractTest, DockScansAreKeptOncePerSiteInTimeOrder) {
  Apply(MakeBatch("a", {Scan(1, "sc-2", 3000, 5), Scan(2, "sc-1", 1000, 4), Scan(3, "sc-3", 9000, 1)}));
  Apply(MakeBatch("b", {Scan(1, "sc-1", 1500, 7)}));
  Apply(MakeBatch("a", {Scan(4, "sc-1", 2000, 99)}));  // the same scan id again: changes nothing
  auto a = ReadDockScans("a", 0, 5000, 10);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ((*a)[0].scan().scan_id(), "sc-1");
  EXPECT_EQ((*a)[0].seq(), 2u);
  EXPECT_EQ((*a)[0].scan().qty(), 4);
  EXPECT_EQ((*a)[0].ts_ms(), 1000);
  EXPECT_EQ((*a)[0].scan().door(), "door-3");
  EXPECT_EQ((*a)[0].scan().pallet_id(), "P-sc-1");
  EXPECT_EQ((*a)[0].scan().direction(), "in");
  EXPECT_EQ((*a)[1].scan().scan_id(), "sc-2");
  EXPECT_EQ(ReadDockScans("a", 0, 100000, 1)->size(), 1u);
  ASSERT_EQ(ReadDockScans("b", 0, 100000, 10)->size(), 1u);
  EXPECT_EQ((*ReadDockScans("b", 0, 100000, 10))[0].scan().qty(), 7);
  EXPECT_TRUE(ReadDockScans("c", 0, 100000, 10)->empty());
  EXPECT_TRUE(ReadStock("a")->empty());
}

TEST_P(HubStoreContractTest, FeedIsInIngestOrderAcrossSitesAndResumable) {
  Apply(Range("a", 1, 3));
  Apply(Range("b", 1, 2));
  Apply(Range("a", 4, 4));
  auto all = store_->Changes(0, 100);
  ASSERT_EQ(all->size(), 6u);
  EXPECT_EQ((*all)[3].site, "b");
  EXPECT_EQ((*all)[5].site, "a");
  EXPECT_EQ((*all)[5].record.seq(), 4u);
  auto page = store_->Changes((*all)[1].cursor, 2);
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].cursor, (*all)[2].cursor);
  EXPECT_TRUE(store_->Changes((*all)[5].cursor, 10)->empty());
}

TEST_P(HubStoreContractTest, DigestMatchesAnIndependentComputation) {
  Apply(Range("a", 1, 20));
  Apply(MakeBatch("a", {Stock(25, "late", 1, 1)}, true));
  auto d = store_->Digest("a", 1, 30, 4);  // w = 8: [1,8] [9,16] [17,24] [25,30]
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->contiguous_seq, 20u);
  ASSERT_EQ(d->ranges.size(), 4u);
  EXPECT_EQ(d->ranges[2].count, 4u);
  EXPECT_EQ(d->ranges[3].count, 1u);
  digest::RangeDigester want;
  for (uint64_t s = 9; s <= 16; ++s) want.Add(s, v1::STOCK, s, "sku-" + std::to_string(s % 10));
  EXPECT_EQ(d->ranges[1].digest, want.FinishAsString());
  want.Add(25, v1::STOCK, 1, "late");
  EXPECT_EQ(d->ranges[3].digest, want.FinishAsString());
  auto none = store_->Digest("nowhere", 1, 10, 2);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->ranges[0].count, 0u);
  EXPECT_EQ(store_->Digest("a", 5, 1, 2).status().code(), StatusCode::kInvalidArgument);
}

TEST_P(HubStoreContractTest, EverythingSurvivesReopen) {
  Apply(Range("a", 1, 10));
  ASSERT_TRUE(store_->AppendAudit({0, 5, "push", "a", "/v1/sites/a/batches", 1, 10, 10, 200, ""}).ok());
  Reopen();
  EXPECT_EQ(*store_->ContiguousSeq("a"), 10u);
  EXPECT_EQ(FeedSize(), 10u);
  auto r = Apply(Range("a", 5, 11));
  EXPECT_EQ(r.applied, 1u);
  auto audit = store_->Audit(0, 10);
  ASSERT_EQ(audit->size(), 1u);
  EXPECT_EQ((*audit)[0].actor, "a");
  EXPECT_EQ((*audit)[0].count, 10u);
}

TEST_P(HubStoreContractTest, PushAuditCommitsWithTheBatch) {
  const AuditEntry audit{0, 7, "push", "a", "/v1/sites/a/batches", 1, 10, 0, 0, ""};
  auto b = Range("a", 1, 10);
  ASSERT_TRUE(store_->ApplyBatch("a", b, 7, &audit).ok());
  auto gap = Range("a", 20, 21);
  auto g = store_->ApplyBatch("a", gap, 8, &audit);
  ASSERT_TRUE(g.ok());
  EXPECT_TRUE(g->gap);
  auto rows = store_->Audit(0, 10);
  ASSERT_EQ(rows->size(), 1u);  // the refused batch wrote nothing, its audit row neither
  EXPECT_EQ((*rows)[0].count, 10u);
  EXPECT_EQ((*rows)[0].status, 200);
  EXPECT_EQ((*rows)[0].seq_to, 10u);
}

TEST_P(HubStoreContractTest, StateDigestIsTheDigestOfTheMaterializedStock) {
  // sku-1 at versions 1 and 3 (3 wins), sku-2 at version 2; reserved stays 0.
  Apply(MakeBatch("a", {Stock(1, "sku-1", 10, 1), Stock(2, "sku-2", 20, 2), Stock(3, "sku-1", 7, 3)}));
  Apply(MakeBatch("b", {Stock(1, "sku-1", 99, 1)}));  // another site's stock is not in a's digest
  auto d = store_->StateDigest("a");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  digest::StateDigester want;
  want.AddStock("sku-1", 7, 0, 3);
  want.AddStock("sku-2", 20, 0, 2);
  EXPECT_EQ(d->skus, 2u);
  EXPECT_EQ(d->contiguous_seq, 3u);
  EXPECT_EQ(d->digest, want.FinishAsString());
  auto none = store_->StateDigest("nowhere");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->skus, 0u);
  EXPECT_EQ(digest::Hex(none->digest), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_P(HubStoreContractTest, ConcurrentPushersAndReadersStayConsistent) {
  // Several sites push while readers page the feed; every record lands exactly once.
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([this, t] {
      const std::string site = "s" + std::to_string(t);
      for (uint64_t s = 1; s <= 200; s += 20) {
        auto b = Range(site, s, s + 19);
        ASSERT_TRUE(store_->ApplyBatch(site, b, 0).ok());
        ASSERT_TRUE(store_->ApplyBatch(site, b, 0).ok());  // retry after a lost ack
      }
    });
  }
  threads.emplace_back([this] {
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(store_->Changes(0, 1000).ok());
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(FeedSize(), 600u);
}

TEST_P(HubStoreContractTest, LatestPositionWithinOneBatchFollowsTheSameRule) {
  // Out of device-time order inside one batch; the newest fix wins, not the last one applied,
  // and of two fixes with the same (ts, hlc) the first stays, as record-by-record apply did.
  auto p3 = Position(3, "truck-1", 6000, 30);
  p3.set_hlc(Position(2, "truck-1", 9000, 0).hlc());  // same (ts, hlc) as seq 2 below
  p3.set_ts_ms(9000);
  Apply(MakeBatch("a", {Position(1, "truck-1", 5000, 10), Position(2, "truck-1", 9000, 20), p3,
                        Position(4, "truck-1", 7000, 40), Position(5, "truck-2", 1000, 50)}));
  auto v = ReadVehicles("a");
  ASSERT_EQ(v->size(), 2u);
  EXPECT_EQ((*v)[0].position().vehicle(), "truck-1");
  EXPECT_EQ((*v)[0].ts_ms(), 9000);
  EXPECT_EQ((*v)[0].position().lat_e6(), 20);
  EXPECT_EQ((*v)[0].seq(), 2u);
  EXPECT_EQ((*v)[1].position().lat_e6(), 50);
  // A later batch whose newest fix is older than the view's keeps the view.
  Apply(MakeBatch("a", {Position(6, "truck-1", 8000, 60)}));
  EXPECT_EQ((*ReadVehicles("a"))[0].position().lat_e6(), 20);
  EXPECT_EQ(store_->Track("a", "truck-1", 0, 10000, 100)->size(), 5u);
}

// Several records of one SKU or alert in one batch end as record-by-record apply leaves them:
// the first record of the highest version wins (a later one of the same version does not
// replace it), and a stored higher version stays. PostgreSQL applies them in one statement per
// batch (ApplyStep::postgres_batch), which must reduce them by the same rule.
TEST_P(HubStoreContractTest, StockAndAlertsWithinOneBatchFollowTheSameRule) {
  auto alert = [](uint64_t seq, const std::string& id, const std::string& state, uint64_t version, double max_c) {
    auto r = Alert(seq, id, state, version);
    r.mutable_alert()->set_max_c(max_c);
    return r;
  };
  Apply(MakeBatch("a", {Stock(1, "kale", 10, 3), Stock(2, "kale", 50, 5), Stock(3, "leek", 7, 1),
                        Stock(4, "kale", 51, 5), Stock(5, "kale", 40, 4), alert(6, "al-1", "open", 2, 8.5),
                        alert(7, "al-1", "open", 4, 9.5), alert(8, "al-1", "closed", 4, 10.5),
                        alert(9, "al-1", "closed", 3, 11.5)}));
  auto stock = ReadStock("a");
  ASSERT_EQ(stock->size(), 2u);
  EXPECT_EQ((*stock)[0].sku(), "kale");
  EXPECT_EQ((*stock)[0].on_hand(), 50);
  EXPECT_EQ((*stock)[0].version(), 5u);
  EXPECT_EQ((*stock)[0].seq(), 2u);
  EXPECT_EQ((*stock)[1].on_hand(), 7);
  auto open = ReadOpenAlerts("a");
  ASSERT_EQ(open->size(), 1u);
  EXPECT_EQ(open->at(0).alert().max_c(), 9.5);
  EXPECT_EQ(open->at(0).version(), 4u);
  // A later batch: versions at or below the stored one change nothing, a higher one wins.
  Apply(MakeBatch("a", {Stock(10, "kale", 60, 5), Stock(11, "kale", 61, 4), Stock(12, "leek", 8, 2),
                        Stock(13, "leek", 9, 2), alert(14, "al-1", "closed", 4, 12.5)}));
  stock = ReadStock("a");
  ASSERT_EQ(stock->size(), 2u);
  EXPECT_EQ((*stock)[0].on_hand(), 50);
  EXPECT_EQ((*stock)[1].on_hand(), 8);
  EXPECT_EQ((*stock)[1].seq(), 12u);
  EXPECT_EQ(ReadOpenAlerts("a")->size(), 1u);
  Apply(MakeBatch("a", {alert(15, "al-1", "closed", 5, 13.5)}));
  EXPECT_TRUE(ReadOpenAlerts("a")->empty());
}

TEST_P(HubStoreContractTest, ConcurrentBatchesShareCommitsAndARefusedOneLeavesNoTrace) {
  // Many sites at once (the group commit merges them into shared transactions); one site
  // keeps sending a batch with a gap, which must be refused alone, every time.
  std::vector<std::thread> threads;
  std::atomic<int> gaps{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([this, t] {
      const std::string site = "s" + std::to_string(t);
      for (uint64_t s = 1; s <= 400; s += 40) {
        auto r = store_->ApplyBatch(site, Range(site, s, s + 39), 0);
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        EXPECT_FALSE(r->gap);
        EXPECT_EQ(r->applied, 40u);
        EXPECT_EQ(r->contiguous_seq, s + 39);
      }
    });
  }
  threads.emplace_back([this, &gaps] {
    for (int i = 0; i < 30; ++i) {
      auto r = store_->ApplyBatch("gappy", Range("gappy", 5, 9), 0);
      ASSERT_TRUE(r.ok());
      if (r->gap) gaps++;
    }
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(gaps.load(), 30);
  EXPECT_EQ(FeedSize(), 8u * 400u);
  EXPECT_EQ(*store_->ContiguousSeq("gappy"), 0u);
  for (int t = 0; t < 8; ++t) EXPECT_EQ(*store_->ContiguousSeq("s" + std::to_string(t)), 400u);
  EXPECT_EQ(ReadStock("s3")->size(), 10u);
}

TEST_P(HubStoreContractTest, TrackMergesLateFixesAndHonoursLimitAndSpan) {
  // Batch 1 holds fixes at 1, 3, 5 s; batch 2 the late ones at 2 and 4 s (their chunks overlap
  // in time), and one three hours later (beyond a chunk's span: a chunk of its own).
  constexpr int64_t h = 3'600'000;
  Apply(MakeBatch("a", {Position(1, "truck-1", 1000, 1), Position(2, "truck-1", 3000, 3),
                        Position(3, "truck-1", 5000, 5), Position(4, "truck-2", 2500, 99)}));
  Apply(MakeBatch("a", {Position(5, "truck-1", 4000, 4), Position(6, "truck-1", 2000, 2),
                        Position(7, "truck-1", 3 * h, 7)}));
  auto all = store_->Track("a", "truck-1", 0, 4 * h, 100);
  ASSERT_TRUE(all.ok());
  std::vector<int32_t> lats;
  for (const auto& p : *all) lats.push_back(p.position().lat_e6());
  EXPECT_EQ(lats, (std::vector<int32_t>{1, 2, 3, 4, 5, 7}));
  EXPECT_EQ((*all)[1].seq(), 6u);
  EXPECT_EQ((*all)[1].site(), "a");
  EXPECT_EQ((*all)[1].position().vehicle(), "truck-1");
  EXPECT_EQ((*all)[1].hlc(), uint64_t{2000} << 16);
  auto first3 = store_->Track("a", "truck-1", 0, 4 * h, 3);
  ASSERT_EQ(first3->size(), 3u);
  EXPECT_EQ((*first3)[2].ts_ms(), 3000);
  auto mid = store_->Track("a", "truck-1", 2000, 4000, 100);
  ASSERT_EQ(mid->size(), 3u);
  EXPECT_EQ((*mid)[0].ts_ms(), 2000);
  auto late = store_->Track("a", "truck-1", 2 * h, 4 * h, 100);
  ASSERT_EQ(late->size(), 1u);
  EXPECT_EQ((*late)[0].seq(), 7u);
  EXPECT_EQ(store_->Track("a", "truck-2", 0, 4 * h, 100)->size(), 1u);
  EXPECT_TRUE(store_->Track("a", "truck-1", 6000, 2 * h, 100)->empty());
  EXPECT_TRUE(store_->Track("b", "truck-1", 0, 4 * h, 100)->empty());
  // A duplicate batch adds no fixes twice.
  Apply(MakeBatch("a", {Position(5, "truck-1", 4000, 4), Position(6, "truck-1", 2000, 2),
                        Position(7, "truck-1", 3 * h, 7)}));
  EXPECT_EQ(store_->Track("a", "truck-1", 0, 4 * h, 100)->size(), 6u);
}

TEST_P(HubStoreContractTest, LargeBatchesFeedInSeqOrder) {
  // Multi-row inserts keep cursor order = seq order within a batch, across two sites.
  Apply(Range("a", 1, 1000));
  Apply(Range("b", 1, 130));
  Apply(Range("a", 1001, 1065));
  auto feed = store_->Changes(0, 100000);
  ASSERT_EQ(feed->size(), 1195u);
  for (size_t i = 1; i < feed->size(); ++i) {
    const auto& prev = (*feed)[i - 1];
    const auto& cur = (*feed)[i];
    ASSERT_LT(prev.cursor, cur.cursor);
    if (prev.site == cur.site) {
      ASSERT_EQ(cur.record.seq(), prev.record.seq() + 1) << i;
    }
  }
  EXPECT_EQ((*feed)[1000].site, "b");
  EXPECT_EQ((*feed)[1130].record.seq(), 1001u);
}

// ---------- Downstream logs (hub/downstream_log.h, docs/sync-protocol.md "Downstream") ----------

v1::DownCommand HqOrderCommand(const std::string& order_id, int64_t qty) {
  v1::DownCommand c;
  c.set_kind(v1::DOWN_ORDER);
  c.set_command_id(DownCommandId(v1::DOWN_ORDER, order_id));
  c.set_issued_ms(5000);
  c.set_issued_by("hq-orders");
  c.mutable_order()->set_order_id(order_id);
  auto* line = c.mutable_order()->add_lines();
  line->set_sku("apple");
  line->set_qty(qty);
  return c;
}

v1::CatalogItem Item(const std::string& sku, int64_t price) {
  v1::CatalogItem i;
  i.set_sku(sku);
  i.set_name(sku);
  i.set_unit("kg");
  i.set_price_cents(price);
  return i;
}

std::vector<uint64_t> Seqs(const std::vector<StoredDownCommand>& cs) {
  std::vector<uint64_t> out;
  for (const auto& c : cs) out.push_back(c.command.down_seq());
  return out;
}

// Write: each body all or nothing, also when concurrent bodies share a transaction (SQLite
// group-commits them, each under its own savepoint): a failing body leaves no row, its
// neighbours all commit, and every caller gets its own answer.
TEST_P(HubStoreContractTest, ConcurrentWritesEachCommitOrRollBackAlone) {
  constexpr Sql kPut{"INSERT INTO down_lanes(site) VALUES(?1)"};
  constexpr Sql kCount{"SELECT COUNT(*) FROM down_lanes"};
  constexpr int kThreads = 6, kEach = 20;
  std::atomic<int> ok{0}, failed{0}, wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const bool fail = (t * kEach + i) % 7 == 0;
        Status s = store_->Write([&](SqlTx& tx) -> Status {
          Status w = tx.Run(kPut, [&](SqlParams& p) { p.Text(1, "w" + std::to_string(t) + "-" + std::to_string(i)); });
          if (!w.ok()) return w;
          return fail ? Status::Conflict("refused on purpose") : Status::Ok();
        });
        if (s.ok() && !fail) ++ok;
        else if (!s.ok() && fail && s.code() == StatusCode::kConflict) ++failed;
        else ++wrong;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  int64_t rows = -1;
  ASSERT_TRUE(store_->Read(kCount, [](SqlParams&) {}, [&](const SqlRow& r) { rows = r.Int(0); }).ok());
  EXPECT_EQ(rows, ok.load());
  EXPECT_EQ(ok.load() + failed.load(), kThreads * kEach);
  EXPECT_GT(failed.load(), 0);
}

TEST_P(HubStoreContractTest, DownstreamSeqIsDensePerSiteAndRepeatsAppendNothing) {
  DownstreamLog log(*store_);
  for (int i = 1; i <= 3; ++i) {
    auto r = log.Append("s1", HqOrderCommand("o" + std::to_string(i), i), "d" + std::to_string(i), "");
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->down_seq, static_cast<uint64_t>(i));
    EXPECT_FALSE(r->repeated);
  }
  auto other = log.Append("s2", HqOrderCommand("o1", 1), "d1", "");
  EXPECT_EQ(other->down_seq, 1u);  // per site
  auto again = log.Append("s1", HqOrderCommand("o2", 2), "d2", "");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->repeated);
  EXPECT_EQ(again->down_seq, 2u);
  auto conflict = log.Append("s1", HqOrderCommand("o2", 9), "other", "");
  ASSERT_TRUE(conflict.ok());
  EXPECT_TRUE(conflict->conflict);
  auto cmds = log.Commands("s1", 0, 500);
  ASSERT_TRUE(cmds.ok());
  EXPECT_EQ(Seqs(*cmds), (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ((*cmds)[1].command.order().lines(0).qty(), 2);  // the first body, not the conflicting one
  Reopen();
  DownstreamLog reopened(*store_);
  EXPECT_EQ(reopened.Append("s1", HqOrderCommand("o4", 4), "d4", "")->down_seq, 4u);
}

TEST_P(HubStoreContractTest, DownstreamKeepsTheSealedCustomerApart) {
  DownstreamLog log(*store_);
  ASSERT_TRUE(log.Append("s1", HqOrderCommand("o1", 1), "d1", std::string("\xF5\x01sealed\0bytes", 14)).ok());
  auto cmds = log.Commands("s1", 0, 10);
  ASSERT_EQ(cmds->size(), 1u);
  EXPECT_EQ((*cmds)[0].sealed_customer, std::string("\xF5\x01sealed\0bytes", 14));
  EXPECT_FALSE((*cmds)[0].command.order().has_customer());
}

TEST_P(HubStoreContractTest, DownstreamAckMovesDeliveredAndAfterAboveLastSeqBumpsIt) {
  DownstreamLog log(*store_);
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE(log.Append("s1", HqOrderCommand("o" + std::to_string(i), 1), "d", "").ok());
  auto lane = log.Lane("s1");
  ASSERT_TRUE(lane.ok());
  EXPECT_EQ(lane->last_seq, 3u);
  EXPECT_EQ(lane->delivered_seq, 0u);
  EXPECT_EQ(lane->pending, 3u);
  EXPECT_EQ(lane->oldest_pending_ms, 5000);
  ASSERT_TRUE(log.Acknowledge("s1", 2, 6000).ok());
  lane = log.Lane("s1");
  EXPECT_EQ(lane->delivered_seq, 2u);
  EXPECT_EQ(lane->pending, 1u);
  ASSERT_TRUE(log.Acknowledge("s1", 1, 6100).ok());  // a site restored from a backup asks again
  EXPECT_EQ(log.Lane("s1")->pending, 2u);
  // The hub lost commands (restored from an older backup): the site is ahead of last_seq. The
  // unacknowledged tail (2, 3: maybe seen in the lost timeline, maybe new since the restore)
  // moves above the site's position, in order, so the site gets it (its dedupe by command_id
  // decides), and new commands follow.
  auto st = log.Acknowledge("s1", 10, 6200);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->last_seq, 12u);
  EXPECT_EQ(log.Append("s1", HqOrderCommand("o9", 1), "d", "")->down_seq, 13u);
  auto moved = log.Commands("s1", 10, 500);
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(Seqs(*moved), (std::vector<uint64_t>{11, 12, 13}));
  EXPECT_EQ((*moved)[0].command.command_id(), "order:o2");
  EXPECT_EQ((*moved)[1].command.command_id(), "order:o3");
  EXPECT_EQ(log.Append("s1", HqOrderCommand("o3", 1), "d", "")->down_seq, 12u);  // a repeat finds its new seq
  EXPECT_EQ(log.Lane("s1")->pending, 3u);
  auto none = log.Lane("nowhere");
  EXPECT_EQ(none->last_seq, 0u);
  EXPECT_EQ(none->pending, 0u);
}

TEST_P(HubStoreContractTest, DownstreamCatalogFansOutAndAFirstPullSeedsIt) {
  Apply(Range("a", 1, 1));  // a site the hub knows from its batches
  DownstreamLog log(*store_);
  ASSERT_TRUE(log.Append("b", HqOrderCommand("o1", 1), "d", "").ok());  // and one with a lane
  auto put = log.PutCatalog(Item("apple", 100), "apple-100", 7000, "hq");
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->version, 1u);
  EXPECT_EQ(put->command_id, "catalog:apple:1");
  EXPECT_EQ(put->sites, (std::vector<std::pair<std::string, uint64_t>>{{"a", 1}, {"b", 2}}));
  auto same = log.PutCatalog(Item("apple", 100), "apple-100", 7100, "hq");
  EXPECT_TRUE(same->unchanged);
  EXPECT_EQ(same->version, 1u);
  EXPECT_EQ(same->sites, put->sites);
  EXPECT_EQ(log.Lane("b")->last_seq, 2u);  // nothing appended
  auto next = log.PutCatalog(Item("apple", 120), "apple-120", 7200, "hq");
  EXPECT_EQ(next->version, 2u);
  EXPECT_EQ(next->command_id, "catalog:apple:2");
  ASSERT_TRUE(log.PutCatalog(Item("pear", 50), "pear-50", 7300, "hq").ok());
  auto b = log.Commands("b", 0, 500);
  ASSERT_EQ(b->size(), 4u);
  EXPECT_EQ((*b)[2].command.catalog().version(), 2u);
  EXPECT_EQ((*b)[2].command.catalog().price_cents(), 120);
  // A new site's first pull: the current version of every item, once.
  auto first = log.Acknowledge("c", 0, 8000);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->last_seq, 2u);
  auto c = log.Commands("c", 0, 500);
  ASSERT_EQ(c->size(), 2u);
  EXPECT_EQ((*c)[0].command.command_id(), "catalog:apple:2");
  EXPECT_EQ((*c)[1].command.command_id(), "catalog:pear:1");
  ASSERT_TRUE(log.Acknowledge("c", 2, 8100).ok());
  EXPECT_EQ(log.Lane("c")->last_seq, 2u);  // seeded once only
  // Site "a" had a lane from the fan-out but had never pulled: its seeding adds nothing new.
  ASSERT_TRUE(log.Acknowledge("a", 0, 8200).ok());
  EXPECT_EQ(log.Lane("a")->last_seq, 3u);
  auto items = log.Catalog();
  ASSERT_EQ(items->size(), 2u);
  EXPECT_EQ((*items)[0].version(), 2u);
}

TEST_P(HubStoreContractTest, DownstreamFencesAndRulesAreVersionedPerSite) {
  DownstreamLog log(*store_);
  auto set = [](v1::DownCommand& c, uint64_t v) { c.mutable_fences()->set_version(v); };
  v1::DownCommand f;
  f.set_kind(v1::DOWN_FENCES);
  f.mutable_fences()->set_geojson("{}");
  auto r1 = log.AppendVersioned("s1", f, "f1", set);
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  EXPECT_EQ(r1->version, 1u);
  EXPECT_EQ(r1->command_id, "fences:1");
  auto again = log.AppendVersioned("s1", f, "f1", set);
  EXPECT_TRUE(again->repeated);
  EXPECT_EQ(again->down_seq, r1->down_seq);
  auto r2 = log.AppendVersioned("s1", f, "f2", set);
  EXPECT_EQ(r2->version, 2u);
  EXPECT_EQ(r2->down_seq, 2u);
  v1::DownCommand rules;
  rules.set_kind(v1::DOWN_COLDCHAIN_RULES);
  auto r3 = log.AppendVersioned("s1", rules, "r1", [](v1::DownCommand& c, uint64_t v) { c.mutable_rules()->set_version(v); });
  EXPECT_EQ(r3->version, 1u);
  EXPECT_EQ(r3->command_id, "coldchain-rules:1");
  auto cmds = log.Commands("s1", 0, 500);
  ASSERT_EQ(cmds->size(), 3u);
  EXPECT_EQ((*cmds)[1].command.fences().version(), 2u);
  EXPECT_EQ((*cmds)[2].command.kind(), v1::DOWN_COLDCHAIN_RULES);
}

// HQ's current fences and rules per site: what the last new version set, written with its
// command, and still there once retention has trimmed the delivered command (GET .../fences,
// a site's rebuild).
TEST_P(HubStoreContractTest, DownstreamCurrentFencesAndRulesOutliveRetention) {
  DownstreamLog log(*store_);
  auto none = log.Current("s1", v1::DOWN_FENCES);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value());
  auto set = [](v1::DownCommand& c, uint64_t v) { c.mutable_fences()->set_version(v); };
  auto fences = [](const std::string& geojson, int64_t issued_ms) {
    v1::DownCommand f;
    f.set_kind(v1::DOWN_FENCES);
    f.mutable_fences()->set_geojson(geojson);
    f.set_issued_ms(issued_ms);
    f.set_issued_by("hq");
    return f;
  };
  ASSERT_TRUE(log.AppendVersioned("s1", fences("{\"v\":1}", 100), "f1", set).ok());
  ASSERT_TRUE(log.AppendVersioned("s1", fences("{\"v\":2}", 200), "f2", set).ok());
  ASSERT_TRUE(log.AppendVersioned("s1", fences("{\"v\":2}", 300), "f2", set)->repeated);  // changes nothing
  ASSERT_TRUE(log.AppendVersioned("s2", fences("{\"other\":1}", 150), "g1", set).ok());
  v1::DownCommand rules;
  rules.set_kind(v1::DOWN_COLDCHAIN_RULES);
  auto* rule = rules.mutable_rules()->add_rules();
  rule->set_sensors("cold-*");
  rule->set_max_c(4);
  rules.set_issued_ms(250);
  ASSERT_TRUE(log.AppendVersioned("s1", rules, "r1", [](v1::DownCommand& c, uint64_t v) { c.mutable_rules()->set_version(v); }).ok());

  auto check = [&](const std::string& when) {
    SCOPED_TRACE(when);
    auto f = log.Current("s1", v1::DOWN_FENCES);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_TRUE(f->has_value());
    EXPECT_EQ((*f)->version, 2u);
    EXPECT_EQ((*f)->updated_ms, 200);
    EXPECT_EQ((*f)->command.command_id(), "fences:2");
    EXPECT_EQ((*f)->command.fences().geojson(), "{\"v\":2}");
    EXPECT_EQ((*f)->command.fences().version(), 2u);
    EXPECT_EQ((*f)->command.issued_by(), "hq");
    EXPECT_EQ((*f)->command.down_seq(), 0u);
    auto r = log.Current("s1", v1::DOWN_COLDCHAIN_RULES);
    ASSERT_TRUE(r.ok() && r->has_value());
    EXPECT_EQ((*r)->version, 1u);
    ASSERT_EQ((*r)->command.rules().rules_size(), 1);
    EXPECT_EQ((*r)->command.rules().rules(0).sensors(), "cold-*");
    auto other = log.Current("s2", v1::DOWN_FENCES);
    ASSERT_TRUE(other.ok() && other->has_value());
    EXPECT_EQ((*other)->command.fences().geojson(), "{\"other\":1}");
    EXPECT_FALSE(log.Current("s2", v1::DOWN_COLDCHAIN_RULES)->has_value());
    EXPECT_FALSE(log.Current("s1", v1::DOWN_ORDER)->has_value());
    EXPECT_FALSE(log.Current("nowhere", v1::DOWN_FENCES)->has_value());
  };
  check("appended");
  ASSERT_TRUE(log.Acknowledge("s1", 3, 6000).ok());
  ASSERT_TRUE(log.Trim(99999).ok());
  EXPECT_EQ(log.Commands("s1", 0, 500)->size(), 0u);  // the log holds none of them now
  check("trimmed");
  Reopen();
  DownstreamLog reopened(*store_);
  EXPECT_EQ(reopened.Current("s1", v1::DOWN_FENCES)->value().version, 2u);
  // The next PUT after the trim is version 3, and current again.
  ASSERT_EQ(reopened.AppendVersioned("s1", fences("{\"v\":3}", 400), "f3", set)->version, 3u);
  EXPECT_EQ(reopened.Current("s1", v1::DOWN_FENCES)->value().command.fences().geojson(), "{\"v\":3}");
}

// ---------- Rebuild snapshot (hub/rebuild_snapshot.h) ----------

v1::ChangeRecord Move(uint64_t seq, uint64_t version, const std::string& id, int64_t delta, const std::string& lot,
                      const std::string& expiry, int64_t on_hand, int64_t reserved, const std::string& order_id = "") {
  v1::ChangeRecord r = Stock(seq, "apple", on_hand, version);
  auto* st = r.mutable_stock();
  st->set_reserved(reserved);
  st->set_movement_id(id);
  st->set_delta(delta);
  st->set_lot(lot);
  st->set_expiry(expiry);
  st->set_order_id(order_id);
  st->set_reason(delta > 0 ? "receive" : "pick");
  return r;
}

v1::ChangeRecord Reserve(uint64_t seq, uint64_t version, const std::string& order_id, int64_t on_hand, int64_t reserved) {
  v1::ChangeRecord r = Stock(seq, "apple", on_hand, version);
  r.mutable_stock()->set_reserved(reserved);
  r.mutable_stock()->set_order_id(order_id);
  r.mutable_stock()->set_reason("reserve");
  return r;
}

v1::ChangeRecord SiteOrder(uint64_t seq, const std::string& id, const std::string& status, uint64_t version, int64_t qty,
                           uint64_t down_seq) {
  v1::ChangeRecord r = Order(seq, id, status, seq << 16, version);
  r.set_ts_ms(1700000000000 + static_cast<int64_t>(seq));
  if (qty > 0) {
    auto* l = r.mutable_order()->add_lines();
    l->set_sku("apple");
    l->set_qty(qty);
    r.mutable_order()->set_customer_sealed(std::string("\x01sealed-", 8) + id);
  }
  r.mutable_order()->set_down_seq(down_seq);
  r.mutable_order()->set_actor(down_seq > 0 ? "hq" : "terminal-1");
  return r;
}

// What the hub holds of a site, as `edgectl restore --from-hub` reads it: the seq floor, stock
// with lots fitted to each SKU's total (named lots and expiries as the records carried them),
// the open orders' reservations, the orders an HQ command made, the highest down_seq the
// records name, the versions, the dedupe keys, the catalog, the newest fences and rules on the
// lane and its delivered position; another site's records stay out of it.
TEST_P(HubStoreContractTest, RebuildSnapshotIsWhatTheHubHoldsOfTheSite) {
  EXPECT_EQ(ReadRebuildSnapshot(*store_, "s1").status().code(), StatusCode::kNotFound);
  Apply(MakeBatch("s1", {Move(1, 1, "m1", 10, "L2", "2026-12-20", 10, 0), Move(2, 2, "m2", 5, "L1", "2026-12-10", 15, 0),
                         SiteOrder(3, "o1", "created", 1, 4, 3), Reserve(4, 3, "o1", 15, 4),
                         Move(5, 4, "m3", -3, "", "", 12, 4),
                         SiteOrder(6, "o2", "created", 1, 2, 0), Reserve(7, 5, "o2", 12, 6),
                         Move(8, 6, "m4", -2, "", "", 10, 4, "o2"), SiteOrder(9, "o2", "delivered", 2, 0, 0),
                         SiteOrder(10, "o3", "refused", 1, 50, 5)}));
  Apply(MakeBatch("s2", {Move(1, 1, "x1", 99, "Z", "", 99, 0)}));
  DownstreamLog log(*store_);
  ASSERT_TRUE(log.PutCatalog(Item("apple", 100), "apple-100", 7000, "hq").ok());
  v1::DownCommand f;
  f.set_kind(v1::DOWN_FENCES);
  auto set = [](v1::DownCommand& c, uint64_t v) { c.mutable_fences()->set_version(v); };
  f.mutable_fences()->set_geojson("{\"v\":1}");
  ASSERT_TRUE(log.AppendVersioned("s1", f, "f1", set).ok());
  f.mutable_fences()->set_geojson("{\"v\":2}");
  ASSERT_TRUE(log.AppendVersioned("s1", f, "f2", set).ok());
  ASSERT_TRUE(log.Acknowledge("s1", 2, 8000).ok());

  auto snap = ReadRebuildSnapshot(*store_, "s1");
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  EXPECT_EQ(snap->site(), "s1");
  EXPECT_EQ(snap->seq_floor(), 10u);
  EXPECT_EQ(snap->max_seq(), 10u);
  ASSERT_EQ(snap->stock_size(), 1);
  EXPECT_EQ(snap->stock(0).on_hand(), 10);
  EXPECT_EQ(snap->stock(0).reserved(), 4);
  EXPECT_EQ(snap->stock(0).version(), 6u);
  int64_t lot_sum = 0;
  std::map<std::string, std::string> expiry;
  for (const auto& l : snap->lots()) {
    EXPECT_EQ(l.sku(), "apple");
    EXPECT_GT(l.on_hand(), 0);
    lot_sum += l.on_hand();
    expiry[l.lot()] = l.expiry();
  }
  EXPECT_EQ(lot_sum, 10);  // fitted to the SKU's on_hand
  EXPECT_EQ(expiry["L2"], "2026-12-20");
  // The picks without a lot took the earliest expiry first (5 in L1, 5 taken): only L2 is left.
  EXPECT_EQ(expiry.count("L1"), 0u);
  ASSERT_EQ(snap->reservations_size(), 1);  // o2 was delivered: its reservation is gone
  EXPECT_EQ(snap->reservations(0).order_id(), "o1");
  EXPECT_EQ(snap->reservations(0).qty(), 4);
  std::map<std::string, v1::RebuildOrder> orders;
  for (const auto& o : snap->orders()) orders[o.order().order_id()] = o;
  ASSERT_EQ(orders.size(), 2u);  // o1 open; o3 final but made by HQ; o2 final and local: left out
  EXPECT_TRUE(orders["o1"].open());
  EXPECT_EQ(orders["o1"].order().status(), "created");
  EXPECT_EQ(orders["o1"].order().down_seq(), 3u);
  ASSERT_EQ(orders["o1"].order().lines_size(), 1);
  EXPECT_EQ(orders["o1"].order().lines(0).qty(), 4);
  EXPECT_EQ(orders["o1"].order().customer_sealed(), std::string("\x01sealed-o1", 10));
  EXPECT_FALSE(orders["o3"].open());
  EXPECT_EQ(orders["o3"].order().down_seq(), 5u);
  EXPECT_EQ(snap->records_down_seq(), 5u);
  EXPECT_EQ(snap->delivered_seq(), 2u);
  EXPECT_GE(snap->down_last_seq(), 3u);  // the catalog item, then two fence sets
  std::map<std::pair<int, std::string>, uint64_t> versions;
  for (const auto& v : snap->versions()) versions[{v.entity(), v.key()}] = v.version();
  EXPECT_EQ((versions[{v1::STOCK, "apple"}]), 6u);
  EXPECT_EQ((versions[{v1::ORDER, "o2"}]), 2u);
  EXPECT_EQ(versions.size(), 4u);
  EXPECT_EQ(std::vector<std::string>(snap->movement_ids().begin(), snap->movement_ids().end()),
            (std::vector<std::string>{"m1", "m2", "m3", "m4"}));
  std::vector<std::string> keys(snap->order_status_keys().begin(), snap->order_status_keys().end());
  EXPECT_EQ(keys, (std::vector<std::string>{"o1#created", "o2#created", "o2#delivered", "o3#created"}));
  ASSERT_EQ(snap->catalog_size(), 1);
  EXPECT_EQ(snap->catalog(0).sku(), "apple");
  ASSERT_TRUE(snap->has_fences());
  EXPECT_EQ(snap->fences().version(), 2u);
  EXPECT_EQ(snap->fences().geojson(), "{\"v\":2}");
  EXPECT_FALSE(snap->has_rules());
  EXPECT_EQ(snap->max_hlc(), (uint64_t{1700000000000} + 8) << 16);  // the newest STOCK record's

  auto other = ReadRebuildSnapshot(*store_, "s2");
  ASSERT_TRUE(other.ok());
  ASSERT_EQ(other->lots_size(), 1);
  EXPECT_EQ(other->lots(0).lot(), "Z");
  EXPECT_EQ(other->orders_size(), 0);
  EXPECT_FALSE(other->has_fences());
}

TEST_P(HubStoreContractTest, DownstreamRetentionTrimsOnlyOldDeliveredCommands) {
  DownstreamLog log(*store_);
  for (int i = 1; i <= 4; ++i) ASSERT_TRUE(log.Append("s1", HqOrderCommand("o" + std::to_string(i), 1), "d", "").ok());
  ASSERT_TRUE(log.Acknowledge("s1", 2, 6000).ok());
  ASSERT_TRUE(log.Trim(1000).ok());  // nothing that old
  EXPECT_EQ(log.Commands("s1", 0, 500)->size(), 4u);
  ASSERT_TRUE(log.Trim(99999).ok());  // every command is old; only the delivered go
  EXPECT_EQ(Seqs(*log.Commands("s1", 0, 500)), (std::vector<uint64_t>{3, 4}));
  EXPECT_EQ(log.Lane("s1")->pending, 2u);
  ASSERT_TRUE(log.Acknowledge("s1", 0, 6100).ok());  // pending again: never trimmed
  ASSERT_TRUE(log.Trim(99999).ok());
  EXPECT_EQ(log.Commands("s1", 0, 500)->size(), 2u);
}

// ---------- Escrow (docs/escrow.md, hub/escrow.h) ----------

v1::ChangeRecord EscrowRec(uint64_t seq, const std::string& sku, int64_t given, int64_t ret, int64_t cons, int64_t held,
                           int64_t target, uint64_t version) {
  v1::ChangeRecord r;
  r.set_seq(seq);
  r.set_entity(v1::ESCROW);
  r.set_key(sku);
  r.set_version(version);
  r.set_hlc(seq << 16);
  auto* e = r.mutable_escrow();
  e->set_sku(sku);
  e->set_given(given);
  e->set_returned_applied(ret);
  e->set_consumed_applied(cons);
  e->set_held(held);
  e->set_target(target);
  return r;
}

// The site's grant comes up as versioned records; the hub accepts orders within it in the
// append's transaction (used grows), repeats answer the same decision without taking twice,
// an order beyond it (or for a site without a grant) is left to the site.
TEST_P(HubStoreContractTest, EscrowOrdersAreAcceptedWithinTheGrantAndOnlyOnce) {
  DownstreamLog log(*store_);
  Apply(MakeBatch("s1", {EscrowRec(1, "apple", 10, 0, 0, 10, 10, 1)}));
  auto a = log.AppendOrder("s1", HqOrderCommand("o1", 4), "d1", "");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_TRUE(a->escrow);
  auto again = log.AppendOrder("s1", HqOrderCommand("o1", 4), "d1", "");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->repeated);
  EXPECT_TRUE(again->escrow);  // the first call's decision
  auto big = log.AppendOrder("s1", HqOrderCommand("o2", 7), "d2", "");
  ASSERT_TRUE(big.ok());
  EXPECT_FALSE(big->escrow);   // 6 left
  auto exact = log.AppendOrder("s1", HqOrderCommand("o3", 6), "d3", "");
  EXPECT_TRUE(exact->escrow);
  EXPECT_FALSE(log.AppendOrder("s1", HqOrderCommand("o4", 1), "d4", "")->escrow);
  EXPECT_FALSE(log.AppendOrder("s2", HqOrderCommand("o1", 1), "d1", "")->escrow);  // no grant at s2
  auto cmds = log.Commands("s1", 0, 10);
  ASSERT_EQ(cmds->size(), 4u);
  EXPECT_TRUE((*cmds)[0].command.order().escrow());
  EXPECT_FALSE((*cmds)[1].command.order().escrow());
  auto view = ReadRoute("/escrow", "s1", &v1::EscrowReply::escrow);
  ASSERT_TRUE(view.ok()) << view.status().ToString();
  ASSERT_EQ(view->size(), 1u);
  EXPECT_EQ((*view)[0].sku(), "apple");
  EXPECT_EQ((*view)[0].granted(), 10);
  EXPECT_EQ((*view)[0].used(), 10);
  EXPECT_EQ((*view)[0].free(), 0);
  Reopen();
  DownstreamLog reopened(*store_);
  EXPECT_FALSE(reopened.AppendOrder("s1", HqOrderCommand("o5", 1), "d5", "")->escrow);
  // The site applied both and topped up by 5: free again, and only the site's newer version counts.
  Apply(MakeBatch("s1", {EscrowRec(2, "apple", 15, 0, 10, 5, 10, 3), EscrowRec(3, "apple", 12, 0, 4, 8, 10, 2)}));
  EXPECT_EQ((*ReadRoute("/escrow", "s1", &v1::EscrowReply::escrow))[0].free(), 5);
  EXPECT_TRUE(reopened.AppendOrder("s1", HqOrderCommand("o6", 5), "d6", "")->escrow);
}

// The group commit: several orders in one transaction, answered in the input's order, a
// repeat inside the group is a repeat, the allotment taken once per order, lanes per site.
TEST_P(HubStoreContractTest, OrdersAppendedTogetherAnswerEachAsAlone) {
  DownstreamLog log(*store_);
  Apply(MakeBatch("s2", {EscrowRec(1, "apple", 5, 0, 0, 5, 5, 1)}));
  auto r = log.AppendOrders({{"s2", HqOrderCommand("o1", 3), "d1", "", std::nullopt},
                             {"s1", HqOrderCommand("o1", 1), "d1", "", std::nullopt},
                             {"s2", HqOrderCommand("o2", 3), "d2", "", std::nullopt},
                             {"s2", HqOrderCommand("o1", 3), "d1", "", std::nullopt},
                             {"s2", HqOrderCommand("o3", 2), "d3", "", std::nullopt}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 5u);
  EXPECT_EQ((*r)[0].down_seq, 1u);
  EXPECT_TRUE((*r)[0].escrow);
  EXPECT_EQ((*r)[1].down_seq, 1u);  // another site's lane
  EXPECT_FALSE((*r)[1].escrow);
  EXPECT_FALSE((*r)[2].escrow);     // 2 left
  EXPECT_TRUE((*r)[3].repeated);
  EXPECT_TRUE((*r)[3].escrow);
  EXPECT_EQ((*r)[3].down_seq, 1u);
  EXPECT_TRUE((*r)[4].escrow);
  EXPECT_EQ((*r)[4].down_seq, 3u);
  EXPECT_EQ((*ReadRoute("/escrow", "s2", &v1::EscrowReply::escrow))[0].used(), 5);
}

// The HQ call's audit row commits with its order (no commit of its own per order): a new
// order and a repeat each leave a row with the order's down_seq; a conflicting one none (its
// caller audits the refusal); nothing without `audit`.
TEST_P(HubStoreContractTest, OrderAuditRowCommitsWithTheOrder) {
  DownstreamLog log(*store_);
  const AuditEntry head{0, 42, "write", "hq", "/v1/sites/s1/orders", 0, 0, 0, 0, ""};
  auto r = log.AppendOrders({{"s1", HqOrderCommand("o1", 3), "d1", "", head},
                             {"s1", HqOrderCommand("o2", 1), "d2", "", std::nullopt},
                             {"s1", HqOrderCommand("o1", 3), "d1", "", head},
                             {"s1", HqOrderCommand("o1", 4), "other", "", head}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE((*r)[0].audited);
  EXPECT_FALSE((*r)[1].audited);
  EXPECT_TRUE((*r)[2].repeated);
  EXPECT_TRUE((*r)[2].audited);
  EXPECT_TRUE((*r)[3].conflict);
  EXPECT_FALSE((*r)[3].audited);
  auto rows = store_->Audit(0, 10);
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 2u);
  for (const AuditEntry& e : *rows) {
    EXPECT_EQ(e.ts_ms, 42);
    EXPECT_EQ(e.kind, "write");
    EXPECT_EQ(e.actor, "hq");
    EXPECT_EQ(e.path, "/v1/sites/s1/orders");
    EXPECT_EQ(e.seq_from, 1u);
    EXPECT_EQ(e.seq_to, 1u);
    EXPECT_EQ(e.count, 1u);
    EXPECT_EQ(e.status, 202);
    EXPECT_EQ(e.detail, "order:o1");
  }
}

// A target below the hub's free allotment is handed back at once, as one escrow-return per SKU
// carrying the new total; until the site applies it, the hub counts it as gone.
TEST_P(HubStoreContractTest, EscrowAboveTheTargetIsReturnedOnce) {
  DownstreamLog log(*store_);
  Apply(MakeBatch("s1", {EscrowRec(1, "apple", 10, 0, 0, 10, 10, 1)}));
  EXPECT_EQ(*log.ReturnEscrow("s1", 1000), 0);
  Apply(MakeBatch("s1", {EscrowRec(2, "apple", 10, 0, 0, 10, 3, 2)}));
  EXPECT_EQ(*log.ReturnEscrow("s1", 1000), 1);
  EXPECT_EQ(*log.ReturnEscrow("s1", 1000), 0);  // in flight: counted already
  auto cmds = log.Commands("s1", 0, 10);
  ASSERT_EQ(cmds->size(), 1u);
  EXPECT_EQ((*cmds)[0].command.kind(), v1::DOWN_ESCROW_RETURN);
  EXPECT_EQ((*cmds)[0].command.escrow_return().returned(), 7);
  EXPECT_EQ((*cmds)[0].command.command_id(), "escrow-return:apple:7");
  auto view = ReadRoute("/escrow", "s1", &v1::EscrowReply::escrow);
  EXPECT_EQ((*view)[0].granted(), 3);
  EXPECT_EQ((*view)[0].free(), 3);
  EXPECT_FALSE(log.AppendOrder("s1", HqOrderCommand("o1", 4), "d1", "")->escrow);
  EXPECT_TRUE(log.AppendOrder("s1", HqOrderCommand("o2", 3), "d2", "")->escrow);
}

// Spoilage ate into the reservation: the hub sells no more than the site says it holds, less
// what is in flight to it.
TEST_P(HubStoreContractTest, EscrowShrinksToWhatTheSiteStillHolds) {
  DownstreamLog log(*store_);
  Apply(MakeBatch("s1", {EscrowRec(1, "apple", 10, 0, 0, 10, 10, 1)}));
  EXPECT_TRUE(log.AppendOrder("s1", HqOrderCommand("o1", 2), "d1", "")->escrow);
  Apply(MakeBatch("s1", {EscrowRec(2, "apple", 10, 0, 0, 6, 10, 2)}));  // 4 spoiled; o1 not applied yet
  auto view = ReadRoute("/escrow", "s1", &v1::EscrowReply::escrow);
  EXPECT_EQ((*view)[0].free(), 4);
  EXPECT_FALSE(log.AppendOrder("s1", HqOrderCommand("o2", 5), "d2", "")->escrow);
  EXPECT_TRUE(log.AppendOrder("s1", HqOrderCommand("o3", 4), "d3", "")->escrow);
}

TEST_P(HubStoreContractTest, DownstreamConcurrentAppendsStayDense) {
  DownstreamLog log(*store_);
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        auto r = log.Append("s1", HqOrderCommand("t" + std::to_string(t) + "-" + std::to_string(i), 1), "d", "");
        if (!r.ok()) ++errors;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  std::vector<uint64_t> want;
  for (uint64_t i = 1; i <= 40; ++i) want.push_back(i);
  EXPECT_EQ(Seqs(*log.Commands("s1", 0, 500)), want);
}

// ---------------------------------------------------------------------------------------------
// SQLite-only (SqliteHubStoreTest). Each needs the SQLite file itself, so a second backend does
// not run them (it brings its own equivalents where they apply):
//   RebuildStateRestoresCorruptedStockAndIsAudited   corrupts the stock table with raw SQL
//   RefusesANewerSchema                              PRAGMA user_version, SchemaVersion()
//   MigrationTwoMovesPositionRowsIntoChunks          migration 1 -> 2 from a version-1 file
//   MigrationThreeAddsTheValidationTablesToAVersionTwoStore   migration 2 -> 3
//   BigBatchOfOneTruckIsSplitIntoBoundedChunks       reads the position_chunks table
//   RowHeldAboveContiguousWithoutMaxSeqFallsBackToRecordByRecord   hand-inserts a changes row
//   BackgroundCheckpointsKeepTheWalBounded           sizes of hub.db and its -wal file
//   MigrationEightKeepsTheCurrentFencesStillInTheLog migration 7 -> 8 from a version-7 file
// ---------------------------------------------------------------------------------------------

TEST_F(SqliteHubStoreTest, RebuildStateRestoresCorruptedStockAndIsAudited) {
  Apply(MakeBatch("a", {Stock(1, "sku-1", 10, 1), Stock(2, "sku-2", 20, 2), Stock(3, "sku-1", 7, 3)}));
  Apply(MakeBatch("b", {Stock(1, "sku-1", 99, 1)}));
  const auto good = store_->StateDigest("a");
  ASSERT_TRUE(good.ok());
  store_.reset();
  {
    // Corrupt site a's materialized stock behind the store's back: a wrong row, a lost row
    // and a row no record supports.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(dir_.File("hub.db").c_str(), &db), SQLITE_OK);
    const char* sql =
        "UPDATE stock SET on_hand = 5000 WHERE sku = 'sku-1' AND site_id = (SELECT site_id FROM sites WHERE site='a');"
        "DELETE FROM stock WHERE sku = 'sku-2';"
        "INSERT INTO stock SELECT site_id, 'ghost', 1, 0, 1, 0, 0, 0 FROM sites WHERE site = 'a';";
    ASSERT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  Reopen();
  auto bad = store_->StateDigest("a");
  ASSERT_TRUE(bad.ok());
  EXPECT_NE(bad->digest, good->digest);

  const AuditEntry audit{0, 42, "rebuild-state", "a", "/v1/sites/a/rebuild-state", 0, 0, 0, 200, "test"};
  auto r = store_->RebuildState("a", &audit);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->skus_before, 2u);  // sku-1 (wrong) and ghost
  EXPECT_EQ(r->skus_after, 2u);
  EXPECT_EQ(r->changed, 3u);      // sku-1 fixed, sku-2 restored, ghost removed
  auto fixed = store_->StateDigest("a");
  ASSERT_TRUE(fixed.ok());
  EXPECT_EQ(fixed->digest, good->digest);
  auto rows = ReadStock("a");
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].sku(), "sku-1");
  EXPECT_EQ((*rows)[0].on_hand(), 7);
  EXPECT_EQ((*rows)[0].version(), 3u);
  EXPECT_EQ((*rows)[0].seq(), 3u);
  EXPECT_EQ((*rows)[1].on_hand(), 20);
  // Site b untouched.
  auto b = ReadStock("b");
  ASSERT_EQ(b->size(), 1u);
  EXPECT_EQ((*b)[0].on_hand(), 99);
  // Audited in the same transaction, with the number of rows changed.
  auto au = store_->Audit(0, 10);
  ASSERT_EQ(au->size(), 1u);
  EXPECT_EQ((*au)[0].kind, "rebuild-state");
  EXPECT_EQ((*au)[0].count, 3u);
  // A second rebuild changes nothing.
  auto again = store_->RebuildState("a", nullptr);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->changed, 0u);
}

// The one SQLite mapping (sqlite/status.h): a write lock held past busy_timeout (5 s here) is
// kIOError, as a failed write is, never kInvalidArgument, so hub/server.cc answers 503 and the
// site retries the batch; nothing of it is applied. (Before the shared mapping it was
// kUnavailable, which the server answered 503 too.)
TEST_F(SqliteHubStoreTest, AWriteLockHeldPastTheBusyTimeoutIsAnIOErrorAndAppliesNothing) {
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(dir_.File("hub.db").c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);
  auto r = store_->ApplyBatch("a", MakeBatch("a", {Stock(1, "x", 1, 1)}), 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIOError) << r.status().ToString();
  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  EXPECT_EQ(FeedSize(), 0u);
  auto again = store_->ApplyBatch("a", MakeBatch("a", {Stock(1, "x", 1, 1)}), 0);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(FeedSize(), 1u);
}

TEST_F(SqliteHubStoreTest, RefusesANewerSchema) {
  store_.reset();
  {
    auto s = SqliteHubStore::Open({dir_.File("new.db"), 1, false});
    ASSERT_TRUE(s.ok());
  }
  ASSERT_EQ(0, freshsync::testing::RunShell("sqlite3 '" + dir_.File("new.db") + "' 'PRAGMA user_version = 99'"));
  auto s = SqliteHubStore::Open({dir_.File("new.db"), 1, false});
  EXPECT_EQ(s.status().code(), StatusCode::kInternal);
  EXPECT_EQ(SqliteHubStore::SchemaVersion(), 12);
}

// Takes the SQLite hub store at `path` back to schema `version` as far as tables and indexes go:
// drops every one that a store made at that version (OpenAtSchemaVersionForTest) does not have,
// then sets user_version. So a test of migration N keeps working when later migrations add
// tables, without a list of them to keep up to date.
void RollBackSchemaTo(const std::string& path, int version, const std::string& scratch) {
  std::set<std::string> keep;
  {
    auto old = SqliteHubStore::OpenAtSchemaVersionForTest({scratch, 1, false}, version);
    ASSERT_TRUE(old.ok()) << old.status().ToString();
  }
  auto names = [](sqlite3* db, std::vector<std::pair<std::string, std::string>>* out) {
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT type, name FROM sqlite_master WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%'", -1, &st, nullptr), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW)
      out->emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(st, 0)), reinterpret_cast<const char*>(sqlite3_column_text(st, 1)));
    sqlite3_finalize(st);
  };
  sqlite3* db = nullptr;
  std::vector<std::pair<std::string, std::string>> old_names, names_now;
  ASSERT_EQ(sqlite3_open(scratch.c_str(), &db), SQLITE_OK);
  names(db, &old_names);
  sqlite3_close(db);
  for (const auto& [type, name] : old_names) keep.insert(name);
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  names(db, &names_now);
  for (const auto& [type, name] : names_now) {
    if (keep.count(name)) continue;
    // An index goes with its table; dropping it again would fail.
    const std::string sql = (type == "table" ? "DROP TABLE IF EXISTS \"" : "DROP INDEX IF EXISTS \"") + name + "\"";
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sql;
  }
  const std::string set_version = "PRAGMA user_version = " + std::to_string(version);
  EXPECT_EQ(sqlite3_exec(db, set_version.c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
}

// A store from before migration 8 holds HQ's fences and rules only in the log: the migration
// copies the current version of each whose command is still there (and none of an older
// version, nor one already trimmed).
TEST_F(SqliteHubStoreTest, MigrationEightKeepsTheCurrentFencesStillInTheLog) {
  {
    DownstreamLog log(*store_);
    auto set = [](v1::DownCommand& c, uint64_t v) { c.mutable_fences()->set_version(v); };
    v1::DownCommand f;
    f.set_kind(v1::DOWN_FENCES);
    f.set_issued_ms(100);
    for (int v = 1; v <= 2; ++v) {
      f.mutable_fences()->set_geojson("{\"v\":" + std::to_string(v) + "}");
      ASSERT_TRUE(log.AppendVersioned("a", f, "f" + std::to_string(v), set).ok());
    }
    ASSERT_TRUE(log.AppendVersioned("trimmed", f, "t", set).ok());
    v1::DownCommand rules;
    rules.set_kind(v1::DOWN_COLDCHAIN_RULES);
    rules.mutable_rules()->add_rules()->set_sensors("cold-*");
    ASSERT_TRUE(log.AppendVersioned("a", rules, "r1", [](v1::DownCommand& c, uint64_t v) { c.mutable_rules()->set_version(v); }).ok());
  }
  store_.reset();
  // Back to version 7: the tables of later migrations gone, and one site's command trimmed as
  // retention would.
  RollBackSchemaTo(dir_.File("hub.db"), 7, dir_.File("v7.db"));
  ASSERT_EQ(0, freshsync::testing::RunShell("sqlite3 '" + dir_.File("hub.db") +
                                            "' 'DELETE FROM down_commands WHERE site <> (SELECT min(site) FROM down_lanes)'"));
  Reopen();
  DownstreamLog log(*store_);
  auto f = log.Current("a", v1::DOWN_FENCES);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_TRUE(f->has_value());
  EXPECT_EQ((*f)->version, 2u);
  EXPECT_EQ((*f)->command.fences().geojson(), "{\"v\":2}");
  EXPECT_EQ((*f)->command.down_seq(), 0u);
  EXPECT_EQ((*f)->updated_ms, 100);
  auto r = log.Current("a", v1::DOWN_COLDCHAIN_RULES);
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->command.rules().rules(0).sensors(), "cold-*");
  EXPECT_FALSE(log.Current("trimmed", v1::DOWN_FENCES)->has_value());
}

TEST_F(SqliteHubStoreTest, MigrationTwoMovesPositionRowsIntoChunks) {
  store_.reset();
  const std::string path = dir_.File("v1.db");
  {
    auto v1 = SqliteHubStore::OpenAtSchemaVersionForTest({path, 1, false}, 1);
    ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  }
  // A version-1 store with position history as rows: two sites, three vehicles, one with more
  // fixes than a chunk holds and a jump in time longer than a chunk may span.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  auto exec = [&](const std::string& sql) { ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sql; };
  exec("PRAGMA user_version");
  exec("INSERT INTO sites(site_id, site, contiguous_seq, max_seq) VALUES(1, 'a', 2000, 2000), (2, 'b', 10, 10)");
  exec("BEGIN");
  const int n = static_cast<int>(kChunkMaxFixes) + 300;
  for (int i = 1; i <= n; ++i) {
    const int64_t ts = 1000 * i + (i > 1000 ? 5 * kChunkMaxSpanMs : 0);
    exec("INSERT INTO positions VALUES(1, 'truck-1', " + std::to_string(ts) + ", " + std::to_string(i) + ", " +
         std::to_string(i) + ", " + std::to_string(31000000 + i) + ", -121000000, 420, 90, 9, " +
         std::to_string((ts << 16) + 7) + ")");
  }
  exec("INSERT INTO positions VALUES(1, 'truck-2', 5000, 5000, 1, 1, 2, 3, 4, 5, 6)");
  exec("INSERT INTO positions VALUES(2, 'truck-1', 7000, 3, 2, 10, 20, 30, 40, 50, 60)");
  exec("COMMIT");
  sqlite3_close(db);

  auto s = SqliteHubStore::Open({path, 1, false});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto track = (*s)->Track("a", "truck-1", 0, std::numeric_limits<int64_t>::max(), 100000);
  ASSERT_TRUE(track.ok()) << track.status().ToString();
  ASSERT_EQ(track->size(), static_cast<size_t>(n));
  for (int i = 1; i <= n; ++i) {
    const auto& p = (*track)[static_cast<size_t>(i - 1)];
    ASSERT_EQ(p.seq(), static_cast<uint64_t>(i));
    ASSERT_EQ(p.position().lat_e6(), 31000000 + i);
    ASSERT_EQ(p.position().lon_e6(), -121000000);
    ASSERT_EQ(p.hlc(), (static_cast<uint64_t>(p.ts_ms()) << 16) + 7);
  }
  auto b = (*s)->Track("b", "truck-1", 0, 10000, 10);
  ASSERT_EQ(b->size(), 1u);
  EXPECT_EQ((*b)[0].position().device_seq(), 2u);
  EXPECT_EQ((*b)[0].position().hdop_d(), 50u);
  EXPECT_EQ((*b)[0].hlc(), 60u);
  EXPECT_EQ((*s)->Track("a", "truck-2", 0, 10000, 10)->size(), 1u);
  s->reset();

  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  auto count = [&](const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
      v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
  };
  EXPECT_EQ(count("PRAGMA user_version"), SqliteHubStore::SchemaVersion());
  EXPECT_EQ(count("SELECT count(*) FROM sqlite_master WHERE name = 'positions'"), 0);
  EXPECT_EQ(count("SELECT sum(count) FROM position_chunks"), n + 2);
  // truck-1 at a: 1000 fixes, then a jump: ceil(1000 / 1024) + ceil(300 / 1024) chunks.
  EXPECT_EQ(count("SELECT count(*) FROM position_chunks WHERE site_id = 1 AND vehicle = 'truck-1'"), 2);
  EXPECT_EQ(count("SELECT max(ts_max - ts_min) <= " + std::to_string(kChunkMaxSpanMs) + " FROM position_chunks"), 1);
  sqlite3_close(db);
}

// Migration 3 adds refused_records and site_usage to a version-2 store: one written by a hubd
// before hub validation (no such tables), and one written by the builds that created them at
// open with IF NOT EXISTS (tables there, user_version still 2, rows in them). Both migrate to
// version 3, keep their records and rows, and quarantine refused records afterwards.
TEST_F(SqliteHubStoreTest, MigrationThreeAddsTheValidationTablesToAVersionTwoStore) {
  store_.reset();
  for (const bool interim_tables : {false, true}) {
    SCOPED_TRACE(interim_tables ? "v2 store with the interim tables" : "v2 store without them");
    const std::string path = dir_.File(interim_tables ? "v2-interim.db" : "v2.db");
    {
      auto v2 = SqliteHubStore::OpenAtSchemaVersionForTest({path, 1, false}, 2);
      ASSERT_TRUE(v2.ok()) << v2.status().ToString();
    }
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    auto exec = [&](const std::string& sql) { ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sql; };
    auto count = [&](const std::string& sql) {
      sqlite3_stmt* st = nullptr;
      int64_t v = -1;
      if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
      sqlite3_finalize(st);
      return v;
    };
    EXPECT_EQ(count("PRAGMA user_version"), 2);
    EXPECT_EQ(count("SELECT count(*) FROM sqlite_master WHERE name IN ('refused_records', 'site_usage')"), 0);
    exec("INSERT INTO sites(site_id, site, contiguous_seq, max_seq, records) VALUES(1, 'a', 1, 1, 1)");
    {
      v1::ChangeRecord r = Stock(1, "sku-1", 7, 1);
      sqlite3_stmt* st = nullptr;
      ASSERT_EQ(sqlite3_prepare_v2(db, "INSERT INTO changes(site_id, seq, entity, key, version, record) VALUES(1, 1, ?1, 'sku-1', 1, ?2)",
                                   -1, &st, nullptr), SQLITE_OK);
      sqlite3_bind_int(st, 1, v1::STOCK);
      const std::string blob = r.SerializeAsString();
      sqlite3_bind_blob(st, 2, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
      ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
      sqlite3_finalize(st);
    }
    if (interim_tables) {
      // What the interim hubd created at open (its kValidationTables), with a row in each.
      exec("CREATE TABLE refused_records(site_id INTEGER NOT NULL, seq INTEGER NOT NULL, entity INTEGER NOT NULL, "
           "version INTEGER NOT NULL, key TEXT, field TEXT NOT NULL, reason TEXT NOT NULL, received_ms INTEGER NOT NULL, "
           "PRIMARY KEY(site_id, seq)) WITHOUT ROWID");
      exec("CREATE TABLE site_usage(site_id INTEGER NOT NULL, day INTEGER NOT NULL, bytes INTEGER NOT NULL, "
           "PRIMARY KEY(site_id, day)) WITHOUT ROWID");
      exec("INSERT INTO refused_records VALUES(1, 2, 1, 1, NULL, 'key', 'key: longer than 128 bytes', 1)");
      exec("UPDATE sites SET contiguous_seq = 2, max_seq = 2");
      exec("INSERT INTO site_usage VALUES(1, 20000, 1234)");
    }
    sqlite3_close(db);

    auto s = SqliteHubStore::Open({path, 1, false});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    const uint64_t first = interim_tables ? 3 : 2;
    // A batch with a refused record goes to refused_records after the migration.
    const std::vector<std::string> refusals = {"stock.on_hand: -5", ""};
    const ApplyChecks checks{&refusals, 1 << 20};
    auto res = (*s)->ApplyBatch("a", MakeBatch("a", {Stock(first, "sku-2", -5, 1), Stock(first + 1, "sku-3", 4, 1)}),
                                86400000LL * 20000 + 5, nullptr, checks);
    ASSERT_TRUE(res.ok()) << res.status().ToString();
    EXPECT_EQ(res->refused, 1u);
    EXPECT_EQ(res->contiguous_seq, first + 1);
    s->reset();

    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    EXPECT_EQ(count("PRAGMA user_version"), SqliteHubStore::SchemaVersion());
    EXPECT_EQ(count("SELECT count(*) FROM changes WHERE site_id = 1"), 2);  // seq 1 kept, seq first + 1 added
    EXPECT_EQ(count("SELECT count(*) FROM refused_records"), interim_tables ? 2 : 1);
    EXPECT_EQ(count("SELECT count(*) FROM refused_records WHERE seq = " + std::to_string(first) + " AND field = 'stock.on_hand'"), 1);
    EXPECT_EQ(count("SELECT count(*) FROM site_usage WHERE site_id = 1 AND day = 20000 AND bytes > " +
                    std::to_string(interim_tables ? 1234 : 0)), 1);
    sqlite3_close(db);
  }
}

TEST_F(SqliteHubStoreTest, BigBatchOfOneTruckIsSplitIntoBoundedChunks) {
  std::vector<v1::ChangeRecord> recs;
  const uint64_t n = kChunkMaxFixes * 2 + 10;
  for (uint64_t s = 1; s <= n; ++s) recs.push_back(Position(s, "truck-1", 1000 * static_cast<int64_t>(s), static_cast<int32_t>(s)));
  Apply(MakeBatch("a", recs));
  auto track = store_->Track("a", "truck-1", 0, std::numeric_limits<int64_t>::max(), 100000);
  ASSERT_EQ(track->size(), n);
  EXPECT_EQ(track->back().position().lat_e6(), static_cast<int32_t>(n));
  // 1024 fixes at 1 s apart span 1023 s: split by count, three chunks.
  store_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir_.File("hub.db").c_str(), &db), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*), max(count) FROM position_chunks", -1, &st, nullptr), SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int64(st, 0), 3);
  EXPECT_EQ(sqlite3_column_int64(st, 1), static_cast<int64_t>(kChunkMaxFixes));
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST_F(SqliteHubStoreTest, RowHeldAboveContiguousWithoutMaxSeqFallsBackToRecordByRecord) {
  // The multi-row fast path trusts sites.max_seq; a store edited by hand (a change row above
  // contiguous that max_seq does not know of) must still get each record once.
  auto r = Apply(Range("a", 1, 100));
  ASSERT_EQ(r.contiguous_seq, 100u);
  store_.reset();
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(dir_.File("hub.db").c_str(), &db), SQLITE_OK);
  const std::string held = Range("a", 150, 150).records(0).SerializeAsString();
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "INSERT INTO changes(site_id, seq, entity, key, version, record) "
                                   "SELECT site_id, 150, 1, 'sku-0', 150, ?1 FROM sites WHERE site = 'a'",
                               -1, &st, nullptr),
            SQLITE_OK);
  sqlite3_bind_blob(st, 1, held.data(), static_cast<int>(held.size()), SQLITE_STATIC);
  ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
  sqlite3_finalize(st);
  sqlite3_close(db);
  Reopen();
  r = Apply(Range("a", 90, 300));  // 11 below contiguous, 150 held, 199 new (three 64-row inserts and 7 single)
  EXPECT_FALSE(r.gap);
  EXPECT_EQ(r.applied, 199u);
  EXPECT_EQ(r.duplicates, 12u);
  EXPECT_EQ(r.contiguous_seq, 300u);
  EXPECT_EQ(FeedSize(), 300u);
  // The same batch again: all duplicates, nothing new in the feed.
  r = Apply(Range("a", 90, 300));
  EXPECT_EQ(r.applied, 0u);
  EXPECT_EQ(r.duplicates, 211u);
  EXPECT_EQ(FeedSize(), 300u);
  // Stock follows the highest version per SKU: sku-0's last record is seq 300.
  auto stock = ReadStock("a");
  ASSERT_EQ(stock->size(), 10u);
  EXPECT_EQ((*stock)[0].sku(), "sku-0");
  EXPECT_EQ((*stock)[0].on_hand(), 300);
}

TEST_F(SqliteHubStoreTest, BackgroundCheckpointsKeepTheWalBounded) {
  // The writer no longer checkpoints inside its COMMITs; the checkpoint thread must. ~30 MB of
  // pages are written here: without checkpoints they would all stay in the -wal file and the
  // database file would not grow while the store is open.
  const std::string wal = dir_.File("hub.db") + "-wal";
  uint64_t seq = 1;
  for (int b = 0; b < 40; ++b) {
    std::vector<v1::ChangeRecord> recs;
    for (int i = 0; i < 5000; ++i, ++seq) {
      auto r = Position(seq, "truck-" + std::to_string(seq % 50), 1000 * static_cast<int64_t>(seq), 1);
      r.mutable_position()->set_device_seq(seq * 7919);  // less compressible pages, as real fixes
      recs.push_back(std::move(r));
    }
    Apply(MakeBatch("a", recs));
    // Give the checkpoint thread a chance between batches, as the network does in hubd.
    if (b % 10 == 9) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(*store_->ContiguousSeq("a"), 200000u);
  // The thread may lag on a loaded machine; it has a few seconds to catch up.
  (void)freshsync::testing::WaitFor([&] { return std::filesystem::file_size(dir_.File("hub.db")) > (20u << 20); },
                                    std::chrono::seconds(5));
  const auto wal_bytes = std::filesystem::file_size(wal);
  const auto db_bytes = std::filesystem::file_size(dir_.File("hub.db"));
  std::printf("wal %.1f MB, db %.1f MB\n", static_cast<double>(wal_bytes) / 1e6, static_cast<double>(db_bytes) / 1e6);
  // Without the checkpoint thread: database 0.0 MB, WAL 57 MB (checked by disabling it). With
  // it the WAL's high-water mark depends on how far the thread lags the writer (38 MB here).
  EXPECT_GT(db_bytes, 20u << 20);
  EXPECT_LT(wal_bytes, 256u << 20);  // the writer's own fallback bound (kWriterCheckpointFrames)
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only: what several replicas on one database need beyond the contract.
// ---------------------------------------------------------------------------------------------

TEST(PostgresTextTest, PlaceholdersBecomeDollarsOutsideLiteralsAndAPostgresTextWins) {
  EXPECT_EQ(PostgresText({"SELECT a FROM t WHERE b = ?1 AND c BETWEEN ?2 AND ?12"}),
            "SELECT a FROM t WHERE b = $1 AND c BETWEEN $2 AND $12");
  // A question mark in a literal, or not followed by a digit, is left alone.
  EXPECT_EQ(PostgresText({"SELECT '?1', 'it''s ?2' FROM t WHERE x = ?3 AND y = ?"}),
            "SELECT '?1', 'it''s ?2' FROM t WHERE x = $3 AND y = ?");
  EXPECT_EQ(PostgresText({"INSERT OR IGNORE INTO t VALUES(?1)", "INSERT INTO t VALUES($1) ON CONFLICT DO NOTHING"}),
            "INSERT INTO t VALUES($1) ON CONFLICT DO NOTHING");
}

// The climate history (GET .../sensors/{sensor}/climate): every CLIMATE reading of the site,
// per sensor, oldest first by device time, in ?from=&to= and at most ?limit= (the track's
// paging: default 10,000, at most 100,000, to >= from). A pushed-again batch adds nothing; a
// reading without its sensor name (batch format 2) is the key's.
TEST_P(HubStoreContractTest, ClimateHistoryServesASensorsReadingsOldestFirstInRange) {
  constexpr int64_t t0 = 1'700'000'000'000;
  const auto batch = MakeBatch("a", {Climate(1, "cold-1", t0 + 2000, -150), Climate(2, "cold-2", t0 + 1000, 400),
                                     Climate(3, "cold-1", t0, -180, false), Climate(4, "cold-1", t0 + 3000, -120),
                                     Stock(5, "sku-1", 1, 1)});
  Apply(batch);
  Apply(batch);  // again: already held, nothing applied twice
  Apply(MakeBatch("b", {Climate(1, "cold-1", t0, 999)}));  // another site's sensor of that name
  auto all = ClimateItems("a", "cold-1");
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].seq(), 3u);
  EXPECT_EQ(all[0].ts_ms(), t0);
  EXPECT_EQ(all[0].reading().sensor(), "cold-1");
  EXPECT_EQ(all[0].reading().temp_dc(), -180);
  EXPECT_EQ(all[0].reading().rh_d(), 655u);
  EXPECT_EQ(all[0].reading().battery_d(), 970u);
  EXPECT_EQ(all[0].reading().device_seq(), 103u);
  EXPECT_EQ(all[0].hlc(), static_cast<uint64_t>(t0) << 16);
  EXPECT_EQ(all[1].seq(), 1u);
  EXPECT_EQ(all[2].seq(), 4u);
  auto range = ClimateItems("a", "cold-1", TimeRange(t0 + 1, t0 + 3000, 1));
  ASSERT_EQ(range.size(), 1u);
  EXPECT_EQ(range[0].seq(), 1u);
  EXPECT_EQ(ClimateItems("a", "cold-2").size(), 1u);
  EXPECT_TRUE(ClimateItems("a", "cold-9").empty());
  ASSERT_EQ(ClimateItems("b", "cold-1").size(), 1u);
  EXPECT_EQ(ClimateItems("b", "cold-1")[0].reading().temp_dc(), 999);
  // The track's limits: to before from, and a limit past 100,000, are refused.
  EXPECT_TRUE(ReadClimate("a", "cold-1", {{"from", "10"}, {"to", "5"}}).bad_query);
  EXPECT_TRUE(ReadClimate("a", "cold-1", {{"limit", "100001"}}).bad_query);
  EXPECT_EQ(ClimateItems("a", "cold-1", {{"limit", "100000"}}).size(), 3u);
  // A reading held by the urgent lane above the contiguous seq, then the batch that fills the
  // gap carrying it again: stored once, beside the batch's other reading (PostgreSQL COPYs a
  // batch's readings, with no conflict check: the store must never hand it one held already).
  Apply(MakeBatch("a", {Climate(7, "cold-3", t0, 1)}, true));
  Apply(MakeBatch("a", {Climate(6, "cold-3", t0 + 1, 2), Climate(7, "cold-3", t0, 1)}));
  EXPECT_EQ(ClimateItems("a", "cold-3").size(), 2u);
}

// Climate history has the position history's retention: readings older than the whole days
// kept go, the rest (a late one from weeks back too) stays, and later readings land in place.
TEST_P(HubStoreContractTest, TelemetryUpkeepRemovesClimateHistoryPastRetentionAndKeepsTheRest) {
  constexpr int64_t kDay = 86400000;
  const int64_t now = 20000 * kDay + 12 * 3600000;  // noon
  Apply(MakeBatch("a", {Climate(1, "s", now - 100 * kDay, 1), Climate(2, "s", now - 30 * kDay, 2),
                        Climate(3, "s", now - kDay, 3), Climate(4, "s", now, 4)}));
  auto temps = [&] {
    std::vector<int32_t> out;
    for (const auto& item : ClimateItems("a", "s")) out.push_back(item.reading().temp_dc());
    return out;
  };
  auto round1 = store_->MaintainTelemetry(now, 90);
  ASSERT_TRUE(round1.ok()) << round1.status().ToString();
  EXPECT_EQ(round1->readings_deleted, 1u);
  EXPECT_EQ(temps(), (std::vector<int32_t>{2, 3, 4}));
  Apply(MakeBatch("a", {Climate(5, "s", now + 1000, 5)}));  // after the round
  EXPECT_EQ(temps(), (std::vector<int32_t>{2, 3, 4, 5}));
  ASSERT_TRUE(store_->MaintainTelemetry(now + 400 * kDay, 0).ok());  // 0 keeps everything
  EXPECT_EQ(temps().size(), 4u);
  auto round2 = store_->MaintainTelemetry(now + 95 * kDay, 90);
  ASSERT_TRUE(round2.ok()) << round2.status().ToString();
  EXPECT_TRUE(temps().empty());
  Apply(MakeBatch("a", {Climate(6, "s", now + 95 * kDay, 6)}));
  EXPECT_EQ(temps(), (std::vector<int32_t>{6}));
}

class PgStoreTest : public ::testing::Test {
 protected:
  std::string FreshDatabase() { return freshsync::testing::SharedPostgresDatabase(dir_.path() + "/" + std::to_string(++databases_)); }
  static std::unique_ptr<PgHubStore> Open(const std::string& url) {
    auto s = PgHubStore::Open({url, 2});
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }
  // Rows of a table in database `db` (FreshDatabase's last path element), as psql prints it.
  static std::string Rows(const std::string& db, const std::string& table) {
    return freshsync::testing::SharedPostgres().Query(db, "SELECT count(*) FROM " + table);
  }
  // The day partitions (`{parent}_pYYYYMMDD`) attached to a partitioned table.
  static std::string DayPartitions(const std::string& db, const std::string& parent) {
    return freshsync::testing::SharedPostgres().Query(
        db, "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE p.relname = '" + parent + "' AND c.relname LIKE '" + parent + "_p%'");
  }
  TempDir dir_;
  int databases_ = 0;
};

// PostgreSQL keeps position history in day partitions: an upkeep round makes a week back to
// three days ahead (moving those days' rows out of the default partition), and retention drops
// whole days, leaving the default partition only what no day covers.
TEST_F(PgStoreTest, TelemetryUpkeepPartitionsPositionHistoryByDayAndDropsWholeDays) {
  const std::string url = FreshDatabase();
  const std::string db = url.substr(url.rfind('/') + 1);
  auto store = Open(url);
  ASSERT_NE(store, nullptr);
  constexpr int64_t kDay = 86400000;
  const int64_t now = 20000 * kDay + 12 * 3600000;
  auto rows = [&](const std::string& table) { return Rows(db, table); };
  auto days = [&] { return DayPartitions(db, "position_chunks"); };
  ASSERT_TRUE(store->ApplyBatch("a", MakeBatch("a", {Position(1, "old", now - 100 * kDay, 1), Position(2, "late", now - 30 * kDay, 2),
                                                     Position(3, "today", now, 3)}), now).ok());
  EXPECT_EQ(rows("position_chunks_default"), "3");  // no day partition yet
  auto r = store->MaintainTelemetry(now, 90);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->partitions_created, 22u);  // 11 days of position_chunks and of climate_readings
  EXPECT_EQ(r->rows_deleted, 1u);  // "old", from the default partition
  EXPECT_EQ(days(), "11");
  EXPECT_EQ(rows("position_chunks_p20241004"), "1");  // day 20000: "today"
  EXPECT_EQ(rows("position_chunks_default"), "1");    // "late": no day partition that far back
  // A second round has nothing to do.
  r = store->MaintainTelemetry(now, 90);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->partitions_created + r->partitions_dropped + r->rows_deleted, 0u);
  // 95 days later: the 11 days are past retention and dropped whole; "late" is deleted; the
  // new window is made.
  r = store->MaintainTelemetry(now + 95 * kDay, 90);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->partitions_dropped, 22u);
  EXPECT_EQ(r->partitions_created, 22u);
  EXPECT_EQ(r->rows_deleted, 1u);
  EXPECT_EQ(days(), "11");
  EXPECT_EQ(rows("position_chunks"), "0");
}

// Climate history is day-partitioned the same way, by the reading's device time.
TEST_F(PgStoreTest, TelemetryUpkeepPartitionsClimateHistoryByDayAndDropsWholeDays) {
  const std::string url = FreshDatabase();
  const std::string db = url.substr(url.rfind('/') + 1);
  auto store = Open(url);
  ASSERT_NE(store, nullptr);
  constexpr int64_t kDay = 86400000;
  const int64_t now = 20000 * kDay + 12 * 3600000;
  auto rows = [&](const std::string& table) { return Rows(db, table); };
  auto days = [&] { return DayPartitions(db, "climate_readings"); };
  ASSERT_TRUE(store->ApplyBatch("a", MakeBatch("a", {Climate(1, "s", now - 100 * kDay, 1), Climate(2, "s", now - 30 * kDay, 2),
                                                     Climate(3, "s", now, 3)}), now).ok());
  EXPECT_EQ(rows("climate_readings_default"), "3");  // no day partition yet
  auto r = store->MaintainTelemetry(now, 90);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->readings_deleted, 1u);  // the 100-day-old one, from the default partition
  EXPECT_EQ(days(), "11");
  EXPECT_EQ(rows("climate_readings_p20241004"), "1");  // day 20000
  EXPECT_EQ(rows("climate_readings_default"), "1");    // 30 days back: no day partition
  ASSERT_TRUE(store->ApplyBatch("a", MakeBatch("a", {Climate(4, "s", now + kDay, 4)}), now).ok());
  EXPECT_EQ(rows("climate_readings_p20241005"), "1");  // lands in its day's partition
  r = store->MaintainTelemetry(now + 95 * kDay, 90);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->readings_deleted, 1u);
  EXPECT_EQ(days(), "11");
  EXPECT_EQ(rows("climate_readings"), "0");
}

TEST_F(PgStoreTest, ThreeReplicasStartingAtOnceMigrateTheDatabaseOnce) {
  const std::string url = FreshDatabase();
  std::vector<std::unique_ptr<PgHubStore>> stores(3);
  std::vector<std::thread> starts;
  for (size_t i = 0; i < stores.size(); ++i) starts.emplace_back([&, i] { stores[i] = Open(url); });
  for (auto& t : starts) t.join();
  for (const auto& s : stores) ASSERT_NE(s, nullptr);
  const std::string db = url.substr(url.rfind('/') + 1);
  EXPECT_EQ(freshsync::testing::SharedPostgres().Query(db, "SELECT version FROM pg_schema"), std::to_string(PgHubStore::SchemaVersion()));
  EXPECT_EQ(freshsync::testing::SharedPostgres().Query(db, "SELECT count(*) FROM pg_schema"), "1");
  // Every replica serves the same data: a push through one is read through the others.
  ASSERT_TRUE(stores[0]->ApplyBatch("a", Range("a", 1, 5), 1).ok());
  EXPECT_EQ(*stores[1]->ContiguousSeq("a"), 5u);
  EXPECT_EQ(stores[2]->Changes(0, 100)->size(), 5u);
}

TEST_F(PgStoreTest, AFollowerPagingThreeReplicasDuringConcurrentPushesSeesEveryRecordOnce) {
  // Issue 13 item 3: sites push through different replicas (stores on one database), a
  // follower pages the feed from the replicas in turn while they do. With cursors taken before
  // commit, a page could pass a cursor whose transaction commits later, and that record would
  // never be seen; with the feed floors (pg_store.h) every record is seen exactly once.
  const std::string url = FreshDatabase();
  std::vector<std::unique_ptr<PgHubStore>> replicas;
  for (int i = 0; i < 3; ++i) replicas.push_back(Open(url));
  for (const auto& r : replicas) ASSERT_NE(r, nullptr);
  // A slow commit, as an fsync stall would make it: a deferred trigger (run at COMMIT, after
  // the cursors were taken) sleeps in every second batch. Without the feed floors the other
  // replicas commit higher cursors meanwhile and the follower pages past the sleeper's
  // (checked: with the floors ignored by the reader the test failed 4 runs of 5).
  const std::string db = url.substr(url.rfind('/') + 1);
  ASSERT_EQ(freshsync::testing::SharedPostgres().Query(db, R"sql(
CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN IF NEW.seq % 40 = 1 THEN PERFORM pg_sleep(0.03); END IF; RETURN NULL; END $$;
CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON changes DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION slow_commit();
SELECT 'ok';)sql"),
            "ok");
  constexpr int kSites = 6, kBatches = 30, kPerBatch = 20;
  std::atomic<int> pushing{kSites};
  std::vector<std::thread> pushers;
  for (int t = 0; t < kSites; ++t) {
    pushers.emplace_back([&, t] {
      const std::string site = "s" + std::to_string(t);
      for (int b = 0; b < kBatches; ++b) {
        const uint64_t first = static_cast<uint64_t>(b * kPerBatch + 1);
        // Each batch through another replica than the last, as a site behind a load balancer.
        auto& replica = *replicas[static_cast<size_t>(t + b) % replicas.size()];
        auto r = replica.ApplyBatch(site, Range(site, first, first + kPerBatch - 1), 0);
        EXPECT_TRUE(r.ok()) << r.status().ToString();
      }
      --pushing;
    });
  }
  std::map<std::pair<std::string, uint64_t>, int> seen;
  uint64_t cursor = 0;
  size_t turn = 0;
  auto page = [&] {
    auto p = replicas[turn++ % replicas.size()]->Changes(cursor, 37);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    if (!p.ok()) return size_t{0};
    for (const auto& e : *p) {
      EXPECT_GT(e.cursor, cursor);
      cursor = e.cursor;
      ++seen[{e.site, e.record.seq()}];
    }
    return p->size();
  };
  while (pushing > 0) page();
  for (auto& t : pushers) t.join();
  while (page() > 0) {
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kSites * kBatches * kPerBatch));
  for (const auto& [key, n] : seen) EXPECT_EQ(n, 1) << key.first << " seq " << key.second;
  for (int t = 0; t < kSites; ++t)
    EXPECT_EQ(*replicas[0]->ContiguousSeq("s" + std::to_string(t)), static_cast<uint64_t>(kBatches * kPerBatch));
}

TEST_F(PgStoreTest, ConcurrentResendsOfOneSiteThroughThreeReplicasApplyOnce) {
  // Apply by (site, seq) is serialised per site across replicas: the same batches pushed at
  // once through three replicas are held once, and no push fails.
  const std::string url = FreshDatabase();
  std::vector<std::unique_ptr<PgHubStore>> replicas;
  for (int i = 0; i < 3; ++i) replicas.push_back(Open(url));
  for (const auto& r : replicas) ASSERT_NE(r, nullptr);
  std::atomic<uint64_t> applied{0};
  std::vector<std::thread> threads;
  for (auto& replica : replicas) {
    threads.emplace_back([&, store = replica.get()] {
      for (uint64_t s = 1; s <= 200; s += 20) {
        auto r = store->ApplyBatch("a", Range("a", s, s + 19), 0);
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        // Each pusher's previous batch is held (by it or another), so never a gap.
        EXPECT_FALSE(r->gap);
        applied += r->applied;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(applied.load(), 200u);
  EXPECT_EQ(*replicas[1]->ContiguousSeq("a"), 200u);
  EXPECT_EQ(replicas[2]->Changes(0, 1000)->size(), 200u);
}

}  // namespace
}  // namespace freshsync::hub
