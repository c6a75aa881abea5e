// ColdchainEngine: turns temperature readings into cold-chain alerts and one-minute rollups,
// measuring every duration on the readings' own timestamps, so that replayed or delayed
// traffic yields the same alerts (same ids, same numbers) as live traffic. Pure: no I/O, no
// clock, no threads.
//
// Rules: the first ColdchainRule whose `sensors` glob (fnmatch) matches the sensor id applies.
// A sensor no rule matches gets rollups only (no alerts).
//
// Excursion alert (kind "excursion"), per sensor:
//   - A reading outside [min_c, max_c] starts a run; readings inside end it. A run that has
//     lasted for_s (from its first reading to the current one) opens an alert with
//     started_ts = the run's first reading, and min/max over the run so far. A shorter spike
//     opens nothing.
//   - While open, each outside reading updates min/max; a kUpdate event is emitted when they
//     changed and at least update_interval_s passed since the last event for the alert.
//   - The first reading back inside closes it: ended_ts = that reading's ts, duration =
//     ended_ts - started_ts.
//   - Silence does not break a run: a run that resumes outside after a gap counts the gap as
//     excursion (for food safety the unknown is assumed bad).
// Offline alert (kind "offline"), for sensors a rule matches:
//   - Tick(now) opens it when now - last_ts > max(5 x the sensor's usual interval, offline_after_s);
//     the usual interval is the median of its last 8 intervals. started_ts = last_ts (the sensor
//     has been silent since then); min/max = its last temperature.
//   - The sensor's next reading closes it, ended_ts = that reading's ts.
//   edged calls Tick(NewestTs()) after each climate message (or batch): the newest reading ts
//   across all sensors, which is part of the restored state, so that after a crash and on replay
//   the ticks are the same as live. An alert opened by Tick is the same
//   whenever Tick notices it (id and started_ts come from last_ts), but a sensor whose silence
//   ends before any tick passes the threshold raises nothing.
// Alert ids are deterministic: "<sensor>/excursion/<started_ts_ms>", "<sensor>/offline/<started_ts_ms>".
//
// Rollups: min/avg/max/count per sensor per UTC minute [m, m+60 s). A minute's row is emitted
// when a reading of a later minute arrives, or when Tick(now) is at least kRollupGraceMs past
// the minute's end (so a silent sensor's last minute is not held back). A reading that arrives
// for a minute already emitted is left out of rollups (counted as late_for_rollup) but still
// drives alerts.
//
// Ordering: a reading with ts <= the sensor's last reading is ignored (kOutOfOrder); NaN or
// infinite temperatures are ignored (kInvalid). Neither changes state.
//
// Persistence: Process(r) changes only r.sensor's state; Tick changes only the state of sensors
// named in its output. edged should, in the same transaction as the message (or the tick's
// outputs), store SnapshotSensor(id) for each such sensor, and at start-up RestoreSensor() every
// stored row before processing traffic. If the transaction rolls back, RestoreSensor() the last
// committed blobs. After a crash, restore + redelivery gives exactly the outputs of an
// uninterrupted run.
//
// Thread-safety: not thread-safe; one owner (edged's ingest thread).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/status.h"

namespace freshsync::coldchain {

struct Reading {
  std::string sensor;
  int64_t ts_ms = 0;  // the message's own timestamp, epoch ms
  double temp_c = 0;
};

enum class AlertKind { kExcursion, kOffline };
// kUpdate is an open alert with new min/max: on the wire (fs/alerts/coldchain) it is "open".
enum class AlertState { kOpen, kUpdate, kClosed };

struct AlertEvent {
  std::string alert_id;
  std::string sensor;
  AlertKind kind = AlertKind::kExcursion;
  AlertState state = AlertState::kOpen;
  double min_c = 0;              // excursion: extremes so far; offline: the last temperature
  double max_c = 0;
  int64_t started_ts_ms = 0;
  std::optional<int64_t> ended_ts_ms;  // set when closed
  int64_t ts_ms = 0;             // message time at which this event was produced
  std::string rule;              // the matching rule's glob
  double limit_min_c = 0;        // the rule's bounds, for the message
  double limit_max_c = 0;

  const char* KindName() const { return kind == AlertKind::kExcursion ? "excursion" : "offline"; }
  // "open" or "closed", as fs/alerts/coldchain and ColdchainAlert.state want.
  const char* WireState() const { return state == AlertState::kClosed ? "closed" : "open"; }
  int64_t duration_ms() const { return ended_ts_ms ? *ended_ts_ms - started_ts_ms : 0; }
  bool operator==(const AlertEvent&) const = default;
};

struct Rollup {
  std::string sensor;
  int64_t minute_ms = 0;  // start of the UTC minute
  int count = 0;
  double min_c = 0;
  double avg_c = 0;
  double max_c = 0;
  bool operator==(const Rollup&) const = default;
};

struct Output {
  std::vector<AlertEvent> alerts;
  std::vector<Rollup> rollups;
  bool empty() const { return alerts.empty() && rollups.empty(); }
};

// The fs/alerts/coldchain payload of the design: {"alert_id", "sensor", "kind" (excursion or
// offline), "state" (open or closed), "min_c", "max_c", "started_ts", "ended_ts" (closed only)},
// timestamps as epoch milliseconds, plus "rule", "limit_min_c" and "limit_max_c" for context.
std::string AlertJson(const AlertEvent& a);

enum class Verdict { kApplied, kOutOfOrder, kInvalid };

// Process-lifetime counters for metrics; not part of snapshots.
struct ColdchainCounters {
  uint64_t applied = 0;
  uint64_t out_of_order = 0;
  uint64_t invalid = 0;
  uint64_t late_for_rollup = 0;
};

class ColdchainEngine {
 public:
  static constexpr int64_t kRollupGraceMs = 60'000;
  static constexpr int kIntervalWindow = 8;
  static constexpr int kOfflineIntervals = 5;

  ColdchainEngine(std::vector<ColdchainRule> rules, ColdchainSettings settings);

  // Applies one reading. Outputs are in order: rollups of minutes it closes, then alerts.
  Output Process(const Reading& r, Verdict* verdict = nullptr);
  // Advances message time: opens offline alerts and flushes stale rollups. A `now` older than
  // a previous tick is harmless (it finds nothing new). Outputs are ordered by sensor id.
  Output Tick(int64_t now_ms);

  // One sensor's state as an opaque string (JSON, versioned), "" if the sensor is unknown.
  std::string SnapshotSensor(const std::string& sensor) const;
  // Replaces one sensor's state; "" forgets it. kInvalidArgument if the blob is corrupt (the
  // sensor's state is then left unchanged).
  Status RestoreSensor(const std::string& sensor, std::string_view blob);
  // Every sensor at once (tests, tools). Restore replaces all state.
  std::string Snapshot() const;
  Status Restore(std::string_view blob);

  // The newest applied reading's ts across all sensors (0 if none): what edged should Tick with.
  // Derived from the sensors' state, so it survives Restore/RestoreSensor.
  int64_t NewestTs() const { return newest_ms_; }

  // Alerts open right now, ordered by sensor (for status pages and resync).
  std::vector<AlertEvent> OpenAlerts() const;
  // The rule for a sensor, or nullptr.
  const ColdchainRule* RuleFor(const std::string& sensor) const;
  const ColdchainCounters& counters() const { return counters_; }

 private:
  struct Excursion {
    int64_t started_ts_ms = 0;
    double min_c = 0, max_c = 0;
    int64_t last_emit_ms = 0;
    bool dirty = false;
  };
  struct Bucket {
    int64_t minute_ms = 0;
    int count = 0;
    double sum = 0, min_c = 0, max_c = 0;
  };
  struct Sensor {
    int64_t last_ts_ms = 0;
    double last_temp_c = 0;
    std::vector<int64_t> intervals;     // the last kIntervalWindow intervals, oldest first
    std::optional<int64_t> run_since_ms;  // outside readings since, alert not open yet
    double run_min_c = 0, run_max_c = 0;
    std::optional<Excursion> excursion;   // open excursion alert
    std::optional<int64_t> offline_since_ms;  // open offline alert (its started_ts)
    std::optional<Bucket> bucket;         // the minute being aggregated
    int64_t rolled_through_ms = 0;        // minutes before this were already emitted
    // Derived, not serialized: recomputed on creation, restore and each new interval, because
    // Tick looks at every sensor on every call.
    int rule = -1;
    int64_t offline_after_ms = 0;
  };

  int RuleIndex(const std::string& sensor) const;
  int64_t OfflineAfterMs(const Sensor& s) const;
  void Derive(const std::string& sensor, Sensor& s) const;
  AlertEvent MakeAlert(const std::string& sensor, const Sensor& s, AlertKind kind, AlertState state, int64_t ts) const;
  static Rollup MakeRollup(const std::string& sensor, const Bucket& b);
  static std::string Encode(const Sensor& s);
  static Result<Sensor> Decode(std::string_view blob);

  std::vector<ColdchainRule> rules_;
  ColdchainSettings settings_;
  std::map<std::string, Sensor> sensors_;
  ColdchainCounters counters_;
  int64_t newest_ms_ = 0;
};

}  // namespace freshsync::coldchain
