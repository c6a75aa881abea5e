// StreamHub: the live server-sent-event stream of the change feed (GET /v1/stream, and the
// per-order customer stream). docs/architecture-hub.md, "Live stream".
//
// No thread per client. One hub thread reads the feed (HubStore::Changes, the source of truth:
// on every backend it never passes a change that commits later) after the highest cursor delivered, keeps the last
// kCacheEntries events serialized once, and appends each to the buffers of the clients whose
// filter takes it. Each client has one write in flight at a time (http::Exchange::Write, the
// next from the previous write's completion on the I/O thread). Memory per client is bounded by
// `buffer_bytes` (queued + in flight):
//   - a client is only given what fits: a live client (it had everything up to the feed's
//     head) that a burst would overflow falls behind at the last event that fit;
//   - a client behind (an old cursor, or a burst) is filled from the cache, or from the store
//     in pages, only while its buffer has room, so a backlog never sits in memory; its cursor
//     moves over entries its filter drops, so a filtered client that is behind costs nothing;
//   - a client that stops reading (its buffer at least half full and its write in flight for
//     `stall_ms`) is cut off: its connection is closed, and it resumes by Last-Event-ID.
// The thread wakes at once on a local commit (Wake, from the batch route) and every `poll_ms`
// otherwise, which is how commits made by other replicas sharing a PostgreSQL store arrive.
// A client that got nothing for `heartbeat_ms` gets a ": hb" comment.
//
// Thread-safety: every method from any thread. Stop() ends every stream and joins the thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "hub/http/http.h"
#include "hub/store.h"

namespace freshsync::hub {

struct StreamOptions {
  int64_t heartbeat_ms = 15000;
  size_t buffer_bytes = 1 << 20;
  int64_t poll_ms = 100;
  int64_t stall_ms = 10000;
  size_t max_clients = 5000;
  int page = 1000;  // feed entries per store read
};

// What a client takes: every change, or one site's, one entity's; or one order's status only.
struct StreamFilter {
  std::string site;      // "" = every site
  std::string entity;    // lower case, "" = every entity
  std::string order_id;  // set: the per-order customer stream (ORDER records of this key only,
                         // and only their status: docs/api.md)
};

struct StreamStats {
  std::atomic<int64_t> clients{0};
  std::atomic<uint64_t> events_sent{0};     // change events queued to clients
  std::atomic<uint64_t> cut_off{0};         // clients closed because they stopped reading
  std::atomic<uint64_t> heartbeats{0};
};

class StreamHub {
 public:
  StreamHub(HubStore& store, StreamOptions options);
  ~StreamHub();  // Stop()
  StreamHub(const StreamHub&) = delete;
  StreamHub& operator=(const StreamHub&) = delete;

  void Start();
  void Stop();
  // Takes the exchange (already authorized and parsed): answers 503 when max_clients stream
  // already, else starts the SSE answer and streams changes with cursor > after.
  void Add(std::shared_ptr<http::Exchange> exchange, StreamFilter filter, uint64_t after);
  // A local commit: read the feed now.
  void Wake();
  const StreamStats& stats() const { return stats_; }

  // One SSE event of a feed entry (what a client of GET /v1/stream receives), and the order
  // stream's status event; exposed for tests.
  static std::string ChangeEvent(const FeedEntry& entry);
  static std::string OrderStatusEvent(const FeedEntry& entry);

 private:
  struct Event;
  struct Client;
  void Loop();
  void Round();
  // With mu_ held: queue what the client may take from `events` (cursor order), up to its
  // buffer; false when it had no room for all of them (it is then behind).
  template <typename Events>
  bool Offer(Client& c, const Events& events);
  void Pump(const std::shared_ptr<Client>& c);  // mu_ held: start a write if none is in flight
  void CutOff(Client& c);                       // mu_ held
  static std::shared_ptr<const Event> MakeEvent(FeedEntry entry);

  HubStore& store_;
  const StreamOptions options_;
  StreamStats stats_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool wake_ = false;
  bool stopping_ = false;
  std::vector<std::shared_ptr<Client>> clients_;
  // The events after cache_after_, up to head_ (the highest cursor read), oldest first.
  std::deque<std::shared_ptr<const Event>> cache_;
  uint64_t cache_after_ = 0;
  uint64_t head_ = 0;
  bool head_known_ = false;  // head_ is only meaningful once a client reached the feed's end
  std::thread thread_;
};

}  // namespace freshsync::hub
