// Stock with reservations through the real edged and a real Mosquitto, with damage: a seeded
// random interleaving of receives on random lots with expiries, picks (free, from a named
// lot, for an order), spoilage, orders created (some that stock cannot cover), cancelled,
// picked, dispatched, delivered, illegal transitions, and republished earlier messages, while
// edged is SIGKILLed at random moments (at least five times) and restarted.
//
// Afterwards the store must hold exactly the effect of applying the committed message list
// once, in publish order (MQTT keeps one publisher's QoS 1 order, also across redelivery),
// as computed by an independent model of the rules in docs/rules.md ("Stock"): every lot,
// every SKU total, every reservation, every order's status (refused ones `refused`, with one
// dead letter each), the set of movements applied, the dedupe keys; and the invariants
// on_hand >= 0 and reserved <= on_hand per lot and per SKU, lots agreeing with reservations.
#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/ingest/site.h"

namespace freshsync::testing {
namespace {

// The rules of docs/rules.md "Stock", written again from the text, on plain maps.
class StockModel {
 public:
  struct Lot {
    std::string expiry;  // "" = none
    int64_t on_hand = 0, reserved = 0;
  };

  // Returns false when the movement is refused (nothing changes).
  bool Move(const std::string& sku, const std::string& lot, int64_t delta, const std::string& reason, const std::string& order,
            const std::string& expiry) {
    auto& lots = lots_[sku];
    if (delta > 0) {
      Lot& l = lots[lot];
      if (l.expiry.empty()) l.expiry = expiry;
      l.on_hand += delta;
      return true;
    }
    int64_t need = -delta;
    std::vector<std::string> order_of = Fefo(sku);
    if (!lot.empty()) std::erase_if(order_of, [&](const std::string& n) { return n != lot; });
    const bool for_order = !order.empty() && reason == "pick";
    int64_t have = 0;
    for (const auto& n : order_of) have += lots[n].on_hand - lots[n].reserved + (for_order ? res_[order][sku][n] : 0);
    if (need > have) return false;
    if (for_order) {
      for (const auto& n : order_of) {
        int64_t& r = res_[order][sku][n];
        const int64_t take = std::min(need, r);
        r -= take;
        lots[n].reserved -= take;
        lots[n].on_hand -= take;
        need -= take;
      }
    }
    for (const auto& n : order_of) {
      const int64_t take = std::min(need, lots[n].on_hand - lots[n].reserved);
      lots[n].on_hand -= take;
      need -= take;
    }
    return true;
  }
  bool Reserve(const std::string& order, const std::map<std::string, int64_t>& want) {
    for (const auto& [sku, q] : want)
      if (Free(sku) < q) return false;
    for (const auto& [sku, q] : want) {
      int64_t need = q;
      for (const auto& n : Fefo(sku)) {
        Lot& l = lots_[sku][n];
        const int64_t take = std::min(need, l.on_hand - l.reserved);
        l.reserved += take;
        res_[order][sku][n] += take;
        need -= take;
      }
    }
    return true;
  }
  void Release(const std::string& order) {
    for (auto& [sku, lots] : res_[order])
      for (auto& [n, q] : lots) {
        lots_[sku][n].reserved -= q;
        q = 0;
      }
  }
  int64_t Free(const std::string& sku) {
    int64_t f = 0;
    for (const auto& [n, l] : lots_[sku]) f += l.on_hand - l.reserved;
    return f;
  }
  int64_t ReservedFor(const std::string& order, const std::string& sku) {
    int64_t r = 0;
    for (const auto& [n, q] : res_[order][sku]) r += q;
    return r;
  }
  // The same text the SQL below builds from the store.
  std::string LotsText() const {
    std::string s;
    for (const auto& [sku, lots] : lots_)
      for (const auto& [n, l] : lots) s += sku + "/" + n + "=" + std::to_string(l.on_hand) + "/" + std::to_string(l.reserved) + "/" + l.expiry + ";";
    return s;
  }
  std::string SkusText() const {
    std::string s;
    for (const auto& [sku, lots] : lots_) {
      if (lots.empty()) continue;
      int64_t h = 0, r = 0;
      for (const auto& [n, l] : lots) h += l.on_hand, r += l.reserved;
      s += sku + "=" + std::to_string(h) + "/" + std::to_string(r) + ";";
    }
    return s;
  }
  std::string ReservationsText() const {
    std::string s;
    for (const auto& [o, skus] : res_)
      for (const auto& [sku, lots] : skus)
        for (const auto& [n, q] : lots)
          if (q > 0) s += o + "/" + sku + "/" + n + "=" + std::to_string(q) + ";";
    return s;
  }

 private:
  std::vector<std::string> Fefo(const std::string& sku) {
    std::vector<std::string> names;
    for (const auto& [n, l] : lots_[sku]) names.push_back(n);
    auto& lots = lots_[sku];
    std::stable_sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
      const auto &ea = lots[a].expiry, &eb = lots[b].expiry;
      if (ea.empty() != eb.empty()) return eb.empty();  // lots without expiry last
      if (ea != eb) return ea < eb;
      return a < b;
    });
    return names;
  }
  std::map<std::string, std::map<std::string, Lot>> lots_;  // sku -> lot
  std::map<std::string, std::map<std::string, std::map<std::string, int64_t>>> res_;  // order -> sku -> lot
};

// The committed message list and its expected effect, built together: each message is applied
// to the model as it is generated, and so is each republication of an earlier one.
struct Workload {
  std::vector<Msg> msgs;
  StockModel model;
  std::map<std::string, std::string> order_status;      // what the store must say
  std::set<std::string> applied_movements, refused_movements;  // refused at least once
  std::set<std::string> claimed;                        // dedupe keys: movement ids, order#status
  int refused_orders = 0, republished = 0, illegal = 0;
};

bool LegalStep(const std::string& from, const std::string& to) {
  static const std::vector<std::string> flow = {"created", "accepted", "picking", "packed", "dispatched", "delivered"};
  if (to == "cancelled") return from == "created" || from == "accepted" || from == "picking" || from == "packed";
  for (size_t i = 0; i + 1 < flow.size(); ++i)
    if (from == flow[i]) return to == flow[i + 1];
  return false;
}

Workload MakeWorkload(size_t n, uint32_t seed) {
  Workload w;
  std::mt19937 rng(seed);
  const std::vector<std::string> skus = {"kale", "leek", "chard", "pea"};
  std::map<std::string, std::map<std::string, int64_t>> lines_of;  // order -> sku -> qty
  std::vector<std::string> live;                                   // orders not yet terminal
  std::vector<size_t> replayable;                                  // indexes into msgs
  int64_t ts = 1767225600000;
  int next_order = 0, next_mv = 0;
  // Applies a movement/order message to the model (first time or republished).
  auto apply = [&](const nlohmann::json& j, const std::string& topic) {
    if (topic == "fs/stock/movements") {
      const std::string id = j["id"].get<std::string>();
      if (w.claimed.count(id)) return;  // a duplicate: no effect
      if (w.model.Move(j["sku"].get<std::string>(), j.value("lot", ""), j["delta"].get<int64_t>(), j["reason"].get<std::string>(),
                       j.value("order_id", ""), j.value("expiry", ""))) {
        w.claimed.insert(id);
        w.applied_movements.insert(id);
      } else {
        w.refused_movements.insert(id);
      }
      return;
    }
    const std::string id = j["order_id"].get<std::string>(), status = j["status"].get<std::string>();
    if (w.claimed.count(id + "#" + status)) return;
    auto it = w.order_status.find(id);
    const std::string from = it == w.order_status.end() ? "" : it->second;
    if (from.empty() ? status != "created" : !LegalStep(from, status)) return;  // refused, not claimed
    w.claimed.insert(id + "#" + status);
    if (status == "created") {
      std::map<std::string, int64_t> want;
      for (const auto& l : j["lines"]) want[l["sku"].get<std::string>()] += l["qty"].get<int64_t>();
      if (!w.model.Reserve(id, want)) {
        w.order_status[id] = "refused";
        ++w.refused_orders;
        return;
      }
    } else if (status == "cancelled" || status == "dispatched") {
      w.model.Release(id);
    }
    w.order_status[id] = status;
  };
  auto emit = [&](const std::string& topic, const nlohmann::json& j) {
    apply(j, topic);
    replayable.push_back(w.msgs.size());
    w.msgs.push_back({topic, j.dump()});
  };
  while (w.msgs.size() < n) {
    ts += 1000;
    const int k = static_cast<int>(rng() % 100);
    const std::string sku = skus[rng() % skus.size()];
    if (k < 8 && !replayable.empty()) {
      // A republication of an earlier message (a terminal resending, a bridge replaying).
      const Msg m = w.msgs[replayable[rng() % replayable.size()]];
      apply(nlohmann::json::parse(m.payload), m.topic);
      w.msgs.push_back(m);
      ++w.republished;
    } else if (k < 30) {
      char expiry[16];
      std::snprintf(expiry, sizeof expiry, "2026-12-%02d", static_cast<int>(1 + rng() % 28));
      nlohmann::json j = {{"id", "mv-" + std::to_string(next_mv++)}, {"sku", sku}, {"delta", static_cast<int64_t>(3 + rng() % 20)}, {"reason", "receive"},
                          {"ts", ts}, {"lot", "L" + std::to_string(rng() % 4)}, {"expiry", expiry}};
      emit("fs/stock/movements", j);
    } else if (k < 42) {
      // Free stock out: a pick, now and then from a named lot, or spoilage (some will not fit).
      nlohmann::json j = {{"id", "mv-" + std::to_string(next_mv++)}, {"sku", sku}, {"delta", -static_cast<int64_t>(1 + rng() % 6)},
                          {"reason", rng() % 4 == 0 ? "spoil" : "pick"}, {"ts", ts}};
      if (rng() % 3 == 0) j["lot"] = "L" + std::to_string(rng() % 4);
      emit("fs/stock/movements", j);
    } else if (k < 60) {
      const std::string id = "o-" + std::to_string(next_order++);
      nlohmann::json lines = nlohmann::json::array();
      for (int i = 0, nl = 1 + static_cast<int>(rng() % 2); i < nl; ++i) {
        const std::string s = skus[rng() % skus.size()];
        // Now and then an order no site could fill, so that every run has refusals.
        const int64_t q = rng() % 25 == 0 ? 100000 : 1 + static_cast<int64_t>(rng() % 12);
        lines.push_back({{"sku", s}, {"qty", q}});
        lines_of[id][s] += q;
      }
      emit("fs/orders/status", {{"order_id", id}, {"status", "created"}, {"ts", ts}, {"lines", lines}});
      if (w.order_status[id] != "refused") live.push_back(id);
    } else if (!live.empty()) {
      const size_t at = rng() % live.size();
      const std::string id = live[at];
      const std::string from = w.order_status[id];
      if (from == "delivered" || from == "cancelled") {
        // A republished status that was illegal when first sent may be the legal next step by
        // now (a late "delivered" after "dispatched"): the order finished that way.
        live.erase(live.begin() + static_cast<std::ptrdiff_t>(at));
        continue;
      }
      if (from == "picking" && k < 85) {
        // Picks for the order: its reservation first, sometimes short, sometimes over (the
        // excess comes from free stock, or the pick is refused).
        const auto& lines = lines_of[id];
        auto line = lines.begin();
        std::advance(line, rng() % lines.size());
        const int64_t left = w.model.ReservedFor(id, line->first);
        const int64_t q = std::max<int64_t>(1, left + static_cast<int64_t>(rng() % 3) - 1);
        emit("fs/stock/movements", {{"id", "mv-" + std::to_string(next_mv++)}, {"sku", line->first}, {"delta", -q}, {"reason", "pick"},
                                    {"order_id", id}, {"ts", ts}});
        continue;
      }
      std::string to;
      if (rng() % 12 == 0) {
        to = "delivered";  // usually illegal from where the order is: refused, not claimed
        if (!LegalStep(from, to)) ++w.illegal;
      } else if (from != "dispatched" && from != "delivered" && rng() % 8 == 0) {
        to = "cancelled";
      } else {
        static const std::map<std::string, std::string> next = {{"created", "accepted"},   {"accepted", "picking"}, {"picking", "packed"},
                                                                {"packed", "dispatched"}, {"dispatched", "delivered"}};
        to = next.at(from);
      }
      emit("fs/orders/status", {{"order_id", id}, {"status", to}, {"ts", ts}, {"actor", "t-" + std::to_string(rng() % 3)}});
      const std::string now = w.order_status[id];
      if (now == "delivered" || now == "cancelled") live.erase(live.begin() + static_cast<std::ptrdiff_t>(at));
    }
  }
  return w;
}

TEST(StockCrashTest, KillNineDuringRandomStockTrafficAppliesEachMessageOnceByTheRules) {
  // A fresh seed each run (printed; FRESHSYNC_STOCK_SEED=N repeats one).
  const char* fixed = std::getenv("FRESHSYNC_STOCK_SEED");
  const uint32_t seed = fixed ? static_cast<uint32_t>(std::strtoul(fixed, nullptr, 10)) : std::random_device{}();
  SCOPED_TRACE("workload seed " + std::to_string(seed));
  std::cerr << "workload seed " << seed << "\n";
  const Workload w = MakeWorkload(3000, seed);
  std::cerr << w.msgs.size() << " messages: " << w.applied_movements.size() << " movements applied, " << w.refused_movements.size()
            << " refused at least once, " << w.refused_orders << " orders refused, " << w.republished << " republished, " << w.illegal
            << " illegal transitions\n";
  ASSERT_GT(w.refused_orders, 0);
  ASSERT_GT(w.refused_movements.size(), 0u);
  ASSERT_GT(w.republished, 100);

  Site site;
  ASSERT_TRUE(site.StartEdged());
  std::atomic<bool> published{false};
  std::atomic<int> kills{0};
  std::thread publisher([&] {
    auto pub = site.NewPublisher("stock-pub");
    size_t i = 0;
    for (const auto& m : w.msgs) {
      // Hold the last fifth back until five kills have landed while publishing (slow machines).
      if (i == w.msgs.size() * 4 / 5) WaitFor([&] { return kills >= 5; }, std::chrono::seconds(300));
      pub->Publish(m, 50);
      if (++i % 10 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    pub->Publish({"fs/sensors/sentinel-stock/climate", R"({"seq":1,"ts":1767225600000,"temp_c":1.0})"});
    pub->Flush();
    published = true;
  });
  std::mt19937 rng(seed);
  while (!published && kills < 20) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 600));
    if (published) break;
    site.KillEdged();
    ++kills;
    std::cerr << "kill " << kills << " after " << site.Int("SELECT COUNT(*) FROM dedupe") << " applied\n";
    if (rng() % 2) std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 300));
    ASSERT_TRUE(site.StartEdged());
  }
  publisher.join();
  EXPECT_GE(kills, 5);
  // Stock and orders come over edged's main client, the climate sentinel over its telemetry
  // client (edge/ingest.h): wait for both. dedupe reaches its total only once every message is
  // applied, and never passes it.
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM climate_readings WHERE sensor = 'sentinel-stock'", 1, std::chrono::seconds(180)));
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM dedupe", static_cast<int64_t>(w.claimed.size()) + 1, std::chrono::seconds(180)));

  // Invariants, per lot and per SKU, and lots against reservations and totals.
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM stock_lots WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand"), 0);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM stock WHERE on_hand < 0 OR reserved < 0 OR reserved > on_hand"), 0);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM stock_lots l WHERE reserved <> "
                     "(SELECT IFNULL(SUM(qty), 0) FROM reservations r WHERE r.sku = l.sku AND r.lot = l.lot)"),
            0);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM stock s WHERE on_hand <> (SELECT SUM(on_hand) FROM stock_lots l WHERE l.sku = s.sku) "
                     "OR reserved <> (SELECT SUM(reserved) FROM stock_lots l WHERE l.sku = s.sku)"),
            0);
  // Exactly the model's state.
  EXPECT_EQ(site.Text("SELECT group_concat(x, '') FROM (SELECT sku || '/' || lot || '=' || on_hand || '/' || reserved || '/' || "
                      "IFNULL(expiry, '') || ';' AS x FROM stock_lots ORDER BY sku, lot)"),
            w.model.LotsText());
  EXPECT_EQ(site.Text("SELECT group_concat(x, '') FROM (SELECT sku || '=' || on_hand || '/' || reserved || ';' AS x FROM stock ORDER BY sku)"),
            w.model.SkusText());
  EXPECT_EQ(site.Text("SELECT group_concat(x, '') FROM (SELECT order_id || '/' || sku || '/' || lot || '=' || qty || ';' AS x "
                      "FROM reservations ORDER BY order_id, sku, lot)"),
            w.model.ReservationsText());
  std::string want_orders;
  for (const auto& [id, st] : w.order_status) want_orders += id + "=" + st + ";";
  EXPECT_EQ(site.Text("SELECT group_concat(x, '') FROM (SELECT order_id || '=' || status || ';' AS x FROM orders ORDER BY order_id)"),
            want_orders);
  // Each message once: the movements applied, the dedupe keys, one record per effect.
  std::string want_mv;
  for (const auto& id : w.applied_movements) want_mv += id + ";";
  EXPECT_EQ(site.Text("SELECT group_concat(x, '') FROM (SELECT id || ';' AS x FROM stock_movements ORDER BY id)"), want_mv);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM dedupe"), static_cast<int64_t>(w.claimed.size()) + 1);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE entity = 2"), static_cast<int64_t>(w.claimed.size() - w.applied_movements.size()));
  // The stock row's version is the count of its STOCK records (one per movement, reservation, release).
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM stock s WHERE version <> (SELECT COUNT(*) FROM outbox o WHERE o.entity = 1 AND o.key = s.sku)"), 0);
  ExpectDenseOutbox(site);
  // Refused orders: one dead letter each (committed with the refusal), naming the shortfall;
  // refused movements: at least one each (a kill between dead letter and ack may repeat it).
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM dead_letters WHERE code = 'conflict' AND reason LIKE 'insufficient stock: order %'"),
            w.refused_orders);
  EXPECT_EQ(site.Int("SELECT COUNT(DISTINCT json_extract(CAST(payload AS TEXT), '$.id')) FROM dead_letters "
                     "WHERE topic = 'fs/stock/movements' AND reason LIKE 'negative stock:%'"),
            static_cast<int64_t>(w.refused_movements.size()));
}

}  // namespace
}  // namespace freshsync::testing
