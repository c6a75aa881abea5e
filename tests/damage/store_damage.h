// Helpers for the store-level damage tests: drive an EdgeStore the way ingest does (decode,
// then Apply; acknowledged = Apply returned ok) and inspect the database file afterwards with
// a fresh read-only connection through SQLite's default VFS. Test-only.
#pragma once

#include <sqlite3.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "edge/decode.h"
#include "edge/message_types.h"
#include "edge/store.h"
#include "tests/ingest/workload.h"

namespace freshsync::testing {

// The dedupe identity of a message: what the store's dedupe table holds once it is applied.
inline std::pair<int, std::string> DedupeIdentity(const edge::Message& m) {
  using namespace edge;
  auto kind = [](TopicKind k) { return MessageTypeOf(k).dedupe_kind; };
  if (const auto* v = std::get_if<StockMovement>(&m)) return {kind(TopicKind::kStockMovements), v->id};
  if (const auto* v = std::get_if<OrderStatus>(&m)) return {kind(TopicKind::kOrderStatus), v->order_id + "#" + v->status};
  if (const auto* v = std::get_if<GpsFix>(&m)) return {kind(TopicKind::kGps), v->vehicle + "#" + std::to_string(v->seq)};
  const auto& c = std::get<ClimateSample>(m);
  return {kind(TopicKind::kClimate), c.sensor + "#" + std::to_string(c.seq)};
}

// Decodes a workload as ingest would; every message of MixedWorkload is valid.
inline std::vector<edge::Message> DecodeAll(const std::vector<Msg>& msgs) {
  std::vector<edge::Message> out;
  out.reserve(msgs.size());
  for (const auto& m : msgs) {
    auto d = edge::Decode("fs", m.topic, m.payload);
    EXPECT_TRUE(d.ok()) << m.topic << ": " << d.status().ToString();
    if (d.ok()) out.push_back(std::move(*d));
  }
  return out;
}

// A read-only look at a store file (default VFS, so it sees exactly what is on disk).
class StoreFile {
 public:
  explicit StoreFile(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << "cannot open " << path;
      sqlite3_close(db_);
      db_ = nullptr;
    } else {
      sqlite3_busy_timeout(db_, 5000);
    }
  }
  ~StoreFile() { sqlite3_close(db_); }
  StoreFile(const StoreFile&) = delete;
  StoreFile& operator=(const StoreFile&) = delete;

  int64_t Int(const std::string& sql) const {
    int64_t v = -1;
    Each(sql, [&](sqlite3_stmt* st) { v = sqlite3_column_int64(st, 0); });
    return v;
  }
  std::string Text(const std::string& sql) const {
    std::string v;
    Each(sql, [&](sqlite3_stmt* st) {
      if (auto* p = sqlite3_column_text(st, 0)) v += std::string(reinterpret_cast<const char*>(p)) + "\n";
    });
    if (!v.empty()) v.pop_back();
    return v;
  }
  std::set<std::pair<int, std::string>> DedupeKeys() const {
    std::set<std::pair<int, std::string>> out;
    Each("SELECT kind, key FROM dedupe", [&](sqlite3_stmt* st) {
      out.emplace(sqlite3_column_int(st, 0), reinterpret_cast<const char*>(sqlite3_column_text(st, 0 + 1)));
    });
    return out;
  }
  // Schema not there yet (the power went before the first migration committed).
  bool HasSchema() const { return Int("SELECT COUNT(*) FROM sqlite_master WHERE name = 'outbox'") == 1; }

  // The store's own consistency, whatever was lost: an intact file; a dense outbox whose HLC
  // rises with seq; one change record per applied message; versions dense per entity; every
  // SKU's stock equal to the sum of its movements and never negative.
  void ExpectConsistent(const std::string& when) const {
    SCOPED_TRACE(when);
    EXPECT_EQ(Text("PRAGMA integrity_check"), "ok");
    if (!HasSchema()) return;
    const int64_t n = Int("SELECT COUNT(*) FROM outbox");
    EXPECT_EQ(n, Int("SELECT IFNULL(MAX(seq), 0) FROM outbox"));
    if (n > 0) {
      EXPECT_EQ(Int("SELECT MIN(seq) FROM outbox"), 1);
    }
    EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox a JOIN outbox b ON b.seq = a.seq + 1 WHERE b.hlc <= a.hlc"), 0);
    // One or more change records per applied message: an order also writes a STOCK record
    // per SKU it reserves or releases.
    EXPECT_GE(n, Int("SELECT COUNT(*) FROM dedupe"));
    EXPECT_EQ(Int("SELECT COUNT(*) FROM (SELECT entity, key FROM outbox GROUP BY entity, key "
                  "HAVING COUNT(*) != MAX(version) OR COUNT(DISTINCT version) != COUNT(*))"),
              0);
    EXPECT_EQ(Int("SELECT COUNT(*) FROM stock s WHERE on_hand < 0 OR reserved < 0 OR on_hand != "
                  "(SELECT IFNULL(SUM(delta), 0) FROM stock_movements m WHERE m.sku = s.sku)"),
              0);
    EXPECT_EQ(Int("SELECT COUNT(*) FROM stock_movements m WHERE NOT EXISTS (SELECT 1 FROM stock s WHERE s.sku = m.sku)"), 0);
  }

 private:
  template <typename F>
  void Each(const std::string& sql, F f) const {
    if (!db_) return;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return;
    }
    while (sqlite3_step(st) == SQLITE_ROW) f(st);
    sqlite3_finalize(st);
  }
  sqlite3* db_ = nullptr;
};

// Checks that the store holds exactly the effect of the whole workload `exp`.
inline void ExpectExactly(const StoreFile& db, const Expected& exp) {
  EXPECT_EQ(db.Int("SELECT COUNT(*) FROM stock_movements"), exp.movements);
  EXPECT_EQ(db.Int("SELECT COUNT(*) FROM orders"), exp.orders);
  EXPECT_EQ(db.Int("SELECT COUNT(*) FROM vehicle_positions"), exp.gps);
  EXPECT_EQ(db.Int("SELECT COUNT(*) FROM climate_readings"), exp.climate);
  EXPECT_EQ(db.Int("SELECT COUNT(*) FROM outbox"), exp.total() + (exp.stock_records - exp.movements));
  EXPECT_EQ(db.Int("SELECT COUNT(*) FROM dedupe"), exp.total());
  int wrong = 0;
  for (const auto& [sku, n] : exp.on_hand)
    if (db.Int("SELECT on_hand FROM stock WHERE sku = '" + sku + "'") != n) ++wrong;
  for (const auto& [id, st] : exp.order_status)
    if (db.Text("SELECT status FROM orders WHERE order_id = '" + id + "'") != st) ++wrong;
  EXPECT_EQ(wrong, 0) << "stock levels or order states differ from the workload's";
}

}  // namespace freshsync::testing
