#include "hub/openapi.h"

#include <string>

namespace freshsync::hub {

http::Response ServeOpenApi(std::string_view if_none_match) {
  const ConsoleFile& f = OpenApiFiles().front();
  http::Response res;
  res.set_header("ETag", std::string(f.etag));
  // Changes only with hubd: a generator may keep it and revalidate by ETag.
  res.set_header("Cache-Control", "no-cache");
  if (!if_none_match.empty() && (if_none_match.find(f.etag) != std::string_view::npos || if_none_match == "*")) {
    res.status = 304;
    return res;
  }
  res.set_content(std::string(f.body), "application/json");
  return res;
}

}  // namespace freshsync::hub
