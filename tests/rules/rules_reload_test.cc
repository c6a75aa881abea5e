// SIGHUP reloads the site rules of a running edged (docs/operations.md, "Reload"), through a
// real Mosquitto: a fence added to the file takes effect without a restart, the state of the
// fences that stay is kept, a bad file keeps the running rules, and new cold-chain bounds apply.
// Also: a truck hovering on a fence boundary with GPS noise gives exactly one enter and one exit.
#include <cmath>
#include <csignal>
#include <random>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "freshsync.pb.h"
#include "tests/ingest/site.h"

namespace freshsync::testing {
namespace {

constexpr double kLat = 31.2000, kLon = 121.5000;
constexpr double kPi = 3.14159265358979323846;

// x metres east of (kLat, kLon).
double LonAt(double x_m) { return kLon + x_m / (111'320.0 * std::cos(kLat * kPi / 180)); }

std::string Fence(const std::string& name, double x_m, double radius_m) {
  return nlohmann::json({{"type", "Feature"},
                         {"properties", {{"name", name}, {"kind", "depot"}, {"radius_m", radius_m}}},
                         {"geometry", {{"type", "Point"}, {"coordinates", {LonAt(x_m), kLat}}}}})
      .dump();
}
std::string Fences(const std::vector<std::string>& features) {
  std::string s = R"({"type":"FeatureCollection","features":[)";
  for (size_t i = 0; i < features.size(); ++i) s += (i ? "," : "") + features[i];
  return s + "]}";
}

// A truck on an east-west road through the depot (x = 0, r 150 m) and the yard (x = 1500 m,
// r 100 m): one fix every 5 s, driving at 36 km/h or parked.
class Truck {
 public:
  explicit Truck(double x) : x_(x) {}
  void DriveTo(double to) {
    while (std::abs(to - x_) > 1e-6) {
      x_ += std::clamp(to - x_, -50.0, 50.0);
      Fix(x_);
    }
  }
  void Park(int seconds) {
    for (int s = 0; s < seconds; s += 5) Fix(x_);
  }
  void Fix(double x) {
    ts_ += 5000;
    fixes_.push_back({"fs/vehicles/truck-r/gps", nlohmann::json({{"seq", ++seq_}, {"ts", ts_}, {"lat", kLat}, {"lon", LonAt(x)}, {"hdop", 1.0}}).dump()});
  }
  std::vector<Msg> Take() { return std::exchange(fixes_, {}); }
  uint64_t seq() const { return seq_; }

 private:
  double x_;
  uint64_t seq_ = 0;
  int64_t ts_ = 1767225600000;
  std::vector<Msg> fixes_;
};

// Publishes and waits until edged has stored every fix up to the last one.
void Send(Site& site, Publisher& pub, const std::vector<Msg>& msgs, const std::string& table, const std::string& who, uint64_t last_seq) {
  for (const auto& m : msgs) pub.Publish(m, 50);
  pub.Flush();
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM " + table + " WHERE " + who + " AND seq = " + std::to_string(last_seq), 1,
                           std::chrono::seconds(60)));
}

// "event fence; " for each GEOFENCE_EVENT record of the outbox, in seq order.
std::string GeofenceEvents(const Site& site) {
  std::string out;
  const int64_t n = site.Int("SELECT COUNT(*) FROM outbox WHERE entity = 5");
  for (int64_t i = 0; i < n; ++i) {
    // hex(): Site::Text reads text, and a record may hold NUL bytes.
    const std::string hex = site.Text("SELECT hex(record) FROM outbox WHERE entity = 5 ORDER BY seq LIMIT 1 OFFSET " + std::to_string(i));
    std::string blob;
    for (size_t k = 0; k + 1 < hex.size(); k += 2) blob.push_back(static_cast<char>(std::stoi(hex.substr(k, 2), nullptr, 16)));
    v1::ChangeRecord r;
    EXPECT_TRUE(r.ParseFromString(blob));
    out += r.geofence().event() + " " + r.geofence().fence() + "; ";
  }
  return out;
}

size_t Count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t p = haystack.find(needle); p != std::string::npos; p = haystack.find(needle, p + 1)) ++n;
  return n;
}

TEST(RulesReloadTest, SighupAddsAFenceKeepsStateAndABadFileKeepsTheRunningRules) {
  TempDir tmp;
  const std::string fences = tmp.File("fences.geojson");
  WriteFile(fences, Fences({Fence("depot", 0, 150)}));
  Site site("[geofence]\nfile = \"" + fences + "\"\n");
  ASSERT_TRUE(site.StartEdged());
  Subscriber events(site.broker().Uri(), "reload-watch", "fs/events/geofence");
  auto pub = site.NewPublisher("reload-pub");
  const std::string truck = "vehicle = 'truck-r'";

  // 1. Through the yard (not configured yet), then into the depot.
  Truck t(2500);
  t.DriveTo(1500);
  t.Park(120);
  t.DriveTo(0);
  t.Park(120);
  Send(site, *pub, t.Take(), "vehicle_positions", truck, t.seq());
  EXPECT_EQ(GeofenceEvents(site), "enter depot; ");

  // 2. The yard is added; SIGHUP; out of the depot (its state was kept: an exit, no new
  // enter), through the yard (now an enter and an exit).
  WriteFile(fences, Fences({Fence("depot", 0, 150), Fence("yard", 1500, 100)}));
  site.SignalEdged(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return site.log().find("rules: reload staged (2 fences") != std::string::npos; }, std::chrono::seconds(10)));
  t.DriveTo(1500);
  t.Park(120);
  t.DriveTo(2500);
  Send(site, *pub, t.Take(), "vehicle_positions", truck, t.seq());
  EXPECT_EQ(GeofenceEvents(site), "enter depot; exit depot; enter yard; exit yard; ");
  EXPECT_NE(site.log().find("rules: reloaded (2 fences"), std::string::npos);

  // 3. A bad file (a feature without a name): the error names the file and the feature, and
  // the running rules stay: back into the yard is still an enter.
  WriteFile(fences, R"({"type":"FeatureCollection","features":[{"type":"Feature","properties":{"radius_m":50},)"
                    R"("geometry":{"type":"Point","coordinates":[121.5,31.2]}}]})");
  site.SignalEdged(SIGHUP);
  const std::string want_error = "reload: site rules: geofence.file: " + fences + ": features[0].properties.name";
  ASSERT_TRUE(WaitFor([&] { return site.log().find(want_error) != std::string::npos; }, std::chrono::seconds(10))) << site.log();
  EXPECT_NE(site.log().find("keeping the running rules"), std::string::npos);
  t.DriveTo(1500);
  t.Park(120);
  Send(site, *pub, t.Take(), "vehicle_positions", truck, t.seq());
  EXPECT_EQ(GeofenceEvents(site), "enter depot; exit depot; enter yard; exit yard; enter yard; ");
  EXPECT_EQ(Count(site.log(), "rules: reloaded ("), 1u);
  EXPECT_TRUE(site.EdgedRunning());

  // The same five on MQTT, in order.
  ASSERT_TRUE(WaitFor([&] { return events.Payloads().size() >= 5; }, std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto got = events.Payloads();
  ASSERT_EQ(got.size(), 5u);
  const char* want[][2] = {{"enter", "depot"}, {"exit", "depot"}, {"enter", "yard"}, {"exit", "yard"}, {"enter", "yard"}};
  for (size_t i = 0; i < got.size(); ++i) {
    auto j = nlohmann::json::parse(got[i]);
    EXPECT_EQ(j["event"], want[i][0]) << got[i];
    EXPECT_EQ(j["fence"], want[i][1]) << got[i];
  }
  EXPECT_EQ(site.StopEdged(), 0);
}

TEST(RulesReloadTest, SighupAppliesNewColdchainBounds) {
  const std::string rule = "[[coldchain.rule]]\nsensors = \"cold-*\"\nmin_c = 0.0\nmax_c = 4.0\nfor_s = 60\n";
  Site site(rule);
  ASSERT_TRUE(site.StartEdged());
  auto pub = site.NewPublisher("cold-pub");
  uint64_t seq = 0;
  int64_t ts = 1767225600000;
  auto series = [&](double temp_c, int seconds) {
    std::vector<Msg> out;
    for (int s = 0; s < seconds; s += 10) {
      ts += 10'000;
      out.push_back({"fs/sensors/cold-1/climate", nlohmann::json({{"seq", ++seq}, {"ts", ts}, {"temp_c", temp_c}}).dump()});
    }
    return out;
  };
  const std::string sensor = "sensor = 'cold-1'";
  auto send = [&](double temp_c, int seconds) {
    const auto msgs = series(temp_c, seconds);  // before reading seq: it advances it
    Send(site, *pub, msgs, "climate_readings", sensor, seq);
  };
  // 6 degC for two minutes breaks max_c 4 for longer than for_s: open, then closed.
  send(3.0, 60);
  send(6.0, 120);
  send(3.0, 30);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE entity = 6"), 2);
  // max_c 8 after SIGHUP: the same two minutes at 6 degC are no excursion.
  std::string conf = ReadFile(site.config_path());
  const size_t at = conf.find("max_c = 4.0");
  ASSERT_NE(at, std::string::npos);
  conf.replace(at, 11, "max_c = 8.0");
  WriteFile(site.config_path(), conf);
  site.SignalEdged(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return site.log().find("rules: reload staged (0 fences, 1 cold-chain rules)") != std::string::npos; },
                      std::chrono::seconds(10)));
  send(6.0, 120);
  send(3.0, 30);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE entity = 6"), 2);
  EXPECT_NE(site.log().find("rules: reloaded (0 fences, 1 cold-chain rules); state of 0 vehicles and 1 sensors kept"), std::string::npos)
      << site.log();
  // ... while 9 degC still is one.
  send(9.0, 120);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM outbox WHERE entity = 6"), 3);
  EXPECT_EQ(site.StopEdged(), 0);
}

// A truck that drives into the depot, then stands for 20 minutes with its GPS fix jumping
// +-10 m around the depot's edge, then drives away: one enter, one exit, nothing in between.
TEST(RulesReloadTest, JitteryBoundaryGivesExactlyOneEnterAndOneExit) {
  TempDir tmp;
  const std::string fences = tmp.File("fences.geojson");
  WriteFile(fences, Fences({Fence("depot", 0, 150)}));
  Site site("[geofence]\nfile = \"" + fences + "\"\n");
  ASSERT_TRUE(site.StartEdged());
  Subscriber events(site.broker().Uri(), "jitter-watch", "fs/events/geofence");
  auto pub = site.NewPublisher("jitter-pub");
  Truck t(1000);
  t.DriveTo(0);
  t.Park(60);
  t.DriveTo(150);  // on the boundary
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> noise(-10.0, 10.0);
  for (int s = 0; s < 1200; s += 5) t.Fix(150 + noise(rng));
  t.DriveTo(1000);
  Send(site, *pub, t.Take(), "vehicle_positions", "vehicle = 'truck-r'", t.seq());
  EXPECT_EQ(GeofenceEvents(site), "enter depot; exit depot; ");
  ASSERT_TRUE(WaitFor([&] { return events.Payloads().size() >= 2; }, std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(events.Payloads().size(), 2u);
  EXPECT_EQ(site.StopEdged(), 0);
}

}  // namespace
}  // namespace freshsync::testing
