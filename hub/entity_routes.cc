#include "hub/entity_routes.h"

#include <string_view>
#include <type_traits>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "audit/chain.h"
#include "audit/verify.h"
#include "hub/escrow.h"
#include "wire/routes.h"

namespace freshsync::hub {

int OrderStatusRank(const std::string& status) {
  // Lifecycle order. The two terminal states share a rank: which of them wins is decided by
  // the HLC, i.e. by whichever happened later (docs/conflicts.md).
  static const std::unordered_map<std::string, int> ranks = {
      {"created", 1}, {"accepted", 2}, {"picking", 3}, {"packed", 4},
      {"dispatched", 5}, {"delivered", 6}, {"cancelled", 6},
      // An edge refuses a created order stock cannot cover (docs/rules.md); terminal.
      {"refused", 6}};
  auto it = ranks.find(status);
  return it == ranks.end() ? 0 : it->second;
}

namespace {

// A handler is a struct with
//   using Reply = v1::...Reply;   the protobuf answer: `site` and one repeated item field
//   static std::string Path();    the route after /v1/sites/{site} (docs/api.md); only the
//                                 handler serves it, so it is spelled here and nowhere else
//   using Query; static std::optional<QueryError> Parse(const QueryParams&, Query*);
//   static Result<size_t> Read(HubStore&, const EntityRequest&, const Query&, Reply&);
//       fills the answer, returns the rows read; SqlRead<> gives it from
//       static constexpr Sql kRead; BindRead(request, query, params); Fill(row, reply)
//   static inline const std::vector<SchemaStep> kSchema;   its table's DDL, by migration
//   static inline const std::vector<ApplyStep> kApply;     named in EntityApply()'s switch
// and one entry in Handlers below. A member missing, or a Fill that does not take the rows,
// fails to compile; an Entity value not named in EntityApply()'s switch fails to compile too.

// For the entities whose route takes no query parameters: their SQL takes the site as ?1.
struct NoQuery {
  struct Query {};
  static std::optional<QueryError> Parse(const QueryParams&, Query*) { return std::nullopt; }
  static void BindRead(const EntityRequest& r, const Query&, SqlParams& p) { p.TextRef(1, r.site); }
};

// Record lists read by device time, ?from=&to=&limit= (hub/query.h): their SQL takes the site
// as ?1, from and to as ?2 and ?3, the limit as ?4.
struct RecordsInRange {
  using Query = RangeQuery;
  static std::optional<QueryError> Parse(const QueryParams& params, Query* q) {
    return ParseRangeQuery(params, {1000, 10000, false}, q);
  }
  static void BindRead(const EntityRequest& r, const Query& q, SqlParams& p) {
    p.TextRef(1, r.site).Int(2, q.from).Int(3, q.to).UInt(4, q.limit);
  }
};

// The read of a handler whose rows come from one query: Handler::kRead with the parameters of
// Handler::BindRead, each row added to the answer by Handler::Fill.
template <typename Handler>
struct SqlRead {
  template <typename Query, typename Reply>
  static Result<size_t> Read(HubStore& store, const EntityRequest& r, const Query& q, Reply& reply) {
    size_t rows = 0;
    Status s = store.Read(
        Handler::kRead, [&](SqlParams& p) { Handler::BindRead(r, q, p); },
        [&](const SqlRow& row) {
          Handler::Fill(row, reply);
          ++rows;
        });
    if (!s.ok()) return s;
    return rows;
  }
};

template <typename Handler>
EntityRoute Route() {
  return {Handler::Path(), [](HubStore& store, const EntityRequest& request) {
            EntityAnswer answer;
            typename Handler::Query query;
            answer.bad_query = Handler::Parse(request.params, &query);
            if (answer.bad_query) return answer;
            auto reply = std::make_unique<typename Handler::Reply>();
            reply->set_site(request.site);
            auto rows = Handler::Read(store, request, query, *reply);
            if (!rows.ok()) {
              answer.status = rows.status();
              return answer;
            }
            answer.rows = *rows;
            answer.reply = std::move(reply);
            return answer;
          }};
}

// ---------- Stock ----------

struct StockHandler : NoQuery, SqlRead<StockHandler> {
  using Reply = v1::StockReply;
  static std::string Path() { return "/stock"; }
  static inline const std::vector<SchemaStep> kSchema = {{1, {R"sql(
CREATE TABLE stock(
  site_id INTEGER NOT NULL, sku TEXT NOT NULL,
  on_hand INTEGER NOT NULL, reserved INTEGER NOT NULL,
  version INTEGER NOT NULL, hlc INTEGER NOT NULL, ts_ms INTEGER NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY(site_id, sku)) WITHOUT ROWID;
)sql",
                                                              // COLLATE "C": bytewise, as the state digest sorts.
                                                              R"sql(
CREATE TABLE stock(
  site_id BIGINT NOT NULL, sku TEXT COLLATE "C" NOT NULL,
  on_hand BIGINT NOT NULL, reserved BIGINT NOT NULL,
  version BIGINT NOT NULL, hlc BIGINT NOT NULL, ts_ms BIGINT NOT NULL, seq BIGINT NOT NULL,
  PRIMARY KEY(site_id, sku));
)sql"}}};
  // Newer version wins (docs/conflicts.md).
  static inline const std::vector<ApplyStep> kApply = {
      {{"INSERT INTO stock(site_id, sku, on_hand, reserved, version, hlc, ts_ms, seq) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
        "ON CONFLICT(site_id, sku) DO UPDATE SET on_hand = excluded.on_hand, reserved = excluded.reserved, "
        "version = excluded.version, hlc = excluded.hlc, ts_ms = excluded.ts_ms, seq = excluded.seq "
        "WHERE excluded.version > stock.version"},
       [](const v1::ChangeRecord& r, int64_t site_id, SqlParams& p) {
         if (!r.has_stock()) return false;
         p.Int(1, site_id).TextRef(2, r.key()).Int(3, r.stock().on_hand()).Int(4, r.stock().reserved());
         p.UInt(5, r.version()).UInt(6, r.hlc()).Int(7, r.ts_ms()).UInt(8, r.seq());
         return true;
       },
       "upsert stock",
       // The batch's records of one SKU reduce to what the per-record upserts leave: the first
       // record of the highest version (a later one of the same version does not replace it).
       "INSERT INTO stock(site_id, sku, on_hand, reserved, version, hlc, ts_ms, seq) "
       "SELECT DISTINCT ON (site_id, sku) site_id, sku, on_hand, reserved, version, hlc, ts_ms, seq "
       "FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], "
       "$8::bigint[]) WITH ORDINALITY AS r(site_id, sku, on_hand, reserved, version, hlc, ts_ms, seq, ord) "
       "ORDER BY site_id, sku, version DESC, ord "
       "ON CONFLICT(site_id, sku) DO UPDATE SET on_hand = excluded.on_hand, reserved = excluded.reserved, "
       "version = excluded.version, hlc = excluded.hlc, ts_ms = excluded.ts_ms, seq = excluded.seq "
       "WHERE excluded.version > stock.version"}};
  static constexpr Sql kRead{
      "SELECT sku, on_hand, reserved, version, hlc, ts_ms, seq FROM stock "
      "WHERE site_id = (SELECT site_id FROM sites WHERE site = ?1) ORDER BY sku"};
  static void Fill(const SqlRow& row, Reply& reply) {
    auto* o = reply.add_stock();
    o->set_sku(row.Text(0));
    o->set_on_hand(row.Int(1));
    o->set_reserved(row.Int(2));
    o->set_version(row.UInt(3));
    o->set_hlc(row.UInt(4));
    o->set_ts_ms(row.Int(5));
    o->set_seq(row.UInt(6));
  }
};

// ---------- Orders ----------

// orders.lines: the order's lines as a JSON array of {sku, qty}, written here and read by Fill.
std::string LinesJson(const v1::OrderState& o) {
  nlohmann::json lines = nlohmann::json::array();
  for (const auto& l : o.lines()) lines.push_back({{"sku", l.sku()}, {"qty", l.qty()}});
  return lines.dump();
}

struct OrdersHandler : NoQuery, SqlRead<OrdersHandler> {
  using Reply = v1::OrdersReply;
  static std::string Path() { return "/orders"; }
  static inline const std::vector<SchemaStep> kSchema = {{1, {R"sql(
CREATE TABLE orders(
  order_id TEXT PRIMARY KEY, site_id INTEGER NOT NULL,
  status TEXT NOT NULL, rank INTEGER NOT NULL, actor TEXT NOT NULL,
  lines TEXT, customer_sealed BLOB,
  version INTEGER NOT NULL, hlc INTEGER NOT NULL, ts_ms INTEGER NOT NULL, seq INTEGER NOT NULL) WITHOUT ROWID;
CREATE INDEX orders_site ON orders(site_id);
)sql",
                                                              R"sql(
CREATE TABLE orders(
  order_id TEXT COLLATE "C" PRIMARY KEY, site_id BIGINT NOT NULL,
  status TEXT NOT NULL, rank BIGINT NOT NULL, actor TEXT NOT NULL,
  lines TEXT, customer_sealed BYTEA,
  version BIGINT NOT NULL, hlc BIGINT NOT NULL, ts_ms BIGINT NOT NULL, seq BIGINT NOT NULL);
CREATE INDEX orders_site ON orders(site_id);
)sql"}}};
  // Higher lifecycle rank, then later HLC wins, and moves the order to the winning site
  // (docs/conflicts.md). Lines and the sealed customer come only with `created`; a
  // later-arriving created record loses the status rule but still contributes them.
  static inline const std::vector<ApplyStep> kApply = {
      {{"INSERT INTO orders(order_id, site_id, status, rank, actor, lines, customer_sealed, version, hlc, ts_ms, seq) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
        "ON CONFLICT(order_id) DO UPDATE SET site_id = excluded.site_id, status = excluded.status, "
        "rank = excluded.rank, actor = excluded.actor, version = excluded.version, hlc = excluded.hlc, "
        "ts_ms = excluded.ts_ms, seq = excluded.seq "
        "WHERE (excluded.rank, excluded.hlc) > (orders.rank, orders.hlc)"},
       [](const v1::ChangeRecord& r, int64_t site_id, SqlParams& p) {
         if (!r.has_order()) return false;
         const auto& o = r.order();
         p.TextRef(1, r.key()).Int(2, site_id).TextRef(3, o.status()).Int(4, OrderStatusRank(o.status()));
         p.TextRef(5, o.actor());
         if (o.lines_size() > 0) p.Text(6, LinesJson(o)); else p.Null(6);
         if (o.customer_sealed().empty()) p.Null(7); else p.BlobRef(7, o.customer_sealed());
         p.UInt(8, r.version()).UInt(9, r.hlc()).Int(10, r.ts_ms()).UInt(11, r.seq());
         return true;
       },
       "upsert order"},
      {{"UPDATE orders SET lines = ?2 WHERE order_id = ?1 AND lines IS NULL"},
       [](const v1::ChangeRecord& r, int64_t, SqlParams& p) {
         if (!r.has_order() || r.order().lines_size() == 0) return false;
         p.TextRef(1, r.key()).Text(2, LinesJson(r.order()));
         return true;
       },
       "fill order lines"},
      {{"UPDATE orders SET customer_sealed = ?2 WHERE order_id = ?1 AND customer_sealed IS NULL"},
       [](const v1::ChangeRecord& r, int64_t, SqlParams& p) {
         if (!r.has_order() || r.order().customer_sealed().empty()) return false;
         p.TextRef(1, r.key()).BlobRef(2, r.order().customer_sealed());
         return true;
       },
       "fill order customer"}};
  // Orders whose winning record came from the site.
  static constexpr Sql kRead{
      "SELECT o.order_id, s.site, o.status, o.actor, o.lines, o.customer_sealed, o.version, o.hlc, o.ts_ms, o.seq "
      "FROM orders o JOIN sites s ON s.site_id = o.site_id WHERE s.site = ?1 ORDER BY o.order_id"};
  static void Fill(const SqlRow& row, Reply& reply) {
    auto* o = reply.add_orders();
    o->set_order_id(row.Text(0));
    o->set_site(row.Text(1));
    o->set_status(row.Text(2));
    o->set_actor(row.Text(3));
    // orders.lines is JSON the hub wrote itself (LinesJson), NULL before any record carried
    // lines; anything else is skipped rather than served.
    const std::string lines_json = row.Text(4);
    if (!lines_json.empty()) {
      const nlohmann::json lines = nlohmann::json::parse(lines_json, nullptr, false);
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
    o->set_customer_sealed(row.Text(5));
    o->set_version(row.UInt(6));
    o->set_hlc(row.UInt(7));
    o->set_ts_ms(row.Int(8));
    o->set_seq(row.UInt(9));
  }
};

// ---------- Vehicles and tracks ----------
// The store owns the position tables (vehicles, position_chunks) and writes them per batch
// (SqliteHubStore WritePositions), so these two handlers have no schema and no apply.

// Latest position of each vehicle whose newest fix came from the site.
struct VehiclesHandler : NoQuery, SqlRead<VehiclesHandler> {
  using Reply = v1::VehiclesReply;
  static std::string Path() { return "/vehicles"; }
  static inline const std::vector<SchemaStep> kSchema = {};
  static constexpr Sql kRead{
      "SELECT v.vehicle, s.site, v.device_seq, v.lat_e6, v.lon_e6, v.speed_dkmh, v.heading_deg, v.hdop_d, "
      "v.ts_ms, v.hlc, v.seq FROM vehicles v JOIN sites s ON s.site_id = v.site_id WHERE s.site = ?1 "
      "ORDER BY v.vehicle"};
  static void Fill(const SqlRow& row, Reply& reply) {
    auto* out = reply.add_vehicles();
    auto* pos = out->mutable_position();
    pos->set_vehicle(row.Text(0));
    out->set_site(row.Text(1));
    pos->set_device_seq(row.UInt(2));
    pos->set_lat_e6(static_cast<int32_t>(row.Int(3)));
    pos->set_lon_e6(static_cast<int32_t>(row.Int(4)));
    pos->set_speed_dkmh(static_cast<uint32_t>(row.Int(5)));
    pos->set_heading_deg(static_cast<uint32_t>(row.Int(6)));
    pos->set_hdop_d(static_cast<uint32_t>(row.Int(7)));
    out->set_ts_ms(row.Int(8));
    out->set_hlc(row.UInt(9));
    out->set_seq(row.UInt(10));
  }
};

// A vehicle's position history: ?from=&to=&limit= (hub/query.h), oldest first, decoded from
// the store's chunks (HubStore::Track).
struct TrackHandler {
  using Reply = v1::TrackReply;
  using Query = RangeQuery;
  static std::string Path() { return VehiclesHandler::Path() + "/([^/]+)/track"; }
  static inline const std::vector<SchemaStep> kSchema = {};
  static std::optional<QueryError> Parse(const QueryParams& params, Query* q) {
    return ParseRangeQuery(params, {10000, 100000, true}, q);
  }
  static Result<size_t> Read(HubStore& store, const EntityRequest& r, const Query& q, Reply& reply) {
    auto rows = store.Track(r.site, r.matches[2], q.from, q.to, static_cast<int>(q.limit));
    if (!rows.ok()) return rows.status();
    for (auto& item : *rows) *reply.add_track() = std::move(item);
    return rows->size();
  }
};

// ---------- Cold-chain alerts ----------

struct AlertsHandler : NoQuery, SqlRead<AlertsHandler> {
  using Reply = v1::AlertsReply;
  static std::string Path() { return "/alerts"; }
  static inline const std::vector<SchemaStep> kSchema = {{1, {R"sql(
CREATE TABLE alerts(
  site_id INTEGER NOT NULL, alert_id TEXT NOT NULL, sensor TEXT NOT NULL, state TEXT NOT NULL, kind TEXT NOT NULL,
  min_c REAL NOT NULL, max_c REAL NOT NULL, started_ts_ms INTEGER NOT NULL, ended_ts_ms INTEGER NOT NULL,
  version INTEGER NOT NULL, hlc INTEGER NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY(site_id, alert_id)) WITHOUT ROWID;
CREATE INDEX alerts_state ON alerts(site_id, state);
)sql",
                                                              R"sql(
CREATE TABLE alerts(
  site_id BIGINT NOT NULL, alert_id TEXT COLLATE "C" NOT NULL, sensor TEXT NOT NULL, state TEXT NOT NULL,
  kind TEXT NOT NULL, min_c DOUBLE PRECISION NOT NULL, max_c DOUBLE PRECISION NOT NULL,
  started_ts_ms BIGINT NOT NULL, ended_ts_ms BIGINT NOT NULL,
  version BIGINT NOT NULL, hlc BIGINT NOT NULL, seq BIGINT NOT NULL,
  PRIMARY KEY(site_id, alert_id));
CREATE INDEX alerts_state ON alerts(site_id, state);
)sql"}}};
  // Newer version wins.
  static inline const std::vector<ApplyStep> kApply = {
      {{"INSERT INTO alerts(site_id, alert_id, sensor, state, kind, min_c, max_c, started_ts_ms, ended_ts_ms, "
        "version, hlc, seq) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) "
        "ON CONFLICT(site_id, alert_id) DO UPDATE SET sensor = excluded.sensor, state = excluded.state, "
        "kind = excluded.kind, min_c = excluded.min_c, max_c = excluded.max_c, "
        "started_ts_ms = excluded.started_ts_ms, ended_ts_ms = excluded.ended_ts_ms, version = excluded.version, "
        "hlc = excluded.hlc, seq = excluded.seq WHERE excluded.version > alerts.version"},
       [](const v1::ChangeRecord& r, int64_t site_id, SqlParams& p) {
         if (!r.has_alert()) return false;
         const auto& a = r.alert();
         p.Int(1, site_id).TextRef(2, r.key()).TextRef(3, a.sensor()).TextRef(4, a.state()).TextRef(5, a.kind());
         p.Real(6, a.min_c()).Real(7, a.max_c()).Int(8, a.started_ts_ms()).Int(9, a.ended_ts_ms());
         p.UInt(10, r.version()).UInt(11, r.hlc()).UInt(12, r.seq());
         return true;
       },
       "upsert alert",
       // As stock: per alert, the first record of the highest version.
       "INSERT INTO alerts(site_id, alert_id, sensor, state, kind, min_c, max_c, started_ts_ms, ended_ts_ms, "
       "version, hlc, seq) SELECT DISTINCT ON (site_id, alert_id) site_id, alert_id, sensor, state, kind, min_c, max_c, "
       "started_ts_ms, ended_ts_ms, version, hlc, seq "
       "FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::float8[], "
       "$8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[]) WITH ORDINALITY "
       "AS r(site_id, alert_id, sensor, state, kind, min_c, max_c, started_ts_ms, ended_ts_ms, version, hlc, seq, ord) "
       "ORDER BY site_id, alert_id, version DESC, ord "
       "ON CONFLICT(site_id, alert_id) DO UPDATE SET sensor = excluded.sensor, state = excluded.state, "
       "kind = excluded.kind, min_c = excluded.min_c, max_c = excluded.max_c, "
       "started_ts_ms = excluded.started_ts_ms, ended_ts_ms = excluded.ended_ts_ms, version = excluded.version, "
       "hlc = excluded.hlc, seq = excluded.seq WHERE excluded.version > alerts.version"}};
  // Open alerts only.
  static constexpr Sql kRead{
      "SELECT alert_id, sensor, state, kind, min_c, max_c, started_ts_ms, ended_ts_ms, version, seq FROM alerts "
      "WHERE site_id = (SELECT site_id FROM sites WHERE site = ?1) AND state = 'open' "
      "ORDER BY started_ts_ms, alert_id"};
  static void Fill(const SqlRow& row, Reply& reply) {
    auto* o = reply.add_alerts();
    auto* a = o->mutable_alert();
    a->set_alert_id(row.Text(0));
    a->set_sensor(row.Text(1));
    a->set_state(row.Text(2));
    a->set_kind(row.Text(3));
    a->set_min_c(row.Real(4));
    a->set_max_c(row.Real(5));
    a->set_started_ts_ms(row.Int(6));
    a->set_ended_ts_ms(row.Int(7));
    o->set_version(row.UInt(8));
    o->set_seq(row.UInt(9));
  }
};

// ---------- Geofence events ----------

struct GeofenceHandler : RecordsInRange, SqlRead<GeofenceHandler> {
  using Reply = v1::GeofenceReply;
  static std::string Path() { return "/geofence"; }
  static inline const std::vector<SchemaStep> kSchema = {{1, {R"sql(
CREATE TABLE geofence_events(
  site_id INTEGER NOT NULL, seq INTEGER NOT NULL, vehicle TEXT NOT NULL, fence TEXT NOT NULL,
  kind TEXT NOT NULL, event TEXT NOT NULL, ts_ms INTEGER NOT NULL,
  PRIMARY KEY(site_id, seq)) WITHOUT ROWID;
CREATE INDEX geofence_ts ON geofence_events(site_id, ts_ms);
)sql",
                                                              R"sql(
CREATE TABLE geofence_events(
  site_id BIGINT NOT NULL, seq BIGINT NOT NULL, vehicle TEXT NOT NULL, fence TEXT NOT NULL,
  kind TEXT NOT NULL, event TEXT NOT NULL, ts_ms BIGINT NOT NULL,
  PRIMARY KEY(site_id, seq));
CREATE INDEX geofence_ts ON geofence_events(site_id, ts_ms);
)sql"}}};
  // One row per record; the vehicle defaults to the record's key.
  static inline const std::vector<ApplyStep> kApply = {
      {{"INSERT OR IGNORE INTO geofence_events(site_id, seq, vehicle, fence, kind, event, ts_ms) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        "INSERT INTO geofence_events(site_id, seq, vehicle, fence, kind, event, ts_ms) "
        "VALUES($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"},
       [](const v1::ChangeRecord& r, int64_t site_id, SqlParams& p) {
         if (!r.has_geofence()) return false;
         const auto& g = r.geofence();
         p.Int(1, site_id).UInt(2, r.seq()).TextRef(3, g.vehicle().empty() ? r.key() : g.vehicle());
         p.TextRef(4, g.fence()).TextRef(5, g.kind()).TextRef(6, g.event()).Int(7, r.ts_ms());
         return true;
       },
       "insert geofence event"}};
  static constexpr Sql kRead{
      "SELECT seq, vehicle, fence, kind, event, ts_ms FROM geofence_events "
      "WHERE site_id = (SELECT site_id FROM sites WHERE site = ?1) AND ts_ms BETWEEN ?2 AND ?3 "
      "ORDER BY ts_ms, seq LIMIT ?4"};
  static void Fill(const SqlRow& row, Reply& reply) {
    auto* o = reply.add_events();
    auto* g = o->mutable_event();
    o->set_seq(row.UInt(0));
    g->set_vehicle(row.Text(1));
    g->set_fence(row.Text(2));
    g->set_kind(row.Text(3));
    g->set_event(row.Text(4));
    o->set_ts_ms(row.Int(5));
  }
};

// ---------- Dock scans ----------

struct DockScansHandler : RecordsInRange, SqlRead<DockScansHandler> {
  using Reply = v1::DockScansReply;
  static std::string Path() { return "/dock-scans"; }
  // One row per scan id per site: a record only, stock is not touched by a scan.
  static inline const std::vector<SchemaStep> kSchema = {{4, {R"sql(
CREATE TABLE dock_scans(
  site_id INTEGER NOT NULL, scan_id TEXT NOT NULL, seq INTEGER NOT NULL, door TEXT NOT NULL,
  pallet_id TEXT NOT NULL, sku TEXT NOT NULL, lot TEXT NOT NULL, qty INTEGER NOT NULL,
  direction TEXT NOT NULL, ts_ms INTEGER NOT NULL,
  PRIMARY KEY(site_id, scan_id)) WITHOUT ROWID;
CREATE INDEX dock_scans_ts ON dock_scans(site_id, ts_ms, seq);
)sql",
                                                              R"sql(
CREATE TABLE dock_scans(
  site_id BIGINT NOT NULL, scan_id TEXT NOT NULL, seq BIGINT NOT NULL, door TEXT NOT NULL,
  pallet_id TEXT NOT NULL, sku TEXT NOT NULL, lot TEXT NOT NULL, qty BIGINT NOT NULL,
  direction TEXT NOT NULL, ts_ms BIGINT NOT NULL,
  PRIMARY KEY(site_id, scan_id));
CREATE INDEX dock_scans_ts ON dock_scans(site_id, ts_ms, seq);
)sql"}}};
  // The first record of a scan id the site sends wins (the edge sends one per scan; a resent
  // record changes nothing).
  static inline const std::vector<ApplyStep> kApply = {
      {{"INSERT OR IGNORE INTO dock_scans(site_id, scan_id, seq, door, pallet_id, sku, lot, qty, direction, ts_ms) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        "INSERT INTO dock_scans(site_id, scan_id, seq, door, pallet_id, sku, lot, qty, direction, ts_ms) "
        "VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING"},
       [](const v1::ChangeRecord& r, int64_t site_id, SqlParams& p) {
         if (!r.has_dock_scan()) return false;
         const auto& d = r.dock_scan();
         p.Int(1, site_id).TextRef(2, r.key()).UInt(3, r.seq()).TextRef(4, d.door()).TextRef(5, d.pallet_id());
         p.TextRef(6, d.sku()).TextRef(7, d.lot()).Int(8, d.qty()).TextRef(9, d.direction()).Int(10, r.ts_ms());
         return true;
       },
       "insert dock scan"}};
  // Oldest first by device time, ties by seq.
  static constexpr Sql kRead{
      "SELECT seq, scan_id, door, pallet_id, sku, lot, qty, direction, ts_ms FROM dock_scans "
      "WHERE site_id = (SELECT site_id FROM sites WHERE site = ?1) AND ts_ms BETWEEN ?2 AND ?3 "
      "ORDER BY ts_ms, seq LIMIT ?4"};
  static void Fill(const SqlRow& row, Reply& reply) {
    auto* o = reply.add_scans();
    auto* d = o->mutable_scan();
    o->set_seq(row.UInt(0));
    d->set_scan_id(row.Text(1));
    d->set_door(row.Text(2));
    d->set_pallet_id(row.Text(3));
    d->set_sku(row.Text(4));
    d->set_lot(row.Text(5));
    d->set_qty(row.Int(6));
    d->set_direction(row.Text(7));
    o->set_ts_ms(row.Int(8));
  }
};

// ---------- Climate history ----------

// Every CLIMATE reading the site sends, one row each, for HQ's history of a sensor: the
// telemetry of issue 13 beside the position history, kept [retention] telemetry_days
// (HubStore::MaintainTelemetry). PostgreSQL partitions it by day of ts_ms (the DEFAULT
// partition takes the days no day partition covers yet, as position_chunks'); SQLite keeps
// one table and deletes the old rows. The cold-chain audit chain keeps its own links apart
// (ColdchainHandler), never thinned: this history is not evidence, only telemetry.
struct ClimateHandler {
  using Reply = v1::ClimateReply;
  using Query = RangeQuery;
  static std::string Path() { return "/sensors/([^/]+)/climate"; }
  static inline const std::vector<SchemaStep> kSchema = {{12, {R"sql(
CREATE TABLE climate_readings(
  site_id INTEGER NOT NULL, sensor TEXT NOT NULL, ts_ms INTEGER NOT NULL, seq INTEGER NOT NULL,
  device_seq INTEGER NOT NULL, temp_dc INTEGER NOT NULL, rh_d INTEGER NOT NULL, battery_d INTEGER NOT NULL,
  hlc INTEGER NOT NULL,
  PRIMARY KEY(site_id, sensor, ts_ms, seq)) WITHOUT ROWID;
CREATE INDEX climate_readings_ts ON climate_readings(ts_ms);
)sql",
                                                               R"sql(
CREATE TABLE climate_readings(
  site_id BIGINT NOT NULL, sensor TEXT COLLATE "C" NOT NULL, ts_ms BIGINT NOT NULL, seq BIGINT NOT NULL,
  device_seq BIGINT NOT NULL, temp_dc BIGINT NOT NULL, rh_d BIGINT NOT NULL, battery_d BIGINT NOT NULL,
  hlc BIGINT NOT NULL,
  PRIMARY KEY(site_id, sensor, ts_ms, seq)) PARTITION BY RANGE (ts_ms);
CREATE TABLE climate_readings_default PARTITION OF climate_readings DEFAULT;
)sql"}}};
  // One row per record; the sensor defaults to the record's key (batch format 2 omits it).
  static inline const std::vector<ApplyStep> kApply = {
      {{"INSERT OR IGNORE INTO climate_readings(site_id, sensor, ts_ms, seq, device_seq, temp_dc, rh_d, battery_d, hlc) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        "INSERT INTO climate_readings(site_id, sensor, ts_ms, seq, device_seq, temp_dc, rh_d, battery_d, hlc) "
        "VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING"},
       [](const v1::ChangeRecord& r, int64_t site_id, SqlParams& p) {
         if (!r.has_climate()) return false;
         const auto& c = r.climate();
         p.Int(1, site_id).TextRef(2, c.sensor().empty() ? r.key() : c.sensor()).Int(3, r.ts_ms()).UInt(4, r.seq());
         p.UInt(5, c.device_seq()).Int(6, c.temp_dc()).Int(7, c.rh_d()).Int(8, c.battery_d()).UInt(9, r.hlc());
         return true;
       },
       "insert climate reading",
       nullptr,
       // A batch's readings at once: the key holds the record's seq, so every reading of an
       // applied record is new (the per-record ON CONFLICT never fires from ApplyBatch).
       "COPY climate_readings(site_id, sensor, ts_ms, seq, device_seq, temp_dc, rh_d, battery_d, hlc) FROM STDIN"}};
  // The position history's paging and limits (TrackHandler): ?from=&to=&limit=, to >= from.
  static std::optional<QueryError> Parse(const QueryParams& params, Query* q) {
    return ParseRangeQuery(params, {10000, 100000, true}, q);
  }
  // Oldest first by device time, ties by seq.
  static constexpr Sql kRead{
      "SELECT sensor, device_seq, temp_dc, rh_d, battery_d, ts_ms, hlc, seq FROM climate_readings "
      "WHERE site_id = (SELECT site_id FROM sites WHERE site = ?1) AND sensor = ?2 AND ts_ms BETWEEN ?3 AND ?4 "
      "ORDER BY ts_ms, seq LIMIT ?5"};
  static Result<size_t> Read(HubStore& store, const EntityRequest& r, const Query& q, Reply& reply) {
    size_t rows = 0;
    Status s = store.Read(
        kRead, [&](SqlParams& p) { p.TextRef(1, r.site).TextRef(2, r.matches[2]).Int(3, q.from).Int(4, q.to).UInt(5, q.limit); },
        [&](const SqlRow& row) {
          auto* o = reply.add_readings();
          auto* c = o->mutable_reading();
          c->set_sensor(row.Text(0));
          c->set_device_seq(row.UInt(1));
          c->set_temp_dc(static_cast<int32_t>(row.Int(2)));
          c->set_rh_d(static_cast<uint32_t>(row.Int(3)));
          c->set_battery_d(static_cast<uint32_t>(row.Int(4)));
          o->set_ts_ms(row.Int(5));
          o->set_hlc(row.UInt(6));
          o->set_seq(row.UInt(7));
          ++rows;
        });
    if (!s.ok()) return s;
    return rows;
  }
};

// ---------- Escrow ----------

// The site's allotment per SKU (docs/escrow.md, hub/escrow.h): the site's counters from its
// ESCROW records, and the hub's own counters `returned` and `used`, which no record touches.
struct EscrowHandler : NoQuery {
  using Reply = v1::EscrowReply;
  static std::string Path() { return "/escrow"; }
  static inline const std::vector<SchemaStep> kSchema = {{7, {R"sql(
CREATE TABLE escrow(
  site_id INTEGER NOT NULL, sku TEXT NOT NULL,
  given INTEGER NOT NULL, returned_applied INTEGER NOT NULL, consumed_applied INTEGER NOT NULL,
  held INTEGER NOT NULL, target INTEGER NOT NULL, version INTEGER NOT NULL,
  returned INTEGER NOT NULL DEFAULT 0, used INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(site_id, sku)) WITHOUT ROWID;
)sql",
                                                              R"sql(
CREATE TABLE escrow(
  site_id BIGINT NOT NULL, sku TEXT COLLATE "C" NOT NULL,
  given BIGINT NOT NULL, returned_applied BIGINT NOT NULL, consumed_applied BIGINT NOT NULL,
  held BIGINT NOT NULL, target BIGINT NOT NULL, version BIGINT NOT NULL,
  returned BIGINT NOT NULL DEFAULT 0, used BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY(site_id, sku));
)sql"}}};
  // Newer version wins; the site's counters only grow with its versions, so `given` is also
  // the maximum seen (docs/conflicts.md).
  static inline const std::vector<ApplyStep> kApply = {
      {{"INSERT INTO escrow(site_id, sku, given, returned_applied, consumed_applied, held, target, version) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
        "ON CONFLICT(site_id, sku) DO UPDATE SET given = excluded.given, returned_applied = excluded.returned_applied, "
        "consumed_applied = excluded.consumed_applied, held = excluded.held, target = excluded.target, "
        "version = excluded.version WHERE excluded.version > escrow.version"},
       [](const v1::ChangeRecord& r, int64_t site_id, SqlParams& p) {
         if (!r.has_escrow()) return false;
         const auto& e = r.escrow();
         p.Int(1, site_id).TextRef(2, r.key()).Int(3, e.given()).Int(4, e.returned_applied());
         p.Int(5, e.consumed_applied()).Int(6, e.held()).Int(7, e.target()).UInt(8, r.version());
         return true;
       },
       "upsert escrow"}};
  static Result<size_t> Read(HubStore& store, const EntityRequest& r, const Query&, Reply& reply) {
    size_t rows = 0;
    Status s = store.Read(kReadEscrow, [&](SqlParams& p) { p.TextRef(1, r.site); }, [&](const SqlRow& row) {
      const EscrowRow e = EscrowRowFrom(row);
      auto* o = reply.add_escrow();
      o->set_sku(e.sku);
      o->set_granted(e.Granted());
      o->set_used(e.used);
      o->set_free(e.Free());
      ++rows;
    });
    if (!s.ok()) return s;
    return rows;
  }
};

// ---------- Cold-chain audit chain ----------

// The links of each sensor's chain (CLIMATE and COLDCHAIN_ALERT records that carry chain
// fields), one row per link with every field its canonical bytes are made of (audit/chain.h),
// the seals, and each site's pinned key. Nothing here is ever thinned or deleted: the hub's copy
// is what HQ verifies (docs/operations.md, "Cold-chain audit"). A record without chain fields
// is unchained: not a row here.
// Key pinning: the first seal a site sends pins its public key (trust on first use). The site's
// mutual-TLS identity already authenticates that first seal, and no HQ step is needed before
// a site's first hour is verifiable; a later seal under another key fails verification, and
// the answer names the pinned key's fingerprint so HQ can compare it with `edgectl audit-key`.
struct ColdchainHandler {
  using Reply = v1::ColdchainVerifyReply;
  static std::string Path() { return wire::kColdchainVerifySuffix; }
  struct Query {
    std::string sensor;
    RangeQuery range;
  };
  static std::optional<QueryError> Parse(const QueryParams& params, Query* q) {
    auto it = params.find("sensor");
    if (it == params.end() || it->second.empty() || it->second.size() > 128)
      return QueryError{"sensor", "sensor: required, 1..128 bytes"};
    q->sensor = it->second;
    return ParseRangeQuery(params, {kMaxLinks, kMaxLinks, true}, &q->range);
  }
  static constexpr uint64_t kMaxLinks = 200000;
  static inline const std::vector<SchemaStep> kSchema = {{11, {R"sql(
CREATE TABLE coldchain_links(
  site_id INTEGER NOT NULL, sensor TEXT NOT NULL, idx INTEGER NOT NULL, seq INTEGER NOT NULL,
  kind TEXT NOT NULL,  -- 'reading' or 'alert'
  ts_ms INTEGER NOT NULL,
  device_seq INTEGER NOT NULL, temp_dc INTEGER NOT NULL, rh_d INTEGER NOT NULL, battery_d INTEGER NOT NULL,
  alert_id TEXT NOT NULL, state TEXT NOT NULL, alert_kind TEXT NOT NULL, min_c REAL NOT NULL, max_c REAL NOT NULL,
  started_ts_ms INTEGER NOT NULL, ended_ts_ms INTEGER NOT NULL,
  chain_prev BLOB NOT NULL, chain_hash BLOB NOT NULL,
  PRIMARY KEY(site_id, sensor, idx)) WITHOUT ROWID;
CREATE INDEX coldchain_links_ts ON coldchain_links(site_id, sensor, ts_ms);
CREATE TABLE coldchain_seals(
  site_id INTEGER NOT NULL, sensor TEXT NOT NULL, last_index INTEGER NOT NULL, seq INTEGER NOT NULL,
  first_index INTEGER NOT NULL, count INTEGER NOT NULL, first_ts_ms INTEGER NOT NULL, last_ts_ms INTEGER NOT NULL,
  last_hash BLOB NOT NULL, public_key BLOB NOT NULL, signature BLOB NOT NULL,
  PRIMARY KEY(site_id, sensor, last_index)) WITHOUT ROWID;
CREATE TABLE coldchain_keys(
  site_id INTEGER PRIMARY KEY, public_key BLOB NOT NULL, pinned_seq INTEGER NOT NULL);
)sql",
                                                              R"sql(
CREATE TABLE coldchain_links(
  site_id BIGINT NOT NULL, sensor TEXT COLLATE "C" NOT NULL, idx BIGINT NOT NULL, seq BIGINT NOT NULL,
  kind TEXT NOT NULL, ts_ms BIGINT NOT NULL,
  device_seq BIGINT NOT NULL, temp_dc BIGINT NOT NULL, rh_d BIGINT NOT NULL, battery_d BIGINT NOT NULL,
  alert_id TEXT NOT NULL, state TEXT NOT NULL, alert_kind TEXT NOT NULL,
  min_c DOUBLE PRECISION NOT NULL, max_c DOUBLE PRECISION NOT NULL,
  started_ts_ms BIGINT NOT NULL, ended_ts_ms BIGINT NOT NULL,
  chain_prev BYTEA NOT NULL, chain_hash BYTEA NOT NULL,
  PRIMARY KEY(site_id, sensor, idx));
CREATE INDEX coldchain_links_ts ON coldchain_links(site_id, sensor, ts_ms);
CREATE TABLE coldchain_seals(
  site_id BIGINT NOT NULL, sensor TEXT COLLATE "C" NOT NULL, last_index BIGINT NOT NULL, seq BIGINT NOT NULL,
  first_index BIGINT NOT NULL, count BIGINT NOT NULL, first_ts_ms BIGINT NOT NULL, last_ts_ms BIGINT NOT NULL,
  last_hash BYTEA NOT NULL, public_key BYTEA NOT NULL, signature BYTEA NOT NULL,
  PRIMARY KEY(site_id, sensor, last_index));
CREATE TABLE coldchain_keys(
  site_id BIGINT PRIMARY KEY, public_key BYTEA NOT NULL, pinned_seq BIGINT NOT NULL);
)sql"}}};
  // A link is held once: a second record claiming the same (sensor, index) (an edge restored
  // from an older backup re-issuing it) does not replace the first, and verification names it.
  static inline const std::vector<ApplyStep> kApply = {
      {{"INSERT INTO coldchain_links(site_id, sensor, idx, seq, kind, ts_ms, device_seq, temp_dc, rh_d, battery_d, "
        "alert_id, state, alert_kind, min_c, max_c, started_ts_ms, ended_ts_ms, chain_prev, chain_hash) "
        "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19) "
        "ON CONFLICT DO NOTHING"},
       [](const v1::ChangeRecord& r, int64_t site_id, SqlParams& p) {
         if (r.chain_hash().empty() || r.chain_index() == 0) return false;  // unchained
         const audit::Link l = audit::LinkOf(r);
         if (l.sensor.empty()) return false;
         p.Int(1, site_id).Text(2, l.sensor).UInt(3, l.index).UInt(4, r.seq());
         p.Text(5, l.kind == audit::Link::Kind::kReading ? "reading" : "alert").Int(6, l.ts_ms);
         p.UInt(7, l.device_seq).Int(8, l.temp_dc).Int(9, l.rh_d).Int(10, l.battery_d);
         p.Text(11, l.alert_id).Text(12, l.state).Text(13, l.alert_kind).Real(14, l.min_c).Real(15, l.max_c);
         p.Int(16, l.started_ts_ms).Int(17, l.ended_ts_ms).BlobRef(18, r.chain_prev()).BlobRef(19, r.chain_hash());
         return true;
       },
       "coldchain link"}};
  static inline const std::vector<ApplyStep> kApplySeal = {
      {{"INSERT INTO coldchain_seals(site_id, sensor, last_index, seq, first_index, count, first_ts_ms, last_ts_ms, "
        "last_hash, public_key, signature) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING"},
       [](const v1::ChangeRecord& r, int64_t site_id, SqlParams& p) {
         if (!r.has_seal()) return false;
         const auto& s = r.seal();
         p.Int(1, site_id).TextRef(2, s.sensor()).UInt(3, s.last_index()).UInt(4, r.seq()).UInt(5, s.first_index());
         p.UInt(6, s.count()).Int(7, s.first_ts_ms()).Int(8, s.last_ts_ms()).BlobRef(9, s.last_hash());
         p.BlobRef(10, s.public_key()).BlobRef(11, s.signature());
         return true;
       },
       "coldchain seal"},
      {{"INSERT INTO coldchain_keys(site_id, public_key, pinned_seq) VALUES(?1, ?2, ?3) ON CONFLICT DO NOTHING"},
       [](const v1::ChangeRecord& r, int64_t site_id, SqlParams& p) {
         if (!r.has_seal() || r.seal().public_key().size() != audit::kPublicKeyBytes) return false;
         p.Int(1, site_id).BlobRef(2, r.seal().public_key()).UInt(3, r.seq());
         return true;
       },
       "coldchain key pin"}};
  // An alert is both the alert's state and a link.
  static const std::vector<ApplyStep>& AlertApply(const std::vector<ApplyStep>& alert_steps) {
    static const std::vector<ApplyStep> steps = [&] {
      std::vector<ApplyStep> v = alert_steps;
      v.insert(v.end(), kApply.begin(), kApply.end());
      return v;
    }();
    return steps;
  }

  static constexpr Sql kKey{"SELECT public_key FROM coldchain_keys WHERE site_id = (SELECT site_id FROM sites WHERE site = ?1)"};
  static constexpr Sql kSpan{
      "SELECT MIN(idx), MAX(idx), COUNT(*) FROM coldchain_links "
      "WHERE site_id = (SELECT site_id FROM sites WHERE site = ?1) AND sensor = ?2 AND ts_ms BETWEEN ?3 AND ?4"};
  static constexpr Sql kBefore{
      "SELECT idx, chain_hash FROM coldchain_links WHERE site_id = (SELECT site_id FROM sites WHERE site = ?1) "
      "AND sensor = ?2 AND idx < ?3 ORDER BY idx DESC LIMIT 1"};
  static constexpr Sql kLinks{
      "SELECT idx, seq, kind, ts_ms, device_seq, temp_dc, rh_d, battery_d, alert_id, state, alert_kind, min_c, max_c, "
      "started_ts_ms, ended_ts_ms, chain_prev, chain_hash FROM coldchain_links "
      "WHERE site_id = (SELECT site_id FROM sites WHERE site = ?1) AND sensor = ?2 AND idx BETWEEN ?3 AND ?4 "
      "ORDER BY idx LIMIT ?5"};
  static constexpr Sql kSeals{
      "SELECT seq, first_index, last_index, count, first_ts_ms, last_ts_ms, last_hash, public_key, signature "
      "FROM coldchain_seals WHERE site_id = (SELECT site_id FROM sites WHERE site = ?1) AND sensor = ?2 "
      "AND last_index BETWEEN ?3 AND ?4 ORDER BY last_index"};

  // Recomputes the chain over the links whose device time is in [from, to]: every link from
  // the first to the last of them by index (a late reading does not split the range), anchored
  // on the link before, and every seal of the range (audit/verify.h).
  static Result<size_t> Read(HubStore& store, const EntityRequest& r, const Query& q, Reply& reply) {
    reply.set_sensor(q.sensor);
    reply.set_from_ms(q.range.from);
    reply.set_to_ms(q.range.to);
    std::string key;
    Status s = store.Read(kKey, [&](SqlParams& p) { p.TextRef(1, r.site); }, [&](const SqlRow& row) { key = row.Text(0); });
    if (!s.ok()) return s;
    if (!key.empty()) reply.set_key(audit::Fingerprint(key));
    uint64_t first = 0, last = 0, count = 0;
    s = store.Read(
        kSpan, [&](SqlParams& p) { p.TextRef(1, r.site).TextRef(2, q.sensor).Int(3, q.range.from).Int(4, q.range.to); },
        [&](const SqlRow& row) {
          first = row.UInt(0);
          last = row.UInt(1);
          count = row.UInt(2);
        });
    if (!s.ok()) return s;
    if (count == 0) {
      reply.set_ok(true);  // nothing chained in the range
      return size_t{0};
    }
    audit::ChainVerifier v(key);
    uint64_t before = 0;
    std::string before_hash;
    s = store.Read(
        kBefore, [&](SqlParams& p) { p.TextRef(1, r.site).TextRef(2, q.sensor).UInt(3, first); },
        [&](const SqlRow& row) {
          before = row.UInt(0);
          before_hash = row.Text(1);
        });
    if (!s.ok()) return s;
    v.Start(before, before_hash);
    size_t rows = 0;
    s = store.Read(
        kLinks,
        [&](SqlParams& p) {
          p.TextRef(1, r.site).TextRef(2, q.sensor).UInt(3, first).UInt(4, last).UInt(5, q.range.limit);
        },
        [&](const SqlRow& row) {
          ++rows;
          audit::Link l;
          l.index = row.UInt(0);
          l.sensor = q.sensor;
          l.kind = row.Text(2) == "reading" ? audit::Link::Kind::kReading : audit::Link::Kind::kAlert;
          l.ts_ms = row.Int(3);
          l.device_seq = row.UInt(4);
          l.temp_dc = static_cast<int32_t>(row.Int(5));
          l.rh_d = static_cast<uint32_t>(row.Int(6));
          l.battery_d = static_cast<uint32_t>(row.Int(7));
          l.alert_id = row.Text(8);
          l.state = row.Text(9);
          l.alert_kind = row.Text(10);
          l.min_c = row.Real(11);
          l.max_c = row.Real(12);
          l.started_ts_ms = row.Int(13);
          l.ended_ts_ms = row.Int(14);
          v.AddLink(l, row.UInt(1), row.Text(15), row.Text(16));
        });
    if (!s.ok()) return s;
    s = store.Read(
        kSeals, [&](SqlParams& p) { p.TextRef(1, r.site).TextRef(2, q.sensor).UInt(3, first).UInt(4, last); },
        [&](const SqlRow& row) {
          v1::ColdchainSeal seal;
          seal.set_sensor(q.sensor);
          seal.set_first_index(row.UInt(1));
          seal.set_last_index(row.UInt(2));
          seal.set_count(row.UInt(3));
          seal.set_first_ts_ms(row.Int(4));
          seal.set_last_ts_ms(row.Int(5));
          seal.set_last_hash(row.Text(6));
          seal.set_public_key(row.Text(7));
          seal.set_signature(row.Text(8));
          v.AddSeal(seal, row.UInt(0));
        });
    if (!s.ok()) return s;
    reply.set_ok(v.ok());
    reply.set_records(v.links() - v.thinned());
    reply.set_seals(v.seals());
    reply.set_first_index(first);
    reply.set_last_index(last);
    if (v.ok() && v.last_index() < last) {
      // The limit stopped the read before the range's last link: not verified, not ok.
      reply.set_ok(false);
      auto* b = reply.mutable_first_bad();
      b->set_index(v.last_index() + 1);
      b->set_reason("the range holds more than limit=" + std::to_string(q.range.limit) + " links; narrow from/to");
    } else if (const auto& bad = v.first_bad()) {
      auto* b = reply.mutable_first_bad();
      b->set_index(bad->index);
      b->set_seq(bad->seq);
      b->set_reason(bad->reason);
    }
    return rows;
  }
};

// Every handler, in route registration order.
template <typename... H>
struct HandlerList {
  template <typename X>
  static constexpr bool kHas = (std::is_same_v<X, H> || ...);
  static std::vector<EntityRoute> Routes() { return {Route<H>()...}; }
  static std::vector<SchemaStep> Schema() {
    std::vector<SchemaStep> out;
    (out.insert(out.end(), H::kSchema.begin(), H::kSchema.end()), ...);
    return out;
  }
};
using Handlers = HandlerList<StockHandler, OrdersHandler, VehiclesHandler, AlertsHandler, GeofenceHandler,
                             TrackHandler, DockScansHandler, EscrowHandler, ColdchainHandler, ClimateHandler>;

// An entity's apply, from a handler that must be in Handlers: otherwise its table would not be
// created, nor its route served.
template <typename H>
const std::vector<ApplyStep>& ApplyOf() {
  static_assert(Handlers::kHas<H>, "the handler is missing from Handlers");
  return H::kApply;
}

}  // namespace

std::vector<EntityRoute> EntityRoutes() { return Handlers::Routes(); }

const std::vector<SchemaStep>& EntitySchema() {
  static const std::vector<SchemaStep> schema = Handlers::Schema();
  return schema;
}

const std::vector<ApplyStep>& EntityApply(v1::Entity entity) {
  static const std::vector<ApplyStep> none;
  // Every entity is named here, without a default, so that a new Entity value does not
  // compile until its apply is decided (docs/architecture.md, "Adding an entity").
  switch (entity) {
    case v1::STOCK:
      return ApplyOf<StockHandler>();
    case v1::ORDER:
      return ApplyOf<OrdersHandler>();
    case v1::COLDCHAIN_ALERT:
      return ColdchainHandler::AlertApply(ApplyOf<AlertsHandler>());
    case v1::COLDCHAIN_SEAL:
      return ColdchainHandler::kApplySeal;
    case v1::GEOFENCE_EVENT:
      return ApplyOf<GeofenceHandler>();
    case v1::DOCK_SCAN:
      return ApplyOf<DockScansHandler>();
    case v1::ESCROW:
      return ApplyOf<EscrowHandler>();
    case v1::VEHICLE_POSITION:
      // History and latest position are written per vehicle at the end of the batch by the
      // store (SqliteHubStore WritePositions).
      return none;
    case v1::CLIMATE: {
      // Every reading goes into the climate history; those that carry chain fields are links
      // of the cold-chain audit chain too.
      static const std::vector<ApplyStep> steps = [] {
        std::vector<ApplyStep> v = ApplyOf<ClimateHandler>();
        v.insert(v.end(), ApplyOf<ColdchainHandler>().begin(), ApplyOf<ColdchainHandler>().end());
        return v;
      }();
      return steps;
    }
    case v1::STOCK_MOVEMENT:
      // Stock movements live in the feed only.
      return none;
    case v1::ENTITY_UNSPECIFIED:
    case v1::Entity_INT_MIN_SENTINEL_DO_NOT_USE_:
    case v1::Entity_INT_MAX_SENTINEL_DO_NOT_USE_:
      return none;
  }
  return none;  // a number this build does not know: in the feed only
}

}  // namespace freshsync::hub
