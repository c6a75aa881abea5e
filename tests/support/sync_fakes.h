// Fakes for the sync agent's seams: a settable clock and an in-memory hub behind the
// Transport interface that speaks docs/sync-protocol.md (batches, urgent, 409, digests) and
// injects faults on demand. Test-only; header-only so that freshsync_test_support does not
// depend on the sync module.
#pragma once

#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <mutex>
#include <string>
#include <vector>

#include "cloud-sync/transport.h"
#include "common/clock.h"
#include "freshsync.pb.h"
#include "wire/digest.h"
#include "wire/routes.h"

namespace freshsync::testing {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t now_ms = 1'700'000'000'000) : now_(now_ms), mono_(1'000'000) {}
  int64_t NowMs() override { return now_.load(); }
  int64_t MonotonicMs() override { return mono_.load(); }
  void Advance(int64_t ms) {
    now_ += ms;
    mono_ += ms;
  }

 private:
  std::atomic<int64_t> now_;
  std::atomic<int64_t> mono_;
};

// An in-memory hub. Faults are scripted: push a canned answer or a transport error into
// `script`, and the next request gets it instead of the protocol answer.
class FakeHubTransport final : public sync::Transport {
 public:
  struct Held {
    uint64_t seq;
    int32_t entity;
    uint64_t version;
    std::string key;
    int applied;  // times applied: must stay 1
  };
  struct Scripted {
    Result<sync::HttpResponse> answer = sync::HttpResponse{};
    bool apply_anyway = false;  // the hub commits, then the answer is lost (reset after commit)
  };

  Result<sync::HttpResponse> Send(const sync::HttpRequest& req) override {
    std::lock_guard<std::mutex> lock(mu);
    requests.push_back({req.method, req.url, req.body.size(), 0, false});
    if (interrupted) return Status::Unavailable("interrupted: fake");
    if (!script.empty()) {
      Scripted s = script.front();
      script.pop_front();
      if (s.apply_anyway && req.method == "POST") (void)Apply(req);
      return s.answer;
    }
    if (handler) {
      auto r = handler(req);
      if (r) return *r;
    }
    if (req.url.find("/state-digest") != std::string::npos) return StateDigest();
    if (req.url.find("/rebuild-state") != std::string::npos) {
      ++rebuilds;
      if (rebuild_restores) stock = rebuild_source;
      return StateDigest();
    }
    if (req.method == "GET") return Digest(req);
    return Apply(req);
  }
  void Interrupt() override {
    std::lock_guard<std::mutex> lock(mu);
    interrupted = true;
  }

  static sync::HttpResponse Answer(int status, std::string body = "", int retry_after = -1) {
    sync::HttpResponse r;
    r.status = status;
    r.body = std::move(body);
    if (retry_after >= 0) r.headers["retry-after"] = std::to_string(retry_after);
    return r;
  }

  uint64_t Contiguous() const {
    uint64_t c = 0;
    while (held.count(c + 1)) ++c;
    return c;
  }
  size_t RequestCount() {
    std::lock_guard<std::mutex> lock(mu);
    return requests.size();
  }

  struct Seen {
    std::string method;
    std::string url;
    size_t body_bytes;
    size_t records;
    bool urgent;
    uint32_t format = 0;  // Batch.format of a batch request
  };

  std::mutex mu;
  std::map<uint64_t, Held> held;
  std::deque<Scripted> script;
  std::vector<Seen> requests;
  std::vector<std::vector<uint64_t>> batches;  // seqs of each accepted batch, in order
  std::vector<bool> batch_urgent;
  // Returns an answer to override the protocol, or nullopt to let it run.
  std::function<std::optional<Result<sync::HttpResponse>>(const sync::HttpRequest&)> handler;
  bool interrupted = false;
  std::string site = "site-a";
  // Announced in every BatchAck (0: an older hub). With 2, format-2 batches are accepted
  // (implied seqs filled in; the fake keeps only seq, entity, version and key).
  uint32_t max_format = 0;

  // Materialized stock of the site (sku -> on_hand, reserved, version), answered by
  // GET .../state-digest. POST .../rebuild-state replaces it with `rebuild_source` when
  // `rebuild_restores` (a hub whose records are right), and leaves it alone otherwise.
  struct StockState {
    int64_t on_hand = 0;
    int64_t reserved = 0;
    uint64_t version = 0;
  };
  std::map<std::string, StockState> stock;
  std::map<std::string, StockState> rebuild_source;
  bool rebuild_restores = true;
  int rebuilds = 0;

 private:
  Result<sync::HttpResponse> Apply(const sync::HttpRequest& req) {
    const unsigned long long size = ZSTD_getFrameContentSize(req.body.data(), req.body.size());
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > (256u << 20)) return Answer(400);
    std::string raw(size, '\0');
    if (ZSTD_isError(ZSTD_decompress(raw.data(), raw.size(), req.body.data(), req.body.size()))) return Answer(400);
    v1::Batch batch;
    if (!batch.ParseFromString(raw) || batch.site() != site) return Answer(400);
    requests.back().format = batch.format();
    if (batch.format() > std::max(max_format, 1u)) return Answer(400);  // as a hub that does not know it
    if (batch.format() >= 2) {
      uint64_t prev = 0;
      for (auto& r : *batch.mutable_records()) {
        if (r.seq() == 0 && prev != 0) r.set_seq(prev + 1);
        prev = r.seq();
      }
    }
    requests.back().records = static_cast<size_t>(batch.records_size());
    requests.back().urgent = batch.urgent();
    v1::BatchAck ack;
    if (max_format != 0) ack.set_max_format(max_format);
    const uint64_t c = Contiguous();
    if (!batch.urgent() && batch.records_size() > 0 && batch.records(0).seq() > c + 1) {
      ack.set_contiguous_seq(c);
      ack.set_expected_seq(c + 1);
      return Answer(409, ack.SerializeAsString());
    }
    std::vector<uint64_t> seqs;
    for (const auto& r : batch.records()) {
      seqs.push_back(r.seq());
      auto it = held.find(r.seq());
      if (it != held.end()) {
        ack.set_duplicates(ack.duplicates() + 1);
        continue;
      }
      held[r.seq()] = Held{r.seq(), static_cast<int32_t>(r.entity()), r.version(), r.key(), 1};
      ack.set_applied(ack.applied() + 1);
    }
    batches.push_back(seqs);
    batch_urgent.push_back(batch.urgent());
    ack.set_contiguous_seq(Contiguous());
    ack.set_expected_seq(ack.contiguous_seq() + 1);
    return Answer(200, ack.SerializeAsString());
  }

  Result<sync::HttpResponse> StateDigest() {
    digest::StateDigester d;
    for (const auto& [sku, row] : stock) d.AddStock(sku, row.on_hand, row.reserved, row.version);
    v1::StateDigestReply reply;
    reply.set_skus(d.count());
    reply.set_digest(d.FinishAsString());
    reply.set_contiguous_seq(Contiguous());
    return Answer(200, reply.SerializeAsString());
  }

  Result<sync::HttpResponse> Digest(const sync::HttpRequest& req) {
    auto param = [&](const std::string& name) -> uint64_t {
      const auto p = req.url.find(name + "=");
      if (p == std::string::npos) return 0;
      return std::stoull(req.url.substr(p + name.size() + 1));
    };
    const uint64_t from = param("from"), to = param("to");
    const auto n = static_cast<uint32_t>(param("buckets"));
    digest::BucketDigester d(from, to, n);
    for (auto it = held.lower_bound(from); it != held.end() && it->first <= to; ++it) {
      d.Add(it->first, it->second.entity, it->second.version, it->second.key);
    }
    v1::DigestReply reply;
    reply.set_contiguous_seq(Contiguous());
    for (const auto& b : d.Finish()) {
      auto* r = reply.add_ranges();
      r->set_from_seq(b.from_seq);
      r->set_to_seq(b.to_seq);
      r->set_count(b.count);
      r->set_digest(std::string(b.digest.begin(), b.digest.end()));
    }
    return Answer(200, reply.SerializeAsString());
  }
};

// An in-memory hub's downstream side (docs/sync-protocol.md, "The pull"): one site's log of
// commands, served by GET .../downstream/commands?after=A&wait_ms=W&kinds=K as a protobuf
// DownBatch (only the kinds asked for, through_seq covering the skipped ones, at most
// `max_batch` commands). Every `after` it sees is recorded as the site's acknowledgement.
// No long poll: an empty batch comes back at once. Faults: push into `script`.
class FakeDownstreamHub final : public sync::Transport {
 public:
  Result<sync::HttpResponse> Send(const sync::HttpRequest& req) override {
    std::lock_guard<std::mutex> lock(mu);
    urls.push_back(req.url);
    if (interrupted) return Status::Unavailable("interrupted: fake");
    if (!script.empty()) {
      auto r = script.front();
      script.pop_front();
      return r;
    }
    if (req.method != "GET" || req.url.find("/downstream/commands?") == std::string::npos) return FakeHubTransport::Answer(404);
    const uint64_t after = std::stoull(Param(req.url, "after"));
    acks.push_back(after);
    std::string kinds = Param(req.url, "kinds");
    if (kinds.empty()) kinds = wire::kDownDefaultKinds;
    v1::DownBatch batch;
    batch.set_site(site);
    uint64_t through = after;
    for (const auto& c : log) {
      if (c.down_seq() <= after) continue;
      if (batch.commands_size() >= max_batch) break;
      through = c.down_seq();
      if (KindAsked(kinds, c.kind())) *batch.add_commands() = c;
    }
    batch.set_through_seq(through);
    batch.set_last_seq(log.empty() ? 0 : log.back().down_seq());
    return FakeHubTransport::Answer(200, batch.SerializeAsString());
  }
  void Interrupt() override {
    std::lock_guard<std::mutex> lock(mu);
    interrupted = true;
  }
  // Appends a command with the next down_seq; returns it.
  uint64_t Append(v1::DownCommand c) {
    std::lock_guard<std::mutex> lock(mu);
    c.set_down_seq(log.empty() ? 1 : log.back().down_seq() + 1);
    log.push_back(c);
    return c.down_seq();
  }
  static std::string Param(const std::string& url, const std::string& name) {
    const auto q = url.find('?');
    if (q == std::string::npos) return "";
    const auto p = url.find(name + "=", q);
    if (p == std::string::npos) return "";
    const auto start = p + name.size() + 1;
    return url.substr(start, url.find('&', start) - start);
  }

  std::mutex mu;
  std::vector<v1::DownCommand> log;
  std::deque<Result<sync::HttpResponse>> script;
  std::vector<std::string> urls;
  std::vector<uint64_t> acks;
  std::string site = "site-a";
  int max_batch = 500;
  bool interrupted = false;

 private:
  static bool KindAsked(const std::string& kinds, int kind) {
    if (kind <= 0 || kind >= wire::kDownKindCount) return false;
    const std::string want = std::string(",") + kinds + ",";
    return want.find(std::string(",") + wire::kDownKindNames[kind] + ",") != std::string::npos;
  }
};

}  // namespace freshsync::testing
