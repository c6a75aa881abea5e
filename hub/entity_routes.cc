#include "hub/entity_routes.h"

#include <string_view>

#include <nlohmann/json.hpp>

#include "wire/routes.h"

namespace freshsync::hub {
namespace {

// A handler is a struct with
//   using Reply = v1::...Reply;   the protobuf answer: `site` and one repeated item field
//   static std::string Path();    the route after /v1/sites/{site}
//   using Query; static std::optional<QueryError> Parse(const QueryParams&, Query*);
//   static Result<std::vector<Row>> Fetch(HubStore&, const EntityRequest&, const Query&);
//   static void Fill(const Row&, Reply&);   adds one row's item to the answer
// and one line in EntityRoutes(). A member missing, or a Fill that does not take Fetch's rows,
// fails to compile in Route<Handler>().

// For the entities whose route takes no query parameters.
struct NoQuery {
  struct Query {};
  static std::optional<QueryError> Parse(const QueryParams&, Query*) { return std::nullopt; }
};

template <typename Handler>
EntityRoute Route() {
  return {Handler::Path(), [](HubStore& store, const EntityRequest& request) {
            EntityAnswer answer;
            typename Handler::Query query;
            answer.bad_query = Handler::Parse(request.params, &query);
            if (answer.bad_query) return answer;
            auto rows = Handler::Fetch(store, request, query);
            if (!rows.ok()) {
              answer.status = rows.status();
              return answer;
            }
            auto reply = std::make_unique<typename Handler::Reply>();
            reply->set_site(request.site);
            for (const auto& row : *rows) Handler::Fill(row, *reply);
            answer.rows = rows->size();
            answer.reply = std::move(reply);
            return answer;
          }};
}

void FillPosition(const PositionRow& p, v1::PositionItem* out) {
  out->set_site(p.site);
  auto* pos = out->mutable_position();
  pos->set_vehicle(p.vehicle);
  pos->set_device_seq(p.device_seq);
  pos->set_lat_e6(p.lat_e6);
  pos->set_lon_e6(p.lon_e6);
  pos->set_speed_dkmh(p.speed_dkmh);
  pos->set_heading_deg(p.heading_deg);
  pos->set_hdop_d(p.hdop_d);
  out->set_ts_ms(p.ts_ms);
  out->set_hlc(p.hlc);
  out->set_seq(p.seq);
}

struct StockHandler : NoQuery {
  using Reply = v1::StockReply;
  static std::string Path() { return wire::kStockSuffix; }
  static Result<std::vector<StockRow>> Fetch(HubStore& store, const EntityRequest& r, const Query&) {
    return store.Stock(r.site);
  }
  static void Fill(const StockRow& r, Reply& reply) {
    auto* o = reply.add_stock();
    o->set_sku(r.sku);
    o->set_on_hand(r.on_hand);
    o->set_reserved(r.reserved);
    o->set_version(r.version);
    o->set_hlc(r.hlc);
    o->set_ts_ms(r.ts_ms);
    o->set_seq(r.seq);
  }
};

struct OrdersHandler : NoQuery {
  using Reply = v1::OrdersReply;
  static std::string Path() { return wire::kOrdersSuffix; }
  static Result<std::vector<OrderRow>> Fetch(HubStore& store, const EntityRequest& r, const Query&) {
    return store.Orders(r.site);
  }
  static void Fill(const OrderRow& r, Reply& reply) {
    auto* o = reply.add_orders();
    o->set_order_id(r.order_id);
    o->set_site(r.site);
    o->set_status(r.status);
    o->set_actor(r.actor);
    // orders.lines is JSON the hub wrote itself (sqlite_store.cc LinesJson), "" before any
    // record carried lines; anything else is skipped rather than served.
    if (!r.lines_json.empty()) {
      const nlohmann::json lines = nlohmann::json::parse(r.lines_json, nullptr, false);
      if (lines.is_array()) {
        for (const auto& l : lines) {
          if (!l.is_object() || !l.contains("sku") || !l["sku"].is_string() || !l.contains("qty") ||
              !l["qty"].is_number_integer())
            continue;
          auto* line = o->add_lines();
          line->set_sku(l["sku"].get<std::string>());
          line->set_qty(l["qty"].get<int64_t>());
        }
      }
    }
    o->set_customer_sealed(r.customer_sealed);
    o->set_version(r.version);
    o->set_hlc(r.hlc);
    o->set_ts_ms(r.ts_ms);
    o->set_seq(r.seq);
  }
};

// Latest position of each vehicle whose newest fix came from the site.
struct VehiclesHandler : NoQuery {
  using Reply = v1::VehiclesReply;
  static std::string Path() { return wire::kVehiclesSuffix; }
  static Result<std::vector<PositionRow>> Fetch(HubStore& store, const EntityRequest& r, const Query&) {
    return store.Vehicles(r.site);
  }
  static void Fill(const PositionRow& p, Reply& reply) { FillPosition(p, reply.add_vehicles()); }
};

// A vehicle's position history: ?from=&to=&limit= (hub/query.h), oldest first.
struct TrackHandler {
  using Reply = v1::TrackReply;
  using Query = RangeQuery;
  static std::string Path() { return std::string(wire::kVehiclesSuffix) + "/([^/]+)/track"; }
  static std::optional<QueryError> Parse(const QueryParams& params, Query* q) {
    return ParseRangeQuery(params, {10000, 100000, true}, q);
  }
  static Result<std::vector<PositionRow>> Fetch(HubStore& store, const EntityRequest& r, const Query& q) {
    return store.Track(r.site, r.matches[2], q.from, q.to, static_cast<int>(q.limit));
  }
  static void Fill(const PositionRow& p, Reply& reply) { FillPosition(p, reply.add_track()); }
};

// Open cold-chain alerts.
struct AlertsHandler : NoQuery {
  using Reply = v1::AlertsReply;
  static std::string Path() { return wire::kAlertsSuffix; }
  static Result<std::vector<AlertRow>> Fetch(HubStore& store, const EntityRequest& r, const Query&) {
    return store.OpenAlerts(r.site);
  }
  static void Fill(const AlertRow& r, Reply& reply) {
    auto* o = reply.add_alerts();
    auto* a = o->mutable_alert();
    a->set_alert_id(r.alert_id);
    a->set_sensor(r.sensor);
    a->set_state(r.state);
    a->set_kind(r.kind);
    a->set_min_c(r.min_c);
    a->set_max_c(r.max_c);
    a->set_started_ts_ms(r.started_ts_ms);
    a->set_ended_ts_ms(r.ended_ts_ms);
    o->set_version(r.version);
    o->set_seq(r.seq);
  }
};

// Geofence events: ?from=&to=&limit= (hub/query.h).
struct GeofenceHandler {
  using Reply = v1::GeofenceReply;
  using Query = RangeQuery;
  static std::string Path() { return wire::kGeofenceSuffix; }
  static std::optional<QueryError> Parse(const QueryParams& params, Query* q) {
    return ParseRangeQuery(params, {1000, 10000, false}, q);
  }
  static Result<std::vector<GeofenceRow>> Fetch(HubStore& store, const EntityRequest& r, const Query& q) {
    return store.GeofenceEvents(r.site, q.from, q.to, static_cast<int>(q.limit));
  }
  static void Fill(const GeofenceRow& e, Reply& reply) {
    auto* o = reply.add_events();
    auto* g = o->mutable_event();
    g->set_vehicle(e.vehicle);
    g->set_fence(e.fence);
    g->set_kind(e.kind);
    g->set_event(e.event);
    o->set_ts_ms(e.ts_ms);
    o->set_seq(e.seq);
  }
};

// Pallet scans at dock doors: ?from=&to=&limit=, as geofence events.
struct DockScansHandler {
  using Reply = v1::DockScansReply;
  using Query = RangeQuery;
  static std::string Path() { return wire::kDockScansSuffix; }
  static std::optional<QueryError> Parse(const QueryParams& params, Query* q) { return GeofenceHandler::Parse(params, q); }
  static Result<std::vector<DockScanRow>> Fetch(HubStore& store, const EntityRequest& r, const Query& q) {
    return store.DockScans(r.site, q.from, q.to, static_cast<int>(q.limit));
  }
  static void Fill(const DockScanRow& e, Reply& reply) {
    auto* o = reply.add_scans();
    auto* d = o->mutable_scan();
    d->set_scan_id(e.scan_id);
    d->set_door(e.door);
    d->set_pallet_id(e.pallet_id);
    d->set_sku(e.sku);
    d->set_lot(e.lot);
    d->set_qty(e.qty);
    d->set_direction(e.direction);
    o->set_ts_ms(e.ts_ms);
    o->set_seq(e.seq);
  }
};

}  // namespace

std::vector<EntityRoute> EntityRoutes() {
  return {Route<StockHandler>(),  Route<OrdersHandler>(), Route<VehiclesHandler>(),
          Route<AlertsHandler>(), Route<GeofenceHandler>(), Route<TrackHandler>(), Route<DockScansHandler>()};
}

}  // namespace freshsync::hub
