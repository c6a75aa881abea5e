#include "edge/site_rules.h"

#include <sqlite3.h>

#include <utility>

#include <spdlog/spdlog.h>

#include "freshsync.pb.h"
#include "sqlite/status.h"
#include "wire/routes.h"

namespace freshsync::edge {

namespace {
constexpr char kGeofence[] = "geofence";
constexpr char kColdchain[] = "coldchain";
constexpr int kPriorityLane = 1;  // alerts and events go ahead of bulk telemetry

// The one mapping, sqlite/status.h.
Status SqlError(sqlite3* db, const char* what) { return sqlite::LastError(db, std::string("rules: ") + what); }

Result<geofence::FenceSet> LoadFences(const EdgeConfig& config) {
  auto fences = geofence::FenceSet::LoadFile(config.geofence_file);
  if (!fences.ok())
    return Status(fences.status().code(), "geofence.file: " + config.geofence_file + ": " + fences.status().message());
  return fences;
}
}  // namespace

// Statements prepared once on the store's connection.
class SiteRules::Statements {
 public:
  explicit Statements(sqlite3* db) : db_(db) {}
  ~Statements() {
    for (auto* s : {put_, get_, all_, rollup_, trim_raw_, trim_rollups_}) sqlite3_finalize(s);
  }
  Status Prepare() {
    auto make = [&](const char* sql, sqlite3_stmt** out) {
      return sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, out, nullptr) == SQLITE_OK;
    };
    if (!make("INSERT INTO rule_state(engine, entity, blob, updated_ms) VALUES (?1, ?2, ?3, ?4) "
              "ON CONFLICT(engine, entity) DO UPDATE SET blob = excluded.blob, updated_ms = excluded.updated_ms",
              &put_) ||
        !make("SELECT blob FROM rule_state WHERE engine = ?1 AND entity = ?2", &get_) ||
        !make("SELECT engine, entity, blob FROM rule_state ORDER BY engine, entity", &all_) ||
        !make("INSERT OR REPLACE INTO climate_rollups(sensor, minute_ms, count, min_c, avg_c, max_c) VALUES (?1,?2,?3,?4,?5,?6)",
              &rollup_) ||
        !make("DELETE FROM climate_readings WHERE sensor = ?1 AND ts_ms < ?2", &trim_raw_) ||
        !make("DELETE FROM climate_rollups WHERE sensor = ?1 AND minute_ms < ?2", &trim_rollups_))
      return SqlError(db_, "prepare");
    return Status::Ok();
  }
  // Runs a statement to completion and resets it.
  Status Run(sqlite3_stmt* s, const char* what) {
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE ? Status::Ok() : SqlError(db_, what);
  }
  static void Text(sqlite3_stmt* s, int i, const std::string& v) {
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }

  sqlite3* db_;
  sqlite3_stmt *put_ = nullptr, *get_ = nullptr, *all_ = nullptr, *rollup_ = nullptr, *trim_raw_ = nullptr,
               *trim_rollups_ = nullptr;
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
      coldchain_(std::make_unique<coldchain::ColdchainEngine>(config.coldchain_rules, config.coldchain)) {}

SiteRules::~SiteRules() = default;

// What Reload() prepared, off the owner thread, for AdoptStaged() to swap in.
struct SiteRules::Staged {
  std::unique_ptr<geofence::GeofenceEngine> geofence;
  std::unique_ptr<coldchain::ColdchainEngine> coldchain;
  ColdchainSettings cc_settings;
  std::string describe;
};

Status SiteRules::Attach(EdgeStore& store) {
  st_ = std::make_unique<Statements>(store.db());
  if (Status s = st_->Prepare(); !s.ok()) return s;
  int vehicles = 0, sensors = 0;
  if (Status s = RestoreAll(&vehicles, &sensors); !s.ok()) return s;
  spdlog::info("rules: {} fences; restored state of {} vehicles and {} sensors (newest reading ts {})", fence_count(), vehicles,
               sensors, coldchain_->NewestTs());
  return Status::Ok();
}

Status SiteRules::RestoreAll(int* vehicles, int* sensors) {
  sqlite3_stmt* q = st_->all_;
  int rc;
  while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
    const std::string engine = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
    const std::string entity = reinterpret_cast<const char*>(sqlite3_column_text(q, 1));
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(q, 2));
    const std::string blob = p ? p : "";
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
  sqlite3_reset(q);
  if (rc != SQLITE_DONE) return SqlError(st_->db_, "restore");
  return Status::Ok();
}

Status SiteRules::Reload(const EdgeConfig& config) {
  // Everything that can fail is done here, before anything running is touched.
  auto staged = std::make_unique<Staged>();
  if (!config.geofence_file.empty()) {
    auto fences = LoadFences(config);
    if (!fences.ok()) return fences.status();
    staged->geofence = std::make_unique<geofence::GeofenceEngine>(std::move(*fences), config.geofence);
  }
  staged->coldchain = std::make_unique<coldchain::ColdchainEngine>(config.coldchain_rules, config.coldchain);
  staged->cc_settings = config.coldchain;
  staged->describe = std::to_string(staged->geofence ? staged->geofence->fences().size() : 0) + " fences" +
                     (config.geofence_file.empty() ? "" : " from " + config.geofence_file) + ", " +
                     std::to_string(config.coldchain_rules.size()) + " cold-chain rules";
  spdlog::info("rules: reload staged ({}); adopted at the next GPS fix or climate reading", staged->describe);
  std::lock_guard<std::mutex> lock(staged_mu_);
  staged_ = std::move(staged);  // a newer reload replaces one not yet adopted
  has_staged_.store(true, std::memory_order_release);
  return Status::Ok();
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
  sqlite3_stmt* q = st_->get_;
  Statements::Text(q, 1, engine);
  Statements::Text(q, 2, entity);
  const int rc = sqlite3_step(q);
  std::string blob;
  if (rc == SQLITE_ROW) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(q, 0));
    if (p) blob = p;
  }
  sqlite3_reset(q);
  sqlite3_clear_bindings(q);
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
  sqlite3_stmt* s = st_->put_;
  Statements::Text(s, 1, engine);
  Statements::Text(s, 2, entity);
  Statements::Text(s, 3, blob);
  sqlite3_bind_int64(s, 4, now_ms);
  return st_->Run(s, "snapshot write");
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
    store.QueuePublication({root_ + wire::kGeofenceEventsSuffix, geofence::EventJson(e), false});
  }
  return PutSnapshot(kGeofence, g.vehicle, geofence_->SnapshotVehicle(g.vehicle), now_ms);
}

Status SiteRules::WriteColdchain(EdgeStore& store, const coldchain::Output& out, int64_t now_ms) {
  const int64_t raw_keep_ms = int64_t{cc_settings_.raw_retention_h} * 3600'000;
  const int64_t rollup_keep_ms = int64_t{cc_settings_.rollup_retention_d} * 86400'000;
  for (const auto& r : out.rollups) {
    touched_sensors_.insert(r.sensor);
    sqlite3_stmt* s = st_->rollup_;
    Statements::Text(s, 1, r.sensor);
    sqlite3_bind_int64(s, 2, r.minute_ms);
    sqlite3_bind_int64(s, 3, r.count);
    sqlite3_bind_double(s, 4, r.min_c);
    sqlite3_bind_double(s, 5, r.avg_c);
    sqlite3_bind_double(s, 6, r.max_c);
    if (Status st = st_->Run(s, "rollup write"); !st.ok()) return st;
    // Retention, on message time, once per sensor-minute: raw readings and rollups older than
    // their windows behind this minute go (indexed range deletes, a few rows each).
    Statements::Text(st_->trim_raw_, 1, r.sensor);
    sqlite3_bind_int64(st_->trim_raw_, 2, r.minute_ms - raw_keep_ms);
    if (Status st = st_->Run(st_->trim_raw_, "raw retention"); !st.ok()) return st;
    Statements::Text(st_->trim_rollups_, 1, r.sensor);
    sqlite3_bind_int64(st_->trim_rollups_, 2, r.minute_ms - rollup_keep_ms);
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
    store.QueuePublication({root_ + "/alerts/coldchain", coldchain::AlertJson(a), false});
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
