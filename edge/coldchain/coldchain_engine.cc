#include "edge/coldchain/coldchain_engine.h"

#include <fnmatch.h>

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

namespace freshsync::coldchain {
namespace {

using Json = nlohmann::json;

constexpr int64_t kMinuteMs = 60'000;

// Floor division: timestamps before 1970 are unlikely, but must not land in the wrong minute.
int64_t MinuteOf(int64_t ts_ms) {
  int64_t q = ts_ms / kMinuteMs;
  if (ts_ms % kMinuteMs < 0) --q;
  return q * kMinuteMs;
}

std::string AlertId(const std::string& sensor, const char* kind, int64_t started_ms) {
  return sensor + "/" + kind + "/" + std::to_string(started_ms);
}

}  // namespace

ColdchainEngine::ColdchainEngine(std::vector<ColdchainRule> rules, ColdchainSettings settings)
    : rules_(std::move(rules)), settings_(settings) {}

int ColdchainEngine::RuleIndex(const std::string& sensor) const {
  for (size_t i = 0; i < rules_.size(); ++i) {
    if (fnmatch(rules_[i].sensors.c_str(), sensor.c_str(), 0) == 0) return static_cast<int>(i);
  }
  return -1;
}

std::string AlertJson(const AlertEvent& a) {
  Json j = {{"alert_id", a.alert_id}, {"sensor", a.sensor},      {"kind", a.KindName()},       {"state", a.WireState()},
            {"min_c", a.min_c},       {"max_c", a.max_c},        {"started_ts", a.started_ts_ms}, {"rule", a.rule},
            {"limit_min_c", a.limit_min_c}, {"limit_max_c", a.limit_max_c}};
  if (a.ended_ts_ms) j["ended_ts"] = *a.ended_ts_ms;
  return j.dump();
}

void ColdchainEngine::Derive(const std::string& sensor, Sensor& s) const {
  s.rule = RuleIndex(sensor);
  s.offline_after_ms = OfflineAfterMs(s);
}

const ColdchainRule* ColdchainEngine::RuleFor(const std::string& sensor) const {
  auto it = sensors_.find(sensor);
  const int i = it != sensors_.end() ? it->second.rule : RuleIndex(sensor);
  return i < 0 ? nullptr : &rules_[static_cast<size_t>(i)];
}

int64_t ColdchainEngine::OfflineAfterMs(const Sensor& s) const {
  int64_t usual = 0;
  if (!s.intervals.empty()) {
    std::vector<int64_t> sorted = s.intervals;
    std::sort(sorted.begin(), sorted.end());
    usual = sorted[(sorted.size() - 1) / 2];  // lower median: robust to one long gap
  }
  return std::max(kOfflineIntervals * usual, static_cast<int64_t>(settings_.offline_after_s) * 1000);
}

Rollup ColdchainEngine::MakeRollup(const std::string& sensor, const Bucket& b) {
  return Rollup{sensor, b.minute_ms, b.count, b.min_c, b.sum / b.count, b.max_c};
}

AlertEvent ColdchainEngine::MakeAlert(const std::string& sensor, const Sensor& s, AlertKind kind, AlertState state,
                                      int64_t ts) const {
  AlertEvent a;
  a.sensor = sensor;
  a.kind = kind;
  a.state = state;
  a.ts_ms = ts;
  if (kind == AlertKind::kExcursion) {
    a.started_ts_ms = s.excursion->started_ts_ms;
    a.min_c = s.excursion->min_c;
    a.max_c = s.excursion->max_c;
    a.alert_id = AlertId(sensor, "excursion", a.started_ts_ms);
  } else {
    a.started_ts_ms = *s.offline_since_ms;
    a.min_c = a.max_c = s.last_temp_c;
    a.alert_id = AlertId(sensor, "offline", a.started_ts_ms);
  }
  if (const ColdchainRule* rule = RuleFor(sensor)) {
    a.rule = rule->sensors;
    a.limit_min_c = rule->min_c;
    a.limit_max_c = rule->max_c;
  }
  return a;
}

Output ColdchainEngine::Process(const Reading& r, Verdict* verdict) {
  Output out;
  if (!std::isfinite(r.temp_c)) {
    ++counters_.invalid;
    if (verdict) *verdict = Verdict::kInvalid;
    return out;
  }
  auto found = sensors_.find(r.sensor);
  const bool known = found != sensors_.end();
  if (known && r.ts_ms <= found->second.last_ts_ms) {
    ++counters_.out_of_order;
    if (verdict) *verdict = Verdict::kOutOfOrder;
    return out;
  }
  ++counters_.applied;
  if (verdict) *verdict = Verdict::kApplied;
  Sensor& s = known ? found->second : sensors_[r.sensor];
  if (!known) Derive(r.sensor, s);

  // The sensor speaks again: its offline alert (if any) ends now. min/max stay the temperature
  // it went silent with, which is what the alert was raised about.
  if (s.offline_since_ms) {
    AlertEvent a = MakeAlert(r.sensor, s, AlertKind::kOffline, AlertState::kClosed, r.ts_ms);
    a.ended_ts_ms = r.ts_ms;
    out.alerts.push_back(std::move(a));
    s.offline_since_ms.reset();
  }
  if (known) {
    s.intervals.push_back(r.ts_ms - s.last_ts_ms);
    if (s.intervals.size() > static_cast<size_t>(kIntervalWindow)) s.intervals.erase(s.intervals.begin());
    s.offline_after_ms = OfflineAfterMs(s);
  }

  const int64_t minute = MinuteOf(r.ts_ms);
  if (minute < s.rolled_through_ms) {
    ++counters_.late_for_rollup;
  } else {
    if (s.bucket && s.bucket->minute_ms != minute) {
      out.rollups.push_back(MakeRollup(r.sensor, *s.bucket));
      s.rolled_through_ms = s.bucket->minute_ms + kMinuteMs;
      s.bucket.reset();
    }
    if (!s.bucket) s.bucket = Bucket{minute, 0, 0, r.temp_c, r.temp_c};
    s.bucket->count += 1;
    s.bucket->sum += r.temp_c;
    s.bucket->min_c = std::min(s.bucket->min_c, r.temp_c);
    s.bucket->max_c = std::max(s.bucket->max_c, r.temp_c);
  }
  s.last_ts_ms = r.ts_ms;
  s.last_temp_c = r.temp_c;
  newest_ms_ = std::max(newest_ms_, r.ts_ms);

  const ColdchainRule* rule = RuleFor(r.sensor);
  const bool outside = rule != nullptr && (r.temp_c < rule->min_c || r.temp_c > rule->max_c);
  if (!outside) {
    if (s.excursion) {
      AlertEvent a = MakeAlert(r.sensor, s, AlertKind::kExcursion, AlertState::kClosed, r.ts_ms);
      a.ended_ts_ms = r.ts_ms;
      out.alerts.push_back(std::move(a));
      s.excursion.reset();
    }
    s.run_since_ms.reset();  // a spike shorter than for_s ends here without a trace
    return out;
  }
  if (s.excursion) {
    Excursion& e = *s.excursion;
    if (r.temp_c < e.min_c || r.temp_c > e.max_c) {
      e.min_c = std::min(e.min_c, r.temp_c);
      e.max_c = std::max(e.max_c, r.temp_c);
      e.dirty = true;
    }
    // Rate-limited so that a long excursion does not flood the priority lane.
    if (e.dirty && r.ts_ms - e.last_emit_ms >= static_cast<int64_t>(settings_.update_interval_s) * 1000) {
      e.dirty = false;
      e.last_emit_ms = r.ts_ms;
      out.alerts.push_back(MakeAlert(r.sensor, s, AlertKind::kExcursion, AlertState::kUpdate, r.ts_ms));
    }
    return out;
  }
  if (!s.run_since_ms) {
    s.run_since_ms = r.ts_ms;
    s.run_min_c = s.run_max_c = r.temp_c;
  } else {
    s.run_min_c = std::min(s.run_min_c, r.temp_c);
    s.run_max_c = std::max(s.run_max_c, r.temp_c);
  }
  if (r.ts_ms - *s.run_since_ms >= static_cast<int64_t>(rule->for_s) * 1000) {
    s.excursion = Excursion{*s.run_since_ms, s.run_min_c, s.run_max_c, r.ts_ms, false};
    s.run_since_ms.reset();
    out.alerts.push_back(MakeAlert(r.sensor, s, AlertKind::kExcursion, AlertState::kOpen, r.ts_ms));
  }
  return out;
}

Output ColdchainEngine::Tick(int64_t now_ms) {
  Output out;
  for (auto& [id, s] : sensors_) {
    if (s.bucket && now_ms >= s.bucket->minute_ms + kMinuteMs + kRollupGraceMs) {
      out.rollups.push_back(MakeRollup(id, *s.bucket));
      s.rolled_through_ms = s.bucket->minute_ms + kMinuteMs;
      s.bucket.reset();
    }
    if (!s.offline_since_ms && s.rule >= 0 && now_ms - s.last_ts_ms > s.offline_after_ms) {
      s.offline_since_ms = s.last_ts_ms;
      out.alerts.push_back(MakeAlert(id, s, AlertKind::kOffline, AlertState::kOpen, now_ms));
    }
  }
  return out;
}

std::vector<AlertEvent> ColdchainEngine::OpenAlerts() const {
  std::vector<AlertEvent> out;
  for (const auto& [id, s] : sensors_) {
    if (s.excursion) out.push_back(MakeAlert(id, s, AlertKind::kExcursion, AlertState::kOpen, s.excursion->last_emit_ms));
    if (s.offline_since_ms) out.push_back(MakeAlert(id, s, AlertKind::kOffline, AlertState::kOpen, *s.offline_since_ms));
  }
  return out;
}

// Sensor blob grammar (JSON, one object; doubles round-trip exactly; optional parts absent):
//   {"v":1, "ts":LAST_TS_MS, "t":LAST_TEMP, "iv":[INTERVAL_MS...],
//    "run":[SINCE_MS, MIN, MAX],                           // excursion run not yet an alert
//    "exc":[STARTED_MS, MIN, MAX, LAST_EMIT_MS, DIRTY(0|1)],  // open excursion alert
//    "off":STARTED_MS,                                     // open offline alert
//    "bk":[MINUTE_MS, COUNT, SUM, MIN, MAX],               // minute being aggregated
//    "rt":ROLLED_THROUGH_MS}
std::string ColdchainEngine::Encode(const Sensor& s) {
  Json j = {{"v", 1}, {"ts", s.last_ts_ms}, {"t", s.last_temp_c}, {"iv", s.intervals}, {"rt", s.rolled_through_ms}};
  if (s.run_since_ms) j["run"] = Json::array({*s.run_since_ms, s.run_min_c, s.run_max_c});
  if (s.excursion) {
    const Excursion& e = *s.excursion;
    j["exc"] = Json::array({e.started_ts_ms, e.min_c, e.max_c, e.last_emit_ms, e.dirty ? 1 : 0});
  }
  if (s.offline_since_ms) j["off"] = *s.offline_since_ms;
  if (s.bucket) {
    const Bucket& b = *s.bucket;
    j["bk"] = Json::array({b.minute_ms, b.count, b.sum, b.min_c, b.max_c});
  }
  return j.dump();
}

Result<ColdchainEngine::Sensor> ColdchainEngine::Decode(std::string_view blob) {
  Sensor s;
  try {
    const Json j = Json::parse(blob);
    if (j.at("v").get<int>() != 1) return Status::InvalidArgument("coldchain state: unsupported version");
    s.last_ts_ms = j.at("ts").get<int64_t>();
    s.last_temp_c = j.at("t").get<double>();
    s.intervals = j.at("iv").get<std::vector<int64_t>>();
    s.rolled_through_ms = j.at("rt").get<int64_t>();
    if (j.contains("run")) {
      const Json& a = j["run"];
      s.run_since_ms = a.at(0).get<int64_t>();
      s.run_min_c = a.at(1).get<double>();
      s.run_max_c = a.at(2).get<double>();
    }
    if (j.contains("exc")) {
      const Json& a = j["exc"];
      s.excursion = Excursion{a.at(0).get<int64_t>(), a.at(1).get<double>(), a.at(2).get<double>(), a.at(3).get<int64_t>(),
                              a.at(4).get<int>() != 0};
    }
    if (j.contains("off")) s.offline_since_ms = j["off"].get<int64_t>();
    if (j.contains("bk")) {
      const Json& a = j["bk"];
      s.bucket = Bucket{a.at(0).get<int64_t>(), a.at(1).get<int>(), a.at(2).get<double>(), a.at(3).get<double>(), a.at(4).get<double>()};
      if (s.bucket->count < 1) return Status::InvalidArgument("coldchain state: empty rollup bucket");
    }
  } catch (const Json::exception& e) {
    return Status::InvalidArgument(std::string("coldchain state: corrupt: ") + e.what());
  }
  return s;
}

std::string ColdchainEngine::SnapshotSensor(const std::string& sensor) const {
  auto it = sensors_.find(sensor);
  return it == sensors_.end() ? std::string() : Encode(it->second);
}

Status ColdchainEngine::RestoreSensor(const std::string& sensor, std::string_view blob) {
  if (blob.empty()) {
    sensors_.erase(sensor);
    return Status::Ok();
  }
  auto s = Decode(blob);
  if (!s.ok()) return s.status();
  newest_ms_ = std::max(newest_ms_, s->last_ts_ms);
  Derive(sensor, *s);
  sensors_[sensor] = std::move(*s);
  return Status::Ok();
}

// Whole-engine grammar: {"v":1, "sensors":{SENSOR_ID: SENSOR_BLOB_OBJECT, ...}}
std::string ColdchainEngine::Snapshot() const {
  Json all = Json::object();
  for (const auto& [id, s] : sensors_) all[id] = Json::parse(Encode(s));
  return Json{{"v", 1}, {"sensors", std::move(all)}}.dump();
}

Status ColdchainEngine::Restore(std::string_view blob) {
  std::map<std::string, Sensor> restored;
  try {
    const Json j = Json::parse(blob);
    if (j.at("v").get<int>() != 1) return Status::InvalidArgument("coldchain state: unsupported version");
    for (const auto& [id, sj] : j.at("sensors").items()) {
      auto s = Decode(sj.dump());
      if (!s.ok()) return s.status();
      restored[id] = std::move(*s);
    }
  } catch (const Json::exception& e) {
    return Status::InvalidArgument(std::string("coldchain state: corrupt: ") + e.what());
  }
  sensors_ = std::move(restored);
  newest_ms_ = 0;
  for (auto& [id, s] : sensors_) {
    newest_ms_ = std::max(newest_ms_, s.last_ts_ms);
    Derive(id, s);
  }
  return Status::Ok();
}

}  // namespace freshsync::coldchain
