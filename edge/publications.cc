#include "edge/publications.h"

#include <nlohmann/json.hpp>

#include "edge/coldchain/coldchain_engine.h"
#include "edge/geofence/geofence_engine.h"
#include "freshsync.pb.h"
#include "wire/routes.h"

namespace freshsync::edge::publish {
namespace {

using nlohmann::json;

std::string Joined(std::string_view root, std::string_view suffix) {
  std::string t(root);
  t += suffix;
  return t;
}

// Reasons and identifiers reach here validated (decode.h), but a reason may quote a config
// or store error: never throw on bytes that are not UTF-8.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

json Lines(const OrderStatus& o) {
  json lines = json::array();
  for (const auto& l : o.lines) lines.push_back({{"sku", l.sku}, {"qty", l.qty}});
  return lines;
}

}  // namespace

Publication DeadLetterNotice(std::string_view root, std::string_view topic, std::string_view reason, std::string_view code,
                             int64_t received_ms) {
  const json j = {{"topic", topic}, {"reason", reason}, {"code", code}, {"received_ms", received_ms}};
  return {Joined(root, wire::kDeadletterSuffix), Dump(j), false};
}

Publication OrderState(std::string_view root, const OrderStatus& o, std::string_view status, std::string_view reason) {
  json j = {{"order_id", o.order_id}, {"status", status}, {"ts", o.ts_ms}};
  if (!reason.empty()) j["reason"] = reason;
  if (!o.actor.empty()) j["actor"] = o.actor;
  std::string topic(root);
  topic.append("/").append(wire::kTopicOrders).append("/").append(o.order_id).append("/").append(wire::kTopicState);
  return {std::move(topic), Dump(j), true};
}

Publication OrderEvent(std::string_view root, const OrderStatus& o, std::string_view event, std::string_view reason) {
  const json j = {{"order_id", o.order_id}, {"event", event}, {"ts", o.ts_ms}, {"reason", reason}, {"lines", Lines(o)}};
  return {Joined(root, wire::kOrderEventsSuffix), Dump(j), false};
}

Publication CatalogItem(std::string_view root, const v1::CatalogItem& item, int64_t updated_ms) {
  json j = {{"sku", item.sku()}, {"name", item.name()}, {"unit", item.unit()}, {"price_cents", item.price_cents()}};
  if (item.has_temp_min_c()) j["temp_min_c"] = item.temp_min_c();
  if (item.has_temp_max_c()) j["temp_max_c"] = item.temp_max_c();
  if (item.has_shelf_life_h()) j["shelf_life_h"] = item.shelf_life_h();
  j["version"] = item.version();
  j["updated_ms"] = updated_ms;
  std::string topic(root);
  topic.append("/").append(wire::kTopicCatalog).append("/").append(item.sku());
  return {std::move(topic), Dump(j), true};
}

Publication GeofenceEvent(std::string_view root, const geofence::GeofenceEvent& e) {
  return {Joined(root, wire::kGeofenceEventsSuffix), geofence::EventJson(e), false};
}

Publication ColdchainAlert(std::string_view root, const coldchain::AlertEvent& a) {
  return {Joined(root, wire::kColdchainAlertsSuffix), coldchain::AlertJson(a), false};
}

}  // namespace freshsync::edge::publish
