#include "cloud-sync/downstream_puller.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include <spdlog/spdlog.h>

#include "cloud-sync/curl_transport.h"
#include "freshsync.pb.h"
#include "wire/routes.h"

namespace freshsync::sync {

namespace {
// With wait_ms = 0 the hub answers at once: an empty answer then waits this long before the
// next pull instead of spinning (with a long poll the hub has already waited).
constexpr int64_t kShortPollIdleMs = 1000;

std::unique_ptr<Transport> MakeTransport(const EdgeConfig& config) {
  CurlTransportOptions t;
  t.ca = config.hub->ca;
  t.cert = config.hub->cert;
  t.key = config.hub->key;
  // The hub holds the request up to wait_ms: the exchange may take that long before the
  // answer even starts.
  t.timeout_ms = config.hub->timeout_ms + config.downstream.wait_ms;
  t.connect_timeout_ms = std::min(config.hub->timeout_ms, 5000);
  return std::make_unique<CurlTransport>(std::move(t));
}
}  // namespace

std::string DownstreamPuller::KindsParam(const EdgeConfig& config) {
  std::string kinds;
  if (!config.downstream.kinds.empty()) {
    for (const auto& k : config.downstream.kinds) kinds += (kinds.empty() ? "" : ",") + k;
    return kinds;
  }
  for (int k = 1; k < wire::kDownKindCount; ++k) kinds += std::string(kinds.empty() ? "" : ",") + wire::kDownKindNames[k];
  return kinds;
}

std::string DownstreamPuller::PullUrl(const EdgeConfig& config, uint64_t after) {
  std::string u = config.hub->url;
  while (!u.empty() && u.back() == '/') u.pop_back();
  return u + wire::kSitesPrefix + config.site + wire::kDownCommandsSuffix + "?after=" + std::to_string(after) +
         "&wait_ms=" + std::to_string(config.downstream.wait_ms) + "&kinds=" + KindsParam(config);
}

DownstreamPuller::DownstreamPuller(EdgeConfig config, CommandSink& sink, Clock& clock, std::unique_ptr<Transport> transport,
                                   DownstreamPullerOptions options)
    : config_(std::move(config)),
      sink_(sink),
      clock_(clock),
      transport_(transport ? std::move(transport) : MakeTransport(config_)),
      backoff_(config_.hub->backoff_initial_ms, config_.hub->backoff_max_ms, options.rng_seed),
      kinds_(KindsParam(config_)) {}

DownstreamPuller::~DownstreamPuller() { Stop(); }

Status DownstreamPuller::Start() {
  if (!config_.hub) return Status::InvalidArgument("downstream: no [hub] configured");
  spdlog::info("downstream: pulling HQ's commands for site {} (kinds {})", config_.site, kinds_);
  thread_ = std::thread([this] { Run(); });
  return Status::Ok();
}

void DownstreamPuller::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  transport_->Interrupt();  // a long poll in flight ends now
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

DownstreamStats DownstreamPuller::GetStats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void DownstreamPuller::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    lock.unlock();
    const int64_t wait_ms = Step();
    lock.lock();
    if (wait_ms > 0) cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return stop_; });
  }
}

int64_t DownstreamPuller::Failure(const Result<HttpResponse>& r, const std::string& what) {
  std::string error;
  int64_t wait_ms = 0;
  int code = 0;
  if (!r.ok()) {
    error = what + ": " + r.status().message();
    if (r.status().code() == StatusCode::kInvalidArgument) wait_ms = backoff_.AtCap();
    // Nothing listens: probing costs the hub nothing (docs/sync-agent.md, "Fast return").
    else if (r.status().message().rfind("connect:", 0) == 0) wait_ms = backoff_.Probe(config_.hub->probe_interval_ms);
    else wait_ms = backoff_.Next();
  } else {
    code = r->status;
    const int retry_after = r->RetryAfterSeconds();
    error = what + ": hub answered " + std::to_string(code) +
            (retry_after >= 0 ? " Retry-After " + std::to_string(retry_after) + "s" : "");
    if (code == 429 || code >= 500) wait_ms = retry_after >= 0 ? backoff_.Hinted(retry_after) : backoff_.Next();
    // 404 (a hub without downstream), 403 (certificate of another site), 400: retrying soon
    // does not heal them; the position never moves past what was not applied.
    else wait_ms = backoff_.AtCap(retry_after);
  }
  bool log = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return 0;
    stats_.link_up = false;
    stats_.pull_errors++;
    stats_.last_http_status = code;
    stats_.last_error_ms = clock_.NowMs();
    log = stats_.last_error != error;
    stats_.last_error = error;
  }
  if (log) spdlog::warn("downstream: {}; retrying in {} ms", error, wait_ms);
  return wait_ms;
}

int64_t DownstreamPuller::Step() {
  if (!have_position_) {
    auto applied = sink_.AppliedSeq();
    if (!applied.ok()) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        stats_.apply_errors++;
        stats_.last_error = "store: " + applied.status().message();
        stats_.last_error_ms = clock_.NowMs();
      }
      spdlog::error("downstream: cannot read the applied position: {}", applied.status().message());
      return backoff_.Next();
    }
    after_ = *applied;
    have_position_ = true;
  }
  HttpRequest req;
  req.method = "GET";
  req.url = PullUrl(config_, after_);
  req.headers = {{"Accept", wire::kContentTypeProtobuf}};
  Result<HttpResponse> r = transport_->Send(req);
  if (!r.ok() || r->status != 200) return Failure(r, "pull");
  v1::DownBatch batch;
  if (!batch.ParseFromString(r->body)) {
    HttpResponse bad = *r;
    bad.status = 400;  // as a refusal: at the cap, the position stays
    return Failure(bad, "pull: answer is not a DownBatch");
  }
  if (!batch.site().empty() && batch.site() != config_.site) {
    HttpResponse bad = *r;
    bad.status = 400;
    return Failure(bad, "pull: answer is for site " + batch.site());
  }
  auto applied = batch.commands_size() > 0 || batch.through_seq() > after_ ? sink_.Apply(batch) : Result<uint64_t>(after_);
  if (!applied.ok()) {
    have_position_ = false;  // what committed before the failure counts: read it again
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.apply_errors++;
      stats_.last_error = "apply: " + applied.status().message();
      stats_.last_error_ms = clock_.NowMs();
    }
    spdlog::error("downstream: applying commands failed: {}; pulling them again", applied.status().message());
    return backoff_.Next();
  }
  after_ = *applied;
  backoff_.Reset();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stats_.link_up) spdlog::info("downstream: link up (applied seq {}, hub last seq {})", after_, batch.last_seq());
    stats_.link_up = true;
    stats_.pulls++;
    stats_.commands += static_cast<uint64_t>(batch.commands_size());
    stats_.applied_seq = after_;
    stats_.hub_last_seq = batch.last_seq();
    stats_.last_http_status = 200;
    stats_.last_ok_ms = clock_.NowMs();
    stats_.last_error.clear();
  }
  const bool empty = batch.commands_size() == 0;
  return empty && config_.downstream.wait_ms == 0 ? kShortPollIdleMs : 0;
}

}  // namespace freshsync::sync
