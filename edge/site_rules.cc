#include "edge/site_rules.h"

#include <sqlite3.h>

#include <fstream>
#include <sstream>
#include <unordered_set>
#include <utility>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "edge/outbox_writer.h"
#include "freshsync.pb.h"
#include "sqlite/db.h"
#include "wire/routes.h"

namespace freshsync::edge {

namespace {
constexpr char kGeofence[] = "geofence";
constexpr char kColdchain[] = "coldchain";

// The one mapping, sqlite/status.h.
Status SqlError(sqlite3* db, const char* what) { return sqlite::LastError(db, std::string("rules: ") + what); }

Result<geofence::FenceSet> LoadFences(const EdgeConfig& config) {
  auto fences = geofence::FenceSet::LoadFile(config.geofence_file);
  if (!fences.ok())
    return Status(fences.status().code(), "geofence.file: " + config.geofence_file + ": " + fences.status().message());
  return fences;
}

// The file's fences (if any) and HQ's, as one FeatureCollection: on the same name HQ's fence
// replaces the file's (docs/conflicts.md, "HQ and sites"). Both are valid FeatureCollections
// by now (the file was loaded, HQ's set checked), so this only merges the feature arrays.
Result<std::string> CombinedFences(const EdgeConfig& config, const std::string& hq_geojson) {
  auto hq = nlohmann::json::parse(hq_geojson, nullptr, false);
  if (!hq.is_object() || !hq["features"].is_array()) return Status::InvalidArgument("HQ fences: not a FeatureCollection");
  std::unordered_set<std::string> hq_names;
  for (const auto& f : hq["features"])
    if (f.is_object() && f.contains("properties") && f["properties"].is_object() && f["properties"].contains("name") &&
        f["properties"]["name"].is_string())
      hq_names.insert(f["properties"]["name"].get<std::string>());
  if (!config.geofence_file.empty()) {
    std::ifstream in(config.geofence_file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    auto file = nlohmann::json::parse(text.str(), nullptr, false);
    if (!file.is_object() || !file["features"].is_array())
      return Status::InvalidArgument("geofence.file: " + config.geofence_file + ": not a FeatureCollection");
    for (const auto& f : file["features"]) {
      // Read defensively: the file may have changed since LoadFences checked it; FromGeoJson
      // checks the combination again.
      const auto props = f.is_object() ? f.value("properties", nlohmann::json::object()) : nlohmann::json::object();
      const auto name = props.is_object() && props.contains("name") && props["name"].is_string() ? props["name"].get<std::string>() : "";
      if (!hq_names.count(name)) hq["features"].push_back(f);
    }
  }
  return hq.dump();
}
}  // namespace

std::vector<ColdchainRule> HqColdchainRules(const v1::ColdchainRuleSet& set) {
  std::vector<ColdchainRule> rules;
  for (const auto& r : set.rules()) {
    ColdchainRule rule;
    rule.sensors = r.sensors();
    rule.min_c = r.min_c();
    rule.max_c = r.max_c();
    rule.for_s = static_cast<int>(r.for_s());
    rules.push_back(rule);
  }
  return rules;
}

// Statements prepared once on the store's connection (the toolkit's Stmt, sqlite/db.h).
class SiteRules::Statements {
 public:
  explicit Statements(sqlite3* db) : db_(db) {}
  Status Prepare() {
    Status s = sqlite::PrepareAllOn(db_, {
        {"INSERT INTO rule_state(engine, entity, blob, updated_ms) VALUES (?1, ?2, ?3, ?4) "
         "ON CONFLICT(engine, entity) DO UPDATE SET blob = excluded.blob, updated_ms = excluded.updated_ms",
         &put_},
        {"SELECT blob FROM rule_state WHERE engine = ?1 AND entity = ?2", &get_},
        {"SELECT engine, entity, blob FROM rule_state ORDER BY engine, entity", &all_},
        {"INSERT OR REPLACE INTO climate_rollups(sensor, minute_ms, count, min_c, avg_c, max_c) VALUES (?1,?2,?3,?4,?5,?6)",
         &rollup_},
        // A trimmed reading stays a link of the cold-chain audit chain, marked as the disk
        // quota marks what it thins (edge/migrations.cc, coldchain_links).
        {"UPDATE coldchain_links SET thinned = 1 WHERE seq IN "
         "(SELECT outbox_seq FROM climate_readings WHERE sensor = ?1 AND ts_ms < ?2)",
         &thin_links_},
        {"DELETE FROM climate_readings WHERE sensor = ?1 AND ts_ms < ?2", &trim_raw_},
        {"DELETE FROM climate_rollups WHERE sensor = ?1 AND minute_ms < ?2", &trim_rollups_},
    });
    return s.ok() ? s : Status(s.code(), "rules: " + s.message());
  }
  // Runs a statement to completion, then resets it and clears its bindings.
  Status Run(sqlite::Stmt& s, const char* what) {
    sqlite::ResetGuard reset(s, true);
    return s.Run(std::string("rules: ") + what);
  }

  sqlite3* db_;
  sqlite::Stmt put_, get_, all_, rollup_, thin_links_, trim_raw_, trim_rollups_;
};

Status SiteRules::CheckConfig(const EdgeConfig& config) {
  if (config.geofence_file.empty()) return Status::Ok();
  auto f = LoadFences(config);
  return f.ok() ? Status::Ok() : f.status();
}

Result<std::unique_ptr<SiteRules>> SiteRules::Create(const EdgeConfig& config) {
  std::unique_ptr<geofence::GeofenceEngine> g;
  if (!config.geofence_file.empty()) {
    auto fences = LoadFences(config);
    if (!fences.ok()) return fences.status();
    g = std::make_unique<geofence::GeofenceEngine>(std::move(*fences), config.geofence);
  }
  return std::unique_ptr<SiteRules>(new SiteRules(config, std::move(g)));
}

SiteRules::SiteRules(const EdgeConfig& config, std::unique_ptr<geofence::GeofenceEngine> geofence)
    : root_(config.mqtt.topic_root),
      cc_settings_(config.coldchain),
      geofence_(std::move(geofence)),
      coldchain_(std::make_unique<coldchain::ColdchainEngine>(config.coldchain_rules, config.coldchain)),
      config_(config) {}

SiteRules::~SiteRules() = default;

// What Reload() prepared, off the owner thread, for AdoptStaged() to swap in.
struct SiteRules::Staged {
  std::unique_ptr<geofence::GeofenceEngine> geofence;
  std::unique_ptr<coldchain::ColdchainEngine> coldchain;
  ColdchainSettings cc_settings;
  std::string describe;
};

Result<std::unique_ptr<SiteRules::Staged>> SiteRules::Build(const EdgeConfig& config, const HqSets& hq) {
  auto staged = std::make_unique<Staged>();
  size_t fence_count = 0;
  if (!config.geofence_file.empty()) {
    auto fences = LoadFences(config);
    if (!fences.ok()) return fences.status();
    fence_count = fences->size();
    if (!hq.has_fences) staged->geofence = std::make_unique<geofence::GeofenceEngine>(std::move(*fences), config.geofence);
  }
  if (hq.has_fences) {
    auto combined = CombinedFences(config, hq.fences_geojson);
    if (!combined.ok()) return combined.status();
    auto fences = geofence::FenceSet::FromGeoJson(*combined, "fences (geofence.file and HQ's)");
    if (!fences.ok()) return fences.status();
    fence_count = fences->size();
    if (fence_count > 0) staged->geofence = std::make_unique<geofence::GeofenceEngine>(std::move(*fences), config.geofence);
  }
  std::vector<ColdchainRule> rules = hq.rules;  // HQ's first: the engine takes the first match
  rules.insert(rules.end(), config.coldchain_rules.begin(), config.coldchain_rules.end());
  staged->coldchain = std::make_unique<coldchain::ColdchainEngine>(rules, config.coldchain);
  staged->cc_settings = config.coldchain;
  staged->describe = std::to_string(fence_count) + " fences" +
                     (config.geofence_file.empty() ? "" : " from " + config.geofence_file) +
                     (hq.has_fences ? " and HQ's" : "") + ", " + std::to_string(rules.size()) + " cold-chain rules" +
                     (hq.has_rules ? " (" + std::to_string(hq.rules.size()) + " HQ's)" : "");
  return staged;
}

Status SiteRules::CheckHqFences(const std::string& geojson) {
  auto fences = geofence::FenceSet::FromGeoJson(geojson, "HQ's fences");
  return fences.ok() ? Status::Ok() : fences.status();
}

Status SiteRules::StageLocked(const char* why) {
  auto staged = Build(config_, hq_);
  if (!staged.ok()) return staged.status();
  spdlog::info("rules: {} staged ({}); adopted at the next GPS fix or climate reading", why, (*staged)->describe);
  staged_ = std::move(*staged);  // a newer one replaces one not yet adopted
  has_staged_.store(true, std::memory_order_release);
  return Status::Ok();
}

Status SiteRules::SetHqFences(const std::string& geojson) {
  if (Status s = CheckHqFences(geojson); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(staged_mu_);
  HqSets before = hq_;
  hq_.has_fences = true;
  hq_.fences_geojson = geojson;
  Status s = StageLocked("HQ's fences");
  if (!s.ok()) hq_ = std::move(before);
  return s;
}

Status SiteRules::SetHqRules(std::vector<ColdchainRule> rules) {
  std::lock_guard<std::mutex> lock(staged_mu_);
  HqSets before = hq_;
  hq_.has_rules = true;
  hq_.rules = std::move(rules);
  Status s = StageLocked("HQ's cold-chain rules");
  if (!s.ok()) hq_ = std::move(before);
  return s;
}

Status SiteRules::Attach(EdgeStore& store) {
  st_ = std::make_unique<Statements>(store.db());
  if (Status s = st_->Prepare(); !s.ok()) return s;
  // HQ's sets as last committed (edge/downstream.h), combined with the file's as a reload would.
  auto fences = store.LoadHqRuleSet(wire::kDownKindNames[v1::DOWN_FENCES]);
  if (!fences.ok()) return fences.status();
  auto rules = store.LoadHqRuleSet(wire::kDownKindNames[v1::DOWN_COLDCHAIN_RULES]);
  if (!rules.ok()) return rules.status();
  if (fences->version > 0 || rules->version > 0) {
    std::lock_guard<std::mutex> lock(staged_mu_);
    v1::FenceSet fs;
    if (fences->version > 0 && fs.ParseFromString(fences->body)) {
      hq_.has_fences = true;
      hq_.fences_geojson = fs.geojson();
    }
    v1::ColdchainRuleSet rs;
    if (rules->version > 0 && rs.ParseFromString(rules->body)) {
      hq_.has_rules = true;
      hq_.rules = HqColdchainRules(rs);
    }
    auto built = Build(config_, hq_);
    if (built.ok()) {
      geofence_ = std::move((*built)->geofence);
      coldchain_ = std::move((*built)->coldchain);
      spdlog::info("rules: with HQ's sets ({})", (*built)->describe);
    } else {
      // The file changed under a stored HQ set (e.g. a fence it names no longer parses with
      // it): the file's rules run; the next HQ set or SIGHUP tries again.
      spdlog::error("rules: HQ's stored sets not combined with the file's ({}); running the file's", built.status().message());
      hq_ = {};
    }
  }
  int vehicles = 0, sensors = 0;
  if (Status s = RestoreAll(&vehicles, &sensors); !s.ok()) return s;
  spdlog::info("rules: {} fences; restored state of {} vehicles and {} sensors (newest reading ts {})", fence_count(), vehicles,
               sensors, coldchain_->NewestTs());
  return Status::Ok();
}

Status SiteRules::RestoreAll(int* vehicles, int* sensors) {
  sqlite::Stmt& q = st_->all_;
  sqlite::ResetGuard reset(q);
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) {
    const std::string engine = q.Text(0);
    const std::string entity = q.Text(1);
    const std::string blob = q.Text(2);
    Status s;
    if (engine == kGeofence) {
      if (!geofence_) continue;  // fences removed from the config: nothing to restore into
      s = geofence_->RestoreVehicle(entity, blob);
      ++*vehicles;
    } else if (engine == kColdchain) {
      s = coldchain_->RestoreSensor(entity, blob);
      ++*sensors;
    }
    if (!s.ok()) {
      // A blob this binary cannot read (corrupt, or written by a newer one): the entity starts
      // afresh rather than the daemon refusing to run; counted in the log.
      spdlog::error("rules: {} state of {} not restored ({}); starting it afresh", engine, entity, s.message());
    }
  }
  if (rc != SQLITE_DONE) return SqlError(st_->db_, "restore");
  return Status::Ok();
}

Status SiteRules::Reload(const EdgeConfig& config) {
  // Everything that can fail is done in Build, before anything running is touched; HQ's sets
  // stay combined with the new file.
  std::lock_guard<std::mutex> lock(staged_mu_);
  EdgeConfig before = std::exchange(config_, config);
  Status s = StageLocked("reload");
  if (!s.ok()) config_ = std::move(before);
  return s;
}

Status SiteRules::AdoptStaged() {
  if (!has_staged_.load(std::memory_order_acquire)) return Status::Ok();
  std::unique_ptr<Staged> staged;
  {
    std::lock_guard<std::mutex> lock(staged_mu_);
    staged = std::move(staged_);
    has_staged_.store(false, std::memory_order_relaxed);
  }
  if (!staged) return Status::Ok();
  // At the start of a message, memory equals the committed store (stale entities are about to
  // be restored from it anyway), so rebuilding from rule_state loses nothing: the same as a
  // restart with the new config. If the read fails, put the old engines back and retry later.
  auto old_geofence = std::exchange(geofence_, std::move(staged->geofence));
  auto old_coldchain = std::exchange(coldchain_, std::move(staged->coldchain));
  const ColdchainSettings old_settings = std::exchange(cc_settings_, staged->cc_settings);
  int vehicles = 0, sensors = 0;
  if (Status s = RestoreAll(&vehicles, &sensors); !s.ok()) {
    staged->geofence = std::exchange(geofence_, std::move(old_geofence));
    staged->coldchain = std::exchange(coldchain_, std::move(old_coldchain));
    cc_settings_ = old_settings;
    std::lock_guard<std::mutex> lock(staged_mu_);
    if (!staged_) {
      staged_ = std::move(staged);
      has_staged_.store(true, std::memory_order_release);
    }
    return s;
  }
  stale_vehicles_.clear();  // just restored from the store, every one of them
  stale_sensors_.clear();
  reloads_adopted_.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("rules: reloaded ({}); state of {} vehicles and {} sensors kept", staged->describe, vehicles, sensors);
  return Status::Ok();
}

Result<std::string> SiteRules::LoadSnapshot(const char* engine, const std::string& entity) {
  sqlite::Stmt& q = st_->get_;
  sqlite::ResetGuard reset(q, true);
  const int rc = q.Bind(1, engine).Bind(2, entity).Step();
  std::string blob;
  if (rc == SQLITE_ROW) blob = q.Text(0);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqlError(st_->db_, "snapshot read");
  return blob;  // "" = never committed: the engine forgets the entity
}

Status SiteRules::RestoreStale() {
  for (auto it = stale_vehicles_.begin(); it != stale_vehicles_.end();) {
    auto blob = LoadSnapshot(kGeofence, *it);
    if (!blob.ok()) return blob.status();
    if (Status s = geofence_->RestoreVehicle(*it, *blob); !s.ok()) return Status::Internal("rules: " + s.message());
    it = stale_vehicles_.erase(it);
  }
  for (auto it = stale_sensors_.begin(); it != stale_sensors_.end();) {
    auto blob = LoadSnapshot(kColdchain, *it);
    if (!blob.ok()) return blob.status();
    if (Status s = coldchain_->RestoreSensor(*it, *blob); !s.ok()) return Status::Internal("rules: " + s.message());
    it = stale_sensors_.erase(it);
  }
  return Status::Ok();
}

Status SiteRules::PutSnapshot(const char* engine, const std::string& entity, const std::string& blob, int64_t now_ms) {
  return st_->Run(st_->put_.Bind(1, engine).Bind(2, entity).Bind(3, blob).Bind(4, now_ms), "snapshot write");
}

Status SiteRules::OnGps(EdgeStore& store, const GpsFix& g, int64_t now_ms) {
  if (Status s = AdoptStaged(); !s.ok()) return s;
  if (!geofence_) return Status::Ok();
  if (Status s = RestoreStale(); !s.ok()) return s;
  touched_vehicles_.insert(g.vehicle);
  geofence::GpsFix fix;
  fix.vehicle = g.vehicle;
  fix.ts_ms = g.ts_ms;
  fix.lat = g.lat;
  fix.lon = g.lon;
  fix.hdop = g.hdop;
  geofence::Gate gate = geofence::Gate::kAccepted;
  const auto events = geofence_->Process(fix, &gate);
  // Even a gated fix is snapshotted: a too-fast one counts towards re-anchoring, which is state.
  for (const auto& e : events) {
    v1::ChangeRecord rec;
    auto* ge = rec.mutable_geofence();
    ge->set_vehicle(e.vehicle);
    ge->set_fence(e.fence);
    ge->set_kind(e.kind);
    ge->set_event(e.EventName());
    auto seq = store.AppendChange(v1::GEOFENCE_EVENT, e.vehicle, kPriorityLane, e.ts_ms, rec, now_ms);
    if (!seq.ok()) return seq.status();
    store.QueuePublication(publish::GeofenceEvent(root_, e));
  }
  return PutSnapshot(kGeofence, g.vehicle, geofence_->SnapshotVehicle(g.vehicle), now_ms);
}

Status SiteRules::WriteColdchain(EdgeStore& store, const coldchain::Output& out, int64_t now_ms) {
  const int64_t raw_keep_ms = int64_t{cc_settings_.raw_retention_h} * 3600'000;
  const int64_t rollup_keep_ms = int64_t{cc_settings_.rollup_retention_d} * 86400'000;
  for (const auto& r : out.rollups) {
    touched_sensors_.insert(r.sensor);
    st_->rollup_.Bind(1, r.sensor).Bind(2, r.minute_ms).Bind(3, r.count).BindDouble(4, r.min_c).BindDouble(5, r.avg_c).BindDouble(6, r.max_c);
    if (Status st = st_->Run(st_->rollup_, "rollup write"); !st.ok()) return st;
    // Retention, on message time, once per sensor-minute: raw readings and rollups older than
    // their windows behind this minute go (indexed range deletes, a few rows each).
    st_->thin_links_.Bind(1, r.sensor).Bind(2, r.minute_ms - raw_keep_ms);
    if (Status st = st_->Run(st_->thin_links_, "raw retention: chain links"); !st.ok()) return st;
    st_->trim_raw_.Bind(1, r.sensor).Bind(2, r.minute_ms - raw_keep_ms);
    if (Status st = st_->Run(st_->trim_raw_, "raw retention"); !st.ok()) return st;
    st_->trim_rollups_.Bind(1, r.sensor).Bind(2, r.minute_ms - rollup_keep_ms);
    if (Status st = st_->Run(st_->trim_rollups_, "rollup retention"); !st.ok()) return st;
  }
  for (const auto& a : out.alerts) {
    touched_sensors_.insert(a.sensor);
    v1::ChangeRecord rec;
    auto* al = rec.mutable_alert();
    al->set_alert_id(a.alert_id);
    al->set_sensor(a.sensor);
    al->set_state(a.WireState());
    al->set_min_c(a.min_c);
    al->set_max_c(a.max_c);
    al->set_started_ts_ms(a.started_ts_ms);
    if (a.ended_ts_ms) al->set_ended_ts_ms(*a.ended_ts_ms);
    al->set_kind(a.KindName());
    auto seq = store.AppendChange(v1::COLDCHAIN_ALERT, a.alert_id, kPriorityLane, a.ts_ms, rec, now_ms);
    if (!seq.ok()) return seq.status();
    store.QueuePublication(publish::ColdchainAlert(root_, a));
  }
  return Status::Ok();
}

Status SiteRules::OnClimate(EdgeStore& store, const ClimateSample& c, int64_t now_ms) {
  if (Status s = AdoptStaged(); !s.ok()) return s;
  if (Status s = RestoreStale(); !s.ok()) return s;
  touched_sensors_.insert(c.sensor);
  coldchain::Verdict verdict = coldchain::Verdict::kApplied;
  coldchain::Output out = coldchain_->Process({c.sensor, c.ts_ms, c.temp_c}, &verdict);
  // Tick on message time: the newest reading's ts, part of the restored state (docs/rules.md).
  coldchain::Output ticked = coldchain_->Tick(coldchain_->NewestTs());
  out.rollups.insert(out.rollups.end(), ticked.rollups.begin(), ticked.rollups.end());
  out.alerts.insert(out.alerts.end(), ticked.alerts.begin(), ticked.alerts.end());
  if (Status s = WriteColdchain(store, out, now_ms); !s.ok()) return s;
  // Process changes only c.sensor; Tick only the sensors named in its output.
  for (const auto& sensor : touched_sensors_)
    if (Status s = PutSnapshot(kColdchain, sensor, coldchain_->SnapshotSensor(sensor), now_ms); !s.ok()) return s;
  return Status::Ok();
}

void SiteRules::OnCommitted() {
  touched_vehicles_.clear();
  touched_sensors_.clear();
}

void SiteRules::OnRolledBack() {
  // Memory is ahead of the store for these: restore them before they are used again.
  stale_vehicles_.merge(touched_vehicles_);
  stale_sensors_.merge(touched_sensors_);
  touched_vehicles_.clear();
  touched_sensors_.clear();
}

}  // namespace freshsync::edge
