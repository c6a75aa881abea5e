// WebhookNotifier: one [[notify.webhook]], delivered (docs/operations.md "Webhooks",
// docs/formats.md "Webhook deliveries"). hubd starts one per webhook on every replica.
//
// Source. The change feed (HubStore::Changes) from the webhook's stored cursor, named
// "notify.{name}" (HubStore::RelayCursor), and the sites' health (HubStore::Sites, the
// downstream lanes) every poll_ms. Only the events the webhook lists are sent (hub/notify/
// webhook.h maps feed items to events).
//
// One replica delivers: the notifier works only while it holds the store's lease
// "notify.{name}" (hub/feed_lease.h); a replica that loses it stops, and the next holder goes on
// from the stored cursor.
//
// Order and retries. Deliveries of one webhook go one at a time, in feed order. A delivery that
// fails (non-2xx, timeout, reset) is retried after a capped, jittered exponential backoff
// (cloud-sync/backoff.h; Retry-After is a floor) until it has failed max_attempts times or
// has been retried for max_age_s; then it goes to the dead-letter list
// (hub/notify/dead_letters.h) with its last error, and the webhook moves on: one bad event
// never stalls the rest. The cursor is stored after each event is delivered or dead-lettered
// (commit, then move on), so a restart or a takeover repeats at most the one delivery in
// flight, with the same Idempotency-Key and body.
//
// Derived events. site.offline once per silence of a site (the marker "notify.{name}.offline.
// {site}" keeps the last_push_ms it was sent for); site.backlog once per oldest waiting HQ
// command ("notify.{name}.backlog.{site}" keeps its issued_ms).
//
// Replays. Dead letters an admin marked for a replay are sent first, with the row's own key
// and body; delivered ones leave the list, failed ones go back to it.
//
// Thread-safety: Start() and Stop() from one thread; the notifier runs on its own thread and
// reports through NotifyMetrics. Borrows the store, clock, poster and metrics.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/config.h"
#include "hub/hub_metrics.h"
#include "hub/notify/poster.h"
#include "hub/store.h"

namespace freshsync::hub {

struct NotifierOptions {
  HubWebhook hook;
  int64_t offline_after_s = 900;
  int64_t backlog_age_s = 3600;
  int64_t retry_min_ms = 1000;
  int64_t retry_max_ms = 300000;
  int64_t poll_ms = 500;
  int page = 200;                 // feed items read per round
  int64_t lease_ttl_ms = 0;       // 0: max(30 s, 4 x timeout_ms): an attempt must not outlive it
  std::string holder;             // this replica in the lease; "" = hostname:pid
};

// NotifierOptions for each [[notify.webhook]] of the config.
std::vector<NotifierOptions> NotifierOptionsFrom(const HubConfig& config);

class WebhookNotifier {
 public:
  WebhookNotifier(NotifierOptions options, HubStore& store, Clock& clock, WebhookPoster& poster, NotifyMetrics& metrics);
  ~WebhookNotifier();  // Stop()
  WebhookNotifier(const WebhookNotifier&) = delete;
  WebhookNotifier& operator=(const WebhookNotifier&) = delete;

  void Start();
  // Stops the thread (an attempt in flight ends within the webhook's timeout) and hands the
  // lease back.
  void Stop();

 private:
  struct Pending;
  void Run();
  bool Sleep(int64_t ms);  // false when stopping
  NotifierOptions options_;
  HubStore& store_;
  Clock& clock_;
  WebhookPoster& poster_;
  NotifyMetrics& metrics_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace freshsync::hub
