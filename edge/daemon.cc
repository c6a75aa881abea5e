#include "edge/daemon.h"

#include <systemd/sd-daemon.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>

#include <spdlog/spdlog.h>

#include "cloud-sync/downstream_puller.h"
#include "cloud-sync/sync_agent.h"
#include "common/clock.h"
#include "common/logging.h"
#include "edge/admin.h"
#include "edge/disk_quota.h"
#include "edge/downstream.h"
#include "edge/ingest.h"
#include "edge/metrics.h"
#include "edge/service.h"
#include "edge/site_rules.h"
#include "edge/store.h"

namespace freshsync::edge {
namespace {

std::optional<EdgeTestHooks::Fault> FaultFromEnv(const char* name) {
  const char* spec = std::getenv(name);
  EdgeTestHooks::Fault f;
  if (spec == nullptr || std::sscanf(spec, "%ld:%ld", &f.after, &f.count) != 2) return std::nullopt;
  return f;
}

// A Status source that succeeds `after` times, then fails `count` times (< 0: forever).
std::function<Status()> FaultAfter(EdgeTestHooks::Fault f, const char* what) {
  return [f, what, n = 0L, failed = 0L]() mutable {
    if (n < f.after) {
      ++n;
      return Status::Ok();
    }
    if (f.count >= 0 && failed >= f.count) return Status::Ok();
    ++failed;
    return Status::IOError(std::string("injected ") + what + " failure (test hook)");
  };
}

// The disk quota pauses and resumes telemetry through ingest (edge/disk_quota.h).
class IngestTelemetryGate final : public TelemetryGate {
 public:
  explicit IngestTelemetryGate(Ingest& ingest) : ingest_(ingest) {}
  void Pause() override { ingest_.PauseTelemetry(); }
  void Resume() override { ingest_.ResumeTelemetry(); }

 private:
  Ingest& ingest_;
};

}  // namespace

EdgeTestHooks EdgeTestHooks::FromEnvironment() {
  EdgeTestHooks h;
  h.fail_commits = FaultFromEnv("FRESHSYNC_FAIL_COMMITS_FOR_TEST");
  h.fail_journal = FaultFromEnv("FRESHSYNC_FAIL_JOURNAL_FOR_TEST");
  long batch = 0, delay = 0;
  if (const char* spec = std::getenv("FRESHSYNC_APPLIER_PACE_FOR_TEST");
      spec && std::sscanf(spec, "%ld:%ld", &batch, &delay) == 2 && batch > 0) {
    h.applier_max_batch = static_cast<size_t>(batch);
    h.applier_delay_ms = static_cast<int>(delay);
  }
  if (const char* t = std::getenv("FRESHSYNC_QUOTA_TICK_MS_FOR_TEST")) h.quota_tick_ms = std::max<int64_t>(10, std::atoll(t));
  if (const char* t = std::getenv("FRESHSYNC_INGEST_STUCK_MS_FOR_TEST")) h.ingest_stuck_ms = std::atoll(t);
  return h;
}

EdgeDaemon::EdgeDaemon(EdgeConfig config, std::optional<Sealer> sealer, EdgeTestHooks hooks)
    : config_(std::move(config)), sealer_(std::move(sealer)), hooks_(hooks),
      stuck_ms_(hooks.ingest_stuck_ms.value_or(kIngestStuckMs)) {}

EdgeDaemon::~EdgeDaemon() { Stop(); }

Status EdgeDaemon::Start() {
  auto fail = [this](int exit_code, const char* what, Status s) {
    spdlog::critical("{}: {}", what, s.ToString());
    start_exit_code_ = exit_code;
    return s;
  };

  auto lock = StoreLock::Acquire(config_.store.path);
  if (!lock.ok()) return fail(1, "store", lock.status());
  store_lock_ = std::make_unique<StoreLock>(std::move(*lock));

  StoreOptions so;
  so.path = config_.store.path;
  so.durability = config_.store.durability;
  so.busy_timeout_ms = config_.store.busy_timeout_ms;
  so.sealer = sealer_;
  if (!config_.audit_signing_key_file.empty()) {
    // Created at the first start (0600), as the chain's seals need it from the first hour on.
    auto key = audit::SigningKey::LoadOrCreate(config_.audit_signing_key_file);
    if (!key.ok()) return fail(2, "audit", key.status());
    spdlog::info("audit: cold-chain seals signed with {}", audit::Fingerprint(key->public_key()));
    so.signing_key = std::move(*key);
  }
  so.topic_root = config_.mqtt.topic_root;  // for the store's own notices (refused orders)
  auto store = EdgeStore::Open(so);
  if (!store.ok()) return fail(1, "store", store.status());
  store_ = std::move(*store);
  (void)store_->ResetLinkState();
  // [escrow] (docs/escrow.md): a changed allotment is granted (or asked back) before any
  // message is applied.
  if (auto s = store_->ConfigureEscrow(config_.escrow, SystemClock().NowMs()); !s.ok()) return fail(1, "escrow", s);
  // Rule engines (docs/rules.md): restored from the store before any message is applied.
  auto rules = SiteRules::Create(config_);
  if (!rules.ok()) return fail(2, "rules", rules.status());
  rules_ = std::move(*rules);
  if (auto s = rules_->Attach(*store_); !s.ok()) return fail(1, "rules", s);
  store_->SetApplyHook(rules_.get());
  if (hooks_.fail_commits) {
    spdlog::warn("test hook: failing commits after {} for {}", hooks_.fail_commits->after, hooks_.fail_commits->count);
    store_->SetCommitFaultForTest(FaultAfter(*hooks_.fail_commits, "commit"));
  }

  // The sync agent (cloud-sync/): its own thread and store connection. Started before ingest
  // because its first step is a reconciliation with the hub (which, after an edge restore,
  // moves the seq counter past the hub's via 'seq_floor'); ingest does not wait for it, as
  // the site must work with the link down (docs/sync-agent.md, Limits).
  if (config_.hub) {
    agent_ = std::make_unique<sync::SyncAgent>(config_, SystemClock());
    if (auto s = agent_->Start(); !s.ok()) return fail(2, "sync", s);
    // Woken on every commit that appends to the outbox, instead of polling for rows.
    store_->SetOutboxListener([a = agent_.get()] { a->Notify(); });
  } else {
    spdlog::info("sync: no [hub] configured; records stay in the outbox");
  }

  // Ingest: the Paho callback journals each message (edge/intake_journal.h) and the applier
  // thread commits the journal to the store in batches; journal entries left by a previous
  // run are applied first.
  ingest_ = std::make_unique<Ingest>(config_, *store_);
  if (hooks_.fail_journal) {
    spdlog::warn("test hook: failing journal appends after {} for {}", hooks_.fail_journal->after, hooks_.fail_journal->count);
    ingest_->SetJournalFaultForTest(FaultAfter(*hooks_.fail_journal, "journal"));
  }
  if (hooks_.applier_max_batch > 0) {
    spdlog::warn("test hook: applier takes at most {} entries per batch, {} ms apart", hooks_.applier_max_batch,
                 hooks_.applier_delay_ms);
    ingest_->SetApplierPaceForTest(hooks_.applier_max_batch, hooks_.applier_delay_ms);
  }
  if (auto s = ingest_->Start(); !s.ok()) return fail(2, "ingest", s);

  // Downstream (docs/sync-protocol.md, "Downstream"): HQ's commands through a store connection
  // of their own, serialised with ingest's batches by SQLite's write lock (edge/downstream.h).
  if (config_.hub && config_.downstream.enabled) {
    auto down_store = EdgeStore::Open(so);
    if (!down_store.ok()) return fail(1, "downstream", down_store.status());
    down_store_ = std::move(*down_store);
    if (agent_) down_store_->SetOutboxListener([a = agent_.get()] { a->Notify(); });
    down_applier_ = std::make_unique<DownstreamApplier>(
        *down_store_, rules_.get(), [i = ingest_.get()](std::vector<Publication> p) { i->PublishCommitted(std::move(p)); });
    down_puller_ = std::make_unique<sync::DownstreamPuller>(config_, *down_applier_, SystemClock());
    if (auto s = down_puller_->Start(); !s.ok()) return fail(2, "downstream", s);
  } else if (config_.hub) {
    spdlog::info("downstream: disabled ([downstream] enabled = false); HQ's commands wait at the hub");
  }

  // Disk quota: its own store connection and thread; measures even without a quota, for the
  // forecast in `edgectl status` and /metrics.
  gate_ = std::make_unique<IngestTelemetryGate>(*ingest_);
  if (auto qs = OpenSqliteQuotaStore(config_.store.path, config_.store.busy_timeout_ms, SystemClock()); qs.ok()) {
    quota_store_ = std::move(*qs);
    QuotaOptions qo;
    qo.quota_bytes = config_.store.quota_mb << 20;
    quota_ = std::make_unique<DiskQuota>(qo, *quota_store_, gate_.get(), SystemClock());
    if (qo.quota_bytes > 0) spdlog::info("disk quota: {} MiB (docs/operations.md, Disk quota)", config_.store.quota_mb);
    quota_thread_ = std::thread([this] { QuotaLoop(); });
  } else {
    spdlog::error("disk quota: {}; running without it", qs.status().ToString());
  }

  // The watchdog and /readyz judge ingest against the same limit.
  if (!config_.metrics_listen.empty()) {
    MetricsSources ms;
    ms.site = config_.site;
    ms.store_path = config_.store.path;
    ms.ingest = &ingest_->counters();
    ms.ingest_connected = [i = ingest_.get()] { return i->subscribed(); };
    ms.agent = agent_.get();
    if (quota_) ms.quota = [q = quota_.get()] { return q->status(); };
    ms.ingest_stuck_ms = stuck_ms_;
    ms.customers_dropped = [s = store_.get()] { return s->customers_dropped(); };
    ms.downstream = down_puller_.get();
    if (down_applier_) ms.downstream_counters = &down_applier_->counters();
    metrics_ = std::make_unique<MetricsServer>(config_.metrics_listen, std::move(ms),
                                               MetricsTls{config_.metrics_tls_cert, config_.metrics_tls_key});
    // Metrics are for operators: a port in use must not stop the site from ingesting.
    if (auto s = metrics_->Start(); !s.ok()) {
      spdlog::error("{}; running without metrics", s.ToString());
      metrics_.reset();
    }
  }

  // READY once subscribed (or after a few seconds if the broker is down: ingest retries on
  // its own and the unit must not fail to start because the broker is late).
  ready_thread_ = std::thread([i = ingest_.get()] {
    for (int n = 0; n < 100 && !i->subscribed(); ++n) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    sd_notify(0, "READY=1");
  });
  service_thread_ = std::thread([this] { ServiceLoop(); });
  started_ = true;
  return Status::Ok();
}

void EdgeDaemon::QuotaLoop() {
  const int64_t tick_ms = hooks_.quota_tick_ms.value_or(kQuotaTickMs);
  std::unique_lock<std::mutex> lock(mu_);
  while (!quota_done_) {
    lock.unlock();
    // An error (the store busy past busy_timeout, a disk error) skips a round; the next one starts over.
    if (auto s = quota_->Tick(); !s.ok()) spdlog::warn("disk quota: {}", s.ToString());
    lock.lock();
    cv_.wait_for(lock, std::chrono::milliseconds(tick_ms), [&] { return quota_done_; });
  }
}

// Every tick: STATUS= (link state, backlog) and, only while healthy, WATCHDOG=1.
void EdgeDaemon::ServiceLoop() {
  uint64_t watchdog_usec = 0;
  const bool watchdog_on = sd_watchdog_enabled(0, &watchdog_usec) > 0;
  std::chrono::milliseconds tick(2000);
  if (watchdog_on) tick = std::min(tick, std::chrono::milliseconds(std::max<uint64_t>(watchdog_usec / 3000, 10)));
  Ingest* ingest = ingest_.get();
  ServiceMonitor monitor(config_.store.path, &ingest->counters(), [ingest] { return ingest->subscribed(); }, agent_.get(),
                         stuck_ms_);
  bool was_healthy = true;
  std::unique_lock<std::mutex> lock(mu_);
  while (!service_done_) {
    lock.unlock();
    std::string why;
    const bool healthy = monitor.Healthy(&why);
    const std::string status = "STATUS=" + monitor.StatusLine() + (healthy ? "" : " (unhealthy: " + why + ")");
    if (watchdog_on && healthy) sd_notify(0, (status + "\nWATCHDOG=1").c_str());
    else sd_notify(0, status.c_str());
    if (healthy != was_healthy) {
      if (healthy) spdlog::info("watchdog: healthy again");
      else spdlog::error("watchdog: unhealthy ({}); withholding WATCHDOG=1", why);
      was_healthy = healthy;
    }
    lock.lock();
    cv_.wait_for(lock, tick, [&] { return service_done_; });
  }
}

void EdgeDaemon::Reload(const EdgeConfig& fresh) {
  if (auto st = SetLogLevel(fresh.log_level); !st.ok()) spdlog::error("reload: {}", st.ToString());
  else spdlog::info("reload: log level {}", fresh.log_level);
  // Validated and staged here (the signal thread); the ingest thread adopts the new rules at
  // its next GPS fix or climate reading (edge/site_rules.h).
  if (rules_) {
    if (auto st = rules_->Reload(fresh); !st.ok())
      spdlog::error("reload: site rules: {}; keeping the running rules", st.message());
    else spdlog::info("reload: site rules reloaded");
  }
}

bool EdgeDaemon::Stop() {
  if (stopped_) return drained_;
  stopped_ = true;
  if (ready_thread_.joinable()) ready_thread_.join();
  {
    std::lock_guard<std::mutex> lock(mu_);
    quota_done_ = true;
  }
  cv_.notify_all();
  if (quota_thread_.joinable()) quota_thread_.join();  // before ingest stops: a Pause/Resume in flight must not race Stop
  // Drain: Stop() disconnects (everything not yet acknowledged stays with the broker for the
  // next run), then the applier commits what is in the journal (at most
  // Ingest::kMaxUnappliedEntries, about a second's work) and stops.
  // The puller publishes through ingest: it stops first (a long poll in flight is interrupted).
  if (down_puller_) down_puller_->Stop();
  if (down_store_) down_store_->SetOutboxListener(nullptr);
  if (ingest_) drained_ = ingest_->Stop();
  if (store_) store_->SetOutboxListener(nullptr);  // nothing commits any more; the agent goes next
  if (agent_) agent_->Stop();
  if (metrics_) metrics_->Stop();
  {
    std::lock_guard<std::mutex> lock(mu_);
    service_done_ = true;
  }
  cv_.notify_all();
  if (service_thread_.joinable()) service_thread_.join();
  if (started_) {
    const auto& c = ingest_->counters();
    spdlog::info("edged: stopped; applied {}, duplicates {}, dead letters {}", c.applied.load(), c.duplicates.load(),
                 c.refused.load());
  }
  return drained_;
}

}  // namespace freshsync::edge
