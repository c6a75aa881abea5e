// DiskQuota: keeps the site store under `store.quota_mb` with a value-aware policy
// (docs/operations.md, "Disk quota"). Each Tick() measures the store's used size and, above
// the soft mark, frees space in this order, never skipping a step while it still frees rows:
//
//   1. downsample: raw telemetry (vehicle_positions, climate_readings) that the hub has
//      acknowledged is thinned to one row per device per interval (GPS 30 s, climate 60 s;
//      climate keeps its one-minute rollups untouched, so the aggregates lose nothing);
//   2. drop: what is left of acknowledged raw telemetry, acknowledged telemetry outbox rows
//      (before their retention: the hub holds them), and telemetry dedupe keys older than a
//      day (why that is safe: SqliteQuotaStore::DropAcked in quota_sqlite.cc);
//   3. full: at or above the quota with nothing left to free, telemetry is paused (no longer
//      acknowledged, so the broker keeps it; Ingest::PauseTelemetry) and an alert is raised.
//      It resumes by itself once the used size is back under the resume mark (hub acks make
//      rows droppable, step 2 frees them).
//
// Never touched: stock, movements, orders, alerts, geofence events, rollups, dead letters, and
// any row the hub has not acknowledged. The seams are QuotaStore (the SQLite side) and
// TelemetryGate (ingest); tests drive DiskQuota with fakes of both.
//
// "Used" is the store's live pages, (page_count - freelist_count) x page_size, as of the
// latest commit (WAL included). Deleted rows' pages go to the freelist and are reused, so the
// file stops growing once the quota holds; the WAL adds at most its checkpoint size on top.
//
// Thread-safety: Tick() from one thread (edged's maintenance thread); status() from any.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

#include "common/clock.h"
#include "common/status.h"

namespace freshsync::edge {

enum class QuotaState { kOk = 0, kDownsampling = 1, kDropping = 2, kFull = 3 };
const char* QuotaStateName(QuotaState s);

// The SQLite side of the quota. Each call is at most a few short transactions, so ingest never
// waits long for the write lock. Row counts are what was actually deleted.
class QuotaStore {
 public:
  virtual ~QuotaStore() = default;
  // Live bytes of the store (see the header comment).
  virtual Result<int64_t> UsedBytes() = 0;
  // Step 1: deletes up to `max_rows` acknowledged raw telemetry rows that share a device and
  // an interval with an older acknowledged row. 0: nothing left to downsample.
  virtual Result<int64_t> Downsample(int max_rows) = 0;
  // Step 2: deletes up to `max_rows` acknowledged raw telemetry rows, acknowledged telemetry
  // outbox rows and old telemetry dedupe keys. 0: nothing left to drop.
  virtual Result<int64_t> DropAcked(int max_rows, int64_t now_ms) = 0;
  // The quota alert as a change record in the priority lane (entity COLDCHAIN_ALERT, kind
  // "disk_quota", key "disk-quota"), so that HQ sees it; open or closed.
  virtual Status RecordAlert(bool open, int64_t started_ms, int64_t now_ms) = 0;
  // What `edgectl status` shows (edge_meta rows quota_*), written once per Tick.
  virtual Status PublishState(QuotaState state, int64_t used_bytes, std::optional<int64_t> forecast_full_s) = 0;
};

// Ingest's side: pausing telemetry = no more acks for gps/climate (edge/ingest.h).
class TelemetryGate {
 public:
  virtual ~TelemetryGate() = default;
  virtual void Pause() = 0;
  virtual void Resume() = 0;
};

struct QuotaOptions {
  int64_t quota_bytes = 0;        // 0: no quota (Tick only measures)
  double soft_ratio = 0.80;       // start freeing at this share of the quota
  double resume_ratio = 0.90;     // paused telemetry resumes below this share
  int rows_per_step = 2000;       // per store call; Tick makes at most max_steps calls
  int max_steps = 50;
  int64_t forecast_window_ms = 60'000;  // growth rate measured over about this long
};

struct QuotaStatus {
  int64_t quota_bytes = 0;
  int64_t used_bytes = 0;
  QuotaState state = QuotaState::kOk;
  std::optional<int64_t> forecast_full_s;  // none: not growing (or no quota)
  bool alert_open = false;
  int64_t downsampled_rows = 0;   // since start
  int64_t dropped_rows = 0;
  int64_t pauses = 0;
};

class DiskQuota {
 public:
  // Neither is owned; both must outlive the DiskQuota. `gate` may be null (no ingest).
  DiskQuota(QuotaOptions options, QuotaStore& store, TelemetryGate* gate, Clock& clock);

  // One round of measure, free (if above the soft mark), pause or resume, publish. Returns the
  // first store error (the round stops there; the next Tick starts over).
  Status Tick();
  QuotaStatus status() const;

 private:
  void Sample(int64_t now_ms, int64_t used);
  std::optional<int64_t> Forecast(int64_t used) const;

  QuotaOptions options_;
  QuotaStore& store_;
  TelemetryGate* gate_;
  Clock& clock_;
  bool paused_ = false;
  int64_t alert_started_ms_ = 0;
  std::deque<std::pair<int64_t, int64_t>> samples_;  // (monotonic ms, used bytes)
  mutable std::mutex mu_;                             // guards status_
  QuotaStatus status_;
};

// The production QuotaStore on the store file: its own connection (like the sync agent's).
// kIOError if the file cannot be opened.
Result<std::unique_ptr<QuotaStore>> OpenSqliteQuotaStore(const std::string& path, int busy_timeout_ms, Clock& clock);

// For edgectl: the quota state edged last published in the store, and the live used size.
struct StoredQuotaState {
  int64_t used_bytes = 0;
  std::string state = "ok";
  std::optional<int64_t> forecast_full_s;
};
Result<StoredQuotaState> ReadQuotaState(const std::string& path);

}  // namespace freshsync::edge
