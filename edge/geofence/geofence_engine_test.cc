#include "edge/geofence/geofence_engine.h"

#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "sim/site_simulator.h"

namespace freshsync::geofence {
namespace {

constexpr double kLat0 = 31.22, kLon0 = 121.544;
constexpr double kMPerDegLat = 111195.08;
constexpr int64_t kT0 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
double MLon() { return kMPerDegLat * std::cos(kLat0 * 3.14159265358979323846 / 180); }
LatLon At(double east_m, double north_m) { return {kLat0 + north_m / kMPerDegLat, kLon0 + east_m / MLon()}; }

// Depot: a 200 m square with its south-west corner at the origin. Drop: a 60 m circle 2 km east.
std::string TestFences() {
  auto pos = [](double e, double n) {
    const LatLon p = At(e, n);
    // Not `"[" + std::to_string(...)`: GCC 12's -Wrestrict false positive at -O3 (bug 105651).
    std::string s = "[";
    s += std::to_string(p.lon);
    s += ",";
    s += std::to_string(p.lat);
    s += "]";
    return s;
  };
  char lonlat[96];
  const LatLon drop = At(2000, 100);
  std::snprintf(lonlat, sizeof lonlat, "[%.9f,%.9f]", drop.lon, drop.lat);
  return std::string(R"({"type":"FeatureCollection","features":[)") +
         R"({"type":"Feature","properties":{"name":"depot","kind":"depot"},"geometry":{"type":"Polygon","coordinates":[[)" +
         pos(0, 0) + "," + pos(200, 0) + "," + pos(200, 200) + "," + pos(0, 200) + "," + pos(0, 0) + "]]}}," +
         R"({"type":"Feature","properties":{"name":"drop-1","kind":"customer_drop","radius_m":60},"geometry":{"type":"Point","coordinates":)" +
         lonlat + "}}]}";
}

FenceSet Fences(const std::string& text = TestFences()) {
  auto set = FenceSet::FromGeoJson(text);
  EXPECT_TRUE(set.ok()) << set.status().ToString();
  return std::move(*set);
}

// Builds a 1 Hz track in local metres.
class Track {
 public:
  explicit Track(std::string vehicle, double e, double n, int64_t t = kT0) : vehicle_(std::move(vehicle)), e_(e), n_(n), t_(t) {}
  // Drives in a straight line at `mps`, one fix per second, ending exactly at the target.
  Track& DriveTo(double e, double n, double mps = 10) {
    const double de = e - e_, dn = n - n_;
    const double dist = std::sqrt(de * de + dn * dn);
    const int steps = std::max(1, static_cast<int>(std::ceil(dist / mps)));
    const double e0 = e_, n0 = n_;
    for (int k = 1; k <= steps; ++k) {
      e_ = e0 + de * k / steps;
      n_ = n0 + dn * k / steps;
      Fix();
    }
    return *this;
  }
  // Stays put for `seconds`, one fix per second, with uniform noise of +-noise_m on each axis.
  Track& Park(int seconds, double noise_m = 0, uint64_t seed = 1) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(-noise_m, noise_m);
    for (int k = 0; k < seconds; ++k) {
      const double ne = noise_m > 0 ? u(rng) : 0, nn = noise_m > 0 ? u(rng) : 0;
      Fix(ne, nn);
    }
    return *this;
  }
  Track& Fix(double de = 0, double dn = 0, std::optional<double> hdop = 1.0) {
    t_ += 1000;
    const LatLon p = At(e_ + de, n_ + dn);
    fixes_.push_back({vehicle_, t_, p.lat, p.lon, hdop});
    return *this;
  }
  std::vector<GpsFix>& fixes() { return fixes_; }
  int64_t t() const { return t_; }

 private:
  std::string vehicle_;
  double e_, n_;
  int64_t t_;
  std::vector<GpsFix> fixes_;
};

std::vector<GeofenceEvent> Feed(GeofenceEngine& engine, const std::vector<GpsFix>& fixes) {
  std::vector<GeofenceEvent> all;
  for (const auto& f : fixes) {
    auto ev = engine.Process(f);
    all.insert(all.end(), ev.begin(), ev.end());
  }
  return all;
}

std::string Summary(const std::vector<GeofenceEvent>& events) {
  std::string s;
  for (const auto& e : events) s += e.vehicle + " " + e.EventName() + " " + e.fence + "@" + std::to_string((e.ts_ms - kT0) / 1000) + "\n";
  return s;
}

GeofenceSettings Defaults() { return GeofenceSettings{}; }  // hysteresis 20 m, dwell 30 s, hdop 5, 150 km/h

TEST(GeofenceEngineTest, HandTrackExactEventsAndDriveThrough) {
  GeofenceEngine engine(Fences(), Defaults());
  Track track("truck-1", -1005, 100);
  track.DriveTo(100, 100)       // into the depot: x >= 20 m (20 m inside) first at the fix at x = 25
      .Park(300)                // loading
      .DriveTo(2000, 100)       // to the drop
      .Park(300)                // unloading
      .DriveTo(-1000, 100);     // back west, straight through the depot without stopping
  const auto events = Feed(engine, track.fixes());
  ASSERT_EQ(events.size(), 4u) << Summary(events);
  EXPECT_EQ(events[0].type, GeofenceEvent::Type::kEnter);
  EXPECT_EQ(events[0].fence, "depot");
  EXPECT_EQ(events[0].kind, "depot");
  EXPECT_EQ(events[0].ts_ms, kT0 + 103'000);  // fix 103 is at x = 25
  EXPECT_EQ(events[0].confirmed_ts_ms, kT0 + 133'000);
  EXPECT_EQ(events[1].type, GeofenceEvent::Type::kExit);
  EXPECT_EQ(events[1].fence, "depot");
  // The truck leaves the parking spot at 100+111+300 = 411 s; x >= 220 (20 m out) at +12 fixes.
  EXPECT_EQ(events[1].ts_ms, kT0 + 423'000);
  EXPECT_EQ(events[1].confirmed_ts_ms, kT0 + 453'000);
  EXPECT_EQ(events[2].type, GeofenceEvent::Type::kEnter);
  EXPECT_EQ(events[2].fence, "drop-1");
  EXPECT_EQ(events[2].kind, "customer_drop");
  EXPECT_EQ(events[3].type, GeofenceEvent::Type::kExit);
  EXPECT_EQ(events[3].fence, "drop-1");
  EXPECT_EQ(engine.counters().accepted, track.fixes().size());
  EXPECT_TRUE(engine.InsideOf("truck-1").empty());
}

TEST(GeofenceEngineTest, EventJsonHasTheDesignFields) {
  const GeofenceEvent e{"truck-1", "depot", "depot", GeofenceEvent::Type::kExit, 1000, 31000};
  const auto j = nlohmann::json::parse(EventJson(e));
  EXPECT_EQ(j["vehicle"], "truck-1");
  EXPECT_EQ(j["fence"], "depot");
  EXPECT_EQ(j["kind"], "depot");
  EXPECT_EQ(j["event"], "exit");
  EXPECT_EQ(j["ts"], 1000);
  EXPECT_EQ(j["confirmed_ts"], 31000);
}

TEST(GeofenceEngineTest, JitteryBoundaryDoesNotFlap) {
  // Parked right on the depot's west edge for an hour, +-10 m of noise on each axis.
  Track track("truck-1", -500, 100);
  track.DriveTo(0, 100).Park(3600, 10, 42).DriveTo(-500, 100);
  {
    GeofenceEngine engine(Fences(), Defaults());
    const auto events = Feed(engine, track.fixes());
    EXPECT_TRUE(events.empty()) << Summary(events);
  }
  {
    // Without hysteresis and dwell the same track flaps: what the two settings are for.
    GeofenceSettings naive = Defaults();
    naive.hysteresis_m = 0;
    naive.dwell_s = 0;
    GeofenceEngine engine(Fences(), naive);
    EXPECT_GT(Feed(engine, track.fixes()).size(), 100u);
  }
}

TEST(GeofenceEngineTest, JitterOnCircleEdgeAndRandomHoversNeverFlap) {
  // Parked on drop-1's circle edge (60 m from its centre at 2000, 100), +-10 m, for an hour.
  {
    Track track("truck-1", 1000, 100);
    track.DriveTo(1940, 100).Park(3600, 10, 3).DriveTo(1000, 100);
    GeofenceEngine engine(Fences(), Defaults());
    const auto events = Feed(engine, track.fixes());
    EXPECT_TRUE(events.empty()) << Summary(events);
  }
  // Property: hovering anywhere (on, near or across an edge) with noise up to +-10 m gives at
  // most one event, because one transition needs 2 x 20 m of real movement to be undone.
  std::mt19937_64 rng(2024);
  std::uniform_real_distribution<double> where(-60, 260);
  for (int trial = 0; trial < 40; ++trial) {
    const double e = where(rng), n = where(rng);
    Track track("truck-1", e, n);
    track.Park(1800, 10, 100 + trial);
    GeofenceEngine engine(Fences(), Defaults());
    const auto events = Feed(engine, track.fixes());
    EXPECT_LE(events.size(), 1u) << "at " << e << "," << n << "\n" << Summary(events);
  }
}

TEST(GeofenceEngineTest, JitterJustInsideAfterEnteringGivesNoExit) {
  // Enters properly, then parks 5 m inside the edge with +-10 m noise for an hour: exactly one
  // event (the enter), no exit until it really drives off.
  Track track("truck-1", -500, 100);
  track.DriveTo(100, 100).Park(60).DriveTo(5, 100).Park(3600, 10, 7);
  GeofenceEngine engine(Fences(), Defaults());
  auto events = Feed(engine, track.fixes());
  ASSERT_EQ(events.size(), 1u) << Summary(events);
  EXPECT_EQ(events[0].type, GeofenceEvent::Type::kEnter);
  track.fixes().clear();
  track.DriveTo(-500, 100);
  events = Feed(engine, track.fixes());
  ASSERT_EQ(events.size(), 1u) << Summary(events);
  EXPECT_EQ(events[0].type, GeofenceEvent::Type::kExit);
}

TEST(GeofenceEngineTest, TeleportIsGated) {
  Track track("truck-1", 2000, 100);
  track.Park(120);  // enters drop-1
  GeofenceEngine engine(Fences(), Defaults());
  auto events = Feed(engine, track.fixes());
  ASSERT_EQ(events.size(), 1u);
  // One fix 50 km north, then two fixes in the depot 2 km west, one second apart: all gated,
  // and the truck neither leaves the drop nor enters the depot.
  Gate gate;
  GpsFix jump{"truck-1", track.t() + 1000, At(2000, 50'000).lat, At(2000, 50'000).lon, 1.0};
  EXPECT_TRUE(engine.Process(jump, &gate).empty());
  EXPECT_EQ(gate, Gate::kTooFast);
  for (int k = 2; k <= 3; ++k) {
    GpsFix depot{"truck-1", track.t() + k * 1000, At(100, 100).lat, At(100, 100).lon, 1.0};
    EXPECT_TRUE(engine.Process(depot, &gate).empty());
    EXPECT_EQ(gate, Gate::kTooFast);
  }
  // Back at the drop: accepted (the time since the last good fix allows a little movement).
  GpsFix back{"truck-1", track.t() + 4000, At(2001, 100).lat, At(2001, 100).lon, 1.0};
  EXPECT_TRUE(engine.Process(back, &gate).empty());
  EXPECT_EQ(gate, Gate::kAccepted);
  EXPECT_EQ(engine.counters().too_fast, 3u);
  EXPECT_EQ(engine.counters().reanchored, 0u);
  EXPECT_EQ(engine.InsideOf("truck-1"), std::vector<std::string>{"drop-1"});
}

TEST(GeofenceEngineTest, WrongFirstFixIsOvercomeByConsistentFixes) {
  GeofenceEngine engine(Fences(), Defaults());
  Gate gate;
  const LatLon wrong = At(40'000, 0);
  engine.Process({"truck-1", kT0, wrong.lat, wrong.lon, 1.0}, &gate);
  EXPECT_EQ(gate, Gate::kAccepted);
  // The truck really is in the depot. Two fixes are refused, the third agrees with them and wins.
  Track track("truck-1", 100, 100, kT0);
  track.Park(100);
  std::vector<Gate> gates;
  std::vector<GeofenceEvent> events;
  for (const auto& f : track.fixes()) {
    auto ev = engine.Process(f, &gate);
    gates.push_back(gate);
    events.insert(events.end(), ev.begin(), ev.end());
  }
  EXPECT_EQ(gates[0], Gate::kTooFast);
  EXPECT_EQ(gates[1], Gate::kTooFast);
  EXPECT_EQ(gates[2], Gate::kAccepted);
  EXPECT_EQ(engine.counters().reanchored, 1u);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].fence, "depot");
  EXPECT_EQ(events[0].ts_ms, kT0 + 3000);  // the re-anchoring fix starts the dwell
}

TEST(GeofenceEngineTest, PoorHdopIsGated) {
  GeofenceEngine engine(Fences(), Defaults());
  Track track("truck-1", -500, 100);
  track.DriveTo(-100, 100);
  for (int k = 0; k < 600; ++k) track.Fix(200, 0, 8.0);  // parked in the depot, every fix poor
  auto events = Feed(engine, track.fixes());
  EXPECT_TRUE(events.empty()) << Summary(events);
  EXPECT_EQ(engine.counters().poor_hdop, 600u);
  // hdop exactly at the limit is fine.
  for (int k = 0; k < 40; ++k) track.Fix(200, 0, 5.0);
  track.fixes().erase(track.fixes().begin(), track.fixes().end() - 40);
  events = Feed(engine, track.fixes());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].fence, "depot");
}

TEST(GeofenceEngineTest, OutOfOrderAndInvalidFixesAreGated) {
  GeofenceEngine engine(Fences(), Defaults());
  Gate gate;
  const LatLon in = At(100, 100);
  engine.Process({"t", kT0 + 10'000, in.lat, in.lon, std::nullopt}, &gate);
  EXPECT_EQ(gate, Gate::kAccepted);
  engine.Process({"t", kT0 + 5'000, in.lat, in.lon, 1.0}, &gate);
  EXPECT_EQ(gate, Gate::kOutOfOrder);
  engine.Process({"t", kT0 + 10'000, in.lat, in.lon, 1.0}, &gate);
  EXPECT_EQ(gate, Gate::kOutOfOrder);
  engine.Process({"t", kT0 + 11'000, std::nan(""), in.lon, 1.0}, &gate);
  EXPECT_EQ(gate, Gate::kInvalid);
  engine.Process({"t", kT0 + 11'000, 91, in.lon, 1.0}, &gate);
  EXPECT_EQ(gate, Gate::kInvalid);
  engine.Process({"t", kT0 + 11'000, in.lat, in.lon, -1.0}, &gate);
  EXPECT_EQ(gate, Gate::kInvalid);
  EXPECT_EQ(engine.counters().out_of_order, 2u);
  EXPECT_EQ(engine.counters().invalid, 3u);
  // A vehicle whose only fixes are junk leaves no state.
  engine.Process({"ghost", kT0, std::nan(""), 0, 1.0}, &gate);
  EXPECT_EQ(engine.SnapshotVehicle("ghost"), "");
}

TEST(GeofenceEngineTest, ZeroDwellEntersOnFirstFix) {
  GeofenceSettings s = Defaults();
  s.dwell_s = 0;
  GeofenceEngine engine(Fences(), s);
  const LatLon in = At(100, 100);
  auto ev = engine.Process({"t", kT0, in.lat, in.lon, 1.0});
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].ts_ms, kT0);
}

TEST(GeofenceEngineTest, SmallFenceCanStillBeEntered) {
  // A 10 m circle is smaller than the 20 m hysteresis: the enter margin is capped at 5 m.
  std::string text = R"({"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"gate","radius_m":10},)"
                     R"("geometry":{"type":"Point","coordinates":[)" +
                     std::to_string(kLon0) + "," + std::to_string(kLat0) + "]}}]}";
  GeofenceEngine engine(Fences(text), Defaults());
  Track track("t", -300, 0);
  track.DriveTo(0, 0).Park(60).DriveTo(-600, 0);
  const auto events = Feed(engine, track.fixes());
  ASSERT_EQ(events.size(), 2u) << Summary(events);
}

// --- Recorded tracks from the simulator ----------------------------------------------------

// Track file grammar (CSV, '#' comments):  vehicle,ts_ms,lat,lon,hdop
std::vector<GpsFix> ParseTrack(std::istream& in) {
  std::vector<GpsFix> fixes;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ss(line);
    GpsFix f;
    std::string ts, lat, lon, hdop;
    std::getline(ss, f.vehicle, ',');
    std::getline(ss, ts, ',');
    std::getline(ss, lat, ',');
    std::getline(ss, lon, ',');
    std::getline(ss, hdop, ',');
    f.ts_ms = std::stoll(ts);
    f.lat = std::stod(lat);
    f.lon = std::stod(lon);
    f.hdop = std::stod(hdop);
    fixes.push_back(f);
  }
  return fixes;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct SimTrack {
  std::string fences;
  std::vector<GpsFix> fixes;
  std::vector<double> speed_kmh;  // per fix, for the oracle
};

// Fixes of every truck from the simulator, in message order.
SimTrack FromSim(uint64_t seed, int trucks, int gps_interval_ms, int64_t duration_ms) {
  sim::SimOptions opt;
  opt.seed = seed;
  opt.trucks = trucks;
  opt.cold_rooms = 0;
  opt.orders_per_min = 0;
  opt.spoilage_per_hour = 0;
  opt.gps_interval_ms = gps_interval_ms;
  sim::SiteSimulator simulator(opt);
  SimTrack r;
  r.fences = simulator.FencesGeoJson();
  for (const auto& m : simulator.Advance(duration_ms)) {
    if (m.topic.find("/gps") == std::string::npos) continue;
    const auto j = nlohmann::json::parse(m.payload);
    const auto a = m.topic.find("/vehicles/") + 10;
    GpsFix f;
    f.vehicle = m.topic.substr(a, m.topic.find('/', a) - a);
    f.ts_ms = j["ts"].get<int64_t>();
    f.lat = j["lat"].get<double>();
    f.lon = j["lon"].get<double>();
    f.hdop = j["hdop"].get<double>();
    r.fixes.push_back(f);
    r.speed_kmh.push_back(j["speed_kmh"].get<double>());
  }
  return r;
}

// Regenerates testdata/ (by hand: geofence_test --gtest_also_run_disabled_tests
// --gtest_filter='*RegenerateTestdata*'). The committed files are what the exact-count test
// reads, so that a change to the simulator cannot silently change its expectations.
TEST(GeofenceRecordedTest, DISABLED_RegenerateTestdata) {
  const SimTrack r = FromSim(7, 1, 5000, 150 * 60 * 1000LL);
  std::ofstream(std::string(GEOFENCE_TESTDATA) + "/sim_seed7_fences.geojson") << r.fences << "\n";
  std::ofstream out(std::string(GEOFENCE_TESTDATA) + "/sim_seed7_track.csv");
  out << "# edge-sim seed 7, 1 truck, 150 min, one fix per 5 s: vehicle,ts_ms,lat,lon,hdop\n";
  char buf[160];
  for (const auto& f : r.fixes) {
    std::snprintf(buf, sizeof buf, "%s,%lld,%.6f,%.6f,%.1f\n", f.vehicle.c_str(), static_cast<long long>(f.ts_ms), f.lat, f.lon, *f.hdop);
    out << buf;
  }
}

TEST(GeofenceRecordedTest, ExactCountsOnRecordedSimTrack) {
  const std::string fences = ReadAll(std::string(GEOFENCE_TESTDATA) + "/sim_seed7_fences.geojson");
  std::ifstream in(std::string(GEOFENCE_TESTDATA) + "/sim_seed7_track.csv");
  const std::vector<GpsFix> fixes = ParseTrack(in);
  ASSERT_EQ(fixes.size(), 1800u);
  GeofenceEngine engine(Fences(fences), Defaults());
  const auto events = Feed(engine, fixes);
  // The truck leaves the depot at once (no enter: it is never parked there for the dwell),
  // then loops drop-01 -> drop-07 -> drop-03 -> depot, 4-10 min at each stop; passes by other
  // drops on the way are too quick to count. Each line: event fence@seconds since start.
  EXPECT_EQ(Summary(events),
            "truck-01 enter drop-01@585\n" "truck-01 exit drop-01@860\n"
            "truck-01 enter drop-07@1780\n" "truck-01 exit drop-07@2155\n"
            "truck-01 enter drop-03@2665\n" "truck-01 exit drop-03@2930\n"
            "truck-01 enter depot@3555\n" "truck-01 exit depot@3880\n"
            "truck-01 enter drop-01@4320\n" "truck-01 exit drop-01@4855\n"
            "truck-01 enter drop-07@5670\n" "truck-01 exit drop-07@6170\n"
            "truck-01 enter drop-03@6655\n" "truck-01 exit drop-03@7010\n"
            "truck-01 enter depot@7790\n" "truck-01 exit depot@8205\n"
            "truck-01 enter drop-01@8875\n");
  int enters = 0, exits = 0;
  for (const auto& e : events) (e.type == GeofenceEvent::Type::kEnter ? enters : exits)++;
  EXPECT_EQ(enters, 9);
  EXPECT_EQ(exits, 8);
  EXPECT_EQ(engine.counters().poor_hdop + engine.counters().accepted, 1800u);
  EXPECT_EQ(engine.counters().poor_hdop, 26u);  // counted by hand from the file: hdop > 5
  EXPECT_EQ(engine.counters().too_fast, 0u);
}

// Independent oracle on live simulator output: the simulator stops trucks only at a fence's
// centre (speed 0 while loading or unloading, for 4-10 min), and drives at 25-55 km/h otherwise,
// which crosses even the depot's inner area in less than the 30 s dwell. So, per truck, the
// expected events are: for every stop, enter that fence, then exit it once the truck has driven
// on for over a minute. Anything else (a drive-through, a flap at a drop) would break the match.
TEST(GeofenceRecordedTest, LiveSimMatchesStopOracle) {
  const SimTrack r = FromSim(11, 4, 1000, 6 * 3600 * 1000LL);
  const FenceSet set = Fences(r.fences);
  std::map<std::string, std::vector<std::string>> expected;
  std::map<std::string, int64_t> stop_start, stop_end, last_ts;
  std::map<std::string, std::string> stop_fence;
  for (size_t i = 0; i < r.fixes.size(); ++i) {
    const GpsFix& f = r.fixes[i];
    last_ts[f.vehicle] = f.ts_ms;
    const bool stopped = r.speed_kmh[i] == 0;
    if (stopped && !stop_start.count(f.vehicle)) {
      stop_start[f.vehicle] = f.ts_ms;
      int nearest = -1;
      for (size_t k = 0; k < set.size(); ++k)
        if (set.SignedDistanceM(k, {f.lat, f.lon}) < 0) nearest = static_cast<int>(k);
      ASSERT_GE(nearest, 0) << f.vehicle << " stopped outside every fence at " << f.ts_ms;
      stop_fence[f.vehicle] = set.fence(nearest).name;
      expected[f.vehicle].push_back("enter " + stop_fence[f.vehicle]);
    } else if (!stopped && stop_start.count(f.vehicle)) {
      stop_end[f.vehicle] = f.ts_ms;
      expected[f.vehicle].push_back("exit " + stop_fence[f.vehicle]);
      stop_start.erase(f.vehicle);
    }
  }
  // A departure in the last minute of the run may not be confirmed yet.
  for (auto& [v, list] : expected) {
    if (!list.empty() && list.back().rfind("exit", 0) == 0 && last_ts[v] - stop_end[v] < 60'000) list.pop_back();
  }
  GeofenceEngine engine(Fences(r.fences), Defaults());
  std::map<std::string, std::vector<std::string>> got;
  for (const auto& e : Feed(engine, r.fixes)) got[e.vehicle].push_back(std::string(e.EventName()) + " " + e.fence);
  EXPECT_EQ(got, expected);
  size_t total = 0;
  for (const auto& [v, list] : got) total += list.size();
  EXPECT_GT(total, 40u);
  EXPECT_GT(engine.counters().poor_hdop, 0u);  // the simulator sends about 2 % poor fixes
}

// Snapshot at every split point (here: every 97th fix) into a fresh engine, as edged does after
// a crash, gives exactly the events of one uninterrupted run.
TEST(GeofenceSnapshotTest, RestoreMidTrackGivesSameEvents) {
  const SimTrack r = FromSim(11, 3, 1000, 2 * 3600 * 1000LL);
  GeofenceEngine straight(Fences(r.fences), Defaults());
  const auto want = Feed(straight, r.fixes);
  ASSERT_GT(want.size(), 10u);

  // Per-vehicle blobs, the way edged keeps them (one row per vehicle, written with each fix).
  std::map<std::string, std::string> store;
  std::vector<GeofenceEvent> got;
  auto engine = std::make_unique<GeofenceEngine>(Fences(r.fences), Defaults());
  for (size_t i = 0; i < r.fixes.size(); ++i) {
    if (i % 97 == 0) {
      engine = std::make_unique<GeofenceEngine>(Fences(r.fences), Defaults());
      for (const auto& [v, blob] : store) ASSERT_TRUE(engine->RestoreVehicle(v, blob).ok());
    }
    auto ev = engine->Process(r.fixes[i]);
    got.insert(got.end(), ev.begin(), ev.end());
    store[r.fixes[i].vehicle] = engine->SnapshotVehicle(r.fixes[i].vehicle);
  }
  EXPECT_EQ(got, want);

  // A crash after Process but before commit: the fix is redelivered to a restored engine.
  GeofenceEngine a(Fences(r.fences), Defaults());
  std::vector<GeofenceEvent> got2;
  std::string whole;
  for (size_t i = 0; i < r.fixes.size(); ++i) {
    if (i == r.fixes.size() / 2) {
      (void)a.Process(r.fixes[i]);  // lost: never committed
      GeofenceEngine b(Fences(r.fences), Defaults());
      ASSERT_TRUE(b.Restore(whole).ok());
      EXPECT_EQ(b.Snapshot(), whole);
      a = std::move(b);
    }
    auto ev = a.Process(r.fixes[i]);
    got2.insert(got2.end(), ev.begin(), ev.end());
    whole = a.Snapshot();
  }
  EXPECT_EQ(got2, want);
}

TEST(GeofenceSnapshotTest, CorruptBlobIsRefusedAndStateKept) {
  GeofenceEngine engine(Fences(), Defaults());
  Track track("t", 100, 100);
  track.Park(60);
  ASSERT_EQ(Feed(engine, track.fixes()).size(), 1u);
  const std::string before = engine.SnapshotVehicle("t");
  EXPECT_EQ(engine.RestoreVehicle("t", "{\"v\":1,\"f\":7").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.RestoreVehicle("t", "{\"v\":2,\"f\":{}}").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.RestoreVehicle("t", "{\"v\":1,\"f\":{\"depot\":[1]}}").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.Restore("[]").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(engine.SnapshotVehicle("t"), before);
  EXPECT_EQ(engine.InsideOf("t"), std::vector<std::string>{"depot"});
  ASSERT_TRUE(engine.RestoreVehicle("t", "").ok());
  EXPECT_EQ(engine.SnapshotVehicle("t"), "");
}

TEST(GeofenceSnapshotTest, StateForRemovedFenceIsDropped) {
  GeofenceEngine engine(Fences(), Defaults());
  Track track("t", 100, 100);
  track.Park(60);
  ASSERT_EQ(Feed(engine, track.fixes()).size(), 1u);
  // The fence file changes: "depot" is gone. The vehicle's state for it is dropped, no exit.
  const LatLon drop = At(2000, 100);
  char text[512];
  std::snprintf(text, sizeof text,
                R"({"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"drop-1","radius_m":60},)"
                R"("geometry":{"type":"Point","coordinates":[%.9f,%.9f]}}]})",
                drop.lon, drop.lat);
  GeofenceEngine reloaded(Fences(text), Defaults());
  ASSERT_TRUE(reloaded.RestoreVehicle("t", engine.SnapshotVehicle("t")).ok());
  EXPECT_TRUE(reloaded.InsideOf("t").empty());
  track.fixes().clear();
  track.DriveTo(-1000, 100);
  EXPECT_TRUE(Feed(reloaded, track.fixes()).empty());
}

}  // namespace
}  // namespace freshsync::geofence
