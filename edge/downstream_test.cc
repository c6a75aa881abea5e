// HQ's commands on a real SQLite edge store (edge/downstream.h): exactly once through repeats
// and restarts, the position through skipped kinds, FEFO reservation and refusal, cancel,
// catalog versions, fences and rules live and after a reopen; the conflict matrix of
// docs/conflicts.md "HQ and sites" (HQ commands and local messages in both orders); and the
// puller against an in-memory hub resuming from the store's position after a restart.
// Two connections, as in edged: `store_` is ingest's (with the site rules), `down_` the
// applier's own.
#include "edge/downstream.h"

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cloud-sync/downstream_puller.h"
#include "edge/site_rules.h"
#include "edge/store_test_support.h"
#include "freshsync.pb.h"
#include "tests/support/sync_fakes.h"

namespace freshsync::edge {
namespace {

v1::DownCommand OrderCmd(uint64_t seq, const std::string& id, std::vector<std::pair<std::string, int64_t>> lines) {
  v1::DownCommand c;
  c.set_down_seq(seq);
  c.set_kind(v1::DOWN_ORDER);
  c.set_command_id("order:" + id);
  c.set_issued_by("hq-writer");
  auto* o = c.mutable_order();
  o->set_order_id(id);
  for (const auto& [sku, qty] : lines) {
    auto* l = o->add_lines();
    l->set_sku(sku);
    l->set_qty(qty);
  }
  o->mutable_customer()->set_name("Ada Lovelace");
  o->mutable_customer()->set_phone("+44 20 7946 0000");
  return c;
}
v1::DownCommand CancelCmd(uint64_t seq, const std::string& id) {
  v1::DownCommand c;
  c.set_down_seq(seq);
  c.set_kind(v1::DOWN_CANCEL);
  c.set_command_id("cancel:" + id);
  c.mutable_cancel()->set_order_id(id);
  c.mutable_cancel()->set_reason("customer called");
  return c;
}
v1::DownCommand CatalogCmd(uint64_t seq, const std::string& sku, uint64_t version, const std::string& name) {
  v1::DownCommand c;
  c.set_down_seq(seq);
  c.set_kind(v1::DOWN_CATALOG);
  c.set_command_id("catalog:" + sku + ":" + std::to_string(version));
  auto* i = c.mutable_catalog();
  i->set_sku(sku);
  i->set_name(name);
  i->set_unit("kg");
  i->set_price_cents(249);
  i->set_temp_max_c(8);
  i->set_version(version);
  return c;
}
// A circle fence at (lat, lon) of radius_m.
std::string Circle(const std::string& name, double lat, double lon, double radius_m) {
  nlohmann::json f = {{"type", "Feature"},
                      {"properties", {{"name", name}, {"kind", "depot"}, {"radius_m", radius_m}}},
                      {"geometry", {{"type", "Point"}, {"coordinates", {lon, lat}}}}};
  return nlohmann::json{{"type", "FeatureCollection"}, {"features", {f}}}.dump();
}
v1::DownCommand FencesCmd(uint64_t seq, uint64_t version, const std::string& geojson) {
  v1::DownCommand c;
  c.set_down_seq(seq);
  c.set_kind(v1::DOWN_FENCES);
  c.set_command_id("fences:" + std::to_string(version));
  c.mutable_fences()->set_geojson(geojson);
  c.mutable_fences()->set_version(version);
  return c;
}
v1::DownCommand RulesCmd(uint64_t seq, uint64_t version, const std::string& glob, double min_c, double max_c) {
  v1::DownCommand c;
  c.set_down_seq(seq);
  c.set_kind(v1::DOWN_COLDCHAIN_RULES);
  c.set_command_id("coldchain-rules:" + std::to_string(version));
  auto* r = c.mutable_rules()->add_rules();
  r->set_sensors(glob);
  r->set_min_c(min_c);
  r->set_max_c(max_c);
  r->set_for_s(60);
  c.mutable_rules()->set_version(version);
  return c;
}
v1::DownBatch Batch(std::vector<v1::DownCommand> commands, uint64_t through = 0) {
  v1::DownBatch b;
  b.set_site("site-a");
  for (auto& c : commands) {
    through = std::max<uint64_t>(through, c.down_seq());
    *b.add_commands() = std::move(c);
  }
  b.set_through_seq(through);
  b.set_last_seq(through);
  return b;
}

class DownstreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (dir_ / "edge.db").string();
    config_.site = "site-a";
    config_.mqtt.topic_root = "fs";
    Open();
  }
  void TearDown() override {
    Close();
  }
  void Close() {
    applier_.reset();
    down_.reset();
    rules_.reset();
    store_.reset();
  }
  // Opens both connections, the site rules and the applier, as edged does at start.
  void Open() {
    Close();
    StoreOptions o;
    o.path = path_;
    o.clock = &clock_;
    Sealer::Key key{};
    key.fill(7);
    o.sealer = Sealer::FromKey(key);
    o.topic_root = "fs";
    auto s = EdgeStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    auto r = SiteRules::Create(config_);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    rules_ = std::move(*r);
    ASSERT_TRUE(rules_->Attach(*store_).ok());
    store_->SetApplyHook(rules_.get());
    auto d = EdgeStore::Open(o);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    down_ = std::move(*d);
    applier_ = std::make_unique<DownstreamApplier>(
        *down_, rules_.get(), [this](std::vector<Publication> p) { pubs_.insert(pubs_.end(), p.begin(), p.end()); }, clock_);
  }
  uint64_t Apply(const v1::DownBatch& b) {
    auto r = applier_->Apply(b);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : 0;
  }
  int64_t Int(const std::string& sql) { return test_support::QueryInt(store_->db_for_test(), sql); }
  std::string Text(const std::string& sql) { return test_support::QueryBytes(store_->db_for_test(), sql); }
  // The ORDER change records of an order, oldest first, with their hlc.
  std::vector<std::pair<v1::OrderState, int64_t>> OrderRecords(const std::string& id) {
    std::vector<std::pair<v1::OrderState, int64_t>> out;
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(store_->db_for_test(), "SELECT record, hlc FROM outbox WHERE entity = ?1 AND key = ?2 ORDER BY seq", -1, &st,
                       nullptr);
    sqlite3_bind_int(st, 1, v1::ORDER);
    sqlite3_bind_text(st, 2, id.c_str(), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW) {
      v1::ChangeRecord rec;
      rec.ParseFromArray(sqlite3_column_blob(st, 0), sqlite3_column_bytes(st, 0));
      out.push_back({rec.order(), sqlite3_column_int64(st, 1)});
    }
    sqlite3_finalize(st);
    return out;
  }
  void Receive(const std::string& id, const std::string& sku, int64_t qty, const std::string& lot = "", const std::string& expiry = "") {
    auto r = store_->Apply(StockMovement{id, sku, qty, "receive", "", lot, clock_.now, expiry}, clock_.now);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  // A local order status message, as ingest applies it. Returns the store's answer.
  Result<EdgeStore::Outcome> Local(const std::string& id, const std::string& status, int64_t qty = 2) {
    OrderStatus o;
    o.order_id = id;
    o.status = status;
    o.ts_ms = ++clock_.now;
    if (status == "created") o.lines = {{"apple", qty}};
    return store_->Apply(o, clock_.now);
  }
  std::string StatusOf(const std::string& id) { return Text("SELECT status FROM orders WHERE order_id = '" + id + "'"); }
  int64_t Reserved(const std::string& sku) { return Int("SELECT IFNULL((SELECT reserved FROM stock WHERE sku = '" + sku + "'), 0)"); }
  const Publication* Pub(const std::string& topic) {
    for (auto it = pubs_.rbegin(); it != pubs_.rend(); ++it)
      if (it->topic == topic) return &*it;
    return nullptr;
  }

  test_support::TestDir test_dir_{"edge-downstream-test"};
  const std::filesystem::path& dir_ = test_dir_.path();
  std::string path_;
  test_support::HandClock clock_;
  EdgeConfig config_;
  std::unique_ptr<EdgeStore> store_;
  std::unique_ptr<SiteRules> rules_;
  std::unique_ptr<EdgeStore> down_;
  std::unique_ptr<DownstreamApplier> applier_;
  std::vector<Publication> pubs_;
};

TEST_F(DownstreamTest, SameBatchTwiceAndAfterARestartTakesEffectOnce) {
  Receive("r1", "apple", 10);
  const auto batch = Batch({OrderCmd(1, "hq-1", {{"apple", 3}}), CatalogCmd(2, "apple", 1, "Apple")});
  EXPECT_EQ(Apply(batch), 2u);
  EXPECT_EQ(Apply(batch), 2u);  // the hub sent it again (its answer was lost)
  // A crash between the commit and the next pull's acknowledgement: the hub sends the batch
  // again to a fresh process.
  Open();
  EXPECT_EQ(*applier_->AppliedSeq(), 2u);
  EXPECT_EQ(Apply(batch), 2u);
  // A hub restored from an older backup re-issues HQ's retried call under a new down_seq: the
  // dedupe row by command_id makes it a no-op that only moves the position.
  auto again = OrderCmd(3, "hq-1", {{"apple", 3}});
  EXPECT_EQ(Apply(Batch({again})), 3u);

  EXPECT_EQ(Reserved("apple"), 3);
  EXPECT_EQ(Int("SELECT count(*) FROM orders"), 1);
  EXPECT_EQ(OrderRecords("hq-1").size(), 1u);
  EXPECT_EQ(Int("SELECT count(*) FROM down_applied"), 2);
  EXPECT_EQ(Int("SELECT value FROM sync_state WHERE name = 'down_applied_seq'"), 3);
  EXPECT_EQ(Int("SELECT count(*) FROM catalog"), 1);
  EXPECT_EQ(applier_->counters().skipped.load(), 3);  // since the reopen: the batch again, and the re-issued order
}

// A batch is one transaction, each command under its own savepoint: a command failing half-way
// (here the order row's write, after its reservation) rolls back alone; what applied before it
// commits, and the outbox's seq stays dense across the rolled-back records.
TEST_F(DownstreamTest, FailingCommandInABatchRollsBackAloneAndTheRestCommitsOnce) {
  Receive("r1", "apple", 10);
  ASSERT_EQ(sqlite3_exec(store_->db_for_test(),
                         "CREATE TRIGGER fail_bad BEFORE INSERT ON orders WHEN NEW.order_id = 'hq-bad' "
                         "BEGIN SELECT RAISE(ABORT, 'disk gone'); END",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  const auto batch = Batch({OrderCmd(1, "hq-1", {{"apple", 2}}), OrderCmd(2, "hq-bad", {{"apple", 3}}),
                            OrderCmd(3, "hq-3", {{"apple", 1}}), CatalogCmd(4, "apple", 1, "Apple")});
  auto r = applier_->Apply(batch);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(*applier_->AppliedSeq(), 1u);
  EXPECT_EQ(Reserved("apple"), 2);  // hq-bad's reservation rolled back with it
  EXPECT_EQ(Int("SELECT count(*) FROM down_applied"), 1);
  EXPECT_EQ(StatusOf("hq-1"), "accepted");
  EXPECT_EQ(Pub("fs/orders/hq-bad/state"), nullptr);
  EXPECT_NE(Pub("fs/orders/hq-1/state"), nullptr);
  ASSERT_TRUE(Local("local-1", "created", 1).ok());  // ingest's connection appends next

  ASSERT_EQ(sqlite3_exec(store_->db_for_test(), "DROP TRIGGER fail_bad", nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_EQ(Apply(batch), 4u);  // the hub sends the batch again: hq-1 only moves the position
  EXPECT_EQ(Reserved("apple"), 2 + 3 + 1 + 1);
  EXPECT_EQ(OrderRecords("hq-1").size(), 1u);
  EXPECT_EQ(OrderRecords("hq-bad").size(), 1u);
  EXPECT_EQ(Int("SELECT count(*) FROM down_applied"), 4);
  EXPECT_EQ(Int("SELECT max(seq) - min(seq) + 1 - count(*) FROM outbox"), 0);  // dense
  EXPECT_EQ(applier_->counters().skipped.load(), 1);
}

TEST_F(DownstreamTest, PositionMovesPastSkippedKindsByThroughSeq) {
  EXPECT_EQ(Apply(Batch({}, 7)), 7u);  // seven commands of kinds this site did not ask for
  EXPECT_EQ(Apply(Batch({CatalogCmd(9, "pear", 1, "Pear")}, 12)), 12u);
  EXPECT_EQ(Apply(Batch({}, 5)), 12u);  // never down
  Open();
  EXPECT_EQ(*applier_->AppliedSeq(), 12u);
  // A command at or below the position is not applied again, even with a new command id.
  EXPECT_EQ(Apply(Batch({CatalogCmd(9, "plum", 1, "Plum")})), 12u);
  EXPECT_EQ(Int("SELECT count(*) FROM catalog WHERE sku = 'plum'"), 0);
}

TEST_F(DownstreamTest, HqOrderReservesFefoOrIsRefusedNamingTheSku) {
  Receive("r1", "apple", 5, "late", "2027-03-01");
  Receive("r2", "apple", 5, "early", "2027-01-01");
  EXPECT_EQ(Apply(Batch({OrderCmd(1, "hq-1", {{"apple", 6}})})), 1u);
  EXPECT_EQ(StatusOf("hq-1"), "accepted");
  EXPECT_EQ(Text("SELECT actor FROM orders WHERE order_id = 'hq-1'"), "hq");
  EXPECT_EQ(Int("SELECT qty FROM reservations WHERE order_id = 'hq-1' AND lot = 'early'"), 5);
  EXPECT_EQ(Int("SELECT qty FROM reservations WHERE order_id = 'hq-1' AND lot = 'late'"), 1);
  // Sealed like a local order's customer: never in clear.
  const std::string sealed = Text("SELECT customer_sealed FROM orders WHERE order_id = 'hq-1'");
  EXPECT_FALSE(sealed.empty());
  EXPECT_EQ(sealed.find("Ada"), std::string::npos);
  auto recs = OrderRecords("hq-1");
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].first.status(), "accepted");
  EXPECT_EQ(recs[0].first.down_seq(), 1u);
  EXPECT_EQ(recs[0].first.lines_size(), 1);
  EXPECT_EQ(recs[0].first.customer_sealed(), sealed);
  const Publication* p = Pub("fs/orders/hq-1/state");
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->retained);
  EXPECT_EQ(nlohmann::json::parse(p->payload)["status"], "accepted");

  // Four left free: all or nothing, the pear line too.
  Receive("r3", "pear", 10);
  EXPECT_EQ(Apply(Batch({OrderCmd(2, "hq-2", {{"pear", 2}, {"apple", 5}})})), 2u);
  EXPECT_EQ(StatusOf("hq-2"), "refused");
  EXPECT_EQ(Reserved("apple"), 6);
  EXPECT_EQ(Reserved("pear"), 0);
  recs = OrderRecords("hq-2");
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].first.status(), "refused");
  EXPECT_NE(recs[0].first.reason().find("apple"), std::string::npos) << recs[0].first.reason();
  EXPECT_EQ(recs[0].first.down_seq(), 2u);
  EXPECT_EQ(Int("SELECT count(*) FROM dead_letters"), 0);  // HQ must see it: a record, not a dead letter
  p = Pub("fs/orders/hq-2/state");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(nlohmann::json::parse(p->payload)["status"], "refused");
  EXPECT_EQ(applier_->counters().refused_by_kind[v1::DOWN_ORDER].load(), 1);
  EXPECT_EQ(applier_->counters().applied_by_kind[v1::DOWN_ORDER].load(), 1);
}

TEST_F(DownstreamTest, HqCancelReleasesTheReservation) {
  Receive("r1", "apple", 10);
  Apply(Batch({OrderCmd(1, "hq-1", {{"apple", 4}})}));
  EXPECT_EQ(Reserved("apple"), 4);
  Apply(Batch({CancelCmd(2, "hq-1")}));
  EXPECT_EQ(StatusOf("hq-1"), "cancelled");
  EXPECT_EQ(Reserved("apple"), 0);
  EXPECT_EQ(Int("SELECT on_hand FROM stock WHERE sku = 'apple'"), 10);
  auto recs = OrderRecords("hq-1");
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(recs[1].first.status(), "cancelled");
  EXPECT_EQ(recs[1].first.down_seq(), 2u);
  EXPECT_EQ(nlohmann::json::parse(Pub("fs/orders/hq-1/state")->payload)["status"], "cancelled");
}

TEST_F(DownstreamTest, CatalogVersionsDecideAndItemsArePublishedRetained) {
  Apply(Batch({CatalogCmd(1, "apple", 2, "Apple v2"), CatalogCmd(2, "apple", 1, "Apple v1")}));
  EXPECT_EQ(Text("SELECT name FROM catalog WHERE sku = 'apple'"), "Apple v2");
  EXPECT_EQ(Int("SELECT version FROM catalog WHERE sku = 'apple'"), 2);
  EXPECT_EQ(Int("SELECT price_cents FROM catalog WHERE sku = 'apple'"), 249);
  EXPECT_EQ(Int("SELECT temp_min_c IS NULL AND temp_max_c = 8 AND shelf_life_h IS NULL FROM catalog WHERE sku = 'apple'"), 1);
  ASSERT_EQ(pubs_.size(), 1u);  // the older version published nothing
  EXPECT_EQ(pubs_[0].topic, "fs/catalog/apple");
  EXPECT_TRUE(pubs_[0].retained);
  const auto j = nlohmann::json::parse(pubs_[0].payload);
  EXPECT_EQ(j["name"], "Apple v2");
  EXPECT_EQ(j["version"], 2);
  EXPECT_FALSE(j.contains("temp_min_c"));
  Apply(Batch({CatalogCmd(3, "apple", 3, "Apple v3")}));
  EXPECT_EQ(Text("SELECT name FROM catalog WHERE sku = 'apple'"), "Apple v3");
  EXPECT_EQ(Int("SELECT count(*) FROM outbox"), 0);  // HQ owns the catalog: nothing goes back up
}

TEST_F(DownstreamTest, FencesAndRulesTakeEffectLiveCombineWithTheFileAndSurviveReopen) {
  // The file: "depot" (100 m) and "yard". HQ: "depot" (500 m, replaces the file's) and "hq-dc".
  const std::string file = (dir_ / "fences.geojson").string();
  {
    auto a = nlohmann::json::parse(Circle("depot", 52.0, 4.0, 100));
    a["features"].push_back(nlohmann::json::parse(Circle("yard", 52.1, 4.1, 50))["features"][0]);
    std::ofstream(file) << a.dump();
  }
  config_.geofence_file = file;
  config_.coldchain_rules = {{"*", 0, 10, 300}};
  Open();
  ASSERT_EQ(rules_->fence_count(), 2u);
  auto hq = nlohmann::json::parse(Circle("depot", 52.0, 4.0, 500));
  hq["features"].push_back(nlohmann::json::parse(Circle("hq-dc", 52.2, 4.2, 200))["features"][0]);
  Apply(Batch({FencesCmd(1, 2, hq.dump()), RulesCmd(2, 1, "hq-*", -25, -18)}));
  // Adopted by the store's thread at its next GPS fix, as a SIGHUP reload is.
  ASSERT_TRUE(store_->Apply(GpsFix{"truck-1", 1, 52.5, 4.5, clock_.now, std::nullopt, std::nullopt, 1.0}, clock_.now).ok());
  auto check = [&] {
    ASSERT_NE(rules_->geofence(), nullptr);
    const auto& fences = rules_->geofence()->fences();
    EXPECT_EQ(fences.size(), 3u);
    ASSERT_GE(fences.Find("depot"), 0);
    EXPECT_DOUBLE_EQ(fences.fence(static_cast<size_t>(fences.Find("depot"))).radius_m, 500);  // HQ's wins
    EXPECT_GE(fences.Find("yard"), 0);
    EXPECT_GE(fences.Find("hq-dc"), 0);
    const ColdchainRule* rule = rules_->coldchain().RuleFor("hq-freezer");
    ASSERT_NE(rule, nullptr);
    EXPECT_DOUBLE_EQ(rule->max_c, -18);  // HQ's first
    ASSERT_NE(rules_->coldchain().RuleFor("chiller-1"), nullptr);
    EXPECT_DOUBLE_EQ(rules_->coldchain().RuleFor("chiller-1")->max_c, 10);  // the file's still apply
  };
  check();
  // An older set changes nothing; a set that does not parse is refused, the running one stays.
  Apply(Batch({FencesCmd(3, 1, Circle("old", 1, 1, 10)), FencesCmd(4, 3, "{\"type\": \"nope\"}")}));
  EXPECT_EQ(applier_->counters().refused_by_kind[v1::DOWN_FENCES].load(), 1);
  EXPECT_EQ(Int("SELECT version FROM hq_rule_sets WHERE kind = 'fences'"), 2);
  ASSERT_TRUE(store_->Apply(GpsFix{"truck-1", 2, 52.5, 4.5, clock_.now + 1000, std::nullopt, std::nullopt, 1.0}, clock_.now).ok());
  check();
  // A restart loads HQ's stored sets before any message.
  Open();
  check();
  // And a SIGHUP keeps them combined with the (re)loaded file.
  ASSERT_TRUE(rules_->Reload(config_).ok());
  ASSERT_TRUE(store_->Apply(GpsFix{"truck-1", 3, 52.5, 4.5, clock_.now + 2000, std::nullopt, std::nullopt, 1.0}, clock_.now).ok());
  check();
}

// docs/conflicts.md, "HQ and sites": each row applies HQ's commands and the site's own order
// messages in the order given, then checks what the site holds and what goes up to HQ.
struct Step {
  char who;            // 'L': a local order message (status); 'O': HQ order; 'C': HQ cancel
  const char* status;  // L only
  bool accepted;       // L only: the store takes it (false: refused into the dead letters)
};
struct ConflictCase {
  const char* name;
  std::vector<Step> steps;
  const char* final_status;
  int64_t reserved;
  const char* last_reason;  // of the newest ORDER record ("" none)
};

TEST_F(DownstreamTest, ConflictMatrixHqAndSite) {
  const std::vector<ConflictCase> cases = {
      {"hq cancels a dispatched order: the site wins and HQ sees the refusal",
       {{'L', "created", true}, {'L', "accepted", true}, {'L', "picking", true}, {'L', "packed", true}, {'L', "dispatched", true},
        {'C', "", true}},
       "dispatched", 0, "cancel refused: already dispatched"},
      {"hq cancels a delivered order",
       {{'O', "", true}, {'L', "picking", true}, {'L', "packed", true}, {'L', "dispatched", true}, {'L', "delivered", true},
        {'C', "", true}},
       "delivered", 0, "cancel refused: already delivered"},
      {"hq cancel before the site dispatches: cancelled, the late dispatch is refused",
       {{'L', "created", true}, {'L', "accepted", true}, {'L', "picking", true}, {'C', "", true}, {'L', "dispatched", false}},
       "cancelled", 0, ""},
      {"hq order, then the site works it, then hq cancels while picking",
       {{'O', "", true}, {'L', "picking", true}, {'C', "", true}}, "cancelled", 0, ""},
      {"the site created the id first: no second reservation, HQ hears why",
       {{'L', "created", true}, {'O', "", true}}, "created", 2, "order id exists at site"},
      {"hq created the id first: the site's own created is refused",
       {{'O', "", true}, {'L', "created", false}}, "accepted", 2, ""},
      {"the site cancels an hq order, then hq's cancel comes",
       {{'O', "", true}, {'L', "cancelled", true}, {'C', "", true}}, "cancelled", 0, "cancel refused: already cancelled"},
  };
  int n = 0;
  for (const auto& tc : cases) {
    SCOPED_TRACE(tc.name);
    const std::string id = "ord-" + std::to_string(++n);
    Receive("rcv-" + id, "apple", 2);
    uint64_t seq = *applier_->AppliedSeq();
    for (const auto& st : tc.steps) {
      if (st.who == 'L') {
        auto r = Local(id, st.status);
        ASSERT_TRUE(r.ok() || r.status().code() == StatusCode::kConflict) << r.status().ToString();
        EXPECT_EQ(r.ok(), st.accepted) << st.status;
      } else {
        ++clock_.now;
        Apply(Batch({st.who == 'O' ? OrderCmd(++seq, id, {{"apple", 2}}) : CancelCmd(++seq, id)}));
      }
    }
    EXPECT_EQ(StatusOf(id), tc.final_status);
    EXPECT_EQ(Int("SELECT IFNULL(SUM(qty), 0) FROM reservations WHERE order_id = '" + id + "'"), tc.reserved);
    const auto recs = OrderRecords(id);
    ASSERT_FALSE(recs.empty());
    EXPECT_EQ(recs.back().first.status(), tc.final_status);  // what goes up is the site's state
    EXPECT_EQ(recs.back().first.reason(), tc.last_reason);
    // The hub keeps the record with the highest (rank, hlc) (docs/conflicts.md): the newest
    // record carries the site's status at the highest HLC, so HQ ends on the site's state.
    for (size_t i = 0; i + 1 < recs.size(); ++i) EXPECT_LT(recs[i].second, recs.back().second);
    // Reserved stock never exceeds what is on hand.
    EXPECT_LE(Reserved("apple"), Int("SELECT on_hand FROM stock WHERE sku = 'apple'"));
  }
}

// The two writers of edged at once: ingest's connection applying stock movements and orders
// while the applier's connection applies HQ orders. SQLite's write lock makes them take turns,
// each connection's outbox writer reads the next seq and the newest HLC inside its
// transaction: the outbox stays dense with HLC rising in seq order, and reservations never
// exceed stock.
TEST_F(DownstreamTest, IngestAndHqCommandsOnTwoConnectionsKeepOneOutboxOrder) {
  Receive("r0", "apple", 50);
  constexpr int kN = 150;
  std::thread local([&] {
    for (int i = 0; i < kN; ++i) {
      const int64_t ts = clock_.now + i;
      ASSERT_TRUE(store_->Apply(StockMovement{"mv-" + std::to_string(i), "apple", 1, "receive", "", "", ts, ""}, ts).ok());
      OrderStatus o{"local-" + std::to_string(i), "created", ts, "", {{"apple", 1}}, std::nullopt};
      ASSERT_TRUE(store_->Apply(o, ts).ok());
    }
  });
  for (int i = 0; i < kN; ++i) Apply(Batch({OrderCmd(static_cast<uint64_t>(i + 1), "hq-" + std::to_string(i), {{"apple", 1}})}));
  local.join();
  EXPECT_EQ(*applier_->AppliedSeq(), static_cast<uint64_t>(kN));
  EXPECT_EQ(Int("SELECT count(*) FROM outbox"), Int("SELECT max(seq) FROM outbox"));  // dense from 1
  EXPECT_EQ(Int("SELECT count(*) FROM outbox a JOIN outbox b ON b.seq = a.seq + 1 WHERE b.hlc <= a.hlc"), 0);
  EXPECT_EQ(Int("SELECT count(*) FROM orders WHERE order_id LIKE 'hq-%'"), kN);
  EXPECT_LE(Reserved("apple"), Int("SELECT on_hand FROM stock WHERE sku = 'apple'"));
  EXPECT_EQ(Reserved("apple"), Int("SELECT count(*) FROM orders WHERE status IN ('created', 'accepted')"));
}

// The puller (its own thread) against an in-memory hub, applying through the real store;
// after a restart it resumes from the store's position, which is also the hub's ack.
TEST_F(DownstreamTest, PullerResumesFromTheAppliedSeqAfterARestart) {
  Receive("r1", "apple", 10);
  config_.hub = HubLinkConfig{};
  config_.hub->url = "https://hub.test";
  config_.hub->backoff_initial_ms = 1;
  config_.hub->backoff_max_ms = 5;
  config_.downstream.wait_ms = 0;
  auto hub_owned = std::make_unique<testing::FakeDownstreamHub>();
  auto* hub = hub_owned.get();
  hub->Append(OrderCmd(0, "hq-1", {{"apple", 2}}));
  hub->Append(FencesCmd(0, 1, Circle("hq-dc", 52.2, 4.2, 200)));  // not asked for below
  hub->Append(CatalogCmd(0, "apple", 1, "Apple"));
  config_.downstream.kinds = {"order", "cancel", "catalog"};
  std::vector<v1::DownCommand> log;
  {
    sync::DownstreamPuller puller(config_, *applier_, clock_, std::move(hub_owned));
    EXPECT_EQ(puller.StepForTest(), 0);
    EXPECT_EQ(puller.GetStats().applied_seq, 3u);
    EXPECT_TRUE(puller.GetStats().link_up);
    EXPECT_NE(hub->urls.back().find("kinds=order,cancel,catalog"), std::string::npos) << hub->urls.back();
    log = hub->log;
  }
  EXPECT_EQ(Int("SELECT count(*) FROM hq_rule_sets"), 0);  // the fences were skipped, the position moved past
  Open();
  auto hub2_owned = std::make_unique<testing::FakeDownstreamHub>();
  auto* hub2 = hub2_owned.get();
  hub2->log = log;
  hub2->Append(CancelCmd(0, "hq-1"));
  sync::DownstreamPuller puller(config_, *applier_, clock_, std::move(hub2_owned));
  EXPECT_EQ(puller.StepForTest(), 0);
  ASSERT_FALSE(hub2->acks.empty());
  EXPECT_EQ(hub2->acks.front(), 3u);  // resumed from the store, not from 0
  EXPECT_EQ(puller.GetStats().applied_seq, 4u);
  EXPECT_EQ(StatusOf("hq-1"), "cancelled");
  EXPECT_EQ(Reserved("apple"), 0);
  EXPECT_EQ(OrderRecords("hq-1").size(), 2u);
}

}  // namespace
}  // namespace freshsync::edge
