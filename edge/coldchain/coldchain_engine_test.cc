#include "edge/coldchain/coldchain_engine.h"

#include <cmath>
#include <functional>
#include <memory>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sim/site_simulator.h"

namespace freshsync::coldchain {
namespace {

constexpr int64_t kT0 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z, a minute boundary
int64_t S(int64_t seconds) { return kT0 + seconds * 1000; }

std::vector<ColdchainRule> Rules() {
  return {{"cold-room-9", 10, 12, 60}, {"cold-*", 0, 4, 300}, {"freezer-*", -25, -15, 120}};
}

struct Collected {
  std::vector<AlertEvent> alerts;
  std::vector<Rollup> rollups;
  void Add(const Output& o) {
    alerts.insert(alerts.end(), o.alerts.begin(), o.alerts.end());
    rollups.insert(rollups.end(), o.rollups.begin(), o.rollups.end());
  }
  std::vector<AlertEvent> Where(AlertState state) const {
    std::vector<AlertEvent> out;
    for (const auto& a : alerts)
      if (a.state == state) out.push_back(a);
    return out;
  }
};

// Feeds readings the way edged does: Process, then Tick with the newest ts seen so far.
class Feeder {
 public:
  explicit Feeder(ColdchainEngine& engine) : engine_(engine) {}
  void Read(const std::string& sensor, int64_t ts, double temp) {
    got.Add(engine_.Process({sensor, ts, temp}));
    got.Add(engine_.Tick(engine_.NewestTs()));
  }
  Collected got;

 private:
  ColdchainEngine& engine_;
};

// One reading per 10 s from `from_s` to `to_s` (exclusive), temperature given by `temp(t_s)`.
void Series(Feeder& f, const std::string& sensor, int from_s, int to_s, const std::function<double(int)>& temp) {
  for (int t = from_s; t < to_s; t += 10) f.Read(sensor, S(t), temp(t));
}

TEST(ColdchainEngineTest, ExactAlertsAndDurations) {
  ColdchainEngine engine(Rules(), ColdchainSettings{});
  Feeder f(engine);
  Series(f, "cold-1", 0, 4000, [](int t) {
    if (t >= 600 && t < 1200) return 6.0;   // 600 s too warm: an alert, opened at 900 s
    if (t >= 2000 && t < 2200) return 5.0;  // 200 s spike (last reading 190 s after the first): nothing
    if (t >= 3000 && t < 3400) return -1.0; // 400 s too cold: an alert, opened at 3300 s
    return 2.0;
  });
  ASSERT_EQ(f.got.alerts.size(), 4u);
  const auto opened = f.got.Where(AlertState::kOpen);
  const auto closed = f.got.Where(AlertState::kClosed);
  ASSERT_EQ(opened.size(), 2u);
  ASSERT_EQ(closed.size(), 2u);
  EXPECT_EQ(opened[0].alert_id, "cold-1/excursion/" + std::to_string(S(600)));
  EXPECT_EQ(opened[0].ts_ms, S(900));
  EXPECT_EQ(opened[0].started_ts_ms, S(600));
  EXPECT_EQ(opened[0].kind, AlertKind::kExcursion);
  EXPECT_STREQ(opened[0].WireState(), "open");
  EXPECT_EQ(opened[0].rule, "cold-*");
  EXPECT_EQ(opened[0].limit_max_c, 4.0);
  EXPECT_EQ(closed[0].alert_id, opened[0].alert_id);
  EXPECT_EQ(closed[0].ended_ts_ms, S(1200));
  EXPECT_EQ(closed[0].duration_ms(), 600'000);
  EXPECT_EQ(closed[0].min_c, 6.0);
  EXPECT_EQ(closed[0].max_c, 6.0);
  EXPECT_STREQ(closed[0].WireState(), "closed");
  EXPECT_EQ(opened[1].started_ts_ms, S(3000));
  EXPECT_EQ(opened[1].ts_ms, S(3300));
  EXPECT_EQ(closed[1].duration_ms(), 400'000);
  EXPECT_EQ(closed[1].min_c, -1.0);
  EXPECT_TRUE(engine.OpenAlerts().empty());
}

TEST(ColdchainEngineTest, AlertJsonHasTheDesignFields) {
  AlertEvent a;
  a.alert_id = "cold-1/excursion/1000";
  a.sensor = "cold-1";
  a.state = AlertState::kUpdate;
  a.min_c = 4.5;
  a.max_c = 7.25;
  a.started_ts_ms = 1000;
  a.rule = "cold-*";
  a.limit_max_c = 4;
  auto j = nlohmann::json::parse(AlertJson(a));
  EXPECT_EQ(j["alert_id"], "cold-1/excursion/1000");
  EXPECT_EQ(j["sensor"], "cold-1");
  EXPECT_EQ(j["kind"], "excursion");
  EXPECT_EQ(j["state"], "open");
  EXPECT_EQ(j["min_c"], 4.5);
  EXPECT_EQ(j["max_c"], 7.25);
  EXPECT_EQ(j["started_ts"], 1000);
  EXPECT_FALSE(j.contains("ended_ts"));
  a.state = AlertState::kClosed;
  a.ended_ts_ms = 5000;
  j = nlohmann::json::parse(AlertJson(a));
  EXPECT_EQ(j["state"], "closed");
  EXPECT_EQ(j["ended_ts"], 5000);
}

TEST(ColdchainEngineTest, SpikeShorterThanForSOpensNothingExactlyForSOpens) {
  ColdchainEngine engine(Rules(), ColdchainSettings{});
  Feeder f(engine);
  // Outside from 1000 s to 1290 s: lasted 290 s < 300 s.
  Series(f, "cold-1", 0, 2000, [](int t) { return t >= 1000 && t <= 1290 ? 9.0 : 3.0; });
  EXPECT_TRUE(f.got.alerts.empty());
  // Outside from 3000 s to 3300 s: lasted exactly 300 s, so it opens at 3300 and closes at 3310.
  Series(f, "cold-1", 2000, 4000, [](int t) { return t >= 3000 && t <= 3300 ? 9.0 : 3.0; });
  ASSERT_EQ(f.got.alerts.size(), 2u);
  EXPECT_EQ(f.got.alerts[0].ts_ms, S(3300));
  EXPECT_EQ(f.got.alerts[1].ended_ts_ms, S(3310));
  // A boundary value is inside: [min_c, max_c] is closed.
  Series(f, "cold-1", 4000, 5000, [](int) { return 4.0; });
  EXPECT_EQ(f.got.alerts.size(), 2u);
}

TEST(ColdchainEngineTest, HoveringAtTheLimitOpensNothing) {
  // 3.9 / 4.1 alternating for an hour: no outside run lasts beyond one reading.
  ColdchainEngine engine(Rules(), ColdchainSettings{});
  Feeder f(engine);
  Series(f, "cold-1", 0, 3600, [](int t) { return (t / 10) % 2 ? 4.1 : 3.9; });
  EXPECT_TRUE(f.got.alerts.empty());
}

TEST(ColdchainEngineTest, LongExcursionEmitsRateLimitedUpdates) {
  ColdchainEngine engine(Rules(), ColdchainSettings{});
  Feeder f(engine);
  auto warm = [](int t) { return 5.0 + 0.1 * ((t - 600) / 10); };  // rising 0.1 per reading
  Series(f, "cold-1", 0, 2500, [&](int t) { return t >= 600 && t < 2400 ? warm(t) : 2.0; });
  const auto opened = f.got.Where(AlertState::kOpen);
  const auto updates = f.got.Where(AlertState::kUpdate);
  const auto closed = f.got.Where(AlertState::kClosed);
  ASSERT_EQ(opened.size(), 1u);
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(opened[0].ts_ms, S(900));
  EXPECT_EQ(opened[0].max_c, warm(900));
  // Opened at 900 s; the max rises with every reading, so an update goes out every 60 s:
  // 960, 1020, ..., 2340 s, which is 24 of them, the last readings' rise reported only at close.
  ASSERT_EQ(updates.size(), 24u);
  for (size_t i = 0; i < updates.size(); ++i) {
    EXPECT_EQ(updates[i].ts_ms, S(960 + 60 * static_cast<int>(i)));
    EXPECT_EQ(updates[i].max_c, warm(960 + 60 * static_cast<int>(i)));
    EXPECT_EQ(updates[i].min_c, 5.0);
    EXPECT_EQ(updates[i].alert_id, opened[0].alert_id);
    EXPECT_STREQ(updates[i].WireState(), "open");
  }
  EXPECT_EQ(closed[0].max_c, warm(2390));
  EXPECT_EQ(closed[0].min_c, 5.0);
  EXPECT_EQ(closed[0].duration_ms(), 1'800'000);
}

TEST(ColdchainEngineTest, FlatExcursionHasNoUpdates) {
  ColdchainEngine engine(Rules(), ColdchainSettings{});
  Feeder f(engine);
  Series(f, "cold-1", 0, 3000, [](int t) { return t >= 100 && t < 2500 ? 7.5 : 2.0; });
  ASSERT_EQ(f.got.alerts.size(), 2u);
  EXPECT_EQ(f.got.alerts[1].duration_ms(), 2'400'000);
}

TEST(ColdchainEngineTest, OfflineAlertRaisedAndClosed) {
  ColdchainEngine engine(Rules(), ColdchainSettings{});
  Feeder f(engine);
  for (int t = 0; t <= 2400; t += 10) {
    if (t <= 600 || t >= 1800) f.Read("cold-1", S(t), 2.0);  // silent from 600 s to 1800 s
    f.Read("cold-2", S(t), 2.5);
    if (t <= 100) f.Read("ambient-1", S(t), 20.0);           // no rule: never an offline alert
  }
  ASSERT_EQ(f.got.alerts.size(), 2u);
  const AlertEvent& open = f.got.alerts[0];
  const AlertEvent& closed = f.got.alerts[1];
  // Usual interval 10 s, so the threshold is max(5 x 10 s, 600 s) = 600 s: the first tick more
  // than 600 s after the last reading (600 s) is cold-2's reading at 1210 s.
  EXPECT_EQ(open.kind, AlertKind::kOffline);
  EXPECT_STREQ(open.KindName(), "offline");
  EXPECT_EQ(open.state, AlertState::kOpen);
  EXPECT_EQ(open.alert_id, "cold-1/offline/" + std::to_string(S(600)));
  EXPECT_EQ(open.started_ts_ms, S(600));
  EXPECT_EQ(open.ts_ms, S(1210));
  EXPECT_EQ(open.min_c, 2.0);
  EXPECT_EQ(closed.alert_id, open.alert_id);
  EXPECT_EQ(closed.state, AlertState::kClosed);
  EXPECT_EQ(closed.ended_ts_ms, S(1800));
  EXPECT_EQ(closed.duration_ms(), 1'200'000);
}

TEST(ColdchainEngineTest, OfflineThresholdFollowsTheUsualInterval) {
  ColdchainEngine engine(Rules(), ColdchainSettings{});
  Feeder f(engine);
  // A sensor reporting every 300 s: the threshold is 5 x 300 s = 1500 s, not 600 s.
  auto run = [&](int from, int silence_s) {
    for (int t = from; t <= from + 3600; t += 10) {
      if ((t - from) % 300 == 0 && (t - from <= 1800 || t - from >= 1800 + silence_s)) f.Read("cold-slow", S(t), 3.0);
      f.Read("cold-fast", S(t), 3.0);
    }
  };
  run(0, 1500);  // silent 1800..3300 s: exactly 1500 s, not more: no alert
  EXPECT_TRUE(f.got.alerts.empty());
  run(4000, 1800);  // silent 1800 s: alert once the tick passes last + 1500 s
  ASSERT_EQ(f.got.alerts.size(), 2u);
  EXPECT_EQ(f.got.alerts[0].started_ts_ms, S(4000 + 1800));
  EXPECT_EQ(f.got.alerts[0].ts_ms, S(4000 + 1800 + 1510));
  EXPECT_EQ(f.got.alerts[1].ended_ts_ms, S(4000 + 3600));
}

TEST(ColdchainEngineTest, RollupValuesExact) {
  ColdchainEngine engine(Rules(), ColdchainSettings{});
  Collected got;
  auto read = [&](int64_t ms, double temp) { got.Add(engine.Process({"probe-x", kT0 + ms, temp})); };
  read(0, 1.0);
  read(15'000, 2.0);
  read(30'000, 3.0);
  read(45'000, 6.0);
  EXPECT_TRUE(got.rollups.empty());
  read(60'000, 0.5);  // minute 1 starts: minute 0 closes
  ASSERT_EQ(got.rollups.size(), 1u);
  EXPECT_EQ(got.rollups[0], (Rollup{"probe-x", kT0, 4, 1.0, 3.0, 6.0}));
  read(90'000, 1.5);
  read(125'000, 4.0);
  ASSERT_EQ(got.rollups.size(), 2u);
  EXPECT_EQ(got.rollups[1], (Rollup{"probe-x", kT0 + 60'000, 2, 0.5, 1.0, 1.5}));
  // The silent sensor's minute 2 is flushed by Tick a grace minute after it ends, not before.
  got.Add(engine.Tick(kT0 + 180'000 + 59'999));
  EXPECT_EQ(got.rollups.size(), 2u);
  got.Add(engine.Tick(kT0 + 240'000));
  ASSERT_EQ(got.rollups.size(), 3u);
  EXPECT_EQ(got.rollups[2], (Rollup{"probe-x", kT0 + 120'000, 1, 4.0, 4.0, 4.0}));
  EXPECT_TRUE(got.alerts.empty());  // no rule for probe-x: rollups only
  // A reading for the flushed minute (newer than the last reading, though) is left out of rollups.
  read(170'000, 9.0);
  EXPECT_EQ(engine.counters().late_for_rollup, 1u);
  read(250'000, 5.0);
  read(310'000, 7.0);
  ASSERT_EQ(got.rollups.size(), 4u);
  EXPECT_EQ(got.rollups[3], (Rollup{"probe-x", kT0 + 240'000, 1, 5.0, 5.0, 5.0}));
}

TEST(ColdchainEngineTest, FirstMatchingRuleWins) {
  ColdchainEngine engine(Rules(), ColdchainSettings{});
  ASSERT_NE(engine.RuleFor("cold-room-9"), nullptr);
  EXPECT_EQ(engine.RuleFor("cold-room-9")->min_c, 10);
  EXPECT_EQ(engine.RuleFor("cold-room-1")->min_c, 0);
  EXPECT_EQ(engine.RuleFor("ambient-1"), nullptr);
  Feeder f(engine);
  Series(f, "cold-room-9", 0, 600, [](int) { return 11.0; });  // fine by its own rule
  EXPECT_TRUE(f.got.alerts.empty());
  Series(f, "freezer-1", 0, 600, [](int t) { return t < 300 ? -10.0 : -18.0; });  // 300 s >= 120 s
  ASSERT_EQ(f.got.alerts.size(), 2u);
  EXPECT_EQ(f.got.alerts[0].ts_ms, S(120));
  EXPECT_EQ(f.got.alerts[0].rule, "freezer-*");
  EXPECT_EQ(f.got.alerts[1].duration_ms(), 300'000);
}

TEST(ColdchainEngineTest, OutOfOrderAndInvalidChangeNothing) {
  ColdchainEngine engine(Rules(), ColdchainSettings{});
  Verdict v;
  (void)engine.Process({"cold-1", S(100), 9.0}, &v);
  EXPECT_EQ(v, Verdict::kApplied);
  const std::string before = engine.SnapshotSensor("cold-1");
  (void)engine.Process({"cold-1", S(50), 2.0}, &v);
  EXPECT_EQ(v, Verdict::kOutOfOrder);
  (void)engine.Process({"cold-1", S(100), 2.0}, &v);
  EXPECT_EQ(v, Verdict::kOutOfOrder);
  (void)engine.Process({"cold-1", S(200), std::nan("")}, &v);
  EXPECT_EQ(v, Verdict::kInvalid);
  (void)engine.Process({"cold-1", S(200), INFINITY}, &v);
  EXPECT_EQ(v, Verdict::kInvalid);
  EXPECT_EQ(engine.SnapshotSensor("cold-1"), before);
  EXPECT_EQ(engine.counters().out_of_order, 2u);
  EXPECT_EQ(engine.counters().invalid, 2u);
  // The excursion run that started at 100 s is intact: it opens at 400 s.
  auto out = engine.Process({"cold-1", S(400), 9.0});
  ASSERT_EQ(out.alerts.size(), 1u);
  EXPECT_EQ(out.alerts[0].started_ts_ms, S(100));
}

TEST(ColdchainEngineTest, CorruptSnapshotIsRefused) {
  ColdchainEngine engine(Rules(), ColdchainSettings{});
  (void)engine.Process({"cold-1", S(0), 9.0});
  const std::string before = engine.SnapshotSensor("cold-1");
  EXPECT_EQ(engine.RestoreSensor("cold-1", "{").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.RestoreSensor("cold-1", R"({"v":9})").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.RestoreSensor("cold-1", R"({"v":1,"ts":1,"t":2,"iv":[],"rt":0,"bk":[0,0,0,0,0]})").code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.Restore(R"({"v":1,"sensors":{"x":{"v":1}}})").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.SnapshotSensor("cold-1"), before);
  ASSERT_TRUE(engine.RestoreSensor("cold-1", "").ok());
  EXPECT_EQ(engine.SnapshotSensor("cold-1"), "");
}

// --- Snapshot / restore ---------------------------------------------------------------------

struct Msg {
  std::string sensor;
  int64_t ts;
  double temp;
};

// Cold rooms from the simulator (drift, door openings, compressor faults), plus a room that
// falls silent for a while, over `hours`.
std::vector<Msg> SimSeries(uint64_t seed, int hours) {
  sim::SimOptions opt;
  opt.seed = seed;
  opt.trucks = 0;
  opt.cold_rooms = 3;
  opt.orders_per_min = 0;
  opt.spoilage_per_hour = 0;
  opt.compressor_faults_per_day = 24;
  sim::SiteSimulator simulator(opt);
  std::vector<Msg> out;
  for (const auto& m : simulator.Advance(hours * 3600'000LL)) {
    if (m.topic.find("/climate") == std::string::npos) continue;
    const auto j = nlohmann::json::parse(m.payload);
    const auto a = m.topic.find("/sensors/") + 9;
    const std::string sensor = m.topic.substr(a, m.topic.find('/', a) - a);
    const int64_t ts = j["ts"].get<int64_t>();
    // cold-room-2 goes silent for 40 minutes in the second hour.
    if (sensor == "cold-room-2" && ts >= opt.start_ms + 3600'000 && ts < opt.start_ms + 6000'000) continue;
    out.push_back({sensor, ts, j["temp_c"].get<double>()});
  }
  return out;
}

std::vector<ColdchainRule> SimRules() { return {{"cold-room-*", 0, 4, 300}}; }

// One uninterrupted run, for reference.
Collected Straight(const std::vector<Msg>& msgs) {
  ColdchainEngine engine(SimRules(), ColdchainSettings{});
  Collected got;
  for (const auto& m : msgs) {
    got.Add(engine.Process({m.sensor, m.ts, m.temp}));
    got.Add(engine.Tick(engine.NewestTs()));
  }
  return got;
}

TEST(ColdchainSnapshotTest, SimSeriesHasAlertsOfEveryKind) {
  const auto msgs = SimSeries(3, 6);
  const Collected got = Straight(msgs);
  int excursion_open = 0, excursion_closed = 0, offline = 0, updates = 0;
  for (const auto& a : got.alerts) {
    if (a.kind == AlertKind::kOffline) ++offline;
    else if (a.state == AlertState::kOpen) ++excursion_open;
    else if (a.state == AlertState::kClosed) ++excursion_closed;
    else ++updates;
  }
  EXPECT_GT(excursion_open, 0);
  EXPECT_GE(excursion_open, excursion_closed);
  EXPECT_EQ(offline, 2);  // cold-room-2: raised and closed
  EXPECT_GT(updates, 0);
  EXPECT_GT(got.rollups.size(), 3u * 6 * 60 - 60);
  // Same input, same output: nothing depends on the wall clock or on iteration order.
  const Collected again = Straight(msgs);
  EXPECT_EQ(again.alerts, got.alerts);
  EXPECT_EQ(again.rollups, got.rollups);
}

// Restarting from the per-sensor store every 101 messages (and after every tick's outputs, as
// edged persists them) gives exactly the outputs of an uninterrupted run: the same alert ids,
// updates, durations and rollups. Split points fall mid-excursion and mid-silence.
TEST(ColdchainSnapshotTest, RestoreMidExcursionGivesSameOutputs) {
  const auto msgs = SimSeries(3, 6);
  const Collected want = Straight(msgs);
  ASSERT_FALSE(want.alerts.empty());

  std::map<std::string, std::string> store;
  Collected got;
  int mid_excursion_restarts = 0;
  auto engine = std::make_unique<ColdchainEngine>(SimRules(), ColdchainSettings{});
  for (size_t i = 0; i < msgs.size(); ++i) {
    if (i % 101 == 0) {
      if (!engine->OpenAlerts().empty()) ++mid_excursion_restarts;
      engine = std::make_unique<ColdchainEngine>(SimRules(), ColdchainSettings{});
      for (const auto& [id, blob] : store) ASSERT_TRUE(engine->RestoreSensor(id, blob).ok());
    }
    const Msg& m = msgs[i];
    Output o = engine->Process({m.sensor, m.ts, m.temp});
    got.Add(o);
    store[m.sensor] = engine->SnapshotSensor(m.sensor);
    Output t = engine->Tick(engine->NewestTs());
    got.Add(t);
    for (const auto& a : t.alerts) store[a.sensor] = engine->SnapshotSensor(a.sensor);
    for (const auto& r : t.rollups) store[r.sensor] = engine->SnapshotSensor(r.sensor);
  }
  EXPECT_GT(mid_excursion_restarts, 0);
  EXPECT_EQ(got.alerts, want.alerts);
  EXPECT_EQ(got.rollups, want.rollups);
}

TEST(ColdchainSnapshotTest, CrashBeforeCommitThenRedeliveryGivesSameOutputs) {
  const auto msgs = SimSeries(5, 3);
  const Collected want = Straight(msgs);
  ColdchainEngine engine(SimRules(), ColdchainSettings{});
  Collected got;
  std::string committed = engine.Snapshot();
  for (size_t i = 0; i < msgs.size(); ++i) {
    const Msg& m = msgs[i];
    if (i % 997 == 500) {
      // Applied in memory, then the process dies before the commit: outputs lost.
      (void)engine.Process({m.sensor, m.ts, m.temp});
      (void)engine.Tick(engine.NewestTs());
      ColdchainEngine restarted(SimRules(), ColdchainSettings{});
      ASSERT_TRUE(restarted.Restore(committed).ok());
      ASSERT_EQ(restarted.Snapshot(), committed);
      engine = std::move(restarted);
    }
    got.Add(engine.Process({m.sensor, m.ts, m.temp}));
    got.Add(engine.Tick(engine.NewestTs()));
    committed = engine.Snapshot();
  }
  EXPECT_EQ(got.alerts, want.alerts);
  EXPECT_EQ(got.rollups, want.rollups);
}

}  // namespace
}  // namespace freshsync::coldchain
