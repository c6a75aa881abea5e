#include "edge/service.h"

#include <chrono>

#include "cloud-sync/sync_agent.h"
#include "edge/ingest.h"
#include "edge/store_reader.h"

namespace freshsync::edge {

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

bool IngestProgressing(const IngestCounters& c, int64_t stuck_ms, std::string* why) {
  const int64_t lag = c.journal_last_index.load(std::memory_order_relaxed) - c.journal_applied_index.load(std::memory_order_relaxed);
  const int64_t progress = c.applier_progress_ms.load(std::memory_order_relaxed);
  if (lag <= 0 || progress == 0) return true;
  const int64_t idle = SteadyMs() - progress;
  if (idle <= stuck_ms) return true;
  *why = "journal applier made no progress for " + std::to_string(idle / 1000) + " s with " + std::to_string(lag) +
         " journal entries unapplied";
  return false;
}

ServiceMonitor::ServiceMonitor(std::string store_path, const IngestCounters* ingest, std::function<bool()> ingest_connected,
                               const sync::SyncAgent* agent, int64_t stuck_ms)
    : path_(std::move(store_path)), ingest_(ingest), connected_(std::move(ingest_connected)), agent_(agent), stuck_ms_(stuck_ms) {}

ServiceMonitor::~ServiceMonitor() = default;

bool ServiceMonitor::StoreAnswers(int64_t* last_seq, int64_t* acked) {
  if (reader_ == nullptr) {
    auto r = StoreReader::Open(path_, 1000);
    if (!r.ok()) return false;
    reader_ = std::make_unique<StoreReader>(std::move(*r));
  }
  auto head = reader_->Head();
  if (!head.ok()) {
    // The file may have been replaced underneath us: reopen next time.
    reader_.reset();
    return false;
  }
  *last_seq = head->last_seq;
  *acked = head->acked_seq;
  return true;
}

bool ServiceMonitor::Healthy(std::string* why) {
  int64_t last = 0, acked = 0;
  if (!StoreAnswers(&last, &acked)) {
    *why = "store does not answer";
    return false;
  }
  // The older of the applier's batch and the callback's held message (journal failing).
  int64_t since = ingest_->busy_since_ms.load(std::memory_order_relaxed);
  const int64_t intake = ingest_->intake_busy_since_ms.load(std::memory_order_relaxed);
  if (intake != 0 && (since == 0 || intake < since)) since = intake;
  if (since != 0 && SteadyMs() - since > stuck_ms_) {
    *why = "ingest stuck on one message for " + std::to_string((SteadyMs() - since) / 1000) + " s";
    return false;
  }
  return IngestProgressing(*ingest_, stuck_ms_, why);
}

std::string ServiceMonitor::StatusLine() {
  int64_t last = 0, acked = 0;
  const bool store_ok = StoreAnswers(&last, &acked);
  std::string s = connected_ && connected_() ? "broker connected" : "broker disconnected";
  if (agent_ != nullptr) {
    const sync::SyncStats st = agent_->GetStats();
    s += st.link_up ? ", hub link up" : ", hub link down";
  } else {
    s += ", no hub";
  }
  if (store_ok) s += ", backlog " + std::to_string(last > acked ? last - acked : 0);
  else s += ", store not answering";
  s += ", applied " + std::to_string(ingest_->applied.load(std::memory_order_relaxed));
  s += ", dead letters " + std::to_string(ingest_->refused.load(std::memory_order_relaxed));
  return s;
}

}  // namespace freshsync::edge
