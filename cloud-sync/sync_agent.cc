#include "cloud-sync/sync_agent.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <limits>
#include <map>

#include "wire/batch_format.h"
#include "cloud-sync/curl_transport.h"
#include "cloud-sync/outbox_schema.h"
#include "freshsync.pb.h"
#include "wire/digest.h"
#include "wire/routes.h"

namespace freshsync::sync {
namespace {

constexpr int64_t kStoreRetryMs = 500;        // after a local SQLite failure (busy, I/O)
constexpr uint64_t kUrgentScanWindow = 200000; // outbox rows the urgent lane scans per step
constexpr int64_t kMinReconcileGapMs = 5000;  // reconnect storms must not turn into digest storms
constexpr int64_t kErrorLogEveryMs = 10000;

}  // namespace

SyncAgent::SyncAgent(EdgeConfig config, Clock& clock, std::unique_ptr<Transport> transport, SyncAgentOptions options)
    : config_(std::move(config)), hub_(config_.hub.value_or(HubLinkConfig{})), clock_(clock),
      owned_transport_(std::move(transport)), options_(options),
      backoff_(hub_.backoff_initial_ms, hub_.backoff_max_ms, options.rng_seed), encoder_(options.zstd_level) {
  if (!owned_transport_) {
    CurlTransportOptions t;
    t.ca = hub_.ca;
    t.cert = hub_.cert;
    t.key = hub_.key;
    t.timeout_ms = hub_.timeout_ms;
    t.connect_timeout_ms = std::min(hub_.timeout_ms, 5000);
    owned_transport_ = std::make_unique<CurlTransport>(std::move(t));
  }
  transport_ = owned_transport_.get();
}

SyncAgent::~SyncAgent() { Stop(); }

Status SyncAgent::Open() {
  if (!config_.hub) return Status::InvalidArgument("sync agent: no [hub] section in the config");
  if (store_) return Status::Ok();
  auto s = SyncStore::Open(config_.store.path, config_.store.busy_timeout_ms);
  if (!s.ok()) return s.status();
  store_ = std::move(s.value());
  return Status::Ok();
}

Status SyncAgent::Start() {
  if (Status st = Open(); !st.ok()) return st;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void SyncAgent::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  transport_->Interrupt();
  if (thread_.joinable()) thread_.join();
}

void SyncAgent::Notify() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    notified_ = true;
  }
  cv_.notify_all();
}

SyncStats SyncAgent::GetStats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void SyncAgent::Run() {
  spdlog::info("sync: agent started for site {} -> {}", config_.site, hub_.url);
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) break;
    }
    const int64_t wait = Step();
    std::unique_lock<std::mutex> lock(mu_);
    if (stop_) break;
    if (wait > 0) {
      // Only an idle wait ends early on Notify(): a backoff must run its course, and a partial
      // batch waits out its age (waking it on every commit would re-read it for nothing).
      const bool wakeable = idle_wait_ && backoff_.attempt() == 0;
      cv_.wait_for(lock, std::chrono::milliseconds(wait), [&] { return stop_ || (wakeable && notified_); });
    }
    notified_ = false;
  }
  spdlog::info("sync: agent stopped (acked_seq {})", acked_);
}

void SyncAgent::Publish() {
  work_.link_up = link_ == 1;
  work_.last_seq = last_seq_;
  work_.acked_seq = acked_;
  work_.backlog = last_seq_ > acked_ ? last_seq_ - acked_ : 0;
  work_.urgent_sent_seq = urgent_scanned_;
  std::lock_guard<std::mutex> lock(mu_);
  stats_ = work_;
}

void SyncAgent::SetError(std::string e) {
  const int64_t now = clock_.MonotonicMs();
  if (e != work_.last_error || now - last_error_log_ms_ >= kErrorLogEveryMs) {
    spdlog::warn("sync: {}", e);
    last_error_log_ms_ = now;
  }
  work_.last_error = std::move(e);
}

void SyncAgent::SetLink(bool up) {
  const int v = up ? 1 : 0;
  if (link_ == v) return;
  if (up && link_ == 0) {
    spdlog::info("sync: link to hub up again");
    // After an outage the two sides compare digests (docs/sync-protocol.md, Reconciliation).
    const int64_t earliest = next_reconcile_ms_ - int64_t{hub_.reconcile_interval_s} * 1000 + kMinReconcileGapMs;
    if (clock_.MonotonicMs() >= earliest) reconcile_due_ = true;
    else next_reconcile_ms_ = std::min(next_reconcile_ms_, earliest);
  } else if (!up) {
    spdlog::warn("sync: link to hub down");
  }
  link_ = v;
  if (Status st = store_->SetStates({{kStateLinkUp, v}}); !st.ok()) SetError("store: " + st.ToString());
}

Status SyncAgent::LoadState() {
  auto acked = store_->GetState(kStateAckedSeq, 0);
  if (!acked.ok()) return acked.status();
  auto urgent = store_->GetState(kStateUrgentSentSeq, 0);
  if (!urgent.ok()) return urgent.status();
  auto floor = store_->GetState(kStateSeqFloor, 0);
  if (!floor.ok()) return floor.status();
  auto restored = store_->GetState(kStateRestoredLastSeq, 0);
  if (!restored.ok()) return restored.status();
  restored_last_ = static_cast<uint64_t>(std::max<int64_t>(0, *restored));
  if (restored_last_ > 0)
    spdlog::warn("sync: the edge store was restored from a backup (last seq {}); nothing is sent until the hub has been "
                 "asked what it holds",
                 restored_last_);
  acked_ = static_cast<uint64_t>(*acked);
  urgent_scanned_ = static_cast<uint64_t>(*urgent);
  work_.seq_floor = static_cast<uint64_t>(*floor);
  loaded_ = true;
  spdlog::info("sync: resuming after acked_seq {}", acked_);
  return Status::Ok();
}

std::string SyncAgent::BaseUrl() const {
  std::string u = hub_.url;
  while (!u.empty() && u.back() == '/') u.pop_back();
  return u + wire::kSitesPrefix + config_.site;
}

Status SyncAgent::PersistAcked(uint64_t acked, bool advanced) {
  if (acked < acked_) {
    work_.rewinds++;
    // The hub lost what it had acknowledged: priority rows above it go again as urgent.
    urgent_scanned_ = std::min(urgent_scanned_, acked);
  }
  acked_ = acked;
  std::vector<std::pair<const char*, int64_t>> v = {{kStateAckedSeq, static_cast<int64_t>(acked)},
                                                    {kStateUrgentSentSeq, static_cast<int64_t>(urgent_scanned_)}};
  if (advanced) {
    work_.last_ack_ms = clock_.NowMs();
    v.emplace_back(kStateAckedAtMs, work_.last_ack_ms);
  }
  // A failed write only costs a resend after a crash: the hub counts duplicates.
  Status st = store_->SetStates(v);
  if (!st.ok()) SetError("store: persisting acked_seq: " + st.ToString());
  return st;
}

int64_t SyncAgent::Failure(const Result<HttpResponse>& r, const char* what) {
  work_.retries++;
  if (!r.ok()) {
    work_.last_http_status = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return 0;
    }
    if (r.status().code() == StatusCode::kInvalidArgument) {
      SetError(std::string(what) + ": " + r.status().message());
      return backoff_.AtCap();
    }
    SetLink(false);
    SetError(std::string(what) + ": " + r.status().message());
    // Nothing listens (refused, host unknown): probing costs the hub nothing, so probe on a
    // short interval and learn quickly that it is back. A timeout or a reset may be a hub
    // that is up and struggling: those back off (docs/sync-agent.md, "Fast return").
    if (r.status().message().rfind("connect:", 0) == 0) return backoff_.Probe(hub_.probe_interval_ms);
    return backoff_.Next();
  }
  const int code = r->status;
  work_.last_http_status = code;
  const int retry_after = r->RetryAfterSeconds();
  if (code == 429 || code >= 500) {
    SetLink(false);
    SetError(std::string(what) + ": hub answered " + std::to_string(code) +
             (retry_after >= 0 ? " Retry-After " + std::to_string(retry_after) + "s" : ""));
    // The hub said when (shedding load, a rate limit): come back then, not after a backoff
    // grown during an outage.
    return retry_after >= 0 ? backoff_.Hinted(retry_after) : backoff_.Next();
  }
  // A 4xx other than 409/429 does not heal by retrying soon (403: wrong certificate for the
  // site, 400: the hub cannot parse us). Never drop records: say so loudly and retry slowly.
  std::string body = r->body.substr(0, 200);
  for (char& c : body) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  work_.last_error = "";  // force the log line
  SetError(std::string(what) + ": hub refused with " + std::to_string(code) + " (" + body + "); retrying at the cap");
  return backoff_.AtCap(retry_after);
}

int64_t SyncAgent::SendRows(const std::vector<OutboxRow>& rows, Kind kind) {
  const int format = std::min(hub_format_, options_.max_batch_format);
  const std::string_view body = encoder_.Encode(config_.site, rows, kind == Kind::kUrgent, format);
  HttpRequest req;
  req.method = "POST";
  req.url = BaseUrl() + wire::kBatchesSuffix;
  req.headers = {{"Content-Type", wire::kContentTypeProtobuf},
                 {"Content-Encoding", "zstd"},
                 {"Accept", wire::kContentTypeProtobuf}};
  req.body.assign(body.data(), body.size());
  auto r = transport_->Send(req);
  CountAnswer(r);
  if (r.ok()) work_.last_http_status = r->status;

  if (r.ok() && r->status == 409) {
    freshsync::v1::BatchAck ack;
    if (!ack.ParseFromString(r->body)) return Failure(r, "batch 409 without a BatchAck");
    LearnFormat(ack.max_format());
    const uint64_t expected = ack.expected_seq() != 0 ? ack.expected_seq() : ack.contiguous_seq() + 1;
    SetLink(true);
    backoff_.Reset();
    if (++consecutive_409_ > 3) {
      // The hub keeps asking for a seq we do not send: the outbox has lost it (trimmed too
      // early, or the store skipped seqs). Nothing the agent can send fixes that.
      work_.retries++;
      work_.last_error = "";
      SetError("hub expects seq " + std::to_string(expected) + " but the outbox cannot supply it (first sent " +
               std::to_string(rows.front().seq) + "); needs an operator");
      return backoff_.AtCap();
    }
    spdlog::info("sync: hub expects seq {} (we sent from {}), rewinding", expected, rows.front().seq);
    resend_.clear();  // the normal stream now covers everything from `expected`
    (void)PersistAcked(expected - 1, false);
    return 0;
  }
  if (r.ok() && r->status == 400 && format >= 2) {
    // A hub that announced format 2 and now cannot read it was replaced by an older one.
    hub_format_ = 1;
  }
  if (!r.ok() || r->status != 200) return Failure(r, kind == Kind::kUrgent ? "urgent batch" : "batch");

  freshsync::v1::BatchAck ack;
  if (!ack.ParseFromString(r->body)) {
    work_.retries++;
    SetError("batch: 200 without a parseable BatchAck; retrying at the cap");
    return backoff_.AtCap();
  }
  LearnFormat(ack.max_format());
  SetLink(true);
  backoff_.Reset();
  consecutive_409_ = 0;
  work_.batches_sent++;
  {
    size_t b = 0;
    while (b < SyncStats::kBatchSizeBounds.size() && rows.size() > SyncStats::kBatchSizeBounds[b]) ++b;
    work_.batch_size_buckets[b]++;
  }
  work_.records_sent += rows.size();
  if (ack.refused() > 0) {
    // The hub quarantined records it found invalid (docs/sync-protocol.md, "Refused records").
    // Their seqs are acknowledged, so the stream goes on; say so loudly, once per batch.
    work_.records_refused_by_hub += ack.refused();
    spdlog::warn("sync: the hub refused {} record(s) of seqs {}..{}: {}", ack.refused(), rows.front().seq,
                 rows.back().seq, ack.error());
  }
  work_.bytes_sent += body.size();
  work_.last_error.clear();

  if (kind == Kind::kUrgent) {
    work_.urgent_batches_sent++;
    urgent_scanned_ = rows.back().seq;
    if (Status st = store_->SetStates({{kStateUrgentSentSeq, static_cast<int64_t>(urgent_scanned_)}}); !st.ok()) {
      SetError("store: " + st.ToString());
    }
    return 0;
  }
  if (kind == Kind::kResend && !resend_.empty()) {
    resend_.front().first = rows.back().seq + 1;
    if (resend_.front().first > resend_.front().second) resend_.pop_front();
  }
  uint64_t c = ack.contiguous_seq();
  if (c > last_seq_) {
    // The hub holds seqs this edge never wrote (or no longer has): the edge store was restored
    // from an older backup. Its seq counter must move past the hub's (outbox_schema.h).
    if (auto last = store_->LastSeq(); last.ok()) last_seq_ = *last;
    if (c > last_seq_) {
      work_.seq_floor = std::max<uint64_t>(work_.seq_floor, c);
      spdlog::warn("sync: hub holds up to seq {} but the outbox ends at {}: setting seq_floor {}", c, last_seq_,
                   work_.seq_floor);
      (void)store_->SetStates({{kStateSeqFloor, static_cast<int64_t>(work_.seq_floor)}});
    }
  }
  (void)PersistAcked(c, c >= acked_);
  return 0;
}

void SyncAgent::LearnFormat(uint32_t announced_max_format) {
  const int announced = announced_max_format == 0 ? 1 : static_cast<int>(std::min<uint32_t>(announced_max_format, 16));
  const int format = std::min(announced, wire::BatchEncoder::kMaxFormat);
  if (format != hub_format_) spdlog::info("sync: hub decodes batch format {}, sending format {}", announced, format);
  hub_format_ = format;
}

void SyncAgent::CountAnswer(const Result<HttpResponse>& r) { work_.http_codes[r.ok() ? r->status : 0]++; }

void SyncAgent::PollReconcileRequest() {
  const int64_t now = clock_.MonotonicMs();
  if (now < next_request_poll_ms_) return;
  next_request_poll_ms_ = now + 1000;
  auto v = store_->GetState(kStateReconcileRequested, 0);
  if (!v.ok() || *v == 0) return;
  spdlog::info("sync: reconciliation requested by an operator");
  reconcile_due_ = true;
  next_reconcile_ms_ = std::min(next_reconcile_ms_, now);
  (void)store_->SetStates({{kStateReconcileRequested, 0}});
}

void SyncAgent::MaybeTrim() {
  const int64_t now = clock_.MonotonicMs();
  if (now < next_trim_ms_) return;
  next_trim_ms_ = now + int64_t{options_.retention_check_s} * 1000;
  // Never the newest row: max(seq) must survive so the store's seq counter cannot restart.
  if (last_seq_ == 0) return;
  const uint64_t upto = std::min(acked_, last_seq_ - 1);
  if (upto == 0) return;
  const int64_t cutoff = clock_.NowMs() - int64_t{config_.store.outbox_retention_h} * 3600 * 1000;
  auto n = store_->TrimAcked(upto, cutoff, options_.retention_chunk, options_.retention_max_chunks);
  if (!n.ok()) {
    SetError("store: trimming the outbox: " + n.status().ToString());
    return;
  }
  if (*n > 0) {
    work_.trimmed += static_cast<uint64_t>(*n);
    spdlog::debug("sync: trimmed {} acknowledged outbox rows", *n);
  }
}

int64_t SyncAgent::Reconcile() {
  auto first = store_->FirstSeq();
  if (!first.ok()) {
    SetError("store: " + first.status().ToString());
    return kStoreRetryMs;
  }
  // Below sync_state.quota_dropped_upto the edge's disk quota dropped acknowledged telemetry
  // records (edge/disk_quota.h): the outbox has holes there that no re-send can fill, so
  // digests start above it.
  auto quota_mark = store_->GetState("quota_dropped_upto", 0);
  const uint64_t a = std::max<uint64_t>({1, *first, quota_mark.ok() ? static_cast<uint64_t>(*quota_mark) + 1 : 1});
  const uint64_t b = std::max(a, acked_);
  const auto n = static_cast<uint32_t>(std::min<uint64_t>(options_.digest_buckets, b - a + 1));
  HttpRequest req;
  req.method = "GET";
  req.url = BaseUrl() + wire::kDigestSuffix + "?from=" + std::to_string(a) + "&to=" + std::to_string(b) + "&buckets=" + std::to_string(n);
  req.headers = {{"Accept", wire::kContentTypeProtobuf}};
  auto r = transport_->Send(req);
  CountAnswer(r);
  if (r.ok()) work_.last_http_status = r->status;
  if (!r.ok() || r->status == 429 || r->status >= 500) return Failure(r, "digest");
  const int64_t now = clock_.MonotonicMs();
  freshsync::v1::DigestReply reply;
  if (r->status != 200 || !reply.ParseFromString(r->body)) {
    if (restored_last_ > 0) {
      // After a restore, sending before the hub says what it holds could reuse its seqs: wait.
      SetError("digest: hub answered " + std::to_string(r->status) +
               "; the edge store was restored, so nothing is sent until a digest succeeds");
      SetLink(true);
      return std::min<int64_t>(int64_t{hub_.reconcile_interval_s} * 1000, 30000);
    }
    // A hub without reconciliation must not stop the stream: skip this round.
    SetError("digest: hub answered " + std::to_string(r->status) + "; reconciliation skipped until the next interval");
    SetLink(true);
    reconcile_due_ = false;
    next_reconcile_ms_ = now + int64_t{hub_.reconcile_interval_s} * 1000;
    return -1;
  }
  SetLink(true);
  backoff_.Reset();
  work_.reconciliations++;
  reconcile_due_ = false;
  next_reconcile_ms_ = now + int64_t{hub_.reconcile_interval_s} * 1000;

  const uint64_t c = reply.contiguous_seq();
  if (restored_last_ > 0) {
    if (c > restored_last_) {
      // The hub holds seqs past the restored copy's last one, from the timeline the backup
      // lost. Whatever edged wrote since the restore took those seqs with other content: move
      // it above the hub's, so the hub takes it as new instead of as repeats.
      auto moved = store_->RenumberAfterRestore(restored_last_, c);
      if (!moved.ok()) {
        SetError("store: " + moved.status().ToString());
        reconcile_due_ = true;
        return kStoreRetryMs;
      }
      spdlog::warn("sync: edge store restored at seq {}, hub holds up to {}: {} records written since the restore "
                   "moved up by {}",
                   restored_last_, c, *moved, c - restored_last_);
      work_.seq_floor = std::max<uint64_t>(work_.seq_floor, c);
      acked_ = c;
      urgent_scanned_ = c;
      resend_.clear();
      if (auto last = store_->LastSeq(); last.ok()) last_seq_ = *last;
    } else if (Status st = store_->SetStates({{kStateRestoredLastSeq, 0}}); !st.ok()) {
      // The hub is not ahead of the copy: nothing to move, the stream goes on as usual.
      SetError("store: " + st.ToString());
      reconcile_due_ = true;
      return kStoreRetryMs;
    }
    restored_last_ = 0;
  }
  const uint64_t old_acked = acked_;
  if (c > last_seq_) {
    work_.seq_floor = std::max<uint64_t>(work_.seq_floor, c);
    spdlog::warn("sync: reconcile: hub holds up to seq {} but the outbox ends at {} (edge restored from a backup?): "
                 "seq_floor {}",
                 c, last_seq_, work_.seq_floor);
    if (Status st = store_->SetStates({{kStateSeqFloor, static_cast<int64_t>(work_.seq_floor)}}); !st.ok()) {
      SetError("store: " + st.ToString());
    }
    (void)PersistAcked(c, true);
  } else if (c < acked_) {
    spdlog::warn("sync: reconcile: hub contiguous seq {} is below our acked_seq {} (hub restored from a backup?): "
                 "rewinding and re-sending",
                 c, acked_);
    resend_.clear();
    (void)PersistAcked(c, false);
  } else if (c > acked_) {
    (void)PersistAcked(c, true);  // an ack we lost (crash between the hub's commit and ours)
  }

  // Compare only what both sides claim to hold in full.
  const uint64_t comparable = std::min({old_acked, c, last_seq_});
  if (comparable >= a && reply.ranges_size() > 0) {
    auto local = store_->Digest(a, b, n);
    if (!local.ok()) {
      SetError("store: " + local.status().ToString());
      return kStoreRetryMs;
    }
    std::map<uint64_t, const digest::DigestBucket*> by_from;
    for (const auto& bucket : *local) by_from[bucket.from_seq] = &bucket;
    for (const auto& hr : reply.ranges()) {
      if (hr.to_seq() > comparable) continue;
      auto it = by_from.find(hr.from_seq());
      const bool same = it != by_from.end() && it->second->to_seq == hr.to_seq() && it->second->count == hr.count() &&
                        hr.digest().size() == 32 &&
                        std::memcmp(it->second->digest.data(), hr.digest().data(), 32) == 0;
      if (!same) {
        spdlog::warn("sync: reconcile: seqs {}..{} differ (hub count {}), re-sending", hr.from_seq(), hr.to_seq(),
                     hr.count());
        resend_.emplace_back(hr.from_seq(), hr.to_seq());
        work_.reconcile_resends++;
      }
    }
  }
  // Seq ranges agree (hub contiguous == edge acked, no differing bucket): compare current state.
  if (c == old_acked && c == acked_ && resend_.empty()) CompareState();
  return -1;
}

void SyncAgent::CompareState() {
  // Edge side first: digest and last seq in one read transaction. Compare only when every
  // record the digest reflects is acknowledged; otherwise the hub legitimately lags.
  auto edge = store_->StockDigest();
  if (!edge.ok()) {
    SetError("store: stock digest: " + edge.status().ToString());
    return;
  }
  if (!edge->available) return;
  if (edge->last_seq != acked_) {
    work_.state_skipped++;
    spdlog::debug("sync: state digest skipped: outbox last seq {} != acked_seq {}", edge->last_seq, acked_);
    return;
  }
  struct Hub {
    bool ok = false;
    std::string digest;
    uint64_t skus = 0;
    uint64_t contiguous = 0;
  };
  auto ask = [&](const char* method, const char* path, const char* what) -> Hub {
    HttpRequest req;
    req.method = method;
    req.url = BaseUrl() + path;
    req.headers = {{"Accept", wire::kContentTypeProtobuf}};
    auto r = transport_->Send(req);
    Hub h;
    if (r.ok()) work_.last_http_status = r->status;
    freshsync::v1::StateDigestReply reply;
    if (!r.ok() || r->status != 200 || !reply.ParseFromString(r->body) || reply.digest().size() != 32) {
      // Not worth a backoff of the stream: the next round tries again.
      SetError(std::string(what) + ": " +
               (r.ok() ? "hub answered " + std::to_string(r->status) : r.status().message()) +
               "; state comparison skipped until the next reconciliation");
      return h;
    }
    h.ok = true;
    h.digest = reply.digest();
    h.skus = reply.skus();
    h.contiguous = reply.contiguous_seq();
    return h;
  };
  Hub hub = ask("GET", wire::kStateDigestSuffix, "state digest");
  if (!hub.ok) return;
  // The hub's snapshot must cover exactly what the edge's does (nothing else sends meanwhile:
  // this thread is the only sender, but a hub restored in between would show here).
  if (hub.contiguous != acked_) {
    work_.state_skipped++;
    return;
  }
  work_.state_compares++;
  if (hub.digest == edge->digest) {
    unrepairable_pair_.clear();
    return;
  }
  auto report = [&](const Hub& h) {
    // Logged once per round as an error (not through SetError's warning).
    work_.state_mismatches++;
    work_.last_error = "state digest differs and rebuild-state did not repair it: edge " + digest::Hex(edge->digest) + " (" +
                       std::to_string(edge->skus) + " skus) hub " + digest::Hex(h.digest) + " (" +
                       std::to_string(h.skus) + " skus) at seq " + std::to_string(acked_) + "; needs an operator";
    last_error_log_ms_ = clock_.MonotonicMs();
    spdlog::error("sync: {}", work_.last_error);
  };
  if (edge->digest + hub.digest == unrepairable_pair_) {
    report(hub);  // the hub's records themselves differ: another rebuild would change nothing
    return;
  }

  spdlog::warn("sync: state digest differs: edge {} ({} skus) hub {} ({} skus) at seq {}; asking the hub to rebuild",
               digest::Hex(edge->digest), edge->skus, digest::Hex(hub.digest), hub.skus, acked_);
  work_.state_rebuilds++;
  Hub rebuilt = ask("POST", wire::kRebuildStateSuffix, "rebuild-state");
  if (!rebuilt.ok) return;
  Hub again = ask("GET", wire::kStateDigestSuffix, "state digest after rebuild");
  if (!again.ok) return;
  if (again.digest == edge->digest) {
    unrepairable_pair_.clear();
    work_.state_repaired++;
    spdlog::info("sync: hub stock rebuilt; state digests agree ({} skus)", again.skus);
    return;
  }
  // Once per reconciliation interval at most: never a hot loop.
  unrepairable_pair_ = edge->digest + again.digest;
  report(again);
}

int64_t SyncAgent::Step() {
  idle_wait_ = false;
  if (!store_) return kStoreRetryMs;
  if (!loaded_) {
    if (Status st = LoadState(); !st.ok()) {
      SetError("store: " + st.ToString());
      return kStoreRetryMs;
    }
  }
  struct PublishOnExit {
    SyncAgent* a;
    ~PublishOnExit() { a->Publish(); }
  } publish{this};

  auto last = store_->LastSeq();
  if (!last.ok()) {
    SetError("store: " + last.status().ToString());
    return kStoreRetryMs;
  }
  last_seq_ = *last;
  MaybeTrim();
  PollReconcileRequest();

  if (reconcile_due_ || clock_.MonotonicMs() >= next_reconcile_ms_) {
    const int64_t w = Reconcile();
    if (w >= 0) return w;
  }

  bool full = false;
  // Ranges that reconciliation found different. They lie at or below acked_seq, so the hub
  // takes them as a normal batch and applies only what it lacks.
  while (!resend_.empty()) {
    auto [from, to] = resend_.front();
    to = std::min(to, acked_);
    if (from > to) {
      resend_.pop_front();
      continue;
    }
    if (Status st = store_->ReadRange(from - 1, to, hub_.batch_max_records, hub_.batch_max_bytes, &rows_, &full);
        !st.ok()) {
      SetError("store: " + st.ToString());
      return kStoreRetryMs;
    }
    if (rows_.empty()) {
      resend_.pop_front();
      continue;
    }
    return SendRows(rows_, Kind::kResend);
  }

  // Urgent lane: priority rows that the next normal batch would not carry anyway.
  const uint64_t urgent_from = std::max(urgent_scanned_, acked_ + static_cast<uint64_t>(hub_.batch_max_records));
  if (last_seq_ > urgent_from) {
    // The outbox has no index on priority, so the scan walks every row it covers. A window
    // per step keeps one step short with a huge backlog (a whole 10M-row backlog was a 1 GB
    // read before the first batch; docs/benchmarks.md, "Memory and start-up"); the window
    // still moves 40x faster than the normal stream's 5,000 records.
    const uint64_t scan_to = std::min(last_seq_, urgent_from + kUrgentScanWindow);
    if (Status st = store_->ReadPriority(urgent_from, scan_to, hub_.batch_max_records, hub_.batch_max_bytes, &rows_,
                                         &full);
        !st.ok()) {
      SetError("store: " + st.ToString());
      return kStoreRetryMs;
    }
    if (rows_.empty()) {
      urgent_scanned_ = scan_to;  // nothing urgent up to here; in memory only, a rescan is cheap
    } else {
      return SendRows(rows_, Kind::kUrgent);
    }
  }

  // The dense normal stream.
  if (Status st = store_->ReadRange(acked_, std::numeric_limits<uint64_t>::max(), hub_.batch_max_records,
                                    hub_.batch_max_bytes, &rows_, &full);
      !st.ok()) {
    SetError("store: " + st.ToString());
    return kStoreRetryMs;
  }
  if (rows_.empty()) {
    idle_wait_ = true;
    return options_.idle_poll_ms;
  }
  if (!full) {
    const int64_t age = clock_.NowMs() - rows_.front().created_ms;
    const int64_t left = int64_t{hub_.batch_max_age_ms} - std::max<int64_t>(0, age);
    if (left > 0) return left;
  }
  return SendRows(rows_, Kind::kNormal);
}

}  // namespace freshsync::sync
