// GeofenceEngine: turns a stream of GPS fixes per vehicle into enter/exit events, using only the
// fixes' own timestamps, so that replayed or delayed traffic yields the same events as live.
// Pure: no I/O, no clock, no threads.
//
// Per (vehicle, fence) the state machine is:
//   outside --[inside the fence by enter_margin, continuously for dwell_s]--> inside   (enter)
//   inside  --[outside the fence by hysteresis_m, continuously for dwell_s]--> outside (exit)
// enter_margin = min(hysteresis_m, fence depth / 2), so that small fences can still be entered.
// "Continuously" means every accepted fix since the first one of the run met the condition; one
// fix that does not breaks the run. The band between the two margins holds the current state,
// so a truck parked on a boundary with GPS jitter up to hysteresis_m does not flap.
// An event's ts is the first fix of the run that confirmed it (when the truck actually crossed);
// confirmed_ts is the fix at which the dwell was met and the event was emitted.
//
// Quality gating, per vehicle, before any of that (a gated fix changes nothing but counters):
//   invalid      lat/lon not finite or out of range, or hdop NaN/negative
//   poor_hdop    hdop > max_hdop
//   out_of_order ts <= the last accepted fix's ts (late, reordered or repeated)
//   too_fast     reaching it from the last accepted fix needs more than max_speed_kmh
//                (plus kSpeedSlackM for GPS noise). If kReanchorFixes such fixes in a row agree
//                with each other at plausible speed, the last accepted fix was the bad one (e.g.
//                the very first fix after power-on was wrong), and the newest is accepted.
//
// Persistence: all decisions depend only on the fence set, the settings and the per-vehicle state,
// which SnapshotVehicle() serializes. edged should, in the transaction that stores a fix, also
// store SnapshotVehicle(vehicle) (it changes only that vehicle's state), and at start-up call
// RestoreVehicle() for each stored row before processing traffic. If the transaction rolls back,
// call RestoreVehicle() with the last committed blob so memory matches the store again. After a
// crash, restore + redelivery of the uncommitted fix gives exactly the events of an
// uninterrupted run.
//
// Thread-safety: not thread-safe; one owner (edged's ingest thread). Process/Restore mutate.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/status.h"
#include "edge/geofence/fences.h"

namespace freshsync::geofence {

struct GpsFix {
  std::string vehicle;
  int64_t ts_ms = 0;  // the message's own timestamp, epoch ms
  double lat = 0;
  double lon = 0;
  std::optional<double> hdop;
};

enum class Gate { kAccepted, kInvalid, kPoorHdop, kOutOfOrder, kTooFast };
const char* GateName(Gate g);

struct GeofenceEvent {
  enum class Type { kEnter, kExit };
  std::string vehicle;
  std::string fence;
  std::string kind;      // the fence's kind
  Type type = Type::kEnter;
  int64_t ts_ms = 0;            // first fix of the confirming run
  int64_t confirmed_ts_ms = 0;  // fix at which the dwell was met
  const char* EventName() const { return type == Type::kEnter ? "enter" : "exit"; }
  bool operator==(const GeofenceEvent&) const = default;
};

// The fs/events/geofence payload of the design: {"vehicle", "fence", "kind", "event" (enter or
// exit), "ts"}, ts as epoch milliseconds, plus "confirmed_ts".
std::string EventJson(const GeofenceEvent& e);

// Process-lifetime counters for metrics; not part of snapshots.
struct GateCounters {
  uint64_t accepted = 0;
  uint64_t invalid = 0;
  uint64_t poor_hdop = 0;
  uint64_t out_of_order = 0;
  uint64_t too_fast = 0;
  uint64_t reanchored = 0;  // too-fast fixes accepted because the previous anchor was wrong
};

class GeofenceEngine {
 public:
  static constexpr double kSpeedSlackM = 30;  // GPS noise allowance on top of max speed
  static constexpr int kReanchorFixes = 3;

  // Takes its own copy of the fences (it rebuilds their index for its hysteresis).
  GeofenceEngine(FenceSet fences, GeofenceSettings settings);

  // Applies one fix. Returns the events it completes, ordered by fence index. `gate`, if given,
  // receives the verdict on the fix (edged may store gated fixes flagged, or not at all).
  std::vector<GeofenceEvent> Process(const GpsFix& fix, Gate* gate = nullptr);

  // One vehicle's state as an opaque string (JSON, versioned), "" if the vehicle is unknown.
  std::string SnapshotVehicle(const std::string& vehicle) const;
  // Replaces one vehicle's state; "" forgets the vehicle. kInvalidArgument if the blob is
  // corrupt (the vehicle's state is then left unchanged). State for fences no longer in the
  // fence set is dropped silently.
  Status RestoreVehicle(const std::string& vehicle, std::string_view blob);

  // Every vehicle at once (for tests and tools); Restore replaces all state.
  std::string Snapshot() const;
  Status Restore(std::string_view blob);

  // Fences the vehicle is confirmed inside, by name (for status pages).
  std::vector<std::string> InsideOf(const std::string& vehicle) const;
  const GateCounters& counters() const { return counters_; }
  const FenceSet& fences() const { return fences_; }

 private:
  struct FenceState {
    bool inside = false;
    int64_t run_since_ms = -1;  // first fix of the current run towards a transition, or -1
  };
  struct Vehicle {
    bool has_fix = false;
    int64_t last_ts_ms = 0;
    LatLon last;
    int suspects = 0;  // consecutive too-fast fixes that agree with each other
    int64_t suspect_ts_ms = 0;
    LatLon suspect;
    std::map<std::string, FenceState> fences;  // only non-default states are kept
  };

  Gate Check(Vehicle& v, const GpsFix& fix);
  static std::string Encode(const Vehicle& v);
  static Result<Vehicle> Decode(std::string_view blob);

  FenceSet fences_;
  GeofenceSettings settings_;
  std::map<std::string, Vehicle> vehicles_;
  GateCounters counters_;
  std::vector<size_t> scratch_;
};

}  // namespace freshsync::geofence
