// A site store seeded from the hub's snapshot (edge/rebuild.h) on a real SQLite store: stock
// through the ledger (lots, FEFO reservations, the hub's versions), the seq continuing above
// the hub's floor, the dedupe of redelivered messages and re-pulled HQ commands, the
// downstream position, the refusals (a store with data, a running edged) and --force.
#include "edge/rebuild.h"

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "edge/admin.h"
#include "edge/store.h"
#include "edge/store_test_support.h"
#include "freshsync.pb.h"

namespace freshsync::edge {
namespace {

// The hub's answer for site-a: 10 apples in two lots, 4 reserved by the open HQ order o1
// (down_seq 3), a refused HQ order o3 (down_seq 5), the dead edge had acknowledged down_seq 6.
v1::RebuildSnapshot Snapshot() {
  v1::RebuildSnapshot s;
  s.set_site("site-a");
  s.set_seq_floor(40);
  s.set_max_seq(40);
  auto* st = s.add_stock();
  st->set_sku("apple");
  st->set_on_hand(10);
  st->set_reserved(4);
  st->set_version(6);
  auto lot = [&](const std::string& name, int64_t qty, const std::string& expiry) {
    auto* l = s.add_lots();
    l->set_sku("apple");
    l->set_lot(name);
    l->set_on_hand(qty);
    l->set_expiry(expiry);
  };
  lot("L2", 7, "2026-12-20");
  lot("L1", 3, "2026-12-10");
  auto* r = s.add_reservations();
  r->set_order_id("o1");
  r->set_sku("apple");
  r->set_qty(4);
  auto order = [&](const std::string& id, const std::string& status, uint64_t down_seq, bool open) {
    auto* o = s.add_orders();
    o->mutable_order()->set_order_id(id);
    o->mutable_order()->set_status(status);
    o->mutable_order()->set_actor("hq");
    o->mutable_order()->set_down_seq(down_seq);
    auto* l = o->mutable_order()->add_lines();
    l->set_sku("apple");
    l->set_qty(4);
    o->set_version(1);
    o->set_created_ts_ms(1767225000000);
    o->set_updated_ts_ms(1767225000000);
    o->set_open(open);
  };
  order("o1", "created", 3, true);
  order("o3", "refused", 5, false);
  auto* c = s.add_catalog();
  c->set_sku("apple");
  c->set_name("Apple");
  c->set_unit("kg");
  c->set_price_cents(199);
  c->set_version(2);
  s.mutable_fences()->set_version(2);
  s.mutable_fences()->set_geojson(R"({"type":"FeatureCollection","features":[]})");
  s.set_delivered_seq(6);
  s.set_down_last_seq(7);
  s.set_records_down_seq(5);
  auto version = [&](v1::Entity e, const std::string& key, uint64_t v) {
    auto* x = s.add_versions();
    x->set_entity(e);
    x->set_key(key);
    x->set_version(v);
  };
  version(v1::STOCK, "apple", 6);
  version(v1::ORDER, "o1", 1);
  version(v1::ORDER, "o3", 1);
  s.add_movement_ids("m1");
  s.add_order_status_keys("o1#created");
  s.set_max_hlc(uint64_t{1767225500000} << 16);
  return s;
}

v1::DownCommand OrderCmd(uint64_t seq, const std::string& id, int64_t qty) {
  v1::DownCommand c;
  c.set_down_seq(seq);
  c.set_kind(v1::DOWN_ORDER);
  c.set_command_id("order:" + id);
  c.mutable_order()->set_order_id(id);
  auto* l = c.mutable_order()->add_lines();
  l->set_sku("apple");
  l->set_qty(qty);
  return c;
}

class RebuildTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (dir_ / "edge.db").string();
  }
  void TearDown() override {
    store_.reset();
  }
  void OpenStore() {
    StoreOptions o;
    o.path = path_;
    o.clock = &clock_;
    auto s = EdgeStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }
  int64_t Int(const std::string& sql) { return test_support::QueryInt(store_->db_for_test(), sql); }
  v1::ChangeRecord LastRecord() {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(store_->db_for_test(), "SELECT record FROM outbox ORDER BY seq DESC LIMIT 1", -1, &st, nullptr);
    v1::ChangeRecord rec;
    if (sqlite3_step(st) == SQLITE_ROW) rec.ParseFromArray(sqlite3_column_blob(st, 0), sqlite3_column_bytes(st, 0));
    sqlite3_finalize(st);
    return rec;
  }

  test_support::TestDir test_dir_{"edge-rebuild-test"};
  const std::filesystem::path& dir_ = test_dir_.path();
  std::string path_;
  test_support::HandClock clock_;
  std::unique_ptr<EdgeStore> store_;
};

TEST_F(RebuildTest, SeedsStockOrdersAndPositionsAndTheStoreCarriesOn) {
  auto r = SeedStoreFromSnapshot(path_, Snapshot(), false, clock_.now);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->warnings.size() == 1u) << "only the re-pulled commands 6..6: " << r->warnings.size();
  EXPECT_EQ(r->seq_floor, 40u);
  EXPECT_EQ(r->down_applied_seq, 5u);
  EXPECT_EQ(r->skus, 1u);
  EXPECT_EQ(r->lots, 2u);
  EXPECT_EQ(r->open_orders, 1u);
  EXPECT_EQ(r->reservations, 1u);
  std::vector<std::string> findings;
  ASSERT_TRUE(VerifyStore(path_, &findings).ok());
  EXPECT_TRUE(findings.empty()) << findings.front();

  OpenStore();
  // Stock as the hub has it, with its version; o1's 4 reserved FEFO: 3 from L1, 1 from L2.
  EXPECT_EQ(Int("SELECT on_hand FROM stock WHERE sku = 'apple'"), 10);
  EXPECT_EQ(Int("SELECT reserved FROM stock WHERE sku = 'apple'"), 4);
  EXPECT_EQ(Int("SELECT version FROM stock WHERE sku = 'apple'"), 6);
  EXPECT_EQ(Int("SELECT reserved FROM stock_lots WHERE lot = 'L1'"), 3);
  EXPECT_EQ(Int("SELECT reserved FROM stock_lots WHERE lot = 'L2'"), 1);
  EXPECT_EQ(Int("SELECT count(*) FROM orders"), 1);  // o3 is final: not seeded, but its command is marked
  EXPECT_EQ(Int("SELECT down_seq FROM orders WHERE order_id = 'o1'"), 3);
  EXPECT_EQ(Int("SELECT count(*) FROM outbox"), 0);  // the hub has every record already
  EXPECT_EQ(Int("SELECT version FROM catalog WHERE sku = 'apple'"), 2);
  EXPECT_EQ(Int("SELECT version FROM hq_rule_sets WHERE kind = 'fences'"), 2);
  EXPECT_EQ(*store_->DownAppliedSeq(), 5u);
  EXPECT_GT(Int("SELECT value FROM edge_meta WHERE name = 'rebuilt_from_hub_ms'"), 0);

  // A movement the broker redelivers after the crash: no second effect.
  StockMovement again{"m1", "apple", 7, "receive", "", "L2", std::nullopt, ""};
  auto dup = store_->Apply(Message(again), clock_.now);
  ASSERT_TRUE(dup.ok());
  EXPECT_EQ(*dup, EdgeStore::Outcome::kDuplicate);
  // A new one: the next seq is the hub's floor + 1, the next version the hub's + 1.
  StockMovement fresh{"m9", "apple", -2, "pick", "", "", std::nullopt, ""};
  auto applied = store_->Apply(Message(fresh), clock_.now);
  ASSERT_TRUE(applied.ok()) << applied.status().ToString();
  EXPECT_EQ(*applied, EdgeStore::Outcome::kApplied);
  v1::ChangeRecord rec = LastRecord();
  EXPECT_EQ(rec.seq(), 41u);
  EXPECT_EQ(rec.version(), 7u);
  EXPECT_GT(rec.hlc(), uint64_t{1767225500000} << 16);
  EXPECT_EQ(rec.stock().on_hand(), 8);

  // HQ's commands pulled again from down_seq 6: o1 (its effect reached the hub) and o3 (refused
  // there) change nothing; o7, acknowledged by the dead edge but lost with it, takes effect now.
  v1::DownCommand o1 = OrderCmd(3, "o1", 4), o3 = OrderCmd(5, "o3", 4), o7 = OrderCmd(6, "o7", 2);
  auto res = store_->ApplyDownCommands({{&o1, ""}, {&o3, ""}, {&o7, ""}}, 6, clock_.now);
  ASSERT_TRUE(res.status.ok()) << res.status.ToString();
  EXPECT_EQ(Int("SELECT count(*) FROM orders"), 2);
  EXPECT_EQ(Int("SELECT count(*) FROM orders WHERE order_id = 'o3'"), 0);
  EXPECT_EQ(Int("SELECT reserved FROM stock WHERE sku = 'apple'"), 6);
  EXPECT_EQ(*store_->DownAppliedSeq(), 6u);
  std::vector<std::string> after;
  store_.reset();
  ASSERT_TRUE(VerifyStore(path_, &after).ok());
  EXPECT_TRUE(after.empty()) << after.front();
}

TEST_F(RebuildTest, RefusesAStoreWithDataUnlessForcedAndWhileEdgedRuns) {
  ASSERT_TRUE(SeedStoreFromSnapshot(path_, Snapshot(), false, clock_.now).ok());
  auto again = SeedStoreFromSnapshot(path_, Snapshot(), false, clock_.now);
  EXPECT_EQ(again.status().code(), StatusCode::kConflict);
  {
    auto lock = StoreLock::Acquire(path_);  // as edged holds it
    ASSERT_TRUE(lock.ok());
    EXPECT_EQ(SeedStoreFromSnapshot(path_, Snapshot(), true, clock_.now).status().code(), StatusCode::kConflict);
  }
  auto forced = SeedStoreFromSnapshot(path_, Snapshot(), true, clock_.now);
  ASSERT_TRUE(forced.ok()) << forced.status().ToString();
  EXPECT_EQ(forced->set_aside, path_ + ".pre-rebuild");
  EXPECT_TRUE(std::filesystem::exists(path_ + ".pre-rebuild"));
  // An empty file (a fresh disk's leftover) is no data: seeded without --force.
  std::filesystem::remove(path_);
  std::filesystem::remove(path_ + "-wal");
  std::filesystem::remove(path_ + "-shm");
  { std::ofstream touch(path_); }
  EXPECT_TRUE(SeedStoreFromSnapshot(path_, Snapshot(), false, clock_.now).ok());
}

}  // namespace
}  // namespace freshsync::edge
