#include "hub/server.h"

#include <google/protobuf/arena.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <regex>

#include <nlohmann/json.hpp>

#include "hub/auth.h"
#include "hub/http/http.h"
#include "common/tls_policy.h"
#include "hub/http/worker_pool.h"
#include "hub/codec.h"
#include "hub/console.h"
#include "hub/decompress_budget.h"
#include "hub/downstream.h"
#include "hub/entity_routes.h"
#include "hub/hub_metrics.h"
#include "hub/notify/dead_letters.h"
#include "hub/rebuild_snapshot.h"
#include "hub/openapi.h"
#include "hub/record_check.h"
#include "wire/record_rules.h"
#include "wire/batch_format.h"
#include "wire/routes.h"
#include "wire/site_id.h"
#include "hub/query.h"
#include "hub/rate_limit.h"
#include "hub/stream.h"
#include "hub/stream_token.h"

namespace freshsync::hub {
namespace {

using nlohmann::json;

constexpr const char* kJson = wire::kContentTypeJson;
constexpr const char* kProto = wire::kContentTypeProtobuf;

void SendJson(http::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), kJson);
}

void SendError(http::Response& res, int status, const std::string& message, const std::string& parameter = "") {
  json j = {{"error", message}};
  if (!parameter.empty()) j["parameter"] = parameter;
  SendJson(res, status, j);
}

bool WantsJson(const http::Request& req) {
  return req.get_header_value("Accept").find(kJson) != std::string::npos;
}
// HQ reads: JSON unless Accept asks for protobuf (PrefersProtobuf, hub/query.h).
bool WantsProto(const http::Request& req) { return PrefersProtobuf(req.get_header_value("Accept")); }

// 200 with an HQ read's protobuf answer, or its JSON form (ToJson, hub/codec.h) as the caller's
// Accept asks. Vary: the same URL has two representations, which a cache between HQ and the
// hub must keep apart.
void SendRead(const http::Request& req, http::Response& res, const google::protobuf::Message& reply) {
  res.set_header("Vary", "Accept");
  if (WantsProto(req)) {
    res.status = 200;
    res.set_content(reply.SerializeAsString(), kProto);
  } else {
    SendJson(res, 200, ToJson(reply));
  }
}

// Answers 400 naming the parameter when a query did not parse; true when it did.
bool QueryOk(http::Response& res, const std::optional<QueryError>& error) {
  if (!error) return true;
  SendError(res, 400, error->message, error->parameter);
  return false;
}

// Site ids as in the config rules; anything else can never match a certificate anyway.
constexpr const char* kSite = wire::kSiteIdPattern;  // the site-id rule (wire/site_id.h)

}  // namespace

struct HubServer::Impl {
  HubConfig config;
  HubStore& store;
  Clock& clock;
  HubTestHooks hooks;
  std::mutex tokens_mu;
  std::shared_ptr<const TokenAuth> tokens;  // swapped whole on reload
  std::unique_ptr<http::Server> server;
  std::unique_ptr<http::WorkerPool> workers;
  std::atomic<uint64_t> worker_queue_full{0};
  HubMetrics metrics;  // requests, batches, store calls, sites (docs/operations.md, "Hub metrics")
  // Batch admission (AdmitBatch): at most max_inflight_batches apply at once.
  std::mutex admit_mu;
  std::condition_variable admit_cv;
  int inflight_batches = 0;
  int waiting_batches = 0;
  int max_inflight_batches = 1;
  // A batch that finds every slot taken waits this long for one before it is shed. Sites
  // returning after an outage arrive in a burst: shedding each at once cost it a round trip and
  // a whole Retry-After second while the hub sat idle (bench/outage_return: hubd at 14 % of a
  // core, p50 3 s to the first acked batch). At most max_inflight_batches wait, so that the
  // other workers stay free for reads; beyond that, 503 + Retry-After at once.
  static constexpr auto kAdmitWait = std::chrono::milliseconds(500);
  bool AdmitBatch() {
    std::unique_lock<std::mutex> lock(admit_mu);
    if (inflight_batches < max_inflight_batches) {
      ++inflight_batches;
      return true;
    }
    if (waiting_batches >= max_inflight_batches) return false;
    ++waiting_batches;
    const bool admitted = admit_cv.wait_for(lock, kAdmitWait, [&] { return inflight_batches < max_inflight_batches; });
    --waiting_batches;
    if (admitted) ++inflight_batches;
    return admitted;
  }
  void ReleaseBatch() {
    {
      std::lock_guard<std::mutex> lock(admit_mu);
      --inflight_batches;
    }
    admit_cv.notify_one();
  }
  std::mutex audit_file_mu;
  FILE* audit_file = nullptr;
  RateLimiter pull_limiter;  // per bearer token name
  RateLimiter push_limiter;  // per site
  std::unique_ptr<StreamHub> stream;  // GET /v1/stream and the per-order streams (hub/stream.h)
  std::string customer_key;           // [customer_stream] key; "" = those routes are off
  std::unique_ptr<Downstream> downstream;  // HQ to sites (hub/downstream.h); made by Start()

  Impl(const HubConfig& c, HubStore& s, Clock& k, HubTestHooks h)
      : config(c),
        store(s),
        clock(k),
        hooks(std::move(h)),
        tokens(std::make_shared<const TokenAuth>(c.tokens)),
        pull_limiter({c.pull_per_s, c.pull_burst}, k),
        push_limiter({c.push_per_s, c.push_burst}, k) {
    max_inflight_batches = std::max(1, config.threads / 2);
  }
  ~Impl() {
    if (audit_file) std::fclose(audit_file);
  }

  // ---------- TLS ----------
  std::string tls_error;

  bool SetupTls(SSL_CTX& ctx) {
    auto fail = [&](const std::string& key, const std::string& what) {
      char buf[256] = {0};
      ERR_error_string_n(ERR_get_error(), buf, sizeof(buf));
      tls_error = key + ": " + what + " (" + buf + ")";
      return false;
    };
    if (!ApplyServerTlsPolicy(ctx)) return fail("tls", "protocol versions and cipher list");
    if (SSL_CTX_use_certificate_chain_file(&ctx, config.tls_cert.c_str()) != 1)
      return fail("tls.cert", "cannot load certificate chain " + config.tls_cert);
    if (SSL_CTX_use_PrivateKey_file(&ctx, config.tls_key.c_str(), SSL_FILETYPE_PEM) != 1)
      return fail("tls.key", "cannot load private key " + config.tls_key);
    if (SSL_CTX_check_private_key(&ctx) != 1) return fail("tls.key", "does not match tls.cert");
    if (SSL_CTX_load_verify_locations(&ctx, config.tls_ca.c_str(), nullptr) != 1)
      return fail("tls.ca", "cannot load CA " + config.tls_ca);
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(config.tls_ca.c_str());
    if (names == nullptr) return fail("tls.ca", "no CA names in " + config.tls_ca);
    SSL_CTX_set_client_CA_list(&ctx, names);
    // Request a certificate and verify any that is presented; do not require one (HQ callers).
    SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER, nullptr);
    static const unsigned char kSessionCtx[] = "freshsync-hubd";
    SSL_CTX_set_session_id_context(&ctx, kSessionCtx, sizeof(kSessionCtx) - 1);
    return true;
  }

  // ---------- audit ----------
  void AuditEvent(AuditEntry e) {
    e.ts_ms = clock.NowMs();
    Status s = store.AppendAudit(e);
    if (!s.ok()) spdlog::error("audit: {}", s.ToString());
    AuditFile(e);
  }

  void AuditFile(const AuditEntry& e) {
    if (audit_file) {
      json j = {{"ts_ms", e.ts_ms}, {"kind", e.kind},     {"actor", e.actor},   {"path", e.path},
                {"seq_from", e.seq_from}, {"seq_to", e.seq_to}, {"count", e.count}, {"status", e.status}};
      if (!e.detail.empty()) j["detail"] = e.detail;
      const std::string line = j.dump() + "\n";
      std::lock_guard<std::mutex> lock(audit_file_mu);
      std::fwrite(line.data(), 1, line.size(), audit_file);
      std::fflush(audit_file);
    }
  }

  // ---------- HQ auth ----------
  std::optional<Caller> Authorize(const http::Request& req, http::Response& res, Role needed) {
    Caller caller;
    std::shared_ptr<const TokenAuth> auth;
    {
      std::lock_guard<std::mutex> lock(tokens_mu);
      auth = tokens;
    }
    switch (auth->Check(req.get_header_value("Authorization"), needed, &caller)) {
      case AuthOutcome::kOk:
        if (!WithinRate(pull_limiter, "pull", caller.name, req, res)) return std::nullopt;
        return caller;
      case AuthOutcome::kMissing:
        res.set_header("WWW-Authenticate", "Bearer");
        SendError(res, 401, "missing bearer token");
        break;
      case AuthOutcome::kInvalid:
        res.set_header("WWW-Authenticate", "Bearer error=\"invalid_token\"");
        SendError(res, 401, "invalid token");
        break;
      case AuthOutcome::kForbidden:
        SendError(res, 403, "token '" + caller.name + "' lacks the " + RoleName(needed) + " role");
        // An authenticated caller overstepping its role is audited.
        AuditEvent({0, 0, "pull", caller.name, req.path, 0, 0, 0, 403, "refused: role"});
        return std::nullopt;
    }
    // Unauthenticated refusals are logged, not audited: every audit row is a write with an
    // fsync, and anyone who can reach the port must not be able to slow the apply path or
    // grow the database.
    spdlog::warn("HQ {} {}: {} ({})", req.method, req.path, res.status, req.remote_addr);
    return std::nullopt;
  }

  // Takes one request from `key`'s bucket; when it is empty answers 429 with Retry-After
  // (whole seconds, at least 1) and audits the refusal, at most once a minute per key with the
  // number of refusals since the last such row (RateLimiter::kReportEveryMs).
  bool WithinRate(RateLimiter& limiter, const char* kind, const std::string& key, const http::Request& req,
                  http::Response& res) {
    const auto d = limiter.Acquire(key);
    if (d.allowed) return true;
    const int64_t secs = std::max<int64_t>(1, (d.retry_after_ms + 999) / 1000);
    res.set_header("Retry-After", std::to_string(secs));
    SendError(res, 429, std::string("rate limit exceeded for ") + (std::string_view(kind) == "pull" ? "token '" : "site '") +
                            key + "', retry after " + std::to_string(secs) + "s");
    if (d.report) {
      AuditEvent({0, 0, "rate-limited", key, req.path, 0, 0, d.refused_since_report, 429,
                  std::string(kind) + ": " + std::to_string(d.refused_since_report) + " refused since the last report"});
    }
    return false;
  }

  // Who pulled what: token name (actor), role and query (detail), endpoint (path), rows
  // returned (count). Query values are cursors, limits and times, never secrets.
  void AuditPull(const Caller& c, const http::Request& req, int status, uint64_t count) {
    std::string detail = std::string("role=") + RoleName(c.role);
    if (!req.params.empty()) {
      detail += " query=";
      bool first = true;
      for (const auto& [k, v] : req.params) {
        if (!first) detail += '&';
        first = false;
        detail += k + "=" + v;
      }
      if (detail.size() > 512) detail.resize(512);  // the detail column is for people, not for payloads
    }
    AuditEvent({0, 0, "pull", c.name, req.path, 0, 0, count, status, std::move(detail)});
  }

  // ---------- site auth ----------
  bool SiteAllowed(const http::Request& req, http::Response& res, const std::string& site) {
    auto cn = PeerSiteId(req.ssl);
    if (!cn) {
      SendError(res, 403, "a verified client certificate is required");
      return false;
    }
    if (*cn != site) {
      SendError(res, 403, "client certificate is for site '" + *cn + "', not '" + site + "'");
      return false;
    }
    return WithinRate(push_limiter, "push", site, req, res);
  }

  // ---------- routes ----------
  // Returns true when it has answered (the body is then not read, and the connection closes).
  bool PreRoute(const http::Request& req, http::Response& res) {
    // Everything here runs before the body is read, so refusals cost no memory.
    if (req.has_header("Transfer-Encoding")) {
      res.set_header("Connection", "close");
      SendError(res, 411, "chunked bodies are not accepted; send Content-Length");
      return true;
    }
    const std::string enc = req.get_header_value("Content-Encoding");
    if (!enc.empty() && enc != "zstd" && enc != "identity") {
      // Nothing here would inflate gzip/br within our limits.
      res.set_header("Connection", "close");
      SendError(res, 415, "Content-Encoding must be zstd or identity");
      return true;
    }
    // A POST without Content-Length has no body in HTTP/1.1; a client that sends one anyway
    // (read-until-close) is told so rather than having its body parsed as the next request.
    const bool has_body_method = req.method == "POST" || req.method == "PUT" || req.method == "PATCH" ||
                                 req.method == "DELETE" || req.method == "PRI";
    if (has_body_method && !req.has_header("Content-Length")) {
      res.set_header("Connection", "close");
      SendError(res, 411, "Content-Length required");
      return true;
    }
    if (req.has_header("Content-Length")) {
      auto len = ParseU64(req.get_header_value("Content-Length"));
      if (!len) {
        res.set_header("Connection", "close");
        SendError(res, 400, "bad Content-Length");
        return true;
      }
      if (*len > static_cast<uint64_t>(config.max_body_bytes)) {
        res.set_header("Connection", "close");
        SendError(res, 413, "body of " + std::to_string(*len) + " bytes exceeds limits.max_body_bytes (" +
                                std::to_string(config.max_body_bytes) + ")");
        if (auto cn = PeerSiteId(req.ssl)) AuditEvent({0, 0, "push", *cn, req.path, 0, 0, 0, 413, "body too large"});
        else spdlog::warn("{} {}: 413 for {} bytes from {}", req.method, req.path, *len, req.remote_addr);
        return true;
      }
    }
    return false;
  }

  void PostBatch(const http::Request& req, http::Response& res) {
    const std::string site = req.matches[1];
    const std::string actor = PeerSiteId(req.ssl).value_or("-");
    v1::BatchAck ack;
    ack.set_max_format(wire::kMaxBatchFormat);  // lets the edge switch to the compact format
    auto reply = [&](int status, const std::string& error, uint64_t from = 0, uint64_t to = 0) {
      if (!error.empty()) ack.set_error(error);
      res.status = status;
      if (WantsJson(req)) res.set_content(ToJson(ack).dump(), kJson);
      else res.set_content(ack.SerializeAsString(), kProto);
      AuditEvent({0, 0, "push", actor, req.path, from, to, ack.applied(), status, error});
    };
    if (!SiteAllowed(req, res, site)) {
      if (res.status == 429) return;  // rate limited: already answered and audited
      // Audited only for a verified certificate of another site; without one, log (see Authorize).
      if (actor != "-") AuditEvent({0, 0, "push", actor, req.path, 0, 0, 0, 403, "certificate does not match site"});
      else spdlog::warn("push {} without a client certificate from {}", req.path, req.remote_addr);
      return;
    }
    // Test hook (HubTestHooks::shed_file): shed batches while the file exists.
    if (!hooks.shed_file.empty()) {
      std::ifstream in(hooks.shed_file);
      if (in) {
        std::string secs;
        std::getline(in, secs);
        res.set_header("Retry-After", secs.empty() ? std::string("1") : secs);
        return reply(503, "shedding load (test hook)");
      }
    }
    if (!AdmitBatch()) {
      res.set_header("Retry-After", "1");
      return reply(503, "hub busy, retry later");
    }
    struct Admitted {
      Impl* im;
      ~Admitted() { im->ReleaseBatch(); }
    } admitted{this};
    std::string raw;
    const std::string* payload = &req.body;
    // The process-wide decompression budget (hub/decompress_budget.h): bombs in parallel share it.
    DecompressReservation decompress_hold(&DecompressBudget::Process(static_cast<uint64_t>(config.max_decompressed_total_bytes)));
    if (req.get_header_value("Content-Encoding") == "zstd") {
      ZstdLimits limits;
      limits.max_output_bytes = static_cast<uint64_t>(config.max_decompressed_bytes);
      limits.reservation = &decompress_hold;
      auto out = ZstdDecompressCapped(req.body, limits);
      // Over the process budget: 503 + Retry-After, the site retries.
      if (!out.ok() && out.status().code() == StatusCode::kUnavailable) {
        RefusalCounters::Process().Count(site, "decompress_budget");
        res.set_header("Retry-After", "1");
        return reply(503, out.status().message());
      }
        if (!out.ok()) return reply(out.status().code() == StatusCode::kConflict ? 413 : 400, out.status().message());
      raw = std::move(*out);
      payload = &raw;
    }
    // On an arena: a 5,000-record batch is ~15,000 allocations, and their frees in ~Batch were
    // 6 % of hubd's CPU during a drain (perf, docs/benchmarks.md). The arena's blocks grow to
    // about the parsed batch's size, as the heap objects did.
    google::protobuf::ArenaOptions arena_options;
    arena_options.start_block_size = 64 << 10;
    arena_options.max_block_size = 1 << 20;
    google::protobuf::Arena arena(arena_options);
    v1::Batch& batch = *google::protobuf::Arena::CreateMessage<v1::Batch>(&arena);
    if (!batch.ParseFromString(*payload)) return reply(400, "body is not a valid freshsync.v1.Batch");
    if (Status ex = wire::ExpandBatch(batch); !ex.ok()) return reply(400, ex.message());
    raw.clear();
    raw.shrink_to_fit();
    decompress_hold.ReleaseAll();  // the decompressed bytes are freed
    if (batch.records_size() > config.max_records_per_batch)
      return reply(413, "batch of " + std::to_string(batch.records_size()) + " records exceeds limits.max_records_per_batch");
    if (batch.site() != site) return reply(403, "Batch.site '" + batch.site() + "' does not match the URL site");
    const uint64_t from = batch.records_size() ? batch.records(0).seq() : 0;
    const uint64_t to = batch.records_size() ? batch.records(batch.records_size() - 1).seq() : 0;
    const int64_t now = clock.NowMs();
    const AuditEntry audit{0, now, "push", actor, req.path, from, to, 0, 200, batch.urgent() ? "urgent" : ""};
    // Every record against the shared field rules, and the per-site byte limit (hub/record_check.h).
    const BatchRefusals refusals = CheckBatchRecords(batch);
    const ApplyChecks checks{&refusals.reasons, config.site_bytes_per_day};
    auto applied = TimedStoreCall(metrics, "apply_batch", [&] { return store.ApplyBatch(site, batch, now, &audit, checks); });
    if (!applied.ok()) {
      const auto code = applied.status().code();
      if (code == StatusCode::kInvalidArgument) return reply(400, applied.status().message(), from, to);
      spdlog::error("apply batch site={} seq={}..{}: {}", site, from, to, applied.status().ToString());
      res.set_header("Retry-After", "5");
      return reply(503, "store unavailable", from, to);
    }
    ack.set_contiguous_seq(applied->contiguous_seq);
    ack.set_expected_seq(applied->contiguous_seq + 1);
    ack.set_applied(applied->applied);
    ack.set_duplicates(applied->duplicates);
    if (applied->over_quota) {
      RefusalCounters::Process().Count(site, "site_bytes_per_day");
      const int64_t day_left_s = 86400 - (now / 1000) % 86400;
      res.set_header("Retry-After", std::to_string(std::min<int64_t>(day_left_s, 3600)));
      return reply(429, "site_bytes_per_day: site " + site + " has added " + std::to_string(applied->quota_used) +
                            " bytes today, the limit is " + std::to_string(config.site_bytes_per_day) + "; nothing written",
                   from, to);
    }
    if (applied->refused > 0) {
      for (const auto& why : refusals.reasons)
        if (!why.empty()) RefusalCounters::Process().Count(site, std::string(wire::RefusalField(why)));
      ack.set_refused(applied->refused);
      ack.set_error(std::to_string(applied->refused) + " record(s) refused and quarantined; first: " + refusals.first);
      spdlog::warn("push site={} seq={}..{}: {}", site, from, to, ack.error());
    }
    metrics.BatchApplied(applied->applied, applied->duplicates, applied->refused);
    if (applied->applied > 0 && stream) stream->Wake();  // live streams see the commit at once
    if (applied->gap) return reply(409, "gap: expected seq " + std::to_string(applied->contiguous_seq + 1), from, to);
    // The audit row committed with the batch; only the optional file line is left to write.
    res.status = 200;
    if (WantsJson(req)) res.set_content(ToJson(ack).dump(), kJson);
    else res.set_content(ack.SerializeAsString(), kProto);
    AuditEntry done = audit;
    done.count = applied->applied;
    AuditFile(done);
  }

  void GetDigest(const http::Request& req, http::Response& res) {
    const std::string site = req.matches[1];
    if (!SiteAllowed(req, res, site)) return;
    DigestQuery q;
    if (!QueryOk(res, ParseDigestQuery(req.params, &q))) return;
    const uint64_t from = q.from, to = q.to, buckets = q.buckets;
    auto d = TimedStoreCall(metrics, "digest", [&] { return store.Digest(site, from, to, buckets); });
    if (!d.ok()) return SendError(res, 503, d.status().message());
    v1::DigestReply reply;
    reply.set_contiguous_seq(d->contiguous_seq);
    for (const auto& r : d->ranges) {
      auto* rd = reply.add_ranges();
      rd->set_from_seq(r.from_seq);
      rd->set_to_seq(r.to_seq);
      rd->set_count(r.count);
      rd->set_digest(r.digest);
    }
    if (WantsJson(req)) SendJson(res, 200, ToJson(reply));
    else res.set_content(reply.SerializeAsString(), kProto);
    AuditEvent({0, 0, "digest", site, req.path, from, to, buckets, 200, ""});
  }

  static void SendStateDigest(const http::Request& req, http::Response& res, const StateDigestResult& d,
                              const json& extra) {
    v1::StateDigestReply reply;
    reply.set_digest(d.digest);
    reply.set_skus(d.skus);
    reply.set_contiguous_seq(d.contiguous_seq);
    if (WantsJson(req)) {
      json j = ToJson(reply);
      for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
      SendJson(res, 200, j);
    } else {
      res.set_content(reply.SerializeAsString(), kProto);
    }
  }

  // GET /v1/sites/{site}/state-digest: digest of the site's materialized stock.
  void GetStateDigest(const http::Request& req, http::Response& res) {
    const std::string site = req.matches[1];
    if (!SiteAllowed(req, res, site)) return;
    auto d = TimedStoreCall(metrics, "state_digest", [&] { return store.StateDigest(site); });
    if (!d.ok()) return SendError(res, 503, d.status().message());
    SendStateDigest(req, res, *d, json::object());
    AuditEvent({0, 0, "state-digest", site, req.path, 0, d->contiguous_seq, d->skus, 200, ""});
  }

  // GET /v1/sites/{site}/rebuild-snapshot: what the hub holds of the site, for `edgectl
  // restore --from-hub` (hub/rebuild_snapshot.h). The site's own certificate, as for the pull;
  // an admin token may read it too (customer data stays sealed: the sealed blobs as sent).
  void GetRebuildSnapshot(const http::Request& req, http::Response& res) {
    const std::string site = req.matches[1];
    std::string actor;
    if (auto cn = PeerSiteId(req.ssl); cn && *cn == site) {
      if (!SiteAllowed(req, res, site)) return;
      actor = site;
    } else {
      auto caller = Authorize(req, res, Role::kAdmin);
      if (!caller) return;
      actor = caller->name;
    }
    auto snap = TimedStoreCall(metrics, "rebuild_snapshot", [&] { return ReadRebuildSnapshot(store, site); });
    if (!snap.ok()) {
      if (snap.status().code() == StatusCode::kNotFound) return SendError(res, 404, snap.status().message());
      spdlog::error("rebuild-snapshot site={}: {}", site, snap.status().ToString());
      return SendError(res, 503, snap.status().message());
    }
    if (WantsJson(req)) SendJson(res, 200, ToJson(*snap));
    else res.set_content(snap->SerializeAsString(), kProto);
    spdlog::warn("rebuild-snapshot site={} for {}: seq floor {}, {} skus, {} orders, records name down_seq up to {}", site, actor,
                 snap->seq_floor(), snap->stock_size(), snap->orders_size(),
                 snap->records_down_seq());
    AuditEvent({0, 0, "rebuild-snapshot", actor, req.path, 0, snap->seq_floor(), static_cast<uint64_t>(snap->stock_size()),
                200, ""});
  }

  // POST /v1/sites/{site}/rebuild-state: re-derive the site's stock from the records held,
  // audited in the same transaction; answers the state digest after the rebuild.
  void PostRebuildState(const http::Request& req, http::Response& res) {
    const std::string site = req.matches[1];
    if (!SiteAllowed(req, res, site)) return;
    AuditEntry audit{0, clock.NowMs(), "rebuild-state", site, req.path, 0, 0, 0, 200, "stock re-derived from held records"};
    auto r = TimedStoreCall(metrics, "rebuild_state", [&] { return store.RebuildState(site, &audit); });
    if (!r.ok()) {
      spdlog::error("rebuild-state site={}: {}", site, r.status().ToString());
      return SendError(res, 503, r.status().message());
    }
    if (r->changed > 0) {
      spdlog::warn("rebuild-state site={}: {} stock rows repaired ({} before, {} after)", site, r->changed,
                   r->skus_before, r->skus_after);
    } else {
      spdlog::info("rebuild-state site={}: stock already consistent ({} rows)", site, r->skus_after);
    }
    auto d = TimedStoreCall(metrics, "state_digest", [&] { return store.StateDigest(site); });
    if (!d.ok()) return SendError(res, 503, d.status().message());
    SendStateDigest(req, res, *d, {{"changed", r->changed}});
    AuditEntry done = audit;
    done.count = r->changed;
    AuditFile(done);
  }

  void GetChanges(const http::Request& req, http::Response& res) {
    auto caller = Authorize(req, res, Role::kReader);
    if (!caller) return;
    FeedQuery q;
    if (!QueryOk(res, ParseFeedQuery(req.params, &q))) return AuditPull(*caller, req, 400, 0);
    const uint64_t after = q.after;
    auto changes = TimedStoreCall(metrics, "changes", [&] { return store.Changes(after, static_cast<int>(q.limit)); });
    if (!changes.ok()) {
      SendError(res, 503, changes.status().message());
      return AuditPull(*caller, req, 503, 0);
    }
    const uint64_t next = changes->empty() ? after : changes->back().cursor;
    v1::Feed feed;
    for (auto& c : *changes) {
      auto* fc = feed.add_changes();
      fc->set_site(c.site);
      fc->set_cursor(c.cursor);
      *fc->mutable_record() = std::move(c.record);
    }
    feed.set_next(next);
    SendRead(req, res, feed);
    AuditPull(*caller, req, 200, changes->size());
  }

  // GET /v1/sites: every site the hub has heard from, with its sequence position.
  void GetSites(const http::Request& req, http::Response& res) {
    auto caller = Authorize(req, res, Role::kReader);
    if (!caller) return;
    auto sites = TimedStoreCall(metrics, "sites", [&] { return store.Sites(); });
    if (!sites.ok()) return SendError(res, 503, sites.status().message());
    v1::SitesReply reply;
    for (const auto& si : *sites) {
      auto* o = reply.add_sites();
      o->set_site(si.site);
      o->set_contiguous_seq(si.contiguous_seq);
      o->set_max_seq(si.max_seq);
      o->set_records(si.records);
      o->set_last_push_ms(si.last_push_ms);
    }
    SendRead(req, res, reply);
    AuditPull(*caller, req, 200, sites->size());
  }

  // GET /v1/audit (admin): the audit rows after a cursor.
  void GetAudit(const http::Request& req, http::Response& res) {
    auto caller = Authorize(req, res, Role::kAdmin);
    if (!caller) return;
    FeedQuery q;
    if (!QueryOk(res, ParseFeedQuery(req.params, &q))) return AuditPull(*caller, req, 400, 0);
    const uint64_t after = q.after;
    auto rows = TimedStoreCall(metrics, "audit", [&] { return store.Audit(after, static_cast<int>(q.limit)); });
    if (!rows.ok()) return SendError(res, 503, rows.status().message());
    const uint64_t next = rows->empty() ? after : rows->back().id;
    v1::AuditReply reply;
    for (const auto& e : *rows) {
      auto* o = reply.add_entries();
      o->set_id(e.id);
      o->set_ts_ms(e.ts_ms);
      o->set_kind(e.kind);
      o->set_actor(e.actor);
      o->set_path(e.path);
      o->set_seq_from(e.seq_from);
      o->set_seq_to(e.seq_to);
      o->set_count(e.count);
      o->set_status(e.status);
      o->set_detail(e.detail);
    }
    reply.set_next(next);
    SendRead(req, res, reply);
    AuditPull(*caller, req, 200, rows->size());
  }

  // ---------- webhook dead letters (hub/notify/dead_letters.h), admin ----------
  static json DeadLetterJson(const WebhookDeadLetter& d) {
    json j = {{"id", d.id},           {"webhook", d.webhook},       {"event", d.event},
              {"site", d.site},       {"idempotency_key", d.key},   {"attempts", d.attempts},
              {"last_error", d.last_error}, {"dead_ms", d.dead_ms}, {"replay_pending", d.replay},
              {"replays", d.replays}};
    // The body as the receiver gets it; it is our own JSON, so it parses.
    j["body"] = json::parse(d.body, nullptr, false);
    return j;
  }

  // GET /v1/webhooks/deadletters?webhook=&after=&limit=: oldest first, paged by id.
  void GetDeadLetters(const http::Request& req, http::Response& res) {
    auto caller = Authorize(req, res, Role::kAdmin);
    if (!caller) return;
    FeedQuery q;
    if (!QueryOk(res, ParseFeedQuery(req.params, &q))) return AuditPull(*caller, req, 400, 0);
    const auto hook = req.params.find("webhook");
    const std::string webhook = hook == req.params.end() ? "" : hook->second;
    auto rows = TimedStoreCall(metrics, "webhook_deadletters",
                               [&] { return WebhookDeadLetters(store).List(webhook, q.after, static_cast<int>(q.limit)); });
    if (!rows.ok()) return SendError(res, 503, rows.status().message());
    json items = json::array();
    for (const auto& d : *rows) items.push_back(DeadLetterJson(d));
    SendJson(res, 200, {{"deadletters", std::move(items)}, {"next", rows->empty() ? q.after : rows->back().id}});
    AuditPull(*caller, req, 200, rows->size());
  }

  // POST /v1/webhooks/deadletters/{id}/replay: the webhook's lease holder (any replica) sends it
  // again, same key and body, within its poll interval.
  void PostReplayDeadLetter(const http::Request& req, http::Response& res) {
    auto caller = Authorize(req, res, Role::kAdmin);
    if (!caller) return;
    const auto id = ParseU64(req.matches[1]);
    if (!id) return SendError(res, 400, "id: must be an unsigned integer", "id");
    auto r = TimedStoreCall(metrics, "webhook_replay", [&] { return WebhookDeadLetters(store).RequestReplay(*id); });
    if (!r.ok()) return SendError(res, 503, r.status().message());
    if (!r->has_value()) {
      SendError(res, 404, "no dead letter " + std::to_string(*id));
      return AuditEvent({0, 0, "webhook-replay", caller->name, req.path, 0, 0, 0, 404, ""});
    }
    SendJson(res, 202, {{"id", *id}, {"webhook", (*r)->webhook}, {"queued", 1}});
    AuditEvent({0, 0, "webhook-replay", caller->name, req.path, 0, 0, 1, 202, "webhook=" + (*r)->webhook + " key=" + (*r)->key});
  }

  // POST /v1/webhooks/deadletters/replay?webhook=NAME: every dead letter of the webhook.
  void PostReplayAllDeadLetters(const http::Request& req, http::Response& res) {
    auto caller = Authorize(req, res, Role::kAdmin);
    if (!caller) return;
    const auto hook = req.params.find("webhook");
    if (hook == req.params.end() || hook->second.empty()) return SendError(res, 400, "webhook: required", "webhook");
    auto n = TimedStoreCall(metrics, "webhook_replay", [&] { return WebhookDeadLetters(store).RequestReplayAll(hook->second); });
    if (!n.ok()) return SendError(res, 503, n.status().message());
    SendJson(res, 202, {{"webhook", hook->second}, {"queued", *n}});
    AuditEvent({0, 0, "webhook-replay", caller->name, req.path, 0, 0, *n, 202, "webhook=" + hook->second + " all"});
  }

  // An entity route (hub/entity_routes.h) behind the reader role; every pull is audited with
  // its status and the rows answered.
  void ServeEntity(const EntityRoute& route, const http::Request& req, http::Response& res) {
    auto caller = Authorize(req, res, Role::kReader);
    if (!caller) return;
    const auto start = std::chrono::steady_clock::now();
    const EntityAnswer answer = route.read(store, {req.matches[1], req.matches, req.params});
    if (!answer.bad_query)
      metrics.StoreCall("read", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), !answer.status.ok());
    if (answer.bad_query) {
      QueryOk(res, answer.bad_query);
      return AuditPull(*caller, req, 400, 0);
    }
    if (!answer.status.ok()) {
      SendError(res, 503, answer.status.message());
      return AuditPull(*caller, req, 503, 0);
    }
    SendRead(req, res, *answer.reply);
    AuditPull(*caller, req, 200, answer.rows);
  }

  // ---------- live streams ----------
  // GET /v1/stream (reader): the change feed as server-sent events (docs/api.md).
  bool OpenStream(const std::shared_ptr<http::Exchange>& ex, http::Response& res) {
    const http::Request& req = ex->request();
    auto caller = Authorize(req, res, Role::kReader);
    if (!caller) return false;
    StreamQuery q;
    if (!QueryOk(res, ParseStreamQuery(req.params, req.get_header_value("Last-Event-ID"), &q))) {
      AuditPull(*caller, req, 400, 0);
      return false;
    }
    if (!q.entity.empty() && !KnownEntity(q.entity)) {
      SendError(res, 400, "entity: no such entity '" + q.entity + "'", "entity");
      AuditPull(*caller, req, 400, 0);
      return false;
    }
    AuditPull(*caller, req, 200, 0);  // who opened which stream from where; not each event
    stream->Add(ex, StreamFilter{q.site, q.entity, ""}, q.after);
    return true;
  }

  static bool KnownEntity(const std::string& lower) {
    std::string upper = lower;
    for (char& c : upper) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    v1::Entity e;
    return v1::Entity_Parse(upper, &e);
  }

  // GET /v1/orders/{order_id}/stream?token=... (or Authorization: Bearer <token>): the order's
  // status changes, for its customer; the token is the only credential (hub/stream_token.h).
  bool OpenOrderStream(const std::shared_ptr<http::Exchange>& ex, http::Response& res) {
    const http::Request& req = ex->request();
    const std::string order_id = req.matches[1];
    if (customer_key.empty()) {
      SendError(res, 404, "customer streams are off ([customer_stream] key_file is not set)");
      return false;
    }
    std::string token;
    if (auto it = req.params.find("token"); it != req.params.end()) token = it->second;
    const std::string auth = req.get_header_value("Authorization");
    if (token.empty() && auth.rfind("Bearer ", 0) == 0) token = auth.substr(7);
    switch (CheckStreamToken(customer_key, token, order_id, clock.NowMs())) {
      case StreamTokenCheck::kOk:
        break;
      case StreamTokenCheck::kWrongOrder:
        SendError(res, 403, "the token is for another order");
        return false;
      case StreamTokenCheck::kExpired:
        res.set_header("WWW-Authenticate", "Bearer error=\"invalid_token\"");
        SendError(res, 401, "token expired");
        return false;
      default:
        res.set_header("WWW-Authenticate", "Bearer error=\"invalid_token\"");
        SendError(res, 401, token.empty() ? "missing token" : "invalid token");
        return false;
    }
    StreamQuery q;
    if (!QueryOk(res, ParseStreamQuery(req.params, req.get_header_value("Last-Event-ID"), &q))) return false;
    stream->Add(ex, StreamFilter{"", "", order_id}, q.after);
    return true;
  }

  // POST /v1/orders/{order_id}/stream-token (writer or admin): a token for that order's stream.
  void PostStreamToken(const http::Request& req, http::Response& res) {
    auto caller = Authorize(req, res, Role::kWriter);
    if (!caller) return;
    const std::string order_id = req.matches[1];
    if (customer_key.empty()) {
      SendError(res, 404, "customer streams are off ([customer_stream] key_file is not set)");
      return AuditPull(*caller, req, 404, 0);
    }
    const int64_t expires = clock.NowMs() + config.customer_stream_token_ttl_ms;
    SendJson(res, 200, {{"token", MintStreamToken(customer_key, order_id, expires)}, {"expires_ms", expires}});
    AuditPull(*caller, req, 200, 1);
  }

  void WriteStreamMetrics(prometheus::TextWriter& w) const {
    const StreamStats& st = stream->stats();
    w.Family("freshsync_hub_stream_clients", "gauge", "Live stream clients (GET /v1/stream and order streams) now.");
    w.Sample("freshsync_hub_stream_clients", {}, static_cast<uint64_t>(std::max<int64_t>(0, st.clients.load())));
    w.Family("freshsync_hub_stream_events_total", "counter", "Change events queued to stream clients.");
    w.Sample("freshsync_hub_stream_events_total", {}, st.events_sent.load());
    w.Family("freshsync_hub_stream_cut_off_total", "counter", "Stream clients closed because their buffer was full (they resume by Last-Event-ID).");
    w.Sample("freshsync_hub_stream_cut_off_total", {}, st.cut_off.load());
    w.Family("freshsync_hub_stream_heartbeats_total", "counter", "Heartbeat comments sent to idle stream clients.");
    w.Sample("freshsync_hub_stream_heartbeats_total", {}, st.heartbeats.load());
  }

  // The transport's counters (docs/operations.md, "Metrics").
  void WriteTransportMetrics(prometheus::TextWriter& w) const {
    const http::Stats& st = server->stats();
    auto one = [&w](const char* name, const char* type, const char* help, uint64_t v) {
      w.Family(name, type, help);
      w.Sample(name, {}, v);
    };
    one("freshsync_hub_connections_open", "gauge", "TLS connections open now.",
        static_cast<uint64_t>(std::max<int64_t>(0, st.connections_open.load())));
    one("freshsync_hub_connections_accepted_total", "counter", "Connections accepted (under the caps).", st.connections_accepted.load());
    w.Family("freshsync_hub_connections_refused_total", "counter", "Connections closed at accept by a cap.");
    w.Sample("freshsync_hub_connections_refused_total", {{"cap", "global"}}, st.refused_global_cap.load());
    w.Sample("freshsync_hub_connections_refused_total", {{"cap", "address"}}, st.refused_address_cap.load());
    one("freshsync_hub_tls_handshake_failures_total", "counter", "TLS handshakes that failed or missed their deadline.",
        st.handshake_failures.load());
    one("freshsync_hub_request_timeouts_total", "counter", "Connections closed because a request head or body missed its deadline.",
        st.head_timeouts.load());
    one("freshsync_hub_headers_too_large_total", "counter", "Requests refused with 431 (header bytes or count).",
        st.headers_too_large.load());
    one("freshsync_hub_bad_requests_total", "counter", "Requests refused with 400 by the HTTP parser.", st.bad_requests.load());
    one("freshsync_hub_body_budget_full_total", "counter", "Requests refused with 503 because bodies in flight reached their budget.",
        st.body_budget_full.load());
    one("freshsync_hub_worker_queue_full_total", "counter", "Requests refused with 503 because the worker queue was full.",
        worker_queue_full.load());
    one("freshsync_hub_heap_trims_total", "counter", "Free heap pages handed back after a burst of connections (malloc_trim).",
        st.heap_trims.load());
  }

  // ---------- downstream (hub/downstream.h) ----------
  static void SendDown(const http::Request& req, http::Response& res, DownAnswer a) {
    if (!a.error.empty()) return SendError(res, a.status, a.error);
    if (!a.etag.empty()) {
      // A versioned read (fences, rules): a caller that holds this version gets a 304, no body
      // (the console's refresh). no-cache: a cache must ask before reusing it.
      res.set_header("ETag", a.etag);
      res.set_header("Cache-Control", "no-cache");
      if (EtagMatches(req.get_header_value("If-None-Match"), a.etag)) {
        res.status = 304;
        return;
      }
    }
    if (!a.batch) return SendJson(res, a.status, a.body);
    // The site's pull: protobuf, or its JSON form when the site asks for JSON.
    res.status = a.status;
    if (WantsJson(req)) res.set_content(ToJson(*a.batch).dump(), kJson);
    else res.set_content(a.batch->SerializeAsString(), kProto);
  }

  // An HQ write (role writer): the answer, and an audit row with the command's place. `write`
  // gets the row's head (ts, kind, actor, path): a write that commits the row itself (an
  // order, DownstreamLog::OrderAppend::audit) says so in DownAnswer::audited, and only the
  // audit file's line is left here.
  void DownWrite(const http::Request& req, http::Response& res,
                 const std::function<DownAnswer(const Caller&, const AuditEntry&)>& write) {
    auto caller = Authorize(req, res, Role::kWriter);
    if (!caller) return;
    AuditEntry e{0, clock.NowMs(), "write", caller->name, req.path, 0, 0, 0, 0, ""};
    DownAnswer a = write(*caller, e);
    std::string detail = a.error.empty() ? a.body.value("command_id", std::string()) : a.error;
    if (detail.size() > 512) detail.resize(512);
    const uint64_t seq = a.error.empty() && a.body.contains("down_seq") ? a.body["down_seq"].get<uint64_t>() : 0;
    e.seq_from = e.seq_to = seq;
    e.count = a.error.empty() ? 1u : 0u;
    e.status = a.status;
    e.detail = std::move(detail);
    if (a.audited) AuditFile(e);
    else AuditEvent(std::move(e));
    SendDown(req, res, std::move(a));
  }

  void DownRead(const http::Request& req, http::Response& res, const std::function<DownAnswer()>& read) {
    auto caller = Authorize(req, res, Role::kReader);
    if (!caller) return;
    DownAnswer a = read();
    AuditPull(*caller, req, a.status, a.error.empty() ? 1 : 0);
    SendDown(req, res, std::move(a));
  }

  void RegisterDownstream() {
    const std::string site_prefix = std::string(wire::kSitesPrefix) + kSite;
    Post(site_prefix + wire::kOrdersSuffix, [this](const http::Request& req, http::Response& res) {
      DownWrite(req, res, [&](const Caller& c, const AuditEntry& audit) {
        return downstream->PostOrder(req.matches[1], req.body, c.name, audit);
      });
    });
    Post(site_prefix + wire::kOrdersSuffix + "/(.+)" + wire::kCancelSuffix, [this](const http::Request& req, http::Response& res) {
      DownWrite(req, res, [&](const Caller& c, const AuditEntry&) { return downstream->PostCancel(req.matches[1], req.matches[2], req.body, c.name); });
    });
    Put(site_prefix + wire::kFencesSuffix, [this](const http::Request& req, http::Response& res) {
      DownWrite(req, res, [&](const Caller& c, const AuditEntry&) { return downstream->PutFences(req.matches[1], req.body, c.name); });
    });
    Put(site_prefix + wire::kColdchainRulesSuffix, [this](const http::Request& req, http::Response& res) {
      DownWrite(req, res, [&](const Caller& c, const AuditEntry&) { return downstream->PutColdchainRules(req.matches[1], req.body, c.name); });
    });
    Get(site_prefix + wire::kFencesSuffix, [this](const http::Request& req, http::Response& res) {
      DownRead(req, res, [&] { return downstream->GetFences(req.matches[1]); });
    });
    Get(site_prefix + wire::kColdchainRulesSuffix, [this](const http::Request& req, http::Response& res) {
      DownRead(req, res, [&] { return downstream->GetColdchainRules(req.matches[1]); });
    });
    Put(site_prefix + wire::kEscrowSuffix + "/(.+)", [this](const http::Request& req, http::Response& res) {
      DownWrite(req, res, [&](const Caller& c, const AuditEntry&) { return downstream->PutEscrowTarget(req.matches[1], req.matches[2], req.body, c.name); });
    });
    Put(std::string(wire::kCatalogPrefix) + "(.+)", [this](const http::Request& req, http::Response& res) {
      DownWrite(req, res, [&](const Caller& c, const AuditEntry&) { return downstream->PutCatalog(req.matches[1], req.body, c.name); });
    });
    Get(wire::kCatalogPath, [this](const http::Request& req, http::Response& res) {
      DownRead(req, res, [&] { return downstream->GetCatalog(); });
    });
    Get(site_prefix + wire::kDownstreamSuffix, [this](const http::Request& req, http::Response& res) {
      DownRead(req, res, [&] { return downstream->GetLane(req.matches[1]); });
    });
    // The site's pull: its certificate, as for batches; may wait (long poll) without a worker.
    GetAsync(site_prefix + wire::kDownCommandsSuffix, [this](const http::Request& req, std::function<void(http::Response)> answer) {
      const std::string site = req.matches[1];
      http::Response res;
      if (!SiteAllowed(req, res, site)) {
        if (res.status == 403) {
          if (auto cn = PeerSiteId(req.ssl)) AuditEvent({0, 0, "pull", *cn, req.path, 0, 0, 0, 403, "certificate does not match site"});
        }
        return answer(std::move(res));
      }
      const bool json = WantsJson(req);
      downstream->Pull(site, req.params, [answer = std::move(answer), json](DownAnswer a) {
        http::Response r;
        http::Request accept;
        if (json) accept.headers.emplace_back("Accept", kJson);
        SendDown(accept, r, std::move(a));
        answer(std::move(r));
      });
    });
  }

  // ---------- routing ----------
  using RouteFn = std::function<void(const http::Request&, http::Response&)>;
  // A route that may answer later (the downstream long poll): it gets the request and a
  // callback to answer with, once, from any thread. Runs on the worker pool.
  using AsyncFn = std::function<void(const http::Request&, std::function<void(http::Response)>)>;
  struct Route {
    std::string method;
    std::string name;  // the template, "/v1/sites/{site}/batches": the metrics' route label
    std::regex pattern;
    RouteFn fn;
    bool blocking;  // touches the store: runs on the worker pool, never on an I/O thread
    // A streaming route: true when it took the exchange (and answers through it), false when
    // the Response it filled is the answer (a refusal).
    AsyncFn async = nullptr;
    std::function<bool(const std::shared_ptr<http::Exchange>&, http::Response&)> stream_fn = nullptr;
  };
  std::vector<Route> routes;
  static std::string RouteName(std::string pattern) {
    const std::string site = kSite;
    for (size_t at = pattern.find(site); at != std::string::npos; at = pattern.find(site, at))
      pattern.replace(at, site.size(), "{site}");
    return pattern;
  }
  void Get(const std::string& pattern, RouteFn fn, bool blocking = true) {
    routes.push_back({"GET", RouteName(pattern), std::regex(pattern), std::move(fn), blocking, nullptr});
  }
  void Post(const std::string& pattern, RouteFn fn, bool blocking = true) {
    routes.push_back({"POST", RouteName(pattern), std::regex(pattern), std::move(fn), blocking, nullptr});
  }
  void GetStream(const std::string& pattern,
                 std::function<bool(const std::shared_ptr<http::Exchange>&, http::Response&)> fn) {
    routes.push_back({"GET", RouteName(pattern), std::regex(pattern), nullptr, true, nullptr, std::move(fn)});
  }
  void Put(const std::string& pattern, RouteFn fn) {
    routes.push_back({"PUT", RouteName(pattern), std::regex(pattern), std::move(fn), true});
  }
  void GetAsync(const std::string& pattern, AsyncFn fn) {
    routes.push_back({"GET", RouteName(pattern), std::regex(pattern), nullptr, true, std::move(fn)});
  }

  // Runs the route; false when a streaming route took the exchange (nothing to answer here).
  static bool RunRoute(const Route& route, const std::shared_ptr<http::Exchange>& ex, http::Response& res) {
    const http::Request& req = ex->request();
    try {
      if (route.stream_fn) return !route.stream_fn(ex, res);
      route.fn(req, res);
    } catch (const std::exception& e) {
      spdlog::error("{} {}: exception {}", req.method, req.path, e.what());
      res = http::Response{};
      SendError(res, 500, "internal error");
    } catch (...) {
      spdlog::error("{} {}: exception", req.method, req.path);
      res = http::Response{};
      SendError(res, 500, "internal error");
    }
    return true;
  }

  // The transport's view of the hub: PreRoute on the head, then the route table.
  struct Router : http::Handler {
    Impl& im;
    explicit Router(Impl& i) : im(i) {}
    std::optional<http::Response> OnHead(const http::Request& req) override {
      http::Response res;
      if (im.PreRoute(req, res)) return res;
      return std::nullopt;
    }
    void OnRequest(std::shared_ptr<http::Exchange> ex) override {
      const auto start = std::chrono::steady_clock::now();
      http::Request& req = ex->request();
      auto answer = [this, start, ex](const std::string& route, http::Response res) {
        im.metrics.Request(ex->request().method, route, res.status,
                           std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        ex->Respond(std::move(res));
      };
      for (const Route& route : im.routes) {
        // The method first: a string compare spares the regex of most routes.
        if (route.method != req.method) continue;
        std::smatch m;
        if (!std::regex_match(req.path, m, route.pattern)) continue;
        for (const auto& g : m) req.matches.push_back(g.str());
        if (!route.blocking) {
          http::Response res;
          if (RunRoute(route, ex, res)) answer(route.name, std::move(res));
          return;
        }
        const bool queued = im.workers->TrySubmit([this, ex, &route, answer, start] {
          if (route.async) {
            try {
              route.async(ex->request(), [answer, &route](http::Response res) { answer(route.name, std::move(res)); });
            } catch (const std::exception& e) {
              spdlog::error("{} {}: exception {}", ex->request().method, ex->request().path, e.what());
              http::Response res;
              SendError(res, 500, "internal error");
              answer(route.name, std::move(res));
            }
            return;
          }
          http::Response res;
          if (RunRoute(route, ex, res)) return answer(route.name, std::move(res));
          // A stream: its request is counted when it starts.
          im.metrics.Request(ex->request().method, route.name, 200,
                             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        });
        if (!queued) {
          ++im.worker_queue_full;
          http::Response res;
          res.set_header("Retry-After", "1");
          SendError(res, 503, "hub busy, retry later");
          answer(route.name, std::move(res));
        }
        return;
      }
      http::Response res;
      SendError(res, 404, "no such route: " + req.method + " " + req.path);
      answer("unmatched", std::move(res));
    }
  };
  std::unique_ptr<Router> router;

  void Register() {
    Get("/healthz", [](const http::Request&, http::Response& res) { res.set_content("ok\n", "text/plain"); }, false);
    // Readiness: the store answers a read, the same test as the systemd watchdog's (main.cc).
    // A load balancer or Kubernetes stops sending work to a replica whose database is gone
    // without restarting it (liveness stays /healthz). On a worker: it touches the store.
    Get("/readyz", [this](const http::Request&, http::Response& res) {
      if (store.ContiguousSeq("").ok()) return res.set_content("ready\n", "text/plain");
      res.status = 503;
      res.set_content("store does not answer\n", "text/plain");
    });
    // The OpenAPI description of these routes (hub/openapi.h): no token, no data, so that HQ
    // teams can generate a client before they hold a token; on the I/O thread.
    Get(wire::kOpenApiPath, [](const http::Request& req, http::Response& res) {
      res = ServeOpenApi(req.get_header_value("If-None-Match"));
    }, false);
    // Prometheus text format. No token names; site ids (which every site's certificate shows
    // anyway) label the per-site series, so it needs no token. It reads the sites from the
    // store, so it runs on a worker.
    Get("/metrics", [this](const http::Request&, http::Response& res) {
      // One writer of the format (common/prometheus.h); the refusal counters keep their own.
      prometheus::TextWriter w;
      w.Family("freshsync_hub_rate_limited_total", "counter", "Requests refused with 429 by the rate limits.");
      w.Sample("freshsync_hub_rate_limited_total", {{"scope", "token"}}, pull_limiter.refused_total());
      w.Sample("freshsync_hub_rate_limited_total", {{"scope", "site"}}, push_limiter.refused_total());
      WriteTransportMetrics(w);
      WriteStreamMetrics(w);
      auto sites = TimedStoreCall(metrics, "sites", [&] { return store.Sites(); });
      auto lanes = TimedStoreCall(metrics, "down_lanes", [&] { return downstream->log().Lanes(); });
      metrics.Write(w, sites.ok() ? &*sites : nullptr, clock.NowMs(), lanes.ok() ? &*lanes : nullptr);
      std::string body = w.Take();
      body += RefusalCounters::Process().Prometheus();
      res.set_content(body, "text/plain; version=0.0.4");
    });
    Post(std::string(wire::kSitesPrefix) + kSite + wire::kBatchesSuffix,
           [this](const http::Request& req, http::Response& res) { PostBatch(req, res); });
    Get(std::string(wire::kSitesPrefix) + kSite + wire::kDigestSuffix,
          [this](const http::Request& req, http::Response& res) { GetDigest(req, res); });
    Get(std::string(wire::kSitesPrefix) + kSite + wire::kStateDigestSuffix,
          [this](const http::Request& req, http::Response& res) { GetStateDigest(req, res); });
    Get(std::string(wire::kSitesPrefix) + kSite + wire::kRebuildSnapshotSuffix,
          [this](const http::Request& req, http::Response& res) { GetRebuildSnapshot(req, res); });
    Post(std::string(wire::kSitesPrefix) + kSite + wire::kRebuildStateSuffix,
           [this](const http::Request& req, http::Response& res) { PostRebuildState(req, res); });
    Get(wire::kChangesPath, [this](const http::Request& req, http::Response& res) { GetChanges(req, res); });
    Get(wire::kSitesPath, [this](const http::Request& req, http::Response& res) { GetSites(req, res); });
    // One handler per entity: stock, orders, vehicles, track, alerts, geofence.
    for (EntityRoute& route : EntityRoutes()) {
      const std::string pattern = std::string(wire::kSitesPrefix) + kSite + route.path;
      Get(pattern, [this, route = std::move(route)](const http::Request& req, http::Response& res) { ServeEntity(route, req, res); });
    }
    Get(wire::kAuditPath, [this](const http::Request& req, http::Response& res) { GetAudit(req, res); });
    Get(wire::kWebhookDeadlettersPath, [this](const http::Request& req, http::Response& res) { GetDeadLetters(req, res); });
    Post(std::string(wire::kWebhookDeadlettersPath) + wire::kReplaySuffix,
         [this](const http::Request& req, http::Response& res) { PostReplayAllDeadLetters(req, res); });
    Post(std::string(wire::kWebhookDeadlettersPath) + "/([0-9]+)" + wire::kReplaySuffix,
         [this](const http::Request& req, http::Response& res) { PostReplayDeadLetter(req, res); });
    routes.back().name = std::string(wire::kWebhookDeadlettersPath) + "/{id}" + wire::kReplaySuffix;
    // The web console's static files (hub/console.h): no token, no store, so on the I/O thread.
    // Its data calls go to the routes above with the bearer token.
    Get(std::string(kConsolePath) + "(/.*)?", [this](const http::Request& req, http::Response& res) {
      res = ServeConsole(req.path, req.get_header_value("If-None-Match"), config.console_tiles_url);
    }, false);
    routes.back().name = "/console/";  // the metrics' label: one series for all its files
    // Live streams (hub/stream.h): the feed for HQ, one order's status for its customer.
    GetStream(wire::kStreamPath, [this](const std::shared_ptr<http::Exchange>& ex, http::Response& res) { return OpenStream(ex, res); });
    GetStream(std::string(wire::kOrdersPrefix) + "([^/]+)" + wire::kOrderStreamSuffix,
              [this](const std::shared_ptr<http::Exchange>& ex, http::Response& res) { return OpenOrderStream(ex, res); });
    Post(std::string(wire::kOrdersPrefix) + "([^/]+)" + wire::kOrderStreamTokenSuffix,
         [this](const http::Request& req, http::Response& res) { PostStreamToken(req, res); });
    RegisterDownstream();
  }
};

HubTestHooks HubTestHooks::FromEnvironment() {
  HubTestHooks h;
  if (const char* f = std::getenv("FRESHSYNC_HUB_SHED_FILE_FOR_TEST")) h.shed_file = f;
  return h;
}

HubServer::HubServer(const HubConfig& config, HubStore& store, Clock& clock, HubTestHooks hooks)
    : impl_(std::make_unique<Impl>(config, store, clock, std::move(hooks))) {}
HubServer::~HubServer() = default;

Status HubServer::Start() {
  auto& im = *impl_;
  if (!im.config.audit_log.empty()) {
    im.audit_file = std::fopen(im.config.audit_log.c_str(), "a");
    if (im.audit_file == nullptr) return Status::InvalidArgument("audit_log: cannot open " + im.config.audit_log);
  }
  auto hp = ParseHostPort(im.config.listen, "listen");
  if (!hp.ok()) return hp.status();
  const HubConfig& c = im.config;
  http::Limits limits;
  limits.max_header_bytes = static_cast<size_t>(c.max_header_bytes);
  limits.max_header_count = c.max_header_count;
  limits.max_body_bytes = static_cast<uint64_t>(c.max_body_bytes);
  limits.handshake_timeout = std::chrono::milliseconds(c.handshake_timeout_ms);
  limits.head_timeout = std::chrono::milliseconds(c.head_timeout_ms);
  limits.body_timeout = std::chrono::milliseconds(c.body_timeout_ms);
  limits.idle_timeout = std::chrono::milliseconds(c.idle_timeout_ms);
  limits.write_timeout = std::chrono::milliseconds(c.write_timeout_ms);
  limits.max_body_bytes_in_flight = static_cast<uint64_t>(std::max(2, c.threads)) * static_cast<uint64_t>(c.max_body_bytes);
  limits.max_connections = c.max_connections;
  limits.max_connections_per_address = c.max_connections_per_address;
  // I/O threads only parse, encrypt and copy; the store's calls run on the workers.
  limits.io_threads = std::max(1, std::min(c.threads, 4));
  limits.handshake_nice = c.handshake_nice;
  // A worker per read connection (main.cc opens max(2, threads)); up to 64 requests per
  // worker wait, beyond that 503 + Retry-After.
  im.workers = std::make_unique<http::WorkerPool>(c.threads, static_cast<size_t>(c.threads) * 64);
  if (!c.customer_stream_key_file.empty()) {
    std::ifstream in(c.customer_stream_key_file, std::ios::binary);
    std::string key((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
    if (!in.good() && !in.eof()) return Status::InvalidArgument("customer_stream.key_file: cannot read " + c.customer_stream_key_file);
    if (key.size() < kMinStreamKeyBytes)
      return Status::InvalidArgument("customer_stream.key_file: " + c.customer_stream_key_file + " must hold at least " +
                                     std::to_string(kMinStreamKeyBytes) + " bytes (e.g. openssl rand -hex 32)");
    im.customer_key = std::move(key);
  }
  StreamOptions so;
  so.heartbeat_ms = c.stream_heartbeat_ms;
  so.buffer_bytes = static_cast<size_t>(c.stream_buffer_bytes);
  so.poll_ms = c.stream_poll_ms;
  so.stall_ms = c.stream_stall_ms;
  so.max_clients = static_cast<size_t>(c.stream_max_clients);
  im.stream = std::make_unique<StreamHub>(im.store, so);
  im.stream->Start();
  std::optional<Sealer> sealer;
  if (!im.config.privacy_key_file.empty()) {
    auto k = Sealer::LoadKeyFile(Sealer::ResolveKeyPath(im.config.privacy_key_file, std::getenv("CREDENTIALS_DIRECTORY")));
    if (!k.ok()) return k.status();
    sealer = std::move(*k);
  }
  im.downstream = std::make_unique<Downstream>(im.store, im.clock, im.metrics.downstream, c.downstream_retention_h,
                                               std::move(sealer), [&im](std::function<void()> task) {
                                                 return im.workers->TrySubmit(std::move(task));
                                               });
  im.downstream->Start();
  im.router = std::make_unique<Impl::Router>(im);
  im.Register();
  im.server = std::make_unique<http::Server>(limits, *im.router, [&im](SSL_CTX& ctx) { return im.SetupTls(ctx); });
  Status s = im.server->Start(hp->first, hp->second);
  if (!s.ok() && s.code() == StatusCode::kInvalidArgument)
    return Status::InvalidArgument(im.tls_error.empty() ? "tls: setup failed" : im.tls_error);
  return s;
}

int HubServer::port() const { return impl_->server ? impl_->server->port() : 0; }

void HubServer::Run() {
  impl_->server->Run();
  // The listener is closed and in-flight requests have had their grace; let queued work end.
  impl_->workers->Stop();
}

void HubServer::ReloadTokens(const std::vector<HubToken>& tokens) {
  auto fresh = std::make_shared<const TokenAuth>(tokens);
  std::lock_guard<std::mutex> lock(impl_->tokens_mu);
  impl_->tokens = std::move(fresh);
}

RelayMetrics& HubServer::relay_metrics() { return impl_->metrics.relay; }
NotifyMetrics& HubServer::notify_metrics() { return impl_->metrics.notify; }

std::vector<HubServer::RouteInfo> HubServer::RoutesForTest() const {
  std::vector<RouteInfo> out;
  for (const auto& r : impl_->routes) out.push_back({r.method, r.name});
  return out;
}

void HubServer::Stop() {
  // Streams first: the transport's drain waits for requests in flight, which a stream is.
  if (impl_->stream) impl_->stream->Stop();
  // Parked pulls first: they are answered (empty batches) before the transport waits for the
  // requests in flight.
  if (impl_->downstream) impl_->downstream->Stop();
  if (impl_->server) impl_->server->Stop();
}

}  // namespace freshsync::hub
