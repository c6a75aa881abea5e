// The HQ read routes of the per-site entities (GET /v1/sites/{site}/stock, orders, vehicles,
// a vehicle's track, alerts, geofence): one handler per entity in entity_routes.cc, each
// holding its query parsing, its store call and its row-to-protobuf. The server registers
// every route of EntityRoutes() the same way (bearer token, reader role, audit of the pull)
// and answers the protobuf, or its JSON form through the one mapping of hub/codec.h, so a
// handler builds no JSON. Adding an entity: docs/architecture.md, "Adding an entity".
//
// Thread-safety: EntityRoute::read may run on several workers at once; it keeps no state.
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

}  // namespace freshsync::hub
