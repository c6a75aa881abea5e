// SiteRules wired into EdgeStore: events in the outbox and queued for MQTT only after commit,
// snapshots restored across a restart and after a rolled-back transaction, rollups and raw
// retention. No broker: EdgeStore::Apply is driven directly (tests/rules drives real edged).
#include "edge/site_rules.h"

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "edge/store_test_support.h"
#include "freshsync.pb.h"

namespace freshsync::edge {
namespace {

std::vector<GpsFix> Track() {
  std::ifstream in(std::string(FRESHSYNC_GEOFENCE_TESTDATA) + "/sim_seed7_track.csv");
  std::vector<GpsFix> out;
  std::string line;
  uint64_t seq = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::stringstream ss(line);
    std::string vehicle, ts, lat, lon, hdop;
    std::getline(ss, vehicle, ',');
    std::getline(ss, ts, ',');
    std::getline(ss, lat, ',');
    std::getline(ss, lon, ',');
    std::getline(ss, hdop, ',');
    GpsFix g;
    g.vehicle = vehicle;
    g.seq = ++seq;
    g.ts_ms = std::stoll(ts);
    g.lat = std::stod(lat);
    g.lon = std::stod(lon);
    g.hdop = std::stod(hdop);
    out.push_back(g);
  }
  return out;
}

class SiteRulesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.site = "test-site";
    config_.mqtt.topic_root = "fs";
    config_.geofence_file = std::string(FRESHSYNC_GEOFENCE_TESTDATA) + "/sim_seed7_fences.geojson";
    ColdchainRule rule;
    rule.sensors = "cold-*";
    rule.min_c = 0;
    rule.max_c = 4;
    rule.for_s = 300;
    config_.coldchain_rules = {rule};
  }
  void TearDown() override {
    Close();
  }
  void Open() {
    StoreOptions o;
    o.path = (dir_ / "edge.db").string();
    o.clock = &clock_;
    auto s = EdgeStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    auto r = SiteRules::Create(config_);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    rules_ = std::move(*r);
    ASSERT_TRUE(rules_->Attach(*store_).ok());
    store_->SetApplyHook(rules_.get());
  }
  void Close() {  // a crash, as far as the store is concerned: nothing uncommitted survives
    rules_.reset();
    store_.reset();
  }
  // (ts_ms, payload) of each change record of an entity, in seq order.
  std::vector<std::string> Records(int entity) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(store_->db(), "SELECT record FROM outbox WHERE entity = ?1 ORDER BY seq", -1, &st, nullptr);
    sqlite3_bind_int(st, 1, entity);
    std::vector<std::string> out;
    while (sqlite3_step(st) == SQLITE_ROW) {
      v1::ChangeRecord r;
      r.ParseFromArray(sqlite3_column_blob(st, 0), sqlite3_column_bytes(st, 0));
      out.push_back(std::to_string(r.ts_ms()) + " " + (entity == v1::GEOFENCE_EVENT ? r.geofence().ShortDebugString() : r.alert().ShortDebugString()));
    }
    sqlite3_finalize(st);
    return out;
  }
  int64_t Int(const std::string& sql) { return test_support::QueryInt(store_->db(), sql); }
  std::vector<std::string> Topics() {
    std::vector<std::string> out;
    for (auto& p : store_->TakePublications()) out.push_back(p.topic + " " + p.payload);
    return out;
  }

  test_support::TestDir test_dir_{"site-rules-test"};
  const std::filesystem::path& dir_ = test_dir_.path();
  test_support::HandClock clock_;
  EdgeConfig config_;
  std::unique_ptr<EdgeStore> store_;
  std::unique_ptr<SiteRules> rules_;
};

// The expected summary, from edge/geofence's own recorded-track test.
constexpr int kTrackEvents = 17;

TEST_F(SiteRulesTest, RecordedTrackGivesTheEngineEventsInTheOutboxAndOnMqtt) {
  Open();
  const auto track = Track();
  ASSERT_EQ(track.size(), 1800u);
  geofence::GeofenceEngine reference(*geofence::FenceSet::LoadFile(config_.geofence_file), config_.geofence);
  std::vector<std::string> expected_pubs;
  for (const auto& g : track) {
    for (const auto& e : reference.Process({g.vehicle, g.ts_ms, g.lat, g.lon, g.hdop}))
      expected_pubs.push_back("fs/events/geofence " + geofence::EventJson(e));
  }
  std::vector<std::string> pubs;
  for (const auto& g : track) {
    auto r = store_->Apply(g, clock_.now);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (auto& p : Topics()) pubs.push_back(p);
  }
  EXPECT_EQ(pubs.size(), static_cast<size_t>(kTrackEvents));
  EXPECT_EQ(pubs, expected_pubs);
  const auto recs = Records(v1::GEOFENCE_EVENT);
  ASSERT_EQ(recs.size(), static_cast<size_t>(kTrackEvents));
  EXPECT_NE(recs[0].find("fence: \"drop-01\" kind: \"customer_drop\" event: \"enter\""), std::string::npos) << recs[0];
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox WHERE entity = 5 AND priority = 1"), kTrackEvents);
  // Versions per vehicle are dense: 1..17.
  EXPECT_EQ(Int("SELECT MAX(version) FROM outbox WHERE entity = 5 AND key = 'truck-01'"), kTrackEvents);
  // A redelivered fix is a duplicate: no event, no publication.
  ASSERT_TRUE(store_->Apply(track[200], clock_.now).ok());
  EXPECT_TRUE(Topics().empty());
  EXPECT_EQ(Records(v1::GEOFENCE_EVENT).size(), static_cast<size_t>(kTrackEvents));
}

TEST_F(SiteRulesTest, RestartsAndRolledBackCommitsGiveTheSameEventsOnce) {
  Open();
  const auto track = Track();
  std::vector<std::string> pubs;
  int failures = 0;
  for (size_t i = 0; i < track.size(); ++i) {
    if (i % 97 == 0) {  // a crash: close without commit, reopen, restore from rule_state
      Close();
      Open();
    }
    if (i % 13 == 0) {  // a commit that fails (as on a full disk), then the retry
      store_->SetCommitFaultForTest([] { return Status::IOError("injected"); });
      auto r = store_->Apply(track[i], clock_.now);
      ASSERT_EQ(r.status().code(), StatusCode::kIOError);
      store_->SetCommitFaultForTest(nullptr);
      EXPECT_TRUE(Topics().empty());  // nothing of a rolled-back transaction is published
      ++failures;
    }
    auto r = store_->Apply(track[i], clock_.now);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (auto& p : Topics()) pubs.push_back(p);
  }
  EXPECT_GT(failures, 100);
  EXPECT_EQ(pubs.size(), static_cast<size_t>(kTrackEvents));
  EXPECT_EQ(Records(v1::GEOFENCE_EVENT).size(), static_cast<size_t>(kTrackEvents));
}

ClimateSample Reading(const std::string& sensor, uint64_t seq, int64_t ts, double t) {
  ClimateSample c;
  c.sensor = sensor;
  c.seq = seq;
  c.ts_ms = ts;
  c.temp_c = t;
  return c;
}

TEST_F(SiteRulesTest, ColdchainAlertsRollupsAndRawRetention) {
  config_.coldchain.raw_retention_h = 1;
  Open();
  const int64_t t0 = 1767225600000;  // a minute boundary
  std::vector<std::pair<int64_t, double>> series;
  int64_t t = t0;
  auto add = [&](int n, double temp) {
    for (int i = 0; i < n; ++i, t += 30'000) series.push_back({t, temp});
  };
  add(20, 2.0);
  add(4, 8.0);   // 90 s spike: shorter than for_s, no alert
  add(20, 2.0);
  const int64_t excursion_start = t;
  add(15, 7.5);  // 420 s outside, constant: open at 300 s, no update, then closed
  const int64_t excursion_end = t;
  add(260, 2.0);  // 130 min more, so that raw retention trims
  uint64_t seq = 0;
  std::vector<std::string> pubs;
  for (size_t i = 0; i < series.size(); ++i) {
    if (i == 50) {  // a crash in the middle of the excursion
      Close();
      Open();
    }
    auto r = store_->Apply(Reading("cold-1", ++seq, series[i].first, series[i].second), clock_.now);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(store_->Apply(Reading("ambient-1", seq, series[i].first, 20.0), clock_.now).ok());
    for (auto& p : Topics()) pubs.push_back(p);
  }
  ASSERT_EQ(pubs.size(), 2u);
  const std::string id = "cold-1/excursion/" + std::to_string(excursion_start);
  auto open = nlohmann::json::parse(pubs[0].substr(pubs[0].find(' ') + 1));
  auto closed = nlohmann::json::parse(pubs[1].substr(pubs[1].find(' ') + 1));
  EXPECT_EQ(pubs[0].substr(0, pubs[0].find(' ')), "fs/alerts/coldchain");
  EXPECT_EQ(open["alert_id"], id);
  EXPECT_EQ(open["state"], "open");
  EXPECT_EQ(open["started_ts"], excursion_start);
  EXPECT_EQ(closed["state"], "closed");
  EXPECT_EQ(closed["ended_ts"], excursion_end);
  EXPECT_EQ(closed["min_c"], 7.5);
  EXPECT_EQ(closed["max_c"], 7.5);
  const auto recs = Records(v1::COLDCHAIN_ALERT);
  ASSERT_EQ(recs.size(), 2u);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox WHERE entity = 6 AND priority = 1 AND key = '" + id + "'"), 2);
  EXPECT_EQ(Int("SELECT MAX(version) FROM outbox WHERE entity = 6"), 2);
  // Rollups: every closed minute of both sensors, two readings each.
  const int64_t minutes = (t - t0) / 60'000;
  EXPECT_GE(Int("SELECT COUNT(*) FROM climate_rollups WHERE sensor = 'cold-1'"), minutes - 1);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM climate_rollups WHERE sensor = 'cold-1' AND count != 2"), 0);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM climate_rollups WHERE sensor = 'ambient-1'"),
            Int("SELECT COUNT(*) FROM climate_rollups WHERE sensor = 'cold-1'"));
  EXPECT_EQ(Int("SELECT CAST(max_c * 10 AS INTEGER) FROM climate_rollups WHERE sensor = 'cold-1' AND minute_ms = " +
                std::to_string(excursion_start + 60'000)),
            75);
  // Raw readings: only the last hour (plus the current minute) is kept; rollups from the start.
  EXPECT_GE(Int("SELECT MIN(ts_ms) FROM climate_readings WHERE sensor = 'cold-1'"), t - 3600'000 - 120'000);
  EXPECT_EQ(Int("SELECT MIN(minute_ms) FROM climate_rollups WHERE sensor = 'cold-1'"), t0);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM rule_state WHERE engine = 'coldchain'"), 2);
}

TEST_F(SiteRulesTest, BadFenceFileIsRefusedNamingTheFeature) {
  config_.geofence_file = (dir_ / "bad.geojson").string();
  std::ofstream(config_.geofence_file)
      << R"({"type":"FeatureCollection","features":[{"type":"Feature","properties":{"radius_m":50},)"
      << R"("geometry":{"type":"Point","coordinates":[121.5,31.2]}}]})";
  auto r = SiteRules::Create(config_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("geofence.file"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("features[0].properties.name"), std::string::npos) << r.status().message();
  EXPECT_FALSE(SiteRules::CheckConfig(config_).ok());
  config_.geofence_file = (dir_ / "missing.geojson").string();
  EXPECT_FALSE(SiteRules::CheckConfig(config_).ok());
}

}  // namespace
}  // namespace freshsync::edge
