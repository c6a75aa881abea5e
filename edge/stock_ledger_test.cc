// StockLedger: FEFO reservation and picking, all-or-nothing orders, and a randomized test of
// the invariants (on hand >= 0, reserved <= on hand, per SKU and per lot) over random
// interleavings of movements, orders, picks for orders, cancels, redeliveries, rolled-back
// commits and crashes (close without commit, reopen), against a model of committed effects.
#include "edge/stock_ledger.h"

#include <sqlite3.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <random>

#include <gtest/gtest.h>

namespace freshsync::edge {
namespace {

// The stock table as store schema v1-v3 define it, then the ledger's migration.
constexpr char kBaseSchema[] = R"sql(
CREATE TABLE stock(
  sku        TEXT PRIMARY KEY,
  on_hand    INTEGER NOT NULL CHECK (on_hand >= 0),
  reserved   INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  version    INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE applied(id TEXT PRIMARY KEY) WITHOUT ROWID;  -- the store's dedupe, for redeliveries
)sql";

class LedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::temp_directory_path() /
             ("stock-ledger-test-" + std::to_string(getpid()) + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".db"))
                .string();
    Remove();
    Open();
    ASSERT_EQ(Exec(kBaseSchema), SQLITE_OK);
    ASSERT_EQ(Exec("INSERT INTO stock VALUES ('legacy', 7, 0, 3, 0)"), SQLITE_OK);
    ASSERT_EQ(Exec(StockLedger::kMigrationSql), SQLITE_OK) << sqlite3_errmsg(db_);
    Reopen();
  }
  void TearDown() override {
    Close();
    Remove();
  }
  void Remove() {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) std::filesystem::remove(path_ + suffix);
  }
  void Open() {
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db_), SQLITE_OK);
    Exec("PRAGMA journal_mode=WAL");
  }
  void Close() {
    ledger_.reset();
    if (db_) sqlite3_close_v2(db_);  // an open transaction is rolled back: a crash before COMMIT
    db_ = nullptr;
  }
  void Reopen() {
    Close();
    Open();
    ledger_ = std::make_unique<StockLedger>(db_);
    ASSERT_TRUE(ledger_->Prepare().ok());
  }
  int Exec(const char* sql) { return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr); }
  int64_t Int(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sql;
    int64_t v = -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
  }
  bool Claim(const std::string& id) {
    Exec(("INSERT OR IGNORE INTO applied VALUES ('" + id + "')").c_str());
    return sqlite3_changes(db_) == 1;
  }
  void Put(const std::vector<SkuLevel>& levels) {
    for (const auto& l : levels) ASSERT_TRUE(ledger_->PutSku(l, ++version_[l.sku], 0).ok());
  }
  StockMovement Mv(const std::string& id, const std::string& sku, int64_t delta, const std::string& reason, const std::string& lot = "",
                   const std::string& order = "") {
    return StockMovement{id, sku, delta, reason, order, lot, std::nullopt, ""};
  }

  std::string path_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<StockLedger> ledger_;
  std::map<std::string, int64_t> version_;
};

TEST_F(LedgerTest, MigrationKeepsExistingStockAsLotWithoutName) {
  EXPECT_EQ(Int("SELECT on_hand FROM stock_lots WHERE sku = 'legacy' AND lot = ''"), 7);
  EXPECT_EQ(Int("SELECT version FROM stock WHERE sku = 'legacy'"), 3);
  // The CHECKs hold even against a bug: reserved above on hand is refused by SQLite.
  EXPECT_NE(Exec("UPDATE stock SET reserved = 8 WHERE sku = 'legacy'"), SQLITE_OK);
  EXPECT_NE(Exec("UPDATE stock_lots SET reserved = 8 WHERE sku = 'legacy'"), SQLITE_OK);
}

TEST_F(LedgerTest, FefoReservationPickAndCancel) {
  ASSERT_TRUE(ledger_->Move(Mv("r1", "kale", 10, "receive", "L-late"), "2026-12-20").ok());
  ASSERT_TRUE(ledger_->Move(Mv("r2", "kale", 5, "receive", "L-early"), "2026-12-10").ok());
  ASSERT_TRUE(ledger_->Move(Mv("r3", "kale", 3, "receive", "L-none")).ok());
  // 8 reserved: all 5 of the earliest lot, then 3 of the next; the lot without expiry last.
  auto r = ledger_->Reserve("o-1", {{"kale", 6}, {"kale", 2}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].on_hand, 18);
  EXPECT_EQ((*r)[0].reserved, 8);
  EXPECT_EQ(Int("SELECT reserved FROM stock_lots WHERE lot = 'L-early'"), 5);
  EXPECT_EQ(Int("SELECT reserved FROM stock_lots WHERE lot = 'L-late'"), 3);
  EXPECT_EQ(Int("SELECT reserved FROM stock_lots WHERE lot = 'L-none'"), 0);
  // Free stock is 10: a pick without order cannot take reserved units.
  auto over = ledger_->Move(Mv("p0", "kale", -11, "pick"));
  ASSERT_EQ(over.status().code(), StatusCode::kConflict);
  EXPECT_NE(over.status().message().find("negative stock"), std::string::npos) << over.status().message();
  // An order short on one line reserves nothing at all.
  // (kale is reserved before chard is found short: the store's rollback undoes it, as here.)
  ASSERT_EQ(Exec("BEGIN"), SQLITE_OK);
  auto short_order = ledger_->Reserve("o-2", {{"kale", 1}, {"chard", 1}});
  ASSERT_EQ(Exec("ROLLBACK"), SQLITE_OK);
  ASSERT_EQ(short_order.status().code(), StatusCode::kConflict);
  EXPECT_NE(short_order.status().message().find("insufficient stock: order o-2 needs 1 of sku chard, 0 free"), std::string::npos)
      << short_order.status().message();
  EXPECT_EQ(Int("SELECT COUNT(*) FROM reservations WHERE order_id = 'o-2'"), 0);
  // A pick for o-1 consumes its reservation, FEFO: the 5 of L-early, then 1 of L-late.
  auto p = ledger_->Move(Mv("p1", "kale", -6, "pick", "", "o-1"));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->on_hand, 12);
  EXPECT_EQ(p->reserved, 2);
  EXPECT_EQ(Int("SELECT SUM(qty) FROM reservations WHERE order_id = 'o-1'"), 2);
  EXPECT_EQ(Int("SELECT on_hand FROM stock_lots WHERE lot = 'L-early'"), 0);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM reservations WHERE lot = 'L-early'"), 0);  // emptied rows go
  // Cancel releases the rest.
  auto c = ledger_->Release("o-1");
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)[0].reserved, 0);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM reservations"), 0);
  EXPECT_EQ(Int("SELECT SUM(reserved) FROM stock_lots WHERE sku = 'kale'"), 0);
}

TEST_F(LedgerTest, RandomInterleavingsKeepTheInvariants) {
  std::mt19937 rng(20261125);
  const std::vector<std::string> skus = {"kale", "leek", "bok-choy", "pea"};
  const std::vector<std::string> lots = {"", "A", "B", "C"};
  // The model of committed effects.
  std::map<std::string, int64_t> on_hand;                         // per SKU
  std::map<std::string, std::map<std::string, int64_t>> reserved;  // order -> sku -> qty
  std::vector<std::string> done_ids;                              // committed message ids
  std::vector<std::string> orders;
  int committed = 0, refused = 0, crashes = 0, rollbacks = 0, redeliveries = 0, order_ok = 0, order_short = 0;
  for (int step = 0; step < 4000; ++step) {
    ASSERT_EQ(Exec("BEGIN IMMEDIATE"), SQLITE_OK);
    // A redelivery of something already committed is claimed again and found: no effect.
    if (!done_ids.empty() && rng() % 10 == 0) {
      ++redeliveries;
      EXPECT_FALSE(Claim(done_ids[rng() % done_ids.size()]));
      Exec("ROLLBACK");
      continue;
    }
    const std::string id = "m" + std::to_string(step);
    ASSERT_TRUE(Claim(id));
    auto t_on_hand = on_hand;
    auto t_reserved = reserved;
    Status st;
    std::vector<SkuLevel> levels;
    const int k = static_cast<int>(rng() % 100);
    const std::string sku = skus[rng() % skus.size()];
    const std::string lot = lots[rng() % lots.size()];
    if (k < 30) {  // incoming
      static const char* kIn[] = {"receive", "return", "adjust", "transfer"};
      const int64_t q = 1 + rng() % 20;
      char expiry[16];
      std::snprintf(expiry, sizeof expiry, "2026-12-%02d", static_cast<int>(1 + rng() % 28));
      auto r = ledger_->Move(Mv(id, sku, q, kIn[rng() % 4], lot), expiry);
      st = r.status();
      if (r.ok()) levels.push_back(*r), t_on_hand[sku] += q;
    } else if (k < 55) {  // outgoing, no order
      static const char* kOut[] = {"pick", "spoil", "adjust", "transfer"};
      const int64_t q = 1 + rng() % 15;
      auto r = ledger_->Move(Mv(id, sku, -q, kOut[rng() % 4], rng() % 2 ? lot : ""));
      st = r.status();
      if (r.ok()) levels.push_back(*r), t_on_hand[sku] -= q;
    } else if (k < 72) {  // order created
      const std::string oid = "o" + std::to_string(step);
      std::vector<OrderLine> lines;
      for (int n = 1 + static_cast<int>(rng() % 3); n > 0; --n) lines.push_back({skus[rng() % skus.size()], 1 + static_cast<int64_t>(rng() % 10)});
      auto r = ledger_->Reserve(oid, lines);
      st = r.status();
      if (r.ok()) {
        levels = *r;
        for (const auto& l : lines) t_reserved[oid][l.sku] += l.qty;
        orders.push_back(oid);
        ++order_ok;
      } else {
        ++order_short;
      }
    } else if (k < 88 && !orders.empty()) {  // pick for an order
      const std::string oid = orders[rng() % orders.size()];
      auto& res = t_reserved[oid];
      const std::string osku = res.empty() ? sku : std::next(res.begin(), rng() % res.size())->first;
      const int64_t q = 1 + rng() % 6;
      auto r = ledger_->Move(Mv(id, osku, -q, "pick", "", oid));
      st = r.status();
      if (r.ok()) {
        levels.push_back(*r);
        t_on_hand[osku] -= q;
        if (res.count(osku)) {
          res[osku] -= std::min(q, res[osku]);
          if (res[osku] == 0) res.erase(osku);
        }
      }
    } else if (!orders.empty()) {  // cancel
      const size_t i = rng() % orders.size();
      auto r = ledger_->Release(orders[i]);
      st = r.status();
      if (r.ok()) levels = *r, t_reserved.erase(orders[i]);
    }
    if (st.ok() && !levels.empty()) Put(levels);
    if (!st.ok()) {
      ASSERT_EQ(st.code(), StatusCode::kConflict) << st.ToString();
      ++refused;
      Exec("ROLLBACK");  // as the store does: nothing of a refused message stays
      continue;
    }
    const int fate = static_cast<int>(rng() % 20);
    if (fate == 0) {  // crash before COMMIT
      ++crashes;
      Reopen();
      continue;
    }
    if (fate == 1) {  // the commit failed
      ++rollbacks;
      Exec("ROLLBACK");
      continue;
    }
    ASSERT_EQ(Exec("COMMIT"), SQLITE_OK);
    ++committed;
    on_hand = t_on_hand;
    reserved = t_reserved;
    done_ids.push_back(id);
    if (step % 50 == 0 || step == 3999) {
      SCOPED_TRACE("step " + std::to_string(step));
      // Per lot and per SKU: on hand >= 0 and reserved <= on hand.
      ASSERT_EQ(Int("SELECT COUNT(*) FROM stock_lots WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand"), 0);
      ASSERT_EQ(Int("SELECT COUNT(*) FROM stock WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand"), 0);
      // Lots and reservations agree; totals agree with the lots for every SKU written.
      ASSERT_EQ(Int("SELECT COUNT(*) FROM stock_lots l WHERE reserved != IFNULL((SELECT SUM(qty) FROM reservations r "
                    "WHERE r.sku = l.sku AND r.lot = l.lot), 0)"),
                0);
      ASSERT_EQ(Int("SELECT COUNT(*) FROM stock s WHERE s.sku != 'legacy' AND (on_hand != (SELECT SUM(on_hand) FROM stock_lots l "
                    "WHERE l.sku = s.sku) OR reserved != (SELECT SUM(reserved) FROM stock_lots l WHERE l.sku = s.sku))"),
                0);
      for (const auto& s : skus) {
        ASSERT_EQ(Int("SELECT IFNULL(SUM(on_hand), 0) FROM stock_lots WHERE sku = '" + s + "'"), on_hand[s]) << s;
        int64_t want = 0;
        for (const auto& [o, m] : reserved)
          if (auto it = m.find(s); it != m.end()) want += it->second;
        ASSERT_EQ(Int("SELECT IFNULL(SUM(reserved), 0) FROM stock_lots WHERE sku = '" + s + "'"), want) << s;
      }
      for (const auto& [o, m] : reserved)
        for (const auto& [s, q] : m)
          ASSERT_EQ(Int("SELECT IFNULL(SUM(qty), 0) FROM reservations WHERE order_id = '" + o + "' AND sku = '" + s + "'"), q);
    }
  }
  // The run exercised every path.
  std::printf("committed %d refused %d crashes %d rollbacks %d redeliveries %d orders reserved %d refused %d\n", committed, refused,
              crashes, rollbacks, redeliveries, order_ok, order_short);
  EXPECT_GT(committed, 1500);
  EXPECT_GT(refused, 100);
  EXPECT_GT(crashes, 50);
  EXPECT_GT(rollbacks, 50);
  EXPECT_GT(redeliveries, 200);
  EXPECT_GT(order_ok, 100);
  EXPECT_GT(order_short, 20);
}

}  // namespace
}  // namespace freshsync::edge
