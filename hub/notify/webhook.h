// Webhook events and the request of one delivery (docs/formats.md, "Webhook deliveries").
//
//   POST {url}
//   Content-Type: application/json
//   X-FreshSync-Event: {event}
//   Idempotency-Key: {key}
//   X-FreshSync-Signature: sha256={lower-case hex of HMAC-SHA256(secret, body)}
//   {"event": ..., "site": ..., "seq": ..., "ts": ..., "item": {...}}
//
// Events, and the key of each (a receiver deduplicates on it; every attempt and every replay of
// one delivery carries the same key and the same body bytes):
//   coldchain.open, coldchain.closed   feed item COLDCHAIN_ALERT, state open or closed
//   order.refused                      feed item ORDER with status refused
//   geofence.enter, geofence.exit      feed item GEOFENCE_EVENT, event enter or exit
//     key {site}:{seq}; seq the record's; ts its ts_ms (the source message's own time);
//     item the feed item exactly as GET /v1/changes writes it (hub::ChangeToJson)
//   site.offline   no batch from the site for [notify] offline_after_s
//     key {site}:offline:{last_push_ms}; seq null; ts last_push_ms + offline_after_s;
//     item {"site", "last_push_ms", "offline_after_s"}
//   site.backlog   an HQ command has waited for the site longer than [notify] backlog_age_s
//     key {site}:backlog:{oldest_pending_ms}; seq null; ts oldest_pending_ms + backlog_age_s;
//     item {"site", "pending", "oldest_pending_ms", "delivered_seq", "last_seq", "backlog_age_s"}
// The body is a function of the event alone (never of the time it is sent), so a repeat after a
// hub restart or a takeover by another replica is byte for byte the first one.
//
// Thread-safety: functions only.
#pragma once

#include <cstdint>
#include <string>

#include "common/config.h"
#include "common/status.h"
#include "hub/downstream_log.h"
#include "hub/store.h"

namespace freshsync::hub {

inline constexpr const char* kWebhookEvents[] = {"coldchain.open", "coldchain.closed", "order.refused", "geofence.enter",
                                                 "geofence.exit",  "site.offline",     "site.backlog"};
inline constexpr char kSignatureHeader[] = "X-FreshSync-Signature";
inline constexpr char kEventHeader[] = "X-FreshSync-Event";
inline constexpr char kIdempotencyHeader[] = "Idempotency-Key";

struct WebhookDelivery {
  std::string event;
  std::string site;
  std::string key;   // Idempotency-Key
  std::string body;  // the JSON body, as sent and as signed
};

// The event a feed record is, or nullptr when it is none.
const char* FeedEventOf(const v1::ChangeRecord& record);
WebhookDelivery FeedDelivery(const FeedEntry& entry, const char* event);
WebhookDelivery OfflineDelivery(const std::string& site, int64_t last_push_ms, int64_t offline_after_s);
WebhookDelivery BacklogDelivery(const std::string& site, const LaneState& lane, int64_t backlog_age_s);

// "sha256=" + hex HMAC-SHA256(secret, body): the X-FreshSync-Signature value.
std::string WebhookSignature(const std::string& secret, const std::string& body);
bool Lists(const HubWebhook& hook, std::string_view event);

// kInvalidArgument naming the key: an unknown event, or a URL that is neither https:// nor
// http:// to a loopback host (127.0.0.0/8, [::1], localhost): a secret-signed body never
// crosses a network in clear.
Status CheckWebhook(const HubWebhook& hook);

}  // namespace freshsync::hub
