// ServiceMonitor: what edged tells systemd. The STATUS= line (link state, backlog, counts) and
// the watchdog verdict: WATCHDOG=1 is sent only while Healthy() holds, so a wedged daemon is
// restarted by systemd instead of being kept alive by a timer.
//
// Healthy means both:
//   - the store answers: a read on the monitor's own StoreReader (edge/store_reader.h) succeeds (a
//     corrupt or vanished file, or a lock held past busy_timeout, fails it);
//   - ingest is not wedged: no batch has been in the journal applier, and no message held in
//     the MQTT callback by a failing journal, for longer than `stuck_ms`
//     (IngestCounters::busy_since_ms, intake_busy_since_ms), and the applier is making
//     progress (IngestProgressing: with journal entries unapplied, a batch committed within
//     stuck_ms). The last covers an applier blocked anywhere, not only inside a batch (issue
//     11: it sat in a publish, outside any batch, while /readyz said ready). After stuck_ms
//     the watchdog lets systemd restart us: the journal and the broker still hold everything
//     not yet applied. /readyz (edge/metrics.h) applies the same IngestProgressing test.
// Idle ingest (no traffic) is healthy: the Paho thread is only visible through its callbacks.
//
// Thread-safety: one thread (edged's notifier thread) uses a monitor.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace freshsync::sync {
class SyncAgent;
}

namespace freshsync::edge {

struct IngestCounters;
class StoreReader;

// Monotonic milliseconds, the clock of IngestCounters::busy_since_ms.
int64_t SteadyMs();

// False (with `why`) when journal entries are waiting and the applier has shown no progress
// (IngestCounters::applier_progress_ms: a committed batch, or an empty journal) for longer
// than stuck_ms. One definition for the watchdog and /readyz.
bool IngestProgressing(const IngestCounters& c, int64_t stuck_ms, std::string* why);

class ServiceMonitor {
 public:
  ServiceMonitor(std::string store_path, const IngestCounters* ingest, std::function<bool()> ingest_connected,
                 const sync::SyncAgent* agent, int64_t stuck_ms);
  ~ServiceMonitor();
  ServiceMonitor(const ServiceMonitor&) = delete;
  ServiceMonitor& operator=(const ServiceMonitor&) = delete;

  bool Healthy(std::string* why);
  // e.g. "broker connected, hub link up, backlog 12, applied 3400, dead letters 2"
  std::string StatusLine();

 private:
  bool StoreAnswers(int64_t* last_seq, int64_t* acked);

  std::string path_;
  const IngestCounters* ingest_;
  std::function<bool()> connected_;
  const sync::SyncAgent* agent_;
  int64_t stuck_ms_;
  std::unique_ptr<StoreReader> reader_;  // opened lazily; dropped after a failed read
};

}  // namespace freshsync::edge
