#include "sim/site_simulator.h"

#include <string_view>

#include "edge/message_types.h"  // the inbound topics, one row per message type

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>

#include <nlohmann/json.hpp>

namespace freshsync::sim {
namespace {

constexpr double kEarthRadiusM = 6'371'000.0;
constexpr double kPi = 3.14159265358979323846;

const std::vector<std::string>& Skus() {
  static const std::vector<std::string> skus = {"veg-tomato-5kg", "veg-lettuce-box", "veg-carrot-10kg", "veg-cucumber-box",
                                                "veg-pak-choi-3kg", "veg-potato-20kg", "veg-onion-10kg", "veg-spinach-2kg"};
  return skus;
}

// Dock doors: lots arrive through one, dispatched orders leave through the other.
constexpr const char* kReceivingDoor = "door-1";
constexpr const char* kLoadingDoor = "door-4";

const char* const kLifecycle[] = {"created", "accepted", "picking", "packed", "dispatched", "delivered"};

double DistanceM(double lat1, double lon1, double lat2, double lon2) {
  const double p1 = lat1 * kPi / 180, p2 = lat2 * kPi / 180;
  const double dp = p2 - p1, dl = (lon2 - lon1) * kPi / 180;
  const double a = std::sin(dp / 2) * std::sin(dp / 2) + std::cos(p1) * std::cos(p2) * std::sin(dl / 2) * std::sin(dl / 2);
  return 2 * kEarthRadiusM * std::asin(std::sqrt(a));
}

std::string Date(int64_t ms) {
  const time_t secs = static_cast<time_t>(ms / 1000);
  tm t{};
  gmtime_r(&secs, &t);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday);
  return buf;
}

}  // namespace

SiteSimulator::SiteSimulator(SimOptions options) : opt_(std::move(options)), rng_(opt_.seed), now_ms_(opt_.start_ms) {
  fences_.push_back({"depot", "depot", opt_.depot_lat, opt_.depot_lon, 150});
  std::uniform_real_distribution<double> offset(-0.06, 0.06);  // about +-6 km
  for (int i = 0; i < 8; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "drop-%02d", i + 1);
    fences_.push_back({name, "customer_drop", opt_.depot_lat + offset(rng_), opt_.depot_lon + offset(rng_), 60});
  }
  for (int i = 0; i < opt_.trucks; ++i) {
    Truck t;
    char id[32];
    std::snprintf(id, sizeof id, "truck-%02d", i + 1);
    t.id = id;
    t.lat = opt_.depot_lat;
    t.lon = opt_.depot_lon;
    std::vector<int> drops;
    for (size_t f = 1; f < fences_.size(); ++f) drops.push_back(static_cast<int>(f));
    std::shuffle(drops.begin(), drops.end(), rng_);
    t.route.push_back(0);
    for (int k = 0; k < 3; ++k) t.route.push_back(drops[k]);
    t.leg = 1;
    t.dwell_until_ms = now_ms_ + i * 60'000;  // trucks leave the depot a minute apart
    t.next_fix_ms = now_ms_;
    trucks_.push_back(t);
  }
  for (int i = 0; i < opt_.cold_rooms; ++i) {
    ColdRoom r;
    char id[32];
    std::snprintf(id, sizeof id, "cold-room-%d", i + 1);
    r.id = id;
    r.temp_c = 2.0 + 0.3 * i;
    r.next_reading_ms = now_ms_;
    rooms_.push_back(r);
  }
  next_floor_ms_ = now_ms_;
}

std::string SiteSimulator::NextId(const std::string& prefix) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s-%llu-%06llu", prefix.c_str(), static_cast<unsigned long long>(opt_.seed),
                static_cast<unsigned long long>(++id_counter_));
  return buf;
}

bool SiteSimulator::Chance(double per_hour, int64_t step_ms) {
  std::uniform_real_distribution<double> u(0, 1);
  return u(rng_) < per_hour * static_cast<double>(step_ms) / 3'600'000.0;
}

std::vector<SimMessage> SiteSimulator::Advance(int64_t ms) {
  std::vector<SimMessage> out;
  const int64_t end = now_ms_ + ms;
  // Step in 100 ms ticks so that every source keeps its own cadence.
  while (now_ms_ < end) {
    now_ms_ = std::min(end, now_ms_ + 100);
    for (auto& t : trucks_) StepTruck(t, now_ms_, out);
    for (auto& r : rooms_) StepColdRoom(r, now_ms_, out);
    StepFloor(now_ms_, out);
  }
  return out;
}

void SiteSimulator::StepTruck(Truck& t, int64_t now, std::vector<SimMessage>& out) {
  if (now < t.next_fix_ms) return;
  const double dt_s = opt_.gps_interval_ms / 1000.0;
  t.next_fix_ms = now + opt_.gps_interval_ms;
  std::normal_distribution<double> noise_m(0, 3);
  if (now >= t.dwell_until_ms) {
    const Fence& target = fences_[t.route[t.leg]];
    const double dist = DistanceM(t.lat, t.lon, target.lat, target.lon);
    t.speed_kmh = std::clamp(t.speed_kmh + std::normal_distribution<double>(0, 3)(rng_), 25.0, 55.0);
    const double step = t.speed_kmh / 3.6 * dt_s;
    if (dist <= step || dist < target.radius_m * 0.3) {
      t.lat = target.lat;
      t.lon = target.lon;
      t.speed_kmh = 0;
      std::uniform_int_distribution<int> dwell_s(240, 600);  // unloading at a drop, loading at the depot
      t.dwell_until_ms = now + dwell_s(rng_) * 1000LL;
      t.leg = (t.leg + 1) % t.route.size();
    } else {
      const double f = step / dist;
      t.lat += (target.lat - t.lat) * f;
      t.lon += (target.lon - t.lon) * f;
    }
  } else {
    t.speed_kmh = 0;
  }
  const double jitter_lat = noise_m(rng_) / 111'320.0;
  const double jitter_lon = noise_m(rng_) / (111'320.0 * std::cos(t.lat * kPi / 180));
  std::uniform_real_distribution<double> u(0, 1);
  const double hdop = u(rng_) < 0.02 ? 6.0 + u(rng_) * 4 : 0.7 + u(rng_) * 0.8;  // now and then a poor fix
  nlohmann::json j = {{"seq", ++t.seq},
                      {"lat", std::round((t.lat + jitter_lat) * 1e6) / 1e6},
                      {"lon", std::round((t.lon + jitter_lon) * 1e6) / 1e6},
                      {"ts", now},
                      {"speed_kmh", std::round(t.speed_kmh * 10) / 10},
                      {"heading", static_cast<int>(u(rng_) * 360)},
                      {"hdop", std::round(hdop * 10) / 10}};
  out.push_back({edge::InboundTopic(edge::TopicKind::kGps, opt_.topic_root, t.id), j.dump(), now});
}

void SiteSimulator::StepColdRoom(ColdRoom& r, int64_t now, std::vector<SimMessage>& out) {
  if (now < r.next_reading_ms) return;
  const int64_t step = opt_.climate_interval_ms;
  r.next_reading_ms = now + step;
  if (now >= r.door_open_until_ms && Chance(opt_.door_openings_per_hour, step)) {
    std::uniform_int_distribution<int> open_s(20, 120);  // a forklift goes in and out
    r.door_open_until_ms = now + open_s(rng_) * 1000LL;
  }
  if (now >= r.fault_until_ms && Chance(opt_.compressor_faults_per_day / 24.0, step)) {
    std::uniform_int_distribution<int> fault_min(8, 25);
    r.fault_until_ms = now + fault_min(rng_) * 60'000LL;
  }
  const double dt_min = step / 60'000.0;
  double target = 2.5;
  double rate = 0.3;  // fraction of the gap closed per minute
  if (now < r.door_open_until_ms) {
    target = 12.0;
    rate = 0.35;
  }
  if (now < r.fault_until_ms) {
    target = 14.0;
    rate = 0.15;
  }
  r.temp_c += (target - r.temp_c) * std::min(1.0, rate * dt_min) + std::normal_distribution<double>(0, 0.05)(rng_);
  nlohmann::json j = {{"seq", ++r.seq},
                      {"ts", now},
                      {"temp_c", std::round(r.temp_c * 100) / 100},
                      {"rh", std::round((88 + std::normal_distribution<double>(0, 2)(rng_)) * 10) / 10},
                      {"battery", std::max(5.0, 100.0 - static_cast<double>(r.seq) * 0.001)}};
  out.push_back({edge::InboundTopic(edge::TopicKind::kClimate, opt_.topic_root, r.id), j.dump(), now});
}

void SiteSimulator::Receive(const std::string& sku, int qty, int64_t now, std::vector<SimMessage>& out) {
  stock_[sku] += qty;
  std::uniform_int_distribution<int> shelf_days(3, 12);
  const std::string lot = NextId("lot");
  nlohmann::json j = {{"id", NextId("mv")}, {"sku", sku}, {"delta", qty},  {"reason", "receive"},
                      {"lot", lot},         {"ts", now},  {"expiry", Date(now + shelf_days(rng_) * 86'400'000LL)}};
  out.push_back({edge::InboundTopic(edge::TopicKind::kStockMovements, opt_.topic_root), j.dump(), now});
  // The pallet came in through the receiving door, scanned before it was booked.
  DockScan(kReceivingDoor, "P-" + lot, sku, lot, qty, "in", now, out);
}

void SiteSimulator::DockScan(const char* door, const std::string& pallet, const std::string& sku, const std::string& lot,
                             int qty, const char* direction, int64_t now, std::vector<SimMessage>& out) {
  // The scanner's own id for the scan (docs/formats.md, "Dock scan"): door, time and pallet.
  nlohmann::json j = {{"scan_id", std::string(door) + ":" + std::to_string(now) + ":" + pallet},
                      {"pallet_id", pallet},
                      {"sku", sku},
                      {"qty", qty},
                      {"direction", direction},
                      {"ts", now}};
  if (!lot.empty()) j["lot"] = lot;
  out.push_back({edge::InboundTopic(edge::TopicKind::kDockScans, opt_.topic_root, door), j.dump(), now});
}

void SiteSimulator::StepFloor(int64_t now, std::vector<SimMessage>& out) {
  if (now < next_floor_ms_) return;
  constexpr int64_t kStep = 1000;
  next_floor_ms_ = now + kStep;
  const auto& skus = Skus();
  std::uniform_int_distribution<size_t> pick_sku(0, skus.size() - 1);

  // Receiving: a delivery whenever something runs low, plus the morning intake.
  for (const auto& sku : skus) {
    if (stock_[sku] < 40) Receive(sku, 120 + static_cast<int>(pick_sku(rng_)) * 10, now, out);
  }

  if (Chance(opt_.orders_per_min * 60, kStep)) {
    Order o;
    o.id = NextId("ord");
    std::uniform_int_distribution<int> nlines(1, 3), qty(1, 8);
    const int n = nlines(rng_);
    for (int i = 0; i < n; ++i) {
      const std::string& sku = skus[pick_sku(rng_)];
      const int q = qty(rng_);
      if (stock_[sku] >= q) {
        stock_[sku] -= q;  // the floor treats it as reserved from now on
        o.lines.emplace_back(sku, q);
      }
    }
    if (!o.lines.empty()) {
      nlohmann::json lines = nlohmann::json::array();
      for (const auto& [sku, q] : o.lines) lines.push_back({{"sku", sku}, {"qty", q}});
      char phone[32];
      std::snprintf(phone, sizeof phone, "+86 138 %04d %04d", static_cast<int>(id_counter_ % 10000), static_cast<int>((id_counter_ * 7) % 10000));
      nlohmann::json j = {{"order_id", o.id},
                          {"status", "created"},
                          {"ts", now},
                          {"actor", "webshop"},
                          {"lines", lines},
                          {"customer", {{"name", "Customer " + o.id}, {"phone", phone}, {"address", "Lane " + std::to_string(id_counter_ % 900) + ", Pudong"}}}};
      out.push_back({edge::InboundTopic(edge::TopicKind::kOrderStatus, opt_.topic_root), j.dump(), now});
      o.next_step_ms = now + 30'000;
      open_orders_.push_back(std::move(o));
    }
  }

  // Move orders along their lifecycle; picks happen on the way to "packed".
  for (auto it = open_orders_.begin(); it != open_orders_.end();) {
    Order& o = *it;
    if (now < o.next_step_ms) {
      ++it;
      continue;
    }
    std::uniform_real_distribution<double> u(0, 1);
    if (o.stage == 1 && u(rng_) < 0.05) {  // the customer cancels before picking
      for (const auto& [sku, q] : o.lines) stock_[sku] += q;
      nlohmann::json j = {{"order_id", o.id}, {"status", "cancelled"}, {"ts", now}, {"actor", "customer-service"}};
      out.push_back({edge::InboundTopic(edge::TopicKind::kOrderStatus, opt_.topic_root), j.dump(), now});
      it = open_orders_.erase(it);
      continue;
    }
    ++o.stage;
    if (o.stage == 3) {  // picked: stock leaves the shelves
      for (const auto& [sku, q] : o.lines) {
        nlohmann::json j = {{"id", NextId("mv")}, {"sku", sku}, {"delta", -q}, {"reason", "pick"}, {"order_id", o.id}, {"ts", now}};
        out.push_back({edge::InboundTopic(edge::TopicKind::kStockMovements, opt_.topic_root), j.dump(), now});
      }
    }
    nlohmann::json j = {{"order_id", o.id}, {"status", kLifecycle[o.stage]}, {"ts", now}, {"actor", "picker-" + std::to_string(o.stage)}};
    out.push_back({edge::InboundTopic(edge::TopicKind::kOrderStatus, opt_.topic_root), j.dump(), now});
    if (std::string_view(kLifecycle[o.stage]) == "dispatched") {  // each line leaves on its own pallet
      for (size_t line = 0; line < o.lines.size(); ++line)
        DockScan(kLoadingDoor, "P-" + o.id + "-" + std::to_string(line + 1), o.lines[line].first, "", o.lines[line].second, "out",
                 now, out);
    }
    o.next_step_ms = now + 20'000 + static_cast<int64_t>(u(rng_) * 40'000);
    if (o.stage == 5) {
      it = open_orders_.erase(it);
    } else {
      ++it;
    }
  }

  if (Chance(opt_.spoilage_per_hour, kStep)) {
    const std::string& sku = skus[pick_sku(rng_)];
    if (stock_[sku] >= 2) {
      stock_[sku] -= 2;
      nlohmann::json j = {{"id", NextId("mv")}, {"sku", sku}, {"delta", -2}, {"reason", "spoil"}, {"ts", now}};
      out.push_back({edge::InboundTopic(edge::TopicKind::kStockMovements, opt_.topic_root), j.dump(), now});
    }
  }
}

std::string SiteSimulator::FencesGeoJson() const {
  nlohmann::json features = nlohmann::json::array();
  for (const auto& f : fences_) {
    features.push_back({{"type", "Feature"},
                        {"properties", {{"name", f.name}, {"kind", f.kind}, {"radius_m", f.radius_m}}},
                        {"geometry", {{"type", "Point"}, {"coordinates", {f.lon, f.lat}}}}});
  }
  return nlohmann::json({{"type", "FeatureCollection"}, {"features", features}}).dump(2);
}

}  // namespace freshsync::sim
