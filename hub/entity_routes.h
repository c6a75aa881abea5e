// The per-site entities of the hub (stock, orders, vehicles and their tracks, alerts, geofence
// events, dock scans): one handler per entity in entity_routes.cc holds everything about it:
//   - its schema: the DDL of its table and the migration that creates it (sqlite_store.cc runs
//     it in the numbered order);
//   - its apply: the statements the store runs for each record of the entity that a batch
//     really inserts, inside the batch's transaction;
//   - its read: the route after /v1/sites/{site}, the query parameters, the SQL of the read
//     and the row-to-protobuf.
// The store has no per-entity code apart from vehicle positions, which it writes per batch
// in its own chunk format (SqliteHubStore::Impl::WritePositions, HubStore::Track), and the
// state digest and rebuild-state of the sync protocol, which read and rewrite `stock`.
// The server registers every route of EntityRoutes() the same way (bearer token, reader role,
// audit of the pull) and answers the protobuf, or its JSON form through the one mapping of
// hub/codec.h, so a handler builds no JSON. Adding an entity: docs/architecture.md, "Adding an
// entity".
//
// SQL sits per dialect (hub/sql.h) so that a second store's dialect goes beside SQLite's in
// the same handler.
//
// Thread-safety: everything here is immutable after first use; EntityRoute::read may run on
// several workers at once.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <google/protobuf/message.h>

#include "common/status.h"
#include "hub/query.h"
#include "hub/sql.h"
#include "hub/store.h"

namespace freshsync::hub {

// What an entity route gets of its request.
struct EntityRequest {
  const std::string& site;
  const std::vector<std::string>& matches;  // the route's regex groups: [1] the site, then the route's own
  const QueryParams& params;
};

// What an entity route read: a bad query parameter (400), a store error (503), or the answer.
struct EntityAnswer {
  std::optional<QueryError> bad_query;
  Status status;
  std::unique_ptr<google::protobuf::Message> reply;
  size_t rows = 0;  // audited as the pull's count
};

struct EntityRoute {
  std::string path;  // after /v1/sites/{site}: a regex, its groups after the site's
  std::function<EntityAnswer(HubStore& store, const EntityRequest& request)> read;
};

// Every entity route, in registration order.
std::vector<EntityRoute> EntityRoutes();

// The statements a newly held record of `entity` applies, in order; empty for the entities
// kept in the feed only and for vehicle positions (written per batch by the store).
const std::vector<ApplyStep>& EntityApply(v1::Entity entity);

// The entities' DDL: each handler's table, tagged with the numbered migration that creates
// it; the store runs them with its own steps of the same number (sqlite_store.cc Migrations()).
const std::vector<SchemaStep>& EntitySchema();

// Lifecycle rank of an order status for the conflict rule (docs/conflicts.md); 0 if unknown.
int OrderStatusRank(const std::string& status);

}  // namespace freshsync::hub
