// Escrow stock, model-checked (issue 17, docs/escrow.md): a seeded random sequence of HQ
// orders, local orders and cancellations, receipts, spoilage, allotment changes (the site's
// [escrow] and HQ's requests), partitions (the edge neither pushes nor pulls), edge crashes
// (a failed commit, then the store reopened) and hub crashes (the hub store and its
// Downstream reopened; on PostgreSQL every kServerCrashEvery-th one also crashes the server
// itself, which then runs crash recovery), in process against the real EdgeStore, the real hub store (each
// seed on SQLite and on PostgreSQL, as the HubStore contract tests), the hub's Downstream (its
// order decision and the site's pull) and the agent's SyncStore for the push. An independent model in this file (stock on hand, the orders each side accepted)
// is checked after every step:
//   - stock never negative, reservations never above what is on hand, on hand = the model's;
//   - HQ's unused allotment + the site's free stock <= on hand, allowing only for escrow stock
//     the site has physically lost and not yet reported (docs/escrow.md, "Spoilage");
//   - the hub never uses or returns more than the site granted;
//   - every accepted order at the site holds a reservation of exactly its lines (no order is
//     accepted that stock could not cover);
// and at the end, with the link healed, every order the hub accepted is accepted at the site,
// except orders short because escrow stock was lost, whose units never exceed the loss.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cloud-sync/sync_store.h"
#include "edge/store.h"
#include "hub/downstream.h"
#include "hub/escrow.h"
#include "hub/pg_store.h"
#include "hub/sqlite_store.h"
#include "tests/support/harness.h"
#include "tests/support/postgres.h"
#include "wire/record_rules.h"
#include "wire/routes.h"

namespace freshsync {
namespace {

using nlohmann::json;

constexpr char kSite[] = "site-1";
// On PostgreSQL, every this many hub crashes the server crashes too (a restart with crash
// recovery costs about 3.5 s here, the rest of a seed's run about 15 s).
constexpr int kServerCrashEvery = 6;
const std::vector<std::string> kSkus = {"veg-001", "veg-002"};

class StepClock : public Clock {
 public:
  int64_t NowMs() override { return now; }
  int64_t MonotonicMs() override { return now; }
  int64_t now = 1700000000000;
};

// What the test knows without asking the code under test.
struct Model {
  std::map<std::string, int64_t> on_hand;
  std::map<std::string, std::map<std::string, int64_t>> hub_accepted;  // order -> sku -> qty
  std::map<std::string, std::vector<edge::OrderLine>> local_live;       // accepted, not cancelled
  std::map<std::string, int64_t> escrow_lost;                           // escrow units spoilage took
};

enum class Backend { kSqlite, kPostgres };

class EscrowWorld {
 public:
  EscrowWorld(uint64_t seed, Backend backend) : rng_(seed), backend_(backend) {}

  void Open() {
    OpenEdge();
    OpenHub();
  }

  void OpenEdge() {
    edge_.reset();
    edge::StoreOptions o;
    o.path = dir_.File("edge.db");
    o.clock = &clock_;
    auto s = edge::EdgeStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    edge_ = std::move(*s);
  }

  // The hub (re)started on its store; on PostgreSQL `crash_server` also crashes the server
  // (immediate shutdown, no checkpoint) and starts it again, so the hub's rows come back
  // through PostgreSQL's crash recovery.
  void OpenHub(bool crash_server = false) {
    down_.reset();
    hub_.reset();
    if (backend_ == Backend::kSqlite) {
      auto s = hub::SqliteHubStore::Open({dir_.File("hub.db"), 2, false});
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      hub_ = std::move(*s);
    } else {
      const std::string url = testing::SharedPostgresDatabase(dir_.path());
      if (crash_server) {
        testing::SharedPostgres().Crash();
        ASSERT_TRUE(testing::SharedPostgres().Start()) << testing::ReadFile(testing::SharedPostgres().log_path());
        ++server_crashes;
      }
      auto s = hub::PgHubStore::Open({url, 2});
      ASSERT_TRUE(s.ok()) << s.status().ToString();
      hub_ = std::move(*s);
    }
    down_ = std::make_unique<hub::Downstream>(*hub_, clock_, metrics_, 72, std::nullopt,
                                              [](std::function<void()> f) { f(); return true; });
  }

  int64_t Rand(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(rng_); }
  const std::string& AnySku() { return kSkus[static_cast<size_t>(Rand(0, static_cast<int64_t>(kSkus.size()) - 1))]; }

  // The agent's push, in process: the outbox after the hub's contiguous seq, as full batches.
  void Push() {
    auto sync = sync::SyncStore::Open(dir_.File("edge.db"), 2000);
    ASSERT_TRUE(sync.ok()) << sync.status().ToString();
    for (;;) {
      auto from = hub_->ContiguousSeq(kSite);
      ASSERT_TRUE(from.ok());
      auto last = (*sync)->LastSeq();
      ASSERT_TRUE(last.ok());
      if (*last <= *from) return;
      std::vector<sync::OutboxRow> rows;
      bool full = false;
      ASSERT_TRUE((*sync)->ReadRange(*from, *last, 500, 1 << 24, &rows, &full).ok());
      ASSERT_FALSE(rows.empty());
      v1::Batch b;
      b.set_site(kSite);
      for (const auto& r : rows) {
        v1::ChangeRecord* rec = b.add_records();
        ASSERT_TRUE(rec->ParseFromString(r.record));
        // The hub's field rules (it would quarantine a record that breaks them).
        Status ok = wire::CheckChangeRecord(*rec);
        ASSERT_TRUE(ok.ok()) << ok.ToString() << " " << rec->ShortDebugString();
      }
      auto applied = hub_->ApplyBatch(kSite, b, clock_.now);
      ASSERT_TRUE(applied.ok()) << applied.status().ToString();
      ASSERT_EQ(applied->refused, 0u) << "the hub refused a record of the site";
    }
  }

  // The site's pull and apply, as edge/downstream.cc does it.
  void Pull() {
    auto after = edge_->DownAppliedSeq();
    ASSERT_TRUE(after.ok());
    std::string kinds;
    for (int k = 1; k < wire::kDownKindCount; ++k) kinds += std::string(k > 1 ? "," : "") + wire::kDownKindNames[k];
    hub::DownAnswer a;
    down_->Pull(kSite, {{"after", std::to_string(*after)}, {"kinds", kinds}}, [&](hub::DownAnswer x) { a = std::move(x); });
    ASSERT_TRUE(a.batch.has_value()) << a.status << " " << a.error;
    for (const auto& c : a.batch->commands()) {
      auto r = edge_->ApplyDownCommand(c, clock_.now);
      if (!r.ok()) return;  // a crash: the command comes again
    }
    (void)edge_->AdvanceDownPosition(a.batch->through_seq());
  }

  void Sync() {
    Push();
    Pull();
    Push();
  }

  void HqOrder() {
    const std::string id = "hq-" + std::to_string(++orders_);
    std::map<std::string, int64_t> lines;
    json body = {{"order_id", id}, {"lines", json::array()}};
    for (int i = 0, n = static_cast<int>(Rand(1, 2)); i < n; ++i) {
      const std::string& sku = AnySku();
      const int64_t qty = Rand(1, 4);
      lines[sku] += qty;
      body["lines"].push_back({{"sku", sku}, {"qty", qty}});
    }
    hub::DownAnswer a = down_->PostOrder(kSite, body.dump(), "hq-orders");
    ASSERT_EQ(a.status, 202) << a.error;
    if (a.body["decided_by"] == "hub") {
      EXPECT_EQ(a.body["status"], "accepted");
      model_.hub_accepted[id] = lines;
    } else {
      EXPECT_EQ(a.body["status"], "pending");
    }
    // Repeats answer the same decision and take nothing more.
    if (Rand(0, 4) == 0) {
      EXPECT_EQ(down_->PostOrder(kSite, body.dump(), "hq-orders").body, a.body);
    }
  }

  void LocalOrder() {
    edge::OrderStatus o;
    o.order_id = "pos-" + std::to_string(++orders_);
    o.status = "created";
    o.ts_ms = clock_.now;
    o.actor = "pos";
    o.lines.push_back({AnySku(), Rand(1, 6)});
    auto r = edge_->Apply(o, clock_.now);
    if (r.ok() && *r == edge::EdgeStore::Outcome::kApplied) model_.local_live[o.order_id] = o.lines;
  }

  void LocalCancel() {
    if (model_.local_live.empty()) return;
    auto it = std::next(model_.local_live.begin(), Rand(0, static_cast<int64_t>(model_.local_live.size()) - 1));
    edge::OrderStatus o;
    o.order_id = it->first;
    o.status = "cancelled";
    o.ts_ms = clock_.now;
    auto r = edge_->Apply(o, clock_.now);
    if (r.ok()) model_.local_live.erase(it);
  }

  std::map<std::string, int64_t> Held() {
    std::map<std::string, int64_t> out;
    auto e = edge_->Escrow();
    EXPECT_TRUE(e.ok());
    if (e.ok())
      for (const auto& l : *e) out[l.sku] = l.held;
    return out;
  }

  void Movement(int64_t delta) {
    edge::StockMovement m;
    m.id = "mv-" + std::to_string(++moves_);
    m.sku = AnySku();
    m.delta = delta;
    m.reason = delta > 0 ? "receive" : "spoil";
    m.ts_ms = clock_.now;
    if (delta > 0 && Rand(0, 1) == 0) {
      m.lot = "L" + std::to_string(Rand(1, 3));
      m.expiry = "2027-01-0" + std::to_string(Rand(1, 9));
    }
    const auto held_before = Held();
    auto r = edge_->Apply(m, clock_.now);
    if (r.ok() && *r == edge::EdgeStore::Outcome::kApplied) {
      model_.on_hand[m.sku] += delta;
      const auto held_after = Held();
      if (delta < 0 && held_after.count(m.sku) && held_before.count(m.sku) && held_after.at(m.sku) < held_before.at(m.sku))
        model_.escrow_lost[m.sku] += held_before.at(m.sku) - held_after.at(m.sku);
    } else if (!r.ok()) {
      EXPECT_TRUE(r.status().code() == StatusCode::kConflict || r.status().code() == StatusCode::kIOError)
          << r.status().ToString();
    }
  }

  void Target() {
    const std::string sku = AnySku();
    const int64_t target = Rand(0, 12);
    if (Rand(0, 1) == 0) {
      config_[sku] = target;
      Status s = edge_->ConfigureEscrow(config_, clock_.now);  // edged's start with a new [escrow]
      EXPECT_TRUE(s.ok() || s.code() == StatusCode::kIOError) << s.ToString();
    } else {
      EXPECT_EQ(down_->PutEscrowTarget(kSite, sku, json{{"target", target}}.dump(), "hq-orders").status, 202);
    }
  }

  struct Level {
    int64_t on_hand = 0, reserved = 0;
  };
  Level SiteStock(const std::string& sku) {
    Level l;
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(edge_->db_for_test(), "SELECT on_hand, reserved FROM stock WHERE sku = ?1", -1, &st, nullptr);
    sqlite3_bind_text(st, 1, sku.c_str(), -1, SQLITE_TRANSIENT);
    if (sqlite3_step(st) == SQLITE_ROW) l = {sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1)};
    sqlite3_finalize(st);
    return l;
  }

  // order_id -> (status, reason) at the site.
  std::map<std::string, std::pair<std::string, std::string>> SiteOrders() {
    std::map<std::string, std::pair<std::string, std::string>> out;
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(edge_->db_for_test(), "SELECT order_id, status, IFNULL(reason, '') FROM orders", -1, &st, nullptr);
    while (sqlite3_step(st) == SQLITE_ROW)
      out[reinterpret_cast<const char*>(sqlite3_column_text(st, 0))] = {
          reinterpret_cast<const char*>(sqlite3_column_text(st, 1)), reinterpret_cast<const char*>(sqlite3_column_text(st, 2))};
    sqlite3_finalize(st);
    return out;
  }

  // Accepted orders whose reservations differ from their lines (expected none).
  int64_t MisreservedOrders() {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(edge_->db_for_test(),
                       "SELECT COUNT(*) FROM orders o WHERE o.status IN ('created', 'accepted') AND "
                       "(SELECT IFNULL(SUM(j.value ->> 'qty'), 0) FROM json_each(o.lines) j) != "
                       "(SELECT IFNULL(SUM(r.qty), 0) FROM reservations r WHERE r.order_id = o.order_id)",
                       -1, &st, nullptr);
    int64_t n = -1;
    if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
  }

  void Check(const std::string& step) {
    std::map<std::string, hub::EscrowRow> hub_rows;
    Status s = hub_->Read(hub::kReadEscrow, [&](hub::SqlParams& p) { p.Text(1, kSite); },
                          [&](const hub::SqlRow& r) {
                            hub::EscrowRow e = hub::EscrowRowFrom(r);
                            hub_rows[e.sku] = e;
                          });
    ASSERT_TRUE(s.ok()) << s.ToString();
    std::map<std::string, edge::EdgeStore::EscrowLevel> site_rows;
    auto e = edge_->Escrow();
    ASSERT_TRUE(e.ok());
    for (const auto& l : *e) site_rows[l.sku] = l;
    for (const std::string& sku : kSkus) {
      const Level l = SiteStock(sku);
      ASSERT_GE(l.on_hand, 0) << step;
      ASSERT_GE(l.reserved, 0) << step;
      ASSERT_LE(l.reserved, l.on_hand) << step;
      ASSERT_EQ(l.on_hand, model_.on_hand[sku]) << step << " " << sku;
      const hub::EscrowRow h = hub_rows.count(sku) ? hub_rows[sku] : hub::EscrowRow{};
      const edge::EdgeStore::EscrowLevel x = site_rows.count(sku) ? site_rows[sku] : edge::EdgeStore::EscrowLevel{};
      ASSERT_LE(h.used + h.returned, h.given) << step << " " << sku;
      // Escrow units the site lost and the hub has not heard of yet (its last record).
      const int64_t site_lost = x.given - x.returned_applied - x.consumed_applied - x.held;
      const int64_t hub_lost = h.given - h.returned_applied - h.consumed_applied - h.held;
      const int64_t unreported = std::max<int64_t>(0, site_lost - hub_lost);
      ASSERT_LE(h.Free() + (l.on_hand - l.reserved), l.on_hand + unreported)
          << step << " " << sku << ": hub free " << h.Free() << ", site free " << l.on_hand - l.reserved;
    }
    ASSERT_EQ(MisreservedOrders(), 0) << step;
  }

  void Run(int steps) {
    Open();
    for (const std::string& sku : kSkus) model_.on_hand[sku] = 0;
    for (int i = 0; i < steps && !::testing::Test::HasFatalFailure(); ++i) {
      clock_.now += 1000;
      const int64_t op = Rand(0, 99);
      std::string name;
      // A crash of the edge: the next write's commit fails, then the store is reopened.
      const bool edge_crash = Rand(0, 39) == 0;
      if (edge_crash) edge_->SetCommitFaultForTest([] { return Status::IOError("crash before commit"); });
      if (op < 18) name = "hq-order", HqOrder();
      else if (op < 34) name = "local-order", LocalOrder();
      else if (op < 40) name = "local-cancel", LocalCancel();
      else if (op < 55) name = "receipt", Movement(Rand(1, 8));
      else if (op < 65) name = "spoil", Movement(-Rand(1, 6));
      else if (op < 71) name = "target", Target();
      else if (op < 76) name = "partition", link_up_ = !link_up_;
      else if (op < 78) name = "hub-crash", OpenHub(++hub_crashes % kServerCrashEvery == 0);
      else name = "sync", link_up_ ? Sync() : void();
      if (edge_crash) {
        name += "+edge-crash";
        OpenEdge();
      }
      ASSERT_NO_FATAL_FAILURE(Check("step " + std::to_string(i) + " " + name));
    }
    // Heal: the link comes back and stays; everything the hub accepted reaches the site.
    link_up_ = true;
    for (int i = 0; i < 6; ++i) {
      clock_.now += 1000;
      ASSERT_NO_FATAL_FAILURE(Sync());
      ASSERT_NO_FATAL_FAILURE(Check("heal " + std::to_string(i)));
    }
    const auto orders = SiteOrders();
    int64_t short_units = 0, lost = 0;
    for (const auto& [sku, n] : model_.escrow_lost) lost += n;
    for (const auto& [id, lines] : model_.hub_accepted) {
      auto it = orders.find(id);
      ASSERT_NE(it, orders.end()) << id << " never reached the site";
      if (it->second.first == "accepted") continue;
      EXPECT_EQ(it->second.first, "refused") << id;
      EXPECT_EQ(it->second.second.rfind("escrow order short", 0), 0u) << id << ": " << it->second.second;
      for (const auto& [sku, qty] : lines) short_units += qty;
      ++short_orders;
    }
    EXPECT_LE(short_units, lost) << "orders short beyond the escrow stock lost";
    hub_accepted = static_cast<int64_t>(model_.hub_accepted.size());
  }

  int64_t hub_accepted = 0;
  int64_t short_orders = 0;
  int hub_crashes = 0, server_crashes = 0;

 private:
  std::mt19937_64 rng_;
  Backend backend_;
  testing::TempDir dir_;
  StepClock clock_;
  hub::DownstreamMetrics metrics_;
  std::unique_ptr<edge::EdgeStore> edge_;
  std::unique_ptr<hub::HubStore> hub_;
  std::unique_ptr<hub::Downstream> down_;
  Model model_;
  std::map<std::string, int64_t> config_;
  bool link_up_ = true;
  int orders_ = 0, moves_ = 0;
};

// (backend, seed): every seed on each store. The PostgreSQL ones run as their own CTest
// entry (tests/sync/CMakeLists.txt), as the HubStore contract tests do.
class EscrowModelTest : public ::testing::TestWithParam<std::tuple<Backend, uint64_t>> {};

TEST_P(EscrowModelTest, InvariantsHoldThroughPartitionsCrashesAndSpoilage) {
  const auto [backend, seed] = GetParam();
  EscrowWorld world(seed, backend);
  world.Run(1500);
  // The run must exercise the hub's side: a seed where the hub accepted nothing proves little.
  EXPECT_GT(world.hub_accepted, 10);
  EXPECT_GT(world.hub_crashes, 0);
  if (backend == Backend::kPostgres) {
    EXPECT_GT(world.server_crashes, 0);
  }
  std::printf("seed %llu: %lld orders accepted by the hub, %lld short after escrow stock was lost, %d hub crashes (%d of "
              "the PostgreSQL server)\n",
              static_cast<unsigned long long>(seed), static_cast<long long>(world.hub_accepted),
              static_cast<long long>(world.short_orders), world.hub_crashes, world.server_crashes);
}

INSTANTIATE_TEST_SUITE_P(Seeds, EscrowModelTest,
                         ::testing::Combine(::testing::Values(Backend::kSqlite, Backend::kPostgres), ::testing::Values(1, 2, 3, 4)),
                         [](const ::testing::TestParamInfo<std::tuple<Backend, uint64_t>>& info) {
                           return std::string(std::get<0>(info.param) == Backend::kSqlite ? "Sqlite" : "Postgres") + "_" +
                                  std::to_string(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace freshsync
