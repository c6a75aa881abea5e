// Names both sides of the wire must spell the same: HTTP route paths and content types of the
// sync link and the HQ API (docs/api.md, docs/sync-protocol.md), and the MQTT topic segments
// of what edged publishes under a site's topic root (docs/formats.md).
//
// Every constant is a char array, so it converts to std::string and std::string_view alike.
// Thread-safety: constants only.
#pragma once

namespace freshsync::wire {

// Content types.
inline constexpr char kContentTypeProtobuf[] = "application/x-protobuf";
inline constexpr char kContentTypeJson[] = "application/json";

// Site routes are kSitesPath + "/" + site + one of the suffixes (e.g. "/v1/sites/s1/batches").
inline constexpr char kSitesPath[] = "/v1/sites";
inline constexpr char kSitesPrefix[] = "/v1/sites/";
inline constexpr char kBatchesSuffix[] = "/batches";            // POST: zstd(protobuf Batch)
inline constexpr char kDigestSuffix[] = "/digest";              // GET ?from=&to=&buckets=
inline constexpr char kStateDigestSuffix[] = "/state-digest";   // GET
inline constexpr char kRebuildStateSuffix[] = "/rebuild-state"; // POST
// GET: protobuf RebuildSnapshot, for `edgectl restore --from-hub` (hub/rebuild_snapshot.h).
inline constexpr char kRebuildSnapshotSuffix[] = "/rebuild-snapshot";
// Downstream (docs/sync-protocol.md, "Downstream"): the site's pull, and HQ's status of a lane.
inline constexpr char kDownCommandsSuffix[] = "/downstream/commands";  // GET ?after=&wait_ms=&kinds=
inline constexpr char kDownstreamSuffix[] = "/downstream";             // GET (HQ reader)
// The `kinds` names of the pull, indexed by the proto's DownKind value (0: unspecified). A site
// announces the kinds it can apply; a site that sends none gets kDownDefaultKinds.
inline constexpr const char* kDownKindNames[] = {"",       "order",           "cancel",       "catalog",
                                                 "fences", "coldchain-rules", "escrow-return", "escrow-target"};
inline constexpr int kDownKindCount = 8;
inline constexpr char kDownDefaultKinds[] = "order,cancel";
// HQ's writes (role writer): orders for a site, and the site's fences and rules.
inline constexpr char kOrdersSuffix[] = "/orders";                     // POST; /orders/{id}/cancel
inline constexpr char kCancelSuffix[] = "/cancel";
// GET (HQ reader) of the same two paths: the site's current body, its version as the ETag.
inline constexpr char kFencesSuffix[] = "/fences";                     // PUT, GET
inline constexpr char kColdchainRulesSuffix[] = "/coldchain-rules";    // PUT, GET
// PUT /escrow/{sku} {"target": N}: HQ asks for an allotment (docs/escrow.md). The read, GET
// /escrow, is EscrowHandler's (hub/entity_routes.cc).
inline constexpr char kEscrowSuffix[] = "/escrow";
inline constexpr char kCatalogPrefix[] = "/v1/catalog/";               // PUT /v1/catalog/{sku}
inline constexpr char kCatalogPath[] = "/v1/catalog";                  // GET (HQ reader): every item
// The HQ reads of the per-site entities (/stock, /orders, ...) are spelled by their handlers
// in hub/entity_routes.cc, the only code that serves or names them.
// Not an entity read but a check over one: GET ?sensor=&from=&to= recomputes a sensor's
// cold-chain audit chain (docs/api.md); served by ColdchainHandler (hub/entity_routes.cc).
inline constexpr char kColdchainVerifySuffix[] = "/coldchain/verify";
// HQ routes without a site.
inline constexpr char kChangesPath[] = "/v1/changes";
inline constexpr char kAuditPath[] = "/v1/audit";
// Webhook dead letters (admin; docs/api.md "Webhooks"): GET ?webhook=&after=&limit= lists them,
// POST {path}/{id}/replay replays one, POST {path}/replay?webhook=NAME all of a webhook's.
inline constexpr char kWebhookDeadlettersPath[] = "/v1/webhooks/deadletters";
inline constexpr char kReplaySuffix[] = "/replay";
inline constexpr char kOpenApiPath[] = "/v1/openapi.json";  // GET, no token: hub/openapi.json
// Live streams (server-sent events): the feed for HQ; one order's status for its customer,
// /v1/orders/{order_id}/stream, behind a token from POST /v1/orders/{order_id}/stream-token.
inline constexpr char kStreamPath[] = "/v1/stream";
inline constexpr char kOrdersPrefix[] = "/v1/orders/";
inline constexpr char kOrderStreamSuffix[] = "/stream";
inline constexpr char kOrderStreamTokenSuffix[] = "/stream-token";

// MQTT topics edged publishes under a site's topic root ({root}/...): {root}/deadletter,
// {root}/orders/{id}/state, {root}/events/..., {root}/alerts/... The inbound topics (devices and
// site systems) are spelled once, in their message type's row (edge/message_types.h).
inline constexpr char kTopicOrders[] = "orders";
inline constexpr char kTopicDeadletter[] = "deadletter";
inline constexpr char kTopicEvents[] = "events";
inline constexpr char kTopicAlerts[] = "alerts";
inline constexpr char kTopicState[] = "state";
inline constexpr char kTopicCatalog[] = "catalog";  // {root}/catalog/{sku}, retained
// Whole suffixes, appended to the root.
inline constexpr char kDeadletterSuffix[] = "/deadletter";
inline constexpr char kOrderEventsSuffix[] = "/events/orders";
inline constexpr char kGeofenceEventsSuffix[] = "/events/geofence";
inline constexpr char kColdchainAlertsSuffix[] = "/alerts/coldchain";

}  // namespace freshsync::wire
