#include "hub/hub_metrics.h"

#include <algorithm>

namespace freshsync::hub {

void NotifyMetrics::Register(const std::string& webhook) {
  std::lock_guard<std::mutex> l(mu_);
  state_.emplace(webhook, State{});
}

void NotifyMetrics::SetState(const std::string& webhook, bool active, uint64_t dead_pending, double lag_seconds) {
  std::lock_guard<std::mutex> l(mu_);
  state_[webhook] = State{active, dead_pending, lag_seconds};
}

void NotifyMetrics::Write(prometheus::TextWriter& w) const {
  std::map<std::string, State> state;
  {
    std::lock_guard<std::mutex> l(mu_);
    state = state_;
  }
  // The families are declared without a webhook too, as the store's error counter is: the
  // dashboard and the alert rules query them on every hub.
  delivered_.Write(w, "freshsync_hub_webhook_delivered_total", "Webhook deliveries the receiver answered with 2xx, by event (replays included).");
  failed_.Write(w, "freshsync_hub_webhook_failed_attempts_total", "Webhook attempts that failed (non-2xx, timeout, connection error); each is retried or dead-lettered.");
  dead_.Write(w, "freshsync_hub_webhook_dead_letters_total", "Webhook deliveries given up on and put in the dead-letter list (by this replica).");
  auto gauge = [&](const char* name, const char* help, auto value) {
    w.Family(name, "gauge", help);
    for (const auto& [hook, st] : state) w.Sample(name, {{"webhook", hook}}, static_cast<double>(value(st)));
  };
  gauge("freshsync_hub_webhook_dead_letters_pending", "Dead letters of the webhook in the store, waiting for a replay (read by the lease holder).",
        [](const State& st) { return st.dead_pending; });
  gauge("freshsync_hub_webhook_lag_seconds", "Seconds since the oldest event not yet delivered or dead-lettered was read (0 when caught up).",
        [](const State& st) { return st.lag_seconds; });
  gauge("freshsync_hub_webhook_active", "1 on the replica that holds the webhook's lease (exactly one across replicas).",
        [](const State& st) { return st.active ? 1.0 : 0.0; });
}

void HubMetrics::Request(std::string_view method, std::string_view route, int status, double seconds) {
  requests_.Add({std::string(method), std::string(route), std::to_string(status)});
  request_seconds_.Observe({std::string(method), std::string(route)}, seconds);
}

void HubMetrics::BatchApplied(uint64_t records_applied, uint64_t duplicates, uint64_t refused) {
  batches_applied_.fetch_add(1, std::memory_order_relaxed);
  records_applied_.fetch_add(records_applied, std::memory_order_relaxed);
  records_duplicate_.fetch_add(duplicates, std::memory_order_relaxed);
  records_refused_.fetch_add(refused, std::memory_order_relaxed);
}

void HubMetrics::StoreCall(std::string_view op, double seconds, bool error) {
  store_seconds_.Observe({std::string(op)}, seconds);
  if (error) store_errors_.Add({std::string(op)});
}

void HubMetrics::Write(prometheus::TextWriter& w, const std::vector<SiteInfo>* sites, int64_t now_ms,
                       const std::vector<std::pair<std::string, LaneState>>* lanes) const {
  requests_.Write(w, "freshsync_hub_requests_total", "Requests answered by a route, by method, route template and status.");
  request_seconds_.Write(w, "freshsync_hub_request_duration_seconds",
                         "Time from a request's arrival at its route (queueing for a worker included) to its answer.");
  auto counter = [&w](const char* name, const char* help, uint64_t v) {
    w.Family(name, "counter", help);
    w.Sample(name, {}, v);
  };
  counter("freshsync_hub_batches_applied_total", "Batches accepted from sites (200 answers, duplicates included).",
          batches_applied_.load(std::memory_order_relaxed));
  w.Family("freshsync_hub_records_total", "counter", "Records in accepted batches, by outcome.");
  w.Sample("freshsync_hub_records_total", {{"outcome", "applied"}}, records_applied_.load(std::memory_order_relaxed));
  w.Sample("freshsync_hub_records_total", {{"outcome", "duplicate"}}, records_duplicate_.load(std::memory_order_relaxed));
  w.Sample("freshsync_hub_records_total", {{"outcome", "refused"}}, records_refused_.load(std::memory_order_relaxed));
  store_seconds_.Write(w, "freshsync_hub_store_duration_seconds", "Store calls, by HubStore operation.");
  store_errors_.Write(w, "freshsync_hub_store_errors_total",
                      "Store calls that failed for a reason other than the caller's input (the caller got 503).");
  notify.Write(w);
  if (relay.enabled.load(std::memory_order_relaxed)) {
    auto gauge = [&w](const char* name, const char* help, double v) {
      w.Family(name, "gauge", help);
      w.Sample(name, {}, v);
    };
    counter("freshsync_hub_relay_published_total", "Messages the change-feed relay published (repeats after a reconnect included).",
            relay.published.load(std::memory_order_relaxed));
    counter("freshsync_hub_relay_confirmed_total", "Messages the broker confirmed to the relay.",
            relay.confirmed.load(std::memory_order_relaxed));
    counter("freshsync_hub_relay_errors_total", "Relay errors (broker or store); each is followed by a backoff and a reconnect.",
            relay.errors.load(std::memory_order_relaxed));
    gauge("freshsync_hub_relay_cursor", "Feed cursor up to which the broker confirmed every message.",
          static_cast<double>(relay.cursor.load(std::memory_order_relaxed)));
    gauge("freshsync_hub_relay_lag_records", "Feed items after the relay's cursor (counted up to one page).",
          static_cast<double>(relay.lag_records.load(std::memory_order_relaxed)));
    gauge("freshsync_hub_relay_lag_seconds", "Seconds since the oldest feed item not yet confirmed was first read (0 when caught up).",
          relay.lag_seconds.load(std::memory_order_relaxed));
    gauge("freshsync_hub_relay_connected", "1 while the relay is connected to the broker.", relay.connected.load() ? 1 : 0);
    gauge("freshsync_hub_relay_active", "1 on the replica that holds the relay lease (exactly one across replicas).",
          relay.active.load() ? 1 : 0);
  }
  w.Family("freshsync_hub_down_commands_appended_total", "counter",
           "Downstream commands appended to the sites' logs by this replica, by kind (repeats not counted).");
  for (v1::DownKind k : {v1::DOWN_ORDER, v1::DOWN_CANCEL, v1::DOWN_CATALOG, v1::DOWN_FENCES, v1::DOWN_COLDCHAIN_RULES,
                         v1::DOWN_ESCROW_RETURN, v1::DOWN_ESCROW_TARGET})
    w.Sample("freshsync_hub_down_commands_appended_total", {{"kind", DownKindName(k)}},
             downstream.appended[k].load(std::memory_order_relaxed));
  counter("freshsync_hub_escrow_orders_accepted_total",
          "HQ orders this replica accepted at once against a site's escrow allotment (decided_by hub).",
          downstream.escrow_accepted.load(std::memory_order_relaxed));
  counter("freshsync_hub_down_pulls_total", "Downstream pulls answered (sites fetching their commands).",
          downstream.pulls.load(std::memory_order_relaxed));
  w.Family("freshsync_hub_down_parked_pulls", "gauge", "Downstream pulls waiting for a command now (long poll).");
  w.Sample("freshsync_hub_down_parked_pulls", {}, static_cast<double>(std::max<int64_t>(0, downstream.parked.load())));
  if (lanes != nullptr) {
    w.Family("freshsync_hub_down_pending", "gauge", "Downstream commands the site has not yet acknowledged (last_seq - delivered_seq).");
    for (const auto& [site, lane] : *lanes) w.Sample("freshsync_hub_down_pending", {{"site", site}}, lane.pending);
  }
  if (sites == nullptr) return;
  w.Family("freshsync_hub_site_contiguous_seq", "gauge", "Highest seq up to which the hub holds every record of the site.");
  for (const SiteInfo& s : *sites) w.Sample("freshsync_hub_site_contiguous_seq", {{"site", s.site}}, s.contiguous_seq);
  w.Family("freshsync_hub_site_last_seen_age_seconds", "gauge",
           "Seconds since the site's last accepted batch, by the hub's clock (-1: never since the store began keeping it).");
  for (const SiteInfo& s : *sites) {
    const double age = s.last_push_ms > 0 ? static_cast<double>(std::max<int64_t>(0, now_ms - s.last_push_ms)) / 1000.0 : -1.0;
    w.Sample("freshsync_hub_site_last_seen_age_seconds", {{"site", s.site}}, age);
  }
}

}  // namespace freshsync::hub
