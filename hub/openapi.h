// The OpenAPI 3.1 description of every route hubd serves (hub/openapi.json; docs/api.md,
// "OpenAPI"), compiled into hubd by hub/console/embed.cmake and served at GET /v1/openapi.json
// without a token: it holds no data, and HQ teams generate clients from it before they have
// a token. tests/hub/openapi_test.cc holds it to the route table and to the real answers.
// Thread-safety: pure functions over constant data.
#pragma once

#include <string_view>
#include <vector>

#include "hub/console.h"
#include "hub/http/http.h"

namespace freshsync::hub {

// Generated (hub/console/embed.cmake, FUNC=OpenApiFiles): one entry, "openapi.json".
const std::vector<ConsoleFile>& OpenApiFiles();

// 200 with the description (application/json, ETag, Cache-Control: no-cache), or 304 when
// `if_none_match` names its ETag.
http::Response ServeOpenApi(std::string_view if_none_match);

}  // namespace freshsync::hub
