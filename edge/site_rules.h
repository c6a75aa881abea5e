// SiteRules: wires the pure rule engines (edge/geofence, edge/coldchain) into edged's apply
// path, as docs/rules.md prescribes. It is the store's ApplyHook: for each GPS fix / climate
// reading, inside the message's SQLite transaction, it runs the engine, appends the events to
// the outbox (GEOFENCE_EVENT, COLDCHAIN_ALERT, priority 1), upserts the entity's snapshot in
// `rule_state`, writes one-minute rollups to `climate_rollups` and trims raw readings and
// rollups past their retention. Events are queued as publications that the store releases
// only after COMMIT (commit, then ack, then publish).
//
// State: at start-up Restore() loads every snapshot row before any message is applied. When a
// transaction rolls back, the entities it touched are marked stale and restored from their
// last committed blob at the start of the next hooked message (inside that message's
// transaction, so a failing disk surfaces as kIOError and the message is retried), so memory
// always matches the store before it is used again.
//
// Reload (SIGHUP): Reload() may be called from any thread. It loads and checks the new
// [geofence] file and [[coldchain.rule]]s off the ingest thread and, if they are good, hands
// them over; the ingest thread adopts them at the start of the next GPS fix or climate reading
// (inside that message's transaction), rebuilding the engines from the new config and
// restoring every entity from `rule_state`, exactly as a restart would. So state is kept per
// vehicle and fence (dropped for a fence no longer in the file) and per sensor. A bad file
// leaves the running rules untouched.
//
// HQ's sets (docs/conflicts.md, "HQ and sites"): the fence set and cold-chain rule set HQ sends
// down (edge/downstream.h) are combined with the file's: fences by name, HQ's winning on the
// same name; HQ's rules ahead of the [[coldchain.rule]]s, so the first match (the engine's
// rule) is HQ's where both match. SetHqFences/SetHqRules stage the combination exactly as
// Reload does (adopted at the next GPS fix or climate reading); Attach loads the newest stored
// sets (hq_rule_sets), so they survive a restart; a SIGHUP keeps them.
//
// Thread-safety: none for the rest; the store's thread (edged's ingest applier) owns it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/status.h"
#include "edge/coldchain/coldchain_engine.h"
#include "edge/geofence/geofence_engine.h"
#include "edge/store.h"

namespace freshsync::v1 {
class ColdchainRuleSet;
}

namespace freshsync::edge {

// HQ's rule set (proto) as the engine's rules.
std::vector<ColdchainRule> HqColdchainRules(const v1::ColdchainRuleSet& set);

class SiteRules : public ApplyHook {
 public:
  // Loads [geofence] file (if set). kInvalidArgument/kNotFound naming "geofence.file" and the
  // feature when the file is bad, so edged (and --check-config) can refuse to start.
  static Result<std::unique_ptr<SiteRules>> Create(const EdgeConfig& config);
  // Loads fences only, to validate a config: the same errors as Create.
  static Status CheckConfig(const EdgeConfig& config);
  ~SiteRules() override;

  // Restores every stored snapshot; call once after EdgeStore::Open, before traffic.
  // Prepares statements on the store's connection (the store must outlive this object).
  Status Attach(EdgeStore& store);

  // Any thread. kInvalidArgument/kNotFound naming "geofence.file", the path and the feature
  // when the new file is bad (the running rules stay); ok once the new rules are staged.
  Status Reload(const EdgeConfig& config);
  // Any thread: HQ's sets, as received (a FeatureCollection; rules). kInvalidArgument for a
  // fence set that does not parse (nothing changes); ok once the combination is staged.
  Status SetHqFences(const std::string& geojson);
  Status SetHqRules(std::vector<ColdchainRule> rules);
  // Whether HQ's fence set parses, without staging it (the applier refuses one that does not).
  static Status CheckHqFences(const std::string& geojson);
  // Reloads staged and not yet adopted (0 or 1) and adopted so far; for logs and tests.
  int64_t reloads_adopted() const { return reloads_adopted_.load(std::memory_order_relaxed); }

  Status OnGps(EdgeStore& store, const GpsFix& g, int64_t now_ms) override;
  Status OnClimate(EdgeStore& store, const ClimateSample& c, int64_t now_ms) override;
  void OnCommitted() override;
  void OnRolledBack() override;

  // Owner thread only: a reload swaps the engines there.
  size_t fence_count() const { return geofence_ ? geofence_->fences().size() : 0; }
  const geofence::GeofenceEngine* geofence() const { return geofence_.get(); }
  const coldchain::ColdchainEngine& coldchain() const { return *coldchain_; }

 private:
  class Statements;
  SiteRules(const EdgeConfig& config, std::unique_ptr<geofence::GeofenceEngine> geofence);
  struct Staged;
  // HQ's sets as last received; has_*: one was received (an empty set is a set).
  struct HqSets {
    bool has_fences = false;
    std::string fences_geojson;
    bool has_rules = false;
    std::vector<ColdchainRule> rules;
  };
  // The engines for a config combined with HQ's sets: everything that can fail, off the owner thread.
  static Result<std::unique_ptr<Staged>> Build(const EdgeConfig& config, const HqSets& hq);
  // Builds from config_ and hq_ (under staged_mu_) and stages the result.
  Status StageLocked(const char* why);
  Status RestoreStale();
  // On the owner thread, at the start of a hooked message: adopts staged rules, if any.
  Status AdoptStaged();
  // Restores every stored snapshot into the current engines (Attach, AdoptStaged).
  Status RestoreAll(int* vehicles, int* sensors);
  Status PutSnapshot(const char* engine, const std::string& entity, const std::string& blob, int64_t now_ms);
  Status WriteColdchain(EdgeStore& store, const coldchain::Output& out, int64_t now_ms);
  Result<std::string> LoadSnapshot(const char* engine, const std::string& entity);

  std::string root_;
  ColdchainSettings cc_settings_;
  std::unique_ptr<geofence::GeofenceEngine> geofence_;  // null: no [geofence] file
  std::unique_ptr<coldchain::ColdchainEngine> coldchain_;
  std::unique_ptr<Statements> st_;
  // Entities changed by the open transaction, and entities whose memory is ahead of the store.
  std::set<std::string> touched_vehicles_, touched_sensors_;
  std::set<std::string> stale_vehicles_, stale_sensors_;
  // Reload hand-over: written by Reload() (any thread), taken by the owner thread.
  std::mutex staged_mu_;
  std::unique_ptr<Staged> staged_;
  EdgeConfig config_;  // the file's side, as last loaded (Create, Reload); under staged_mu_
  HqSets hq_;          // under staged_mu_
  std::atomic<bool> has_staged_{false};
  std::atomic<int64_t> reloads_adopted_{0};
};

}  // namespace freshsync::edge
