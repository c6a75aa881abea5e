// SiteSimulator: seeded, realistic traffic of one site, as MQTT (topic, JSON payload) pairs.
// Trucks drive loops from the depot to customer drops and back, cold rooms drift and have
// their doors opened (and now and then a compressor fault), and the stock floor receives
// lots, takes orders, picks, packs, dispatches and spoils; pallets are scanned in at the
// receiving door and out at the loading door.
//
// Deterministic: the same options and seed give the same messages, whatever the wall clock,
// because time is simulated (Advance). Not thread-safe; one owner.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace freshsync::sim {

struct SimOptions {
  uint64_t seed = 1;
  std::string topic_root = "fs";
  int trucks = 4;
  int cold_rooms = 3;
  int gps_interval_ms = 1000;
  int climate_interval_ms = 10000;
  double orders_per_min = 6;
  double spoilage_per_hour = 4;
  double door_openings_per_hour = 6;
  double compressor_faults_per_day = 4;
  int64_t start_ms = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
  double depot_lat = 31.2200;
  double depot_lon = 121.5440;
};

struct SimMessage {
  std::string topic;
  std::string payload;
  int64_t ts_ms;
};

struct Fence {
  std::string name;
  std::string kind;  // depot, customer_drop
  double lat, lon, radius_m;
};

class SiteSimulator {
 public:
  explicit SiteSimulator(SimOptions options);

  // Advances simulated time by `ms` and returns the messages produced meanwhile, in time order.
  std::vector<SimMessage> Advance(int64_t ms);
  int64_t now_ms() const { return now_ms_; }
  // The depot and customer drops as a GeoJSON FeatureCollection (Point + radius_m).
  std::string FencesGeoJson() const;
  const std::vector<Fence>& fences() const { return fences_; }

 private:
  struct Truck {
    std::string id;
    uint64_t seq = 0;
    std::vector<int> route;  // fence indexes; 0 is the depot
    size_t leg = 0;          // heading for route[leg]
    double lat, lon;
    double speed_kmh = 0;
    int64_t dwell_until_ms = 0;
    int64_t next_fix_ms = 0;
  };
  struct ColdRoom {
    std::string id;
    uint64_t seq = 0;
    double temp_c = 2.5;
    int64_t door_open_until_ms = 0;
    int64_t fault_until_ms = 0;
    int64_t next_reading_ms = 0;
  };
  struct Order {
    std::string id;
    int stage = 0;  // index into the lifecycle
    std::vector<std::pair<std::string, int>> lines;
    int64_t next_step_ms = 0;
  };

  void StepTruck(Truck& t, int64_t now, std::vector<SimMessage>& out);
  void StepColdRoom(ColdRoom& r, int64_t now, std::vector<SimMessage>& out);
  void StepFloor(int64_t now, std::vector<SimMessage>& out);
  void Receive(const std::string& sku, int qty, int64_t now, std::vector<SimMessage>& out);
  // A pallet scanned through a dock door ({root}/docks/{door}/scans); `lot` may be empty.
  void DockScan(const char* door, const std::string& pallet, const std::string& sku, const std::string& lot, int qty,
                const char* direction, int64_t now, std::vector<SimMessage>& out);
  std::string NextId(const std::string& prefix);
  bool Chance(double per_hour, int64_t step_ms);

  SimOptions opt_;
  std::mt19937_64 rng_;
  int64_t now_ms_;
  uint64_t id_counter_ = 0;
  std::vector<Fence> fences_;
  std::vector<Truck> trucks_;
  std::vector<ColdRoom> rooms_;
  std::map<std::string, int64_t> stock_;  // what the simulated floor believes is on hand
  std::deque<Order> open_orders_;
  int64_t next_floor_ms_ = 0;
};

}  // namespace freshsync::sim
