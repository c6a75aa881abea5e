#include "hub/stream.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include <nlohmann/json.hpp>

#include "hub/codec.h"

namespace freshsync::hub {
namespace {

// Events kept for clients that are a little behind (a reconnect, a client that just drained
// its buffer): read from memory instead of the store. About 1 KB each.
constexpr size_t kCacheEntries = 4096;
// Pages the live read takes per round before it lets the clients' writes run.
constexpr int kLivePagesPerRound = 8;

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string Lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

}  // namespace

struct StreamHub::Event {
  uint64_t cursor = 0;
  std::string site;
  std::string entity;  // lower case
  std::string key;
  std::string change;  // the SSE event of GET /v1/stream
  std::string status;  // ORDER records: the customer stream's event; "" otherwise
};

struct StreamHub::Client {
  std::shared_ptr<http::Exchange> ex;
  StreamFilter filter;
  uint64_t cursor = 0;      // every entry up to here was offered (queued, or dropped by the filter)
  std::string pending;      // queued, not yet handed to the transport
  size_t inflight = 0;      // bytes of the write in flight
  bool started = false;     // the answer's head is sent
  bool writing = false;
  int64_t write_started_ms = 0;
  bool dead = false;        // gone: removed at the next round
  bool cut = false;
  int64_t last_send_ms = 0;

  bool Takes(const Event& e) const {
    if (!filter.order_id.empty()) return !e.status.empty() && e.key == filter.order_id;
    if (!filter.site.empty() && e.site != filter.site) return false;
    if (!filter.entity.empty() && e.entity != filter.entity) return false;
    return true;
  }
  size_t held() const { return pending.size() + inflight; }
};

std::string StreamHub::ChangeEvent(const FeedEntry& entry) {
  return "id: " + std::to_string(entry.cursor) + "\nevent: change\ndata: " +
         ChangeToJson(entry.cursor, entry.site, entry.record).dump() + "\n\n";
}

std::string StreamHub::OrderStatusEvent(const FeedEntry& entry) {
  const auto& r = entry.record;
  // Status only: never the order's lines or its sealed customer data.
  nlohmann::json j = {{"order_id", r.key()},        {"site", entry.site}, {"status", r.order().status()},
                      {"version", r.version()},     {"ts", r.ts_ms()}};
  if (!r.order().reason().empty()) j["reason"] = r.order().reason();
  return "id: " + std::to_string(entry.cursor) + "\nevent: status\ndata: " + j.dump() + "\n\n";
}

std::shared_ptr<const StreamHub::Event> StreamHub::MakeEvent(FeedEntry entry) {
  auto e = std::make_shared<Event>();
  e->cursor = entry.cursor;
  e->site = entry.site;
  e->entity = Lower(EntityName(entry.record.entity()));
  e->key = entry.record.key();
  e->change = ChangeEvent(entry);
  if (entry.record.entity() == v1::ORDER && entry.record.has_order()) e->status = OrderStatusEvent(entry);
  return e;
}

StreamHub::StreamHub(HubStore& store, StreamOptions options) : store_(store), options_(options) {}

StreamHub::~StreamHub() { Stop(); }

void StreamHub::Start() { thread_ = std::thread([this] { Loop(); }); }

void StreamHub::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
    for (auto& c : clients_) {
      if (c->dead) continue;
      c->dead = true;
      --stats_.clients;
      // A write in flight cannot be followed by the last chunk: close instead.
      if (c->writing || !c->started) c->ex->Abort();
      else c->ex->Finish();
    }
    clients_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StreamHub::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;
  }
  cv_.notify_one();
}

void StreamHub::Add(std::shared_ptr<http::Exchange> exchange, StreamFilter filter, uint64_t after) {
  std::unique_lock<std::mutex> lock(mu_);
  if (stopping_ || clients_.size() >= options_.max_clients) {
    lock.unlock();
    http::Response res;
    res.status = 503;
    res.set_header("Retry-After", "5");
    res.set_content("{\"error\":\"stream clients at stream.max_clients, retry later\"}", "application/json");
    exchange->Respond(std::move(res));
    return;
  }
  auto c = std::make_shared<Client>();
  c->ex = std::move(exchange);
  c->filter = std::move(filter);
  c->cursor = after;
  // EventSource reconnects after `retry` ms; the first bytes also get the stream past proxies
  // that wait for a body.
  c->pending = "retry: 1000\n\n";
  c->last_send_ms = SteadyMs();
  clients_.push_back(c);
  ++stats_.clients;
  http::Response head;
  head.status = 200;
  head.set_header("Content-Type", "text/event-stream");
  head.set_header("Cache-Control", "no-store");
  head.set_header("X-Accel-Buffering", "no");  // a reverse proxy must not buffer the stream
  c->ex->StartStream(std::move(head), [this, c](bool ok) {
    std::lock_guard<std::mutex> lock(mu_);
    if (c->dead) return;
    if (!ok) {
      c->dead = true;
      --stats_.clients;
      return;
    }
    c->started = true;
    Pump(c);
  });
  wake_ = true;
  lock.unlock();
  cv_.notify_one();
}

void StreamHub::Pump(const std::shared_ptr<Client>& c) {
  if (c->dead || !c->started || c->writing) return;
  if (c->cut) {
    c->dead = true;
    --stats_.clients;
    c->ex->Finish();
    return;
  }
  if (c->pending.empty()) return;
  std::string chunk;
  chunk.swap(c->pending);
  c->inflight = chunk.size();
  c->writing = true;
  c->last_send_ms = c->write_started_ms = SteadyMs();
  c->ex->Write(std::move(chunk), [this, c](bool ok) {
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      c->writing = false;
      c->inflight = 0;
      if (c->dead) return;
      if (!ok) {
        c->dead = true;
        --stats_.clients;
        return;
      }
      Pump(c);
      // A client behind is refilled as soon as its buffer has room again.
      wake = !c->dead && (!head_known_ || c->cursor < head_) && c->held() < options_.buffer_bytes / 2;
      if (wake) wake_ = true;
    }
    if (wake) cv_.notify_one();
  });
}

void StreamHub::CutOff(Client& c) {
  if (c.cut || c.dead) return;
  c.cut = true;
  ++stats_.cut_off;
  c.pending.clear();
  c.pending.shrink_to_fit();
  if (c.writing || !c.started) {
    // Its write is stuck on a client that does not read: close the connection, which ends the
    // write (its completion marks the client dead).
    c.dead = true;
    --stats_.clients;
    c.ex->Abort();
  }
}

template <typename Events>
bool StreamHub::Offer(Client& c, const Events& events) {
  // Events are in cursor order: start after the client's cursor.
  auto it = std::upper_bound(events.begin(), events.end(), c.cursor,
                             [](uint64_t cursor, const std::shared_ptr<const Event>& e) { return cursor < e->cursor; });
  for (; it != events.end(); ++it) {
    const Event& e = **it;
    if (c.Takes(e)) {
      const std::string& text = c.filter.order_id.empty() ? e.change : e.status;
      if (c.held() + text.size() > options_.buffer_bytes) return false;
      c.pending += text;
      ++stats_.events_sent;
    }
    c.cursor = e.cursor;
  }
  return true;
}

void StreamHub::Loop() {
  const int64_t wait_ms = std::max<int64_t>(1, std::min(options_.poll_ms, options_.heartbeat_ms / 2));
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [this] { return wake_ || stopping_; });
      if (stopping_) return;
      wake_ = false;
    }
    Round();
  }
}

void StreamHub::Round() {
  std::vector<std::shared_ptr<Client>> behind;
  bool any_live = false;
  uint64_t head = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    clients_.erase(std::remove_if(clients_.begin(), clients_.end(), [](const auto& c) { return c->dead; }), clients_.end());
    for (auto& c : clients_) {
      if (c->cut) continue;
      if (head_known_ && c->cursor >= head_) any_live = true;
      else behind.push_back(c);
    }
    head = head_;
  }

  // 1. The live read: everything committed after the head, to every live client.
  if (any_live) {
    for (int page = 0; page < kLivePagesPerRound; ++page) {
      auto got = store_.Changes(head, options_.page);
      if (!got.ok()) {
        spdlog::warn("stream: feed read after {}: {}", head, got.status().ToString());
        break;
      }
      if (got->empty()) break;
      std::vector<std::shared_ptr<const Event>> events;
      events.reserve(got->size());
      for (auto& entry : *got) events.push_back(MakeEvent(std::move(entry)));
      const size_t n = events.size();
      std::lock_guard<std::mutex> lock(mu_);
      if (head_ != head) break;  // moved by a jump (below) meanwhile: next round
      for (auto& e : events) cache_.push_back(e);
      while (cache_.size() > kCacheEntries) {
        cache_after_ = cache_.front()->cursor;
        cache_.pop_front();
      }
      for (auto& c : clients_) {
        if (c->dead || c->cut || c->cursor < head) continue;
        Offer(*c, events);  // what does not fit, it reads later from the cache or the store
        Pump(c);
      }
      head = head_ = events.back()->cursor;
      if (n < static_cast<size_t>(options_.page)) break;
    }
  }

  // 2. Clients behind: from the cache when it reaches back far enough, else a page from the
  // store; only while their buffer has room.
  for (auto& c : behind) {
    uint64_t from = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (c->dead || c->cut || c->held() >= options_.buffer_bytes / 2) continue;
      if (head_known_ && c->cursor >= cache_after_ && c->cursor < head_) {
        if (Offer(*c, cache_)) c->cursor = std::max(c->cursor, head_);
        Pump(c);
        continue;
      }
      if (head_known_ && c->cursor >= head_) continue;  // live now
      from = c->cursor;
    }
    auto got = store_.Changes(from, options_.page);
    if (!got.ok()) {
      spdlog::warn("stream: feed read after {}: {}", from, got.status().ToString());
      continue;
    }
    const bool at_end = got->size() < static_cast<size_t>(options_.page);
    std::vector<std::shared_ptr<const Event>> events;
    events.reserve(got->size());
    for (auto& entry : *got) events.push_back(MakeEvent(std::move(entry)));
    std::lock_guard<std::mutex> lock(mu_);
    if (c->dead || c->cut || c->cursor != from) continue;
    const bool all = Offer(*c, events);
    Pump(c);
    if (all && at_end) {
      // It has the whole feed as of this read. With no live client the head can jump to it
      // (nobody is between the old head and here); otherwise the live read covers the rest.
      bool others_live = false;
      for (auto& o : clients_)
        if (o != c && !o->dead && !o->cut && head_known_ && o->cursor >= head_) others_live = true;
      if (!head_known_ || (!others_live && c->cursor > head_)) {
        head_known_ = true;
        head_ = c->cursor;
        cache_.clear();
        cache_after_ = head_;
      }
      wake_ = true;  // it may be live now: the next round reads on for it
    }
  }

  // 3. Clients that stopped reading are cut off; heartbeats for clients that got nothing for
  // heartbeat_ms.
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = SteadyMs();
  for (auto& c : clients_) {
    if (!c->dead && !c->cut && c->writing && now - c->write_started_ms >= options_.stall_ms &&
        c->held() >= options_.buffer_bytes / 2)
      CutOff(*c);
    if (c->dead || c->cut || !c->started || c->writing || !c->pending.empty()) continue;
    if (now - c->last_send_ms < options_.heartbeat_ms) continue;
    c->pending = ": hb\n\n";
    ++stats_.heartbeats;
    Pump(c);
  }
}

}  // namespace freshsync::hub
