#include "hub/notify/notifier.h"

#include <algorithm>
#include <deque>
#include <limits>

#include <spdlog/spdlog.h>

#include "cloud-sync/backoff.h"
#include "hub/downstream_log.h"
#include "hub/feed_lease.h"
#include "hub/notify/dead_letters.h"
#include "hub/notify/webhook.h"

namespace freshsync::hub {

// One delivery of the notifier's queue, from its first attempt to delivered or dead-lettered.
struct WebhookNotifier::Pending {
  WebhookDelivery d;
  uint64_t cursor = 0;         // a feed event: the feed cursor to store once done; 0: none
  std::string marker;          // a derived event: the marker to set once done
  uint64_t marker_value = 0;
  uint64_t dead_id = 0;        // a replay of this dead letter
  int64_t prior_attempts = 0;  // the dead letter's attempts before the replay
  int attempts = 0;
  int64_t first_mono = 0;
  int64_t next_mono = 0;
  std::string last_error;
  bool given_up = false;       // what is left is to write the dead letter
};

std::vector<NotifierOptions> NotifierOptionsFrom(const HubConfig& c) {
  std::vector<NotifierOptions> out;
  for (const HubWebhook& hook : c.webhooks) {
    NotifierOptions o;
    o.hook = hook;
    o.offline_after_s = c.notify_offline_after_s;
    o.backlog_age_s = c.notify_backlog_age_s;
    o.retry_min_ms = c.notify_retry_min_ms;
    o.retry_max_ms = c.notify_retry_max_ms;
    o.poll_ms = c.notify_poll_ms;
    out.push_back(std::move(o));
  }
  return out;
}

WebhookNotifier::WebhookNotifier(NotifierOptions options, HubStore& store, Clock& clock, WebhookPoster& poster,
                                 NotifyMetrics& metrics)
    : options_(std::move(options)), store_(store), clock_(clock), poster_(poster), metrics_(metrics) {
  if (options_.lease_ttl_ms <= 0) options_.lease_ttl_ms = std::max<int64_t>(30000, 4 * options_.hook.timeout_ms);
  metrics_.Register(options_.hook.name);
}

WebhookNotifier::~WebhookNotifier() { Stop(); }

void WebhookNotifier::Start() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { Run(); });
}

void WebhookNotifier::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool WebhookNotifier::Sleep(int64_t ms) {
  std::unique_lock<std::mutex> l(mu_);
  return !cv_.wait_for(l, std::chrono::milliseconds(std::max<int64_t>(ms, 0)), [this] { return stopping_; });
}

void WebhookNotifier::Run() {
  const HubWebhook& hook = options_.hook;
  const std::string& name = hook.name;
  const std::string cursor_name = "notify." + name;
  FeedLease lease(store_, clock_, cursor_name, options_.holder, options_.lease_ttl_ms);
  WebhookDeadLetters dead(store_);
  DownstreamLog downstream(store_);
  sync::Backoff backoff(options_.retry_min_ms, options_.retry_max_ms);
  sync::Backoff store_backoff(250, 10000);
  std::deque<Pending> queue;
  bool have_cursor = false;
  uint64_t cursor = 0;
  uint64_t page_end = 0;  // the last feed item read; the cursor moves there once the queue is done
  int64_t last_health = std::numeric_limits<int64_t>::min() / 2;
  int64_t queued_since = 0;
  uint64_t dead_pending = 0;
  // A store error: logged, and a backoff before the round is tried again.
  auto store_error = [&](const char* what, const Status& s) {
    spdlog::warn("webhook {}: {}: {}", name, what, s.ToString());
    return Sleep(store_backoff.Next());
  };
  // The derived events due now, each once per marker value.
  auto queue_health = [&]() -> Status {
    const int64_t now = clock_.NowMs();
    auto due = [&](const std::string& marker, uint64_t value) -> Result<bool> {
      auto sent = store_.RelayCursor(marker);
      if (!sent.ok()) return sent.status();
      return *sent != value;
    };
    if (Lists(hook, "site.offline")) {
      auto sites = store_.Sites();
      if (!sites.ok()) return sites.status();
      for (const SiteInfo& si : *sites) {
        if (si.last_push_ms <= 0 || now - si.last_push_ms < options_.offline_after_s * 1000) continue;
        const std::string marker = cursor_name + ".offline." + si.site;
        auto d = due(marker, static_cast<uint64_t>(si.last_push_ms));
        if (!d.ok()) return d.status();
        if (!*d) continue;
        Pending p;
        p.d = OfflineDelivery(si.site, si.last_push_ms, options_.offline_after_s);
        p.marker = marker;
        p.marker_value = static_cast<uint64_t>(si.last_push_ms);
        queue.push_back(std::move(p));
      }
    }
    if (Lists(hook, "site.backlog")) {
      auto lanes = downstream.Lanes();
      if (!lanes.ok()) return lanes.status();
      for (const auto& [site, summary] : *lanes) {
        if (summary.pending == 0) continue;
        auto lane = downstream.Lane(site);
        if (!lane.ok()) return lane.status();
        if (lane->oldest_pending_ms <= 0 || now - lane->oldest_pending_ms < options_.backlog_age_s * 1000) continue;
        const std::string marker = cursor_name + ".backlog." + site;
        auto d = due(marker, static_cast<uint64_t>(lane->oldest_pending_ms));
        if (!d.ok()) return d.status();
        if (!*d) continue;
        Pending p;
        p.d = BacklogDelivery(site, *lane, options_.backlog_age_s);
        p.marker = marker;
        p.marker_value = static_cast<uint64_t>(lane->oldest_pending_ms);
        queue.push_back(std::move(p));
      }
    }
    auto n = dead.Count(name);
    if (!n.ok()) return n.status();
    dead_pending = *n;
    return Status::Ok();
  };

  while (true) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopping_) break;
    }
    const bool was_active = lease.held();
    const FeedLease::Outcome held = lease.Keep();
    if (held == FeedLease::Outcome::kOther || held == FeedLease::Outcome::kError) {
      if (was_active) spdlog::warn("webhook {}: lease lost ({}); stopping deliveries", name,
                                   held == FeedLease::Outcome::kOther ? "held by another replica" : lease.error().ToString());
      queue.clear();
      have_cursor = false;
      metrics_.SetState(name, false, dead_pending, 0);
      if (!Sleep(held == FeedLease::Outcome::kError ? store_backoff.Next() : lease.RetryMs())) break;
      continue;
    }
    if (held == FeedLease::Outcome::kTaken) have_cursor = false;
    if (!have_cursor) {
      // The previous holder may have moved the cursor: go on from the store's.
      auto c = store_.RelayCursor(cursor_name);
      if (!c.ok()) {
        if (!store_error("read cursor", c.status())) break;
        continue;
      }
      cursor = page_end = *c;
      queue.clear();
      have_cursor = true;
      spdlog::info("webhook {}: lease taken by {}, from cursor {}", name, lease.holder(), cursor);
    }
    const int64_t mono = clock_.MonotonicMs();
    if (queue.empty()) {
      // The rest of the last page held no event for this webhook: move past it.
      if (page_end > cursor) {
        if (Status s = store_.SetRelayCursor(cursor_name, page_end); !s.ok()) {
          if (!store_error("store cursor", s)) break;
          continue;
        }
        cursor = page_end;
      }
      // Admin replays first, then the derived events (every poll_ms), then the feed.
      auto replays = dead.Replays(name, 50);
      if (!replays.ok()) {
        if (!store_error("read replays", replays.status())) break;
        continue;
      }
      for (WebhookDeadLetter& r : *replays) {
        Pending p;
        p.d = WebhookDelivery{r.event, r.site, r.key, std::move(r.body)};
        p.dead_id = r.id;
        p.prior_attempts = r.attempts;
        queue.push_back(std::move(p));
      }
      if (queue.empty() && mono - last_health >= options_.poll_ms) {
        last_health = mono;
        if (Status s = queue_health(); !s.ok()) {
          queue.clear();
          if (!store_error("site health", s)) break;
          continue;
        }
      }
      if (queue.empty()) {
        auto page = store_.Changes(cursor, options_.page);
        if (!page.ok()) {
          if (!store_error("read feed", page.status())) break;
          continue;
        }
        if (page->empty()) {
          store_backoff.Reset();
          metrics_.SetState(name, true, dead_pending, 0);
          if (!Sleep(options_.poll_ms)) break;
          continue;
        }
        for (const FeedEntry& e : *page) {
          const char* event = FeedEventOf(e.record);
          if (event == nullptr || !Lists(hook, event)) continue;
          Pending p;
          p.d = FeedDelivery(e, event);
          p.cursor = e.cursor;
          queue.push_back(std::move(p));
        }
        page_end = page->back().cursor;
      }
      queued_since = mono;
      continue;
    }

    Pending& p = queue.front();
    metrics_.SetState(name, true, dead_pending, static_cast<double>(mono - queued_since) / 1000.0);
    bool delivered = false;
    if (!p.given_up) {
      if (mono < p.next_mono) {
        if (!Sleep(std::min(p.next_mono - mono, lease.RetryMs()))) break;
        continue;
      }
      if (p.attempts == 0) p.first_mono = mono;
      const WebhookAttempt a = poster_.Post(hook, p.d);
      ++p.attempts;
      if (a.ok()) {
        delivered = true;
        metrics_.Delivered(name, p.d.event);
      } else {
        metrics_.FailedAttempt(name);
        p.last_error = a.error;
        const bool too_old = clock_.MonotonicMs() - p.first_mono >= hook.max_age_s * 1000;
        if (p.attempts < hook.max_attempts && !too_old) {
          const int64_t wait = backoff.Next(a.retry_after_s);
          spdlog::info("webhook {}: {} {} attempt {} failed: {}; retry in {} ms", name, p.d.event, p.d.key, p.attempts,
                       a.error, wait);
          p.next_mono = clock_.MonotonicMs() + wait;
          continue;
        }
        p.given_up = true;
      }
    }
    if (p.given_up) {
      const int64_t attempts = p.prior_attempts + p.attempts;
      Status s = p.dead_id != 0
                     ? dead.FailedAgain(p.dead_id, attempts, p.last_error, clock_.NowMs())
                     : dead.Add(WebhookDeadLetter{0, name, p.d.event, p.d.site, p.d.key, p.d.body, attempts, p.last_error,
                                                  clock_.NowMs(), false, 0});
      if (!s.ok()) {
        // Not lost: the delivery stays at the head until its dead letter is written.
        if (!store_error("write dead letter", s)) break;
        continue;
      }
      metrics_.DeadLettered(name);
      if (p.dead_id == 0) ++dead_pending;
      spdlog::warn("webhook {}: {} {} dead-lettered after {} attempts: {}", name, p.d.event, p.d.key, attempts, p.last_error);
    }
    // Done with it (delivered or dead-lettered): store how far the webhook got, then move on.
    // A store that does not take it only causes a repeat, with the same key, after a restart.
    if (p.cursor != 0) {
      if (Status s = store_.SetRelayCursor(cursor_name, p.cursor); !s.ok()) spdlog::warn("webhook {}: store cursor: {}", name, s.ToString());
      cursor = std::max(cursor, p.cursor);
    }
    if (!p.marker.empty()) {
      if (Status s = store_.SetRelayCursor(p.marker, p.marker_value); !s.ok()) spdlog::warn("webhook {}: store marker: {}", name, s.ToString());
    }
    if (p.dead_id != 0 && delivered) {
      if (Status s = dead.Delivered(p.dead_id); !s.ok()) spdlog::warn("webhook {}: remove replayed dead letter: {}", name, s.ToString());
      if (dead_pending > 0) --dead_pending;
    }
    queue.pop_front();
    backoff.Reset();
    queued_since = mono;
  }
  metrics_.SetState(name, false, dead_pending, 0);
  lease.Release();
}

}  // namespace freshsync::hub
