#include "edge/metrics.h"
#include "edge/service.h"

#include "edge/disk_quota.h"

#include <httplib.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <sstream>

#include "cloud-sync/downstream_puller.h"
#include "cloud-sync/sync_agent.h"
#include "edge/downstream.h"
#include "common/config.h"
#include "common/prometheus.h"
#include "common/tls_policy.h"
#include "edge/ingest.h"
#include "edge/store_reader.h"

namespace freshsync::edge {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Exposition grammar (Prometheus text 0.0.4): "# HELP name text", "# TYPE name kind", then
// "name{label=\"v\",...} value" lines.
void Head(std::ostringstream& o, const char* name, const char* type, const char* help) {
  o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

int64_t Load(const std::atomic<int64_t>& a) { return a.load(std::memory_order_relaxed); }

}  // namespace

MetricsServer::MetricsServer(std::string listen, MetricsSources sources, MetricsTls tls)
    : listen_(std::move(listen)), src_(std::move(sources)), tls_(std::move(tls)) {}

MetricsServer::~MetricsServer() { Stop(); }

Status MetricsServer::Start() {
  auto hp = ParseHostPort(listen_, "metrics.listen");
  if (!hp.ok()) return hp.status();
  if (tls_.cert.empty()) {
    http_ = std::make_unique<httplib::Server>();
  } else {
    // The policy of every server side of ours (common/tls_policy.h), hubd's included.
    http_ = std::make_unique<httplib::SSLServer>([this](SSL_CTX& ctx) {
      auto fail = [&](const std::string& what) {
        char buf[256] = {0};
        ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
        tls_error_ = what + " (" + buf + ")";
        return false;
      };
      if (!ApplyServerTlsPolicy(ctx)) return fail("metrics: protocol versions and cipher list");
      if (SSL_CTX_use_certificate_chain_file(&ctx, tls_.cert.c_str()) != 1)
        return fail("metrics.tls_cert: cannot load certificate chain " + tls_.cert);
      if (SSL_CTX_use_PrivateKey_file(&ctx, tls_.key.c_str(), SSL_FILETYPE_PEM) != 1)
        return fail("metrics.tls_key: cannot load private key " + tls_.key);
      if (SSL_CTX_check_private_key(&ctx) != 1) return fail("metrics.tls_key: does not match metrics.tls_cert");
      return true;
    });
    if (!http_->is_valid()) return Status::InvalidArgument(tls_error_.empty() ? "metrics: TLS setup failed" : tls_error_);
  }
  http_->new_task_queue = [] { return new httplib::ThreadPool(2); };
  http_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(Render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  http_->Get("/healthz", [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  http_->Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    std::string why;
    if (Ready(&why)) {
      res.set_content("ready\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content("not ready: " + why + "\n", "text/plain");
    }
  });
  if (!http_->bind_to_port(hp->first, hp->second)) {
    return Status::IOError("metrics: cannot listen on " + listen_);
  }
  thread_ = std::thread([this] { http_->listen_after_bind(); });
  spdlog::info("metrics: serving /metrics, /healthz, /readyz on {}://{}", tls_.cert.empty() ? "http" : "https", listen_);
  return Status::Ok();
}

void MetricsServer::Stop() {
  if (http_) http_->stop();
  if (thread_.joinable()) thread_.join();
}

bool MetricsServer::Ready(std::string* why) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!StoreQueries(nullptr)) {
    *why = "store not readable";
    return false;
  }
  if (!src_.ingest_connected || !src_.ingest_connected()) {
    *why = "ingest not subscribed to the broker";
    return false;
  }
  return IngestProgressing(*src_.ingest, src_.ingest_stuck_ms, why);
}

// With out == nullptr only checks that the store answers. Caller holds mu_.
bool MetricsServer::StoreQueries(std::string* out) {
  if (reader_ == nullptr) {
    auto r = StoreReader::Open(src_.store_path, 500);
    if (!r.ok()) return false;
    reader_ = std::make_unique<StoreReader>(std::move(*r));
  }
  auto head = reader_->Head();
  if (!head.ok()) return false;
  if (out == nullptr) return true;
  const int64_t last_seq = head->last_seq;
  const int64_t acked = head->acked_seq;
  auto oldest = reader_->OldestUnackedCreatedMs();
  bool ok = oldest.ok();
  const int64_t oldest_ms = ok ? *oldest : 0;
  const int64_t now = NowMs();
  std::ostringstream o;
  Head(o, "freshsync_outbox_last_seq", "gauge", "Highest change-record seq in the outbox.");
  o << "freshsync_outbox_last_seq " << last_seq << '\n';
  Head(o, "freshsync_outbox_acked_seq", "gauge", "Highest contiguous seq the hub has acknowledged.");
  o << "freshsync_outbox_acked_seq " << acked << '\n';
  Head(o, "freshsync_outbox_backlog", "gauge", "Change records the hub has not acknowledged yet.");
  o << "freshsync_outbox_backlog " << (last_seq > acked ? last_seq - acked : 0) << '\n';
  Head(o, "freshsync_outbox_oldest_unacked_age_seconds", "gauge",
       "Age of the oldest change record the hub has not acknowledged (0 when none).");
  o << "freshsync_outbox_oldest_unacked_age_seconds " << (oldest_ms > 0 ? std::max<int64_t>(0, now - oldest_ms) / 1000.0 : 0.0)
    << '\n';

  // Escrow allotments (docs/escrow.md): what the site holds for HQ and its target, per SKU.
  if (auto escrow = reader_->Escrow(); escrow.ok() && !escrow->empty()) {
    Head(o, "freshsync_escrow_held_units", "gauge", "Units reserved for HQ's escrow allotment, by sku.");
    for (const auto& e : *escrow) o << "freshsync_escrow_held_units{sku=\"" << prometheus::EscapeLabelValue(e.sku) << "\"} " << e.held << '\n';
    Head(o, "freshsync_escrow_target_units", "gauge", "The escrow allotment the site aims at, by sku.");
    for (const auto& e : *escrow) o << "freshsync_escrow_target_units{sku=\"" << prometheus::EscapeLabelValue(e.sku) << "\"} " << e.target << '\n';
    Head(o, "freshsync_escrow_consumed_units_total", "counter", "Units of hub-accepted escrow orders applied, by sku.");
    for (const auto& e : *escrow) o << "freshsync_escrow_consumed_units_total{sku=\"" << prometheus::EscapeLabelValue(e.sku) << "\"} " << e.consumed_applied << '\n';
  }

  // Dead letters held in the store, by code (survives restarts, unlike the process counter).
  Head(o, "freshsync_dead_letters_stored", "gauge", "Dead letters held in the store, by code.");
  {
    bool any[3] = {false, false, false};
    const char* codes[3] = {"invalid", "conflict", "internal"};
    if (auto by_code = reader_->DeadLettersByCode(); by_code.ok()) {
      for (const auto& [code, n] : *by_code) {
        for (int i = 0; i < 3; ++i)
          if (code == codes[i]) any[i] = true;
        o << "freshsync_dead_letters_stored{code=\"" << code << "\"} " << n << '\n';
      }
    }
    for (int i = 0; i < 3; ++i)
      if (!any[i]) o << "freshsync_dead_letters_stored{code=\"" << codes[i] << "\"} 0\n";
  }

  // Open cold-chain alerts (StoreReader::OpenColdchainAlerts); 0 when they cannot be read.
  auto alerts = reader_->OpenColdchainAlerts();
  const int64_t open_alerts = alerts.ok() ? *alerts : 0;
  Head(o, "freshsync_coldchain_open_alerts", "gauge", "Cold-chain alerts open now, excursion and offline (0 without a rule_state table).");
  o << "freshsync_coldchain_open_alerts " << open_alerts << '\n';
  *out += o.str();
  return ok;
}

std::string MetricsServer::Render() {
  std::ostringstream o;
  Head(o, "freshsync_up", "gauge", "1 while edged serves metrics.");
  o << "freshsync_up{site=\"" << src_.site << "\"} 1\n";
  const IngestCounters& c = *src_.ingest;
  Head(o, "freshsync_ingest_applied_total", "counter", "Messages applied to the store, by topic kind.");
  for (size_t i = 0; i < kMessageTypeCount; ++i)
    o << "freshsync_ingest_applied_total{kind=\"" << kMessageTypes[i].metrics_label << "\"} " << Load(c.applied_by_kind[i]) << '\n';
  Head(o, "freshsync_ingest_duplicates_total", "counter", "Redelivered or republished messages absorbed by dedupe.");
  o << "freshsync_ingest_duplicates_total " << Load(c.duplicates) << '\n';
  Head(o, "freshsync_ingest_dead_letters_total", "counter", "Messages refused into the dead letters since start, by code.");
  const char* codes[3] = {"invalid", "conflict", "internal"};
  for (int i = 0; i < 3; ++i)
    o << "freshsync_ingest_dead_letters_total{code=\"" << codes[i] << "\"} " << Load(c.refused_by_code[i]) << '\n';
  Head(o, "freshsync_ingest_ignored_total", "counter", "Own output topics echoed back by the subscription.");
  o << "freshsync_ingest_ignored_total " << Load(c.ignored) << '\n';
  Head(o, "freshsync_ingest_store_retries_total", "counter", "Commits retried after a disk or lock error.");
  o << "freshsync_ingest_store_retries_total " << Load(c.store_retries) << '\n';
  Head(o, "freshsync_ingest_journal_lag", "gauge", "Intake journal entries acknowledged to the broker but not yet committed to the store.");
  o << "freshsync_ingest_journal_lag " << std::max<int64_t>(0, Load(c.journal_last_index) - Load(c.journal_applied_index)) << '\n';
  Head(o, "freshsync_ingest_batches_total", "counter", "Store transactions committed by the journal applier.");
  o << "freshsync_ingest_batches_total " << Load(c.batches) << '\n';
  Head(o, "freshsync_ingest_journal_retries_total", "counter", "Journal appends retried after a disk error (message held unacknowledged).");
  o << "freshsync_ingest_journal_retries_total " << Load(c.journal_retries) << '\n';
  Head(o, "freshsync_ingest_backpressure_waits_total", "counter", "Callbacks that waited for the applier to catch up.");
  o << "freshsync_ingest_backpressure_waits_total " << Load(c.backpressure_waits) << '\n';
  Head(o, "freshsync_ingest_publications_dropped_total", "counter",
       "Notifications (events, alerts, order states, dead letters) dropped because the publication queue was full.");
  o << "freshsync_ingest_publications_dropped_total " << Load(c.publications_dropped) << '\n';
  Head(o, "freshsync_ingest_journal_private_total", "counter",
       "Journal entries that may carry personal data, by how they were kept (sealed with the privacy key, or redacted).");
  o << "freshsync_ingest_journal_private_total{kept=\"sealed\"} " << Load(c.journal_sealed) << '\n';
  o << "freshsync_ingest_journal_private_total{kept=\"redacted\"} " << Load(c.journal_redacted) << '\n';
  Head(o, "freshsync_ingest_journal_torn_dropped_total", "counter",
       "Intake journal entries dropped as a torn tail when edged started (never acknowledged; the broker redelivers them).");
  o << "freshsync_ingest_journal_torn_dropped_total " << Load(c.journal_torn_dropped) << '\n';
  if (src_.customers_dropped) {
    Head(o, "freshsync_privacy_customers_dropped_total", "counter",
         "Orders whose customer data was dropped, not stored, because no privacy.key_file is configured.");
    o << "freshsync_privacy_customers_dropped_total " << src_.customers_dropped() << '\n';
  }
  Head(o, "freshsync_ingest_applier_idle_seconds", "gauge",
       "Seconds since the journal applier last committed a batch or found the journal empty.");
  {
    const int64_t p = Load(c.applier_progress_ms);
    o << "freshsync_ingest_applier_idle_seconds " << (p == 0 ? 0.0 : std::max<int64_t>(0, SteadyMs() - p) / 1000.0) << '\n';
  }
  Head(o, "freshsync_ingest_connected", "gauge", "1 while ingest is subscribed to the site broker.");
  o << "freshsync_ingest_connected " << (src_.ingest_connected && src_.ingest_connected() ? 1 : 0) << '\n';

  if (src_.quota) {
    const QuotaStatus q = src_.quota();
    Head(o, "freshsync_disk_quota_bytes", "gauge", "store.quota_mb in bytes (0: no quota).");
    o << "freshsync_disk_quota_bytes " << q.quota_bytes << '\n';
    Head(o, "freshsync_disk_used_bytes", "gauge", "Live bytes of the store (pages in use x page size).");
    o << "freshsync_disk_used_bytes " << q.used_bytes << '\n';
    Head(o, "freshsync_disk_quota_state", "gauge", "1 for the quota's current state (ok, downsampling, dropping, full).");
    for (auto st : {QuotaState::kOk, QuotaState::kDownsampling, QuotaState::kDropping, QuotaState::kFull})
      o << "freshsync_disk_quota_state{state=\"" << QuotaStateName(st) << "\"} " << (q.state == st ? 1 : 0) << '\n';
    Head(o, "freshsync_disk_forecast_full_seconds", "gauge", "Seconds until the quota is reached at the recent growth rate (-1: not growing).");
    o << "freshsync_disk_forecast_full_seconds " << q.forecast_full_s.value_or(-1) << '\n';
    Head(o, "freshsync_disk_quota_alert", "gauge", "1 while telemetry is paused because nothing more can be freed.");
    o << "freshsync_disk_quota_alert " << (q.alert_open ? 1 : 0) << '\n';
    Head(o, "freshsync_disk_quota_rows_total", "counter", "Acknowledged raw telemetry rows removed by the quota, by step.");
    o << "freshsync_disk_quota_rows_total{step=\"downsample\"} " << q.downsampled_rows << '\n';
    o << "freshsync_disk_quota_rows_total{step=\"drop\"} " << q.dropped_rows << '\n';
    Head(o, "freshsync_disk_quota_pauses_total", "counter", "Times telemetry was paused by the quota.");
    o << "freshsync_disk_quota_pauses_total " << q.pauses << '\n';
  }

  std::string body = o.str();
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::string store_part;
    const bool ok = StoreQueries(&store_part);
    body += store_part;
    std::ostringstream s;
    Head(s, "freshsync_store_readable", "gauge", "1 when the metrics connection can read the store.");
    s << "freshsync_store_readable " << (ok ? 1 : 0) << '\n';
    body += s.str();
  }

  std::ostringstream y;
  Head(y, "freshsync_sync_enabled", "gauge", "1 when a [hub] is configured.");
  y << "freshsync_sync_enabled " << (src_.agent ? 1 : 0) << '\n';
  if (src_.agent != nullptr) {
    const sync::SyncStats s = src_.agent->GetStats();
    const int64_t now = NowMs();
    Head(y, "freshsync_sync_link_up", "gauge", "1 while the last exchange with the hub succeeded.");
    y << "freshsync_sync_link_up " << (s.link_up ? 1 : 0) << '\n';
    Head(y, "freshsync_sync_lag_seconds", "gauge",
         "Seconds since the hub last acknowledged records, while records are waiting (0 when caught up).");
    double lag = 0;
    if (s.backlog > 0) lag = s.last_ack_ms > 0 ? std::max<int64_t>(0, now - s.last_ack_ms) / 1000.0 : -1;
    y << "freshsync_sync_lag_seconds " << lag << '\n';
    Head(y, "freshsync_sync_retries_total", "counter", "Failed exchanges with the hub that will be retried.");
    y << "freshsync_sync_retries_total " << s.retries << '\n';
    Head(y, "freshsync_sync_rewinds_total", "counter", "409 answers and reconciliation rewinds.");
    y << "freshsync_sync_rewinds_total " << s.rewinds << '\n';
    Head(y, "freshsync_sync_reconciliations_total", "counter", "Digest reconciliations completed.");
    y << "freshsync_sync_reconciliations_total " << s.reconciliations << '\n';
    Head(y, "freshsync_sync_records_sent_total", "counter", "Change records in batches the hub answered 200.");
    y << "freshsync_sync_records_sent_total " << s.records_sent << '\n';
    Head(y, "freshsync_sync_records_refused_by_hub_total", "counter",
         "Records the hub refused by the shared field rules and quarantined (docs/sync-protocol.md).");
    y << "freshsync_sync_records_refused_by_hub_total " << s.records_refused_by_hub << '\n';
    Head(y, "freshsync_sync_bytes_sent_total", "counter", "Compressed batch bytes the hub answered 200.");
    y << "freshsync_sync_bytes_sent_total " << s.bytes_sent << '\n';
    Head(y, "freshsync_sync_http_responses_total", "counter", "Answers from the hub by HTTP status (code 0: no answer).");
    for (const auto& [code, n] : s.http_codes) y << "freshsync_sync_http_responses_total{code=\"" << code << "\"} " << n << '\n';
    Head(y, "freshsync_sync_batch_records", "histogram", "Records per batch the hub answered 200.");
    uint64_t cum = 0;
    for (size_t i = 0; i < s.batch_size_buckets.size(); ++i) {
      cum += s.batch_size_buckets[i];
      if (i < sync::SyncStats::kBatchSizeBounds.size())
        y << "freshsync_sync_batch_records_bucket{le=\"" << sync::SyncStats::kBatchSizeBounds[i] << "\"} " << cum << '\n';
      else
        y << "freshsync_sync_batch_records_bucket{le=\"+Inf\"} " << cum << '\n';
    }
    y << "freshsync_sync_batch_records_sum " << s.records_sent << '\n';
    y << "freshsync_sync_batch_records_count " << s.batches_sent << '\n';
  }
  Head(y, "freshsync_downstream_enabled", "gauge", "1 while edged pulls HQ's commands ([hub] set, [downstream] enabled).");
  y << "freshsync_downstream_enabled " << (src_.downstream ? 1 : 0) << '\n';
  if (src_.downstream != nullptr && src_.downstream_counters != nullptr) {
    const sync::DownstreamStats d = src_.downstream->GetStats();
    const DownstreamCounters& dc = *src_.downstream_counters;
    Head(y, "freshsync_downstream_link_up", "gauge", "1 while the last pull of HQ's commands was answered 200.");
    y << "freshsync_downstream_link_up " << (d.link_up ? 1 : 0) << '\n';
    Head(y, "freshsync_downstream_applied_seq", "gauge", "The highest down_seq this site has applied (sync_state down_applied_seq).");
    y << "freshsync_downstream_applied_seq " << dc.applied_seq.load(std::memory_order_relaxed) << '\n';
    Head(y, "freshsync_downstream_hub_last_seq", "gauge", "The hub's last down_seq for this site, as of the last pull.");
    y << "freshsync_downstream_hub_last_seq " << d.hub_last_seq << '\n';
    Head(y, "freshsync_downstream_commands_total", "counter",
         "HQ's commands by kind and outcome (applied, refused: the site refused it and HQ hears why).");
    for (int k = 1; k < wire::kDownKindCount; ++k) {
      y << "freshsync_downstream_commands_total{kind=\"" << wire::kDownKindNames[k] << "\",outcome=\"applied\"} "
        << dc.applied_by_kind[k].load(std::memory_order_relaxed) << '\n';
      y << "freshsync_downstream_commands_total{kind=\"" << wire::kDownKindNames[k] << "\",outcome=\"refused\"} "
        << dc.refused_by_kind[k].load(std::memory_order_relaxed) << '\n';
    }
    Head(y, "freshsync_downstream_skipped_total", "counter", "Commands already applied (dedupe) or older than the stored version.");
    y << "freshsync_downstream_skipped_total " << dc.skipped.load(std::memory_order_relaxed) << '\n';
    Head(y, "freshsync_downstream_pull_errors_total", "counter", "Pulls that failed (no answer, or not 200) and will be retried.");
    y << "freshsync_downstream_pull_errors_total " << d.pull_errors << '\n';
    Head(y, "freshsync_downstream_apply_errors_total", "counter", "Batches the store could not apply (pulled again).");
    y << "freshsync_downstream_apply_errors_total " << d.apply_errors << '\n';
  }
  body += y.str();
  return body;
}

}  // namespace freshsync::edge
