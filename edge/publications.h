// Everything edged publishes on the site broker, built here and nowhere else: each payload's
// shape and each topic (docs/formats.md, "What edged publishes"). The store and the site rules
// decide *that* something is published, inside a message's transaction; ingest publishes it
// once that transaction commits. None of them builds a topic or a JSON payload itself.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "edge/decode.h"

namespace freshsync::v1 {
class CatalogItem;
}
namespace freshsync::geofence {
struct GeofenceEvent;
}
namespace freshsync::coldchain {
struct AlertEvent;
}

namespace freshsync::edge {

// A local event to publish on the site broker once the transaction that produced it commits.
struct Publication {
  std::string topic;
  std::string payload;
  bool retained = false;
};

namespace publish {

// {root}/deadletter: {"topic", "reason", "code", "received_ms"}. A reason with bytes that are
// not UTF-8 is published with U+FFFD in their place, never dropped.
Publication DeadLetterNotice(std::string_view root, std::string_view topic, std::string_view reason, std::string_view code,
                             int64_t received_ms);

// {root}/orders/{order_id}/state, retained: {"order_id", "status", "ts", "actor" (if any),
// "reason" (refused orders)}. No customer data: the state names the order, nobody else.
Publication OrderState(std::string_view root, const OrderStatus& o, std::string_view status, std::string_view reason = {});

// {root}/events/orders: {"order_id", "event", "ts", "reason", "lines"}: an order event for
// terminals (today only "refused").
Publication OrderEvent(std::string_view root, const OrderStatus& o, std::string_view event, std::string_view reason);

// {root}/catalog/{sku}, retained: {"sku", "name", "unit", "price_cents", "temp_min_c",
// "temp_max_c", "shelf_life_h" (the three only when HQ set them), "version", "updated_ms"}:
// HQ's item as the site holds it (edge store table `catalog`).
Publication CatalogItem(std::string_view root, const v1::CatalogItem& item, int64_t updated_ms);

// {root}/events/geofence: geofence::EventJson's payload.
Publication GeofenceEvent(std::string_view root, const geofence::GeofenceEvent& e);

// {root}/alerts/coldchain: coldchain::AlertJson's payload.
Publication ColdchainAlert(std::string_view root, const coldchain::AlertEvent& a);

}  // namespace publish
}  // namespace freshsync::edge
