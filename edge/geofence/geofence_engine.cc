#include "edge/geofence/geofence_engine.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

namespace freshsync::geofence {

using Json = nlohmann::json;

const char* GateName(Gate g) {
  switch (g) {
    case Gate::kAccepted: return "accepted";
    case Gate::kInvalid: return "invalid";
    case Gate::kPoorHdop: return "poor_hdop";
    case Gate::kOutOfOrder: return "out_of_order";
    case Gate::kTooFast: return "too_fast";
  }
  return "?";
}

std::string EventJson(const GeofenceEvent& e) {
  return Json{{"vehicle", e.vehicle}, {"fence", e.fence}, {"kind", e.kind}, {"event", e.EventName()}, {"ts", e.ts_ms},
              {"confirmed_ts", e.confirmed_ts_ms}}
      .dump();
}

GeofenceEngine::GeofenceEngine(FenceSet fences, GeofenceSettings settings) : fences_(std::move(fences)), settings_(settings) {
  // Near() must find fences a vehicle is just outside of, to start exit runs' neighbours and
  // enter runs alike; state for fences farther away is reached through the vehicle's map.
  fences_.BuildIndex(settings_.hysteresis_m + 1);
}

Gate GeofenceEngine::Check(Vehicle& v, const GpsFix& fix) {
  if (!std::isfinite(fix.lat) || !std::isfinite(fix.lon) || fix.lat < -90 || fix.lat > 90 || fix.lon < -180 || fix.lon > 180)
    return Gate::kInvalid;
  if (fix.hdop.has_value()) {
    if (!std::isfinite(*fix.hdop) || *fix.hdop < 0) return Gate::kInvalid;
    if (*fix.hdop > settings_.max_hdop) return Gate::kPoorHdop;
  }
  if (!v.has_fix) return Gate::kAccepted;
  if (fix.ts_ms <= v.last_ts_ms) return Gate::kOutOfOrder;
  const LatLon p{fix.lat, fix.lon};
  const double mps = settings_.max_speed_kmh / 3.6;
  auto allowed = [&](int64_t dt_ms) { return mps * static_cast<double>(dt_ms) / 1000.0 + kSpeedSlackM; };
  if (HaversineM(v.last, p) <= allowed(fix.ts_ms - v.last_ts_ms)) {
    v.suspects = 0;
    return Gate::kAccepted;
  }
  // Too fast from the anchor. Either this fix is a glitch, or the anchor was.
  if (v.suspects > 0 && fix.ts_ms > v.suspect_ts_ms && HaversineM(v.suspect, p) <= allowed(fix.ts_ms - v.suspect_ts_ms)) {
    ++v.suspects;
  } else {
    v.suspects = 1;
  }
  v.suspect = p;
  v.suspect_ts_ms = fix.ts_ms;
  if (v.suspects >= kReanchorFixes) {
    v.suspects = 0;
    ++counters_.reanchored;
    return Gate::kAccepted;
  }
  return Gate::kTooFast;
}

std::vector<GeofenceEvent> GeofenceEngine::Process(const GpsFix& fix, Gate* gate_out) {
  std::vector<GeofenceEvent> events;
  Vehicle& v = vehicles_[fix.vehicle];
  const Gate gate = Check(v, fix);
  if (gate_out) *gate_out = gate;
  switch (gate) {
    case Gate::kAccepted: ++counters_.accepted; break;
    case Gate::kInvalid: ++counters_.invalid; break;
    case Gate::kPoorHdop: ++counters_.poor_hdop; break;
    case Gate::kOutOfOrder: ++counters_.out_of_order; break;
    case Gate::kTooFast: ++counters_.too_fast; break;
  }
  if (gate != Gate::kAccepted) {
    // A vehicle whose only fixes were gated leaves no state behind (bounded memory for junk ids).
    if (!v.has_fix && v.suspects == 0) vehicles_.erase(fix.vehicle);
    return events;
  }
  v.has_fix = true;
  v.last_ts_ms = fix.ts_ms;
  v.last = {fix.lat, fix.lon};

  // Candidates: fences near the point, plus any fence the vehicle has state for (it may have
  // driven far away from a fence it is still "inside" of, e.g. after a gap in fixes).
  scratch_.clear();
  fences_.Near(v.last, scratch_);
  for (auto it = v.fences.begin(); it != v.fences.end();) {
    const int idx = fences_.Find(it->first);
    if (idx < 0) {
      it = v.fences.erase(it);  // fence removed from the file since the state was saved
      continue;
    }
    scratch_.push_back(static_cast<size_t>(idx));
    ++it;
  }
  std::sort(scratch_.begin(), scratch_.end());
  scratch_.erase(std::unique(scratch_.begin(), scratch_.end()), scratch_.end());

  const int64_t dwell_ms = static_cast<int64_t>(settings_.dwell_s) * 1000;
  for (size_t idx : scratch_) {
    const Fence& f = fences_.fence(idx);
    auto it = v.fences.find(f.name);
    FenceState st = it == v.fences.end() ? FenceState{} : it->second;
    const double d = fences_.SignedDistanceM(idx, v.last);
    const double enter_margin = std::min(settings_.hysteresis_m, f.depth_m / 2);
    const bool towards_change = st.inside ? d >= settings_.hysteresis_m : d <= -enter_margin;
    if (towards_change) {
      if (st.run_since_ms < 0) st.run_since_ms = fix.ts_ms;
      if (fix.ts_ms - st.run_since_ms >= dwell_ms) {
        events.push_back({fix.vehicle, f.name, f.kind, st.inside ? GeofenceEvent::Type::kExit : GeofenceEvent::Type::kEnter,
                          st.run_since_ms, fix.ts_ms});
        st.inside = !st.inside;
        st.run_since_ms = -1;
      }
    } else {
      st.run_since_ms = -1;
    }
    if (st.inside || st.run_since_ms >= 0) v.fences[f.name] = st;
    else if (it != v.fences.end()) v.fences.erase(it);
  }
  return events;
}

// Vehicle blob grammar (JSON, one object; doubles round-trip exactly):
//   {"v":1, "ts":LAST_TS_MS, "lat":D, "lon":D,              // last accepted fix ("ts" absent: none yet)
//    "sn":N, "sts":MS, "slat":D, "slon":D,                  // too-fast suspects (absent when 0)
//    "f":{FENCE_NAME:[INSIDE(0|1), RUN_SINCE_MS(-1: none)], ...}}
std::string GeofenceEngine::Encode(const Vehicle& v) {
  Json j = {{"v", 1}};
  if (v.has_fix) {
    j["ts"] = v.last_ts_ms;
    j["lat"] = v.last.lat;
    j["lon"] = v.last.lon;
  }
  if (v.suspects > 0) {
    j["sn"] = v.suspects;
    j["sts"] = v.suspect_ts_ms;
    j["slat"] = v.suspect.lat;
    j["slon"] = v.suspect.lon;
  }
  Json f = Json::object();
  for (const auto& [name, st] : v.fences) f[name] = Json::array({st.inside ? 1 : 0, st.run_since_ms});
  j["f"] = std::move(f);
  return j.dump();
}

Result<GeofenceEngine::Vehicle> GeofenceEngine::Decode(std::string_view blob) {
  Vehicle v;
  try {
    const Json j = Json::parse(blob);
    if (j.at("v").get<int>() != 1) return Status::InvalidArgument("geofence state: unsupported version");
    if (j.contains("ts")) {
      v.has_fix = true;
      v.last_ts_ms = j.at("ts").get<int64_t>();
      v.last = {j.at("lat").get<double>(), j.at("lon").get<double>()};
    }
    if (j.contains("sn")) {
      v.suspects = j.at("sn").get<int>();
      v.suspect_ts_ms = j.at("sts").get<int64_t>();
      v.suspect = {j.at("slat").get<double>(), j.at("slon").get<double>()};
    }
    for (const auto& [name, st] : j.at("f").items()) {
      v.fences[name] = FenceState{st.at(0).get<int>() != 0, st.at(1).get<int64_t>()};
    }
  } catch (const Json::exception& e) {
    return Status::InvalidArgument(std::string("geofence state: corrupt: ") + e.what());
  }
  return v;
}

std::string GeofenceEngine::SnapshotVehicle(const std::string& vehicle) const {
  auto it = vehicles_.find(vehicle);
  return it == vehicles_.end() ? std::string() : Encode(it->second);
}

Status GeofenceEngine::RestoreVehicle(const std::string& vehicle, std::string_view blob) {
  if (blob.empty()) {
    vehicles_.erase(vehicle);
    return Status::Ok();
  }
  auto v = Decode(blob);
  if (!v.ok()) return v.status();
  for (auto it = v->fences.begin(); it != v->fences.end();) {
    it = fences_.Find(it->first) < 0 ? v->fences.erase(it) : std::next(it);
  }
  vehicles_[vehicle] = std::move(*v);
  return Status::Ok();
}

// Whole-engine grammar: {"v":1, "vehicles":{VEHICLE_ID: VEHICLE_BLOB_OBJECT, ...}}
std::string GeofenceEngine::Snapshot() const {
  Json all = Json::object();
  for (const auto& [id, v] : vehicles_) all[id] = Json::parse(Encode(v));
  return Json{{"v", 1}, {"vehicles", std::move(all)}}.dump();
}

Status GeofenceEngine::Restore(std::string_view blob) {
  std::map<std::string, Vehicle> restored;
  try {
    const Json j = Json::parse(blob);
    if (j.at("v").get<int>() != 1) return Status::InvalidArgument("geofence state: unsupported version");
    for (const auto& [id, vj] : j.at("vehicles").items()) {
      auto v = Decode(vj.dump());
      if (!v.ok()) return v.status();
      restored[id] = std::move(*v);
    }
  } catch (const Json::exception& e) {
    return Status::InvalidArgument(std::string("geofence state: corrupt: ") + e.what());
  }
  vehicles_.clear();
  for (auto& [id, v] : restored) {
    Status s = RestoreVehicle(id, Encode(v));
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

std::vector<std::string> GeofenceEngine::InsideOf(const std::string& vehicle) const {
  std::vector<std::string> out;
  auto it = vehicles_.find(vehicle);
  if (it == vehicles_.end()) return out;
  for (const auto& [name, st] : it->second.fences)
    if (st.inside) out.push_back(name);
  return out;
}

}  // namespace freshsync::geofence
