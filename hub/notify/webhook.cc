#include "hub/notify/webhook.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "hub/codec.h"
#include "wire/digest.h"

namespace freshsync::hub {
namespace {

std::string Body(const char* event, const std::string& site, const nlohmann::json& seq, int64_t ts, nlohmann::json item) {
  nlohmann::json j = {{"event", event}, {"site", site}, {"seq", seq}, {"ts", ts}, {"item", std::move(item)}};
  return j.dump();
}

// The host of an http(s) URL: between "://" (after any userinfo) and the port, path or end.
std::string UrlHost(const std::string& url) {
  const size_t start = url.find("://");
  if (start == std::string::npos) return "";
  std::string rest = url.substr(start + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  if (const size_t at = rest.rfind('@'); at != std::string::npos) rest = rest.substr(at + 1);
  if (!rest.empty() && rest[0] == '[') return rest.substr(0, rest.find(']') + 1);
  return rest.substr(0, rest.find(':'));
}

}  // namespace

const char* FeedEventOf(const v1::ChangeRecord& r) {
  switch (r.entity()) {
    case v1::COLDCHAIN_ALERT:
      if (r.alert().state() == "open") return "coldchain.open";
      if (r.alert().state() == "closed") return "coldchain.closed";
      return nullptr;
    case v1::ORDER:
      return r.order().status() == "refused" ? "order.refused" : nullptr;
    case v1::GEOFENCE_EVENT:
      if (r.geofence().event() == "enter") return "geofence.enter";
      if (r.geofence().event() == "exit") return "geofence.exit";
      return nullptr;
    default:
      return nullptr;
  }
}

WebhookDelivery FeedDelivery(const FeedEntry& e, const char* event) {
  const std::string key = e.site + ":" + std::to_string(e.record.seq());
  return {event, e.site, key, Body(event, e.site, e.record.seq(), e.record.ts_ms(), ChangeToJson(e.cursor, e.site, e.record))};
}

WebhookDelivery OfflineDelivery(const std::string& site, int64_t last_push_ms, int64_t offline_after_s) {
  nlohmann::json item = {{"site", site}, {"last_push_ms", last_push_ms}, {"offline_after_s", offline_after_s}};
  return {"site.offline", site, site + ":offline:" + std::to_string(last_push_ms),
          Body("site.offline", site, nullptr, last_push_ms + offline_after_s * 1000, std::move(item))};
}

WebhookDelivery BacklogDelivery(const std::string& site, const LaneState& lane, int64_t backlog_age_s) {
  nlohmann::json item = {{"site", site},
                         {"pending", lane.pending},
                         {"oldest_pending_ms", lane.oldest_pending_ms},
                         {"delivered_seq", lane.delivered_seq},
                         {"last_seq", lane.last_seq},
                         {"backlog_age_s", backlog_age_s}};
  return {"site.backlog", site, site + ":backlog:" + std::to_string(lane.oldest_pending_ms),
          Body("site.backlog", site, nullptr, lane.oldest_pending_ms + backlog_age_s * 1000, std::move(item))};
}

std::string WebhookSignature(const std::string& secret, const std::string& body) {
  return "sha256=" + digest::Hex(digest::HmacSha256(secret, body));
}

bool Lists(const HubWebhook& hook, std::string_view event) {
  return std::find(hook.events.begin(), hook.events.end(), event) != hook.events.end();
}

Status CheckWebhook(const HubWebhook& hook) {
  const std::string prefix = "notify.webhook \"" + hook.name + "\"";
  if (hook.name.empty() || !std::all_of(hook.name.begin(), hook.name.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '-' || c == '_';
      }))
    return Status::InvalidArgument(prefix + ".name: letters, digits, '-' and '_' only");
  if (hook.events.empty()) return Status::InvalidArgument(prefix + ".events: must list at least one event");
  for (const std::string& e : hook.events) {
    if (std::find_if(std::begin(kWebhookEvents), std::end(kWebhookEvents), [&](const char* k) { return e == k; }) ==
        std::end(kWebhookEvents))
      return Status::InvalidArgument(prefix + ".events: unknown event \"" + e + "\"");
  }
  if (hook.url.rfind("https://", 0) == 0) return Status::Ok();
  if (hook.url.rfind("http://", 0) == 0) {
    const std::string host = UrlHost(hook.url);
    in_addr v4{};
    const bool loopback_v4 = inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
    if (host == "localhost" || host == "[::1]" || loopback_v4) return Status::Ok();
    return Status::InvalidArgument(prefix + ".url: http:// only to a receiver on this host (127.0.0.1, [::1], localhost); use https://");
  }
  return Status::InvalidArgument(prefix + ".url: must start with https:// (or http:// for a receiver on this host)");
}

}  // namespace freshsync::hub
