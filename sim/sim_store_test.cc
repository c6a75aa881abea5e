// edge-sim's stock floor against the real site store: under stock with reservations
// (docs/rules.md, "Stock") every order it creates must be fillable and every movement
// possible, or the demo would show refusals instead of orders reaching HQ.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <map>

#include "edge/decode.h"
#include "edge/store.h"
#include "sim/site_simulator.h"

namespace freshsync::sim {
namespace {

TEST(SimAgainstStoreTest, AnHourOfFloorTrafficIsAllApplied) {
  const auto dir = std::filesystem::temp_directory_path() / ("sim-store-test-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  {
    edge::StoreOptions so;
    so.path = (dir / "edge.db").string();
    auto store = edge::EdgeStore::Open(so);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    SimOptions opt;
    opt.seed = 5;
    opt.trucks = 0;
    opt.cold_rooms = 0;
    SiteSimulator sim(opt);
    std::map<std::string, int> by_topic;
    for (const auto& m : sim.Advance(3'600'000)) {
      auto msg = edge::Decode("fs", m.topic, m.payload);
      ASSERT_TRUE(msg.ok()) << m.payload << ": " << msg.status().ToString();
      auto r = (*store)->Apply(*msg, m.ts_ms);
      ASSERT_TRUE(r.ok()) << m.payload << ": " << r.status().ToString();
      ASSERT_EQ(*r, edge::EdgeStore::Outcome::kApplied) << m.payload;
      ++by_topic[m.topic];
    }
    EXPECT_GT(by_topic["fs/orders/status"], 1000);
    EXPECT_GT(by_topic["fs/stock/movements"], 500);
    sqlite3* db = (*store)->db_for_test();
    auto count = [&](const char* sql) {
      sqlite3_stmt* st = nullptr;
      sqlite3_prepare_v2(db, sql, -1, &st, nullptr);
      int64_t v = -1;
      if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
      sqlite3_finalize(st);
      return v;
    };
    EXPECT_EQ(count("SELECT COUNT(*) FROM dead_letters"), 0);
    EXPECT_GT(count("SELECT COUNT(*) FROM orders WHERE status = 'delivered'"), 250);
    // Reservations are held by exactly the orders not yet dispatched, and lots carry expiries.
    EXPECT_EQ(count("SELECT COUNT(*) FROM reservations r JOIN orders o USING (order_id) "
                    "WHERE o.status IN ('dispatched', 'delivered', 'cancelled')"),
              0);
    EXPECT_GT(count("SELECT COUNT(*) FROM reservations"), 0);
    EXPECT_EQ(count("SELECT COUNT(*) FROM stock_lots WHERE expiry IS NULL"), 0);
    // Every pallet scan is recorded once (scan ids are unique), in and out.
    EXPECT_EQ(count("SELECT COUNT(*) FROM dock_scans"), by_topic["fs/docks/door-1/scans"] + by_topic["fs/docks/door-4/scans"]);
    EXPECT_GT(by_topic["fs/docks/door-4/scans"], 100);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace freshsync::sim
