// The HQ web console (docs/console.md): static files from hub/console/, embedded in hubd at
// build time (hub/console/embed.cmake writes ConsoleFiles()), served at /console/ without a
// token; every data call the page makes carries the bearer token, which the page takes from
// the URL fragment or a form and never puts in a URL.
//
// Files are looked up by exact name in the embedded table, never on a filesystem, so no path
// (`..`, `%2e%2e`, `//`) can reach anything else: unknown names are 404.
// Thread-safety: pure functions over constant data.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "hub/http/http.h"

namespace freshsync::hub {

struct ConsoleFile {
  std::string_view name;  // relative to /console/, e.g. "app.js"
  std::string_view body;
  std::string_view etag;  // quoted, from the file's SHA-256
};

// Generated (hub/console/embed.cmake): every file of hub/console/ that the page uses.
const std::vector<ConsoleFile>& ConsoleFiles();

inline constexpr char kConsolePath[] = "/console";

// The answer to GET `path` (%-decoded, starting with kConsolePath): the file with its
// Content-Type, ETag and Cache-Control (304 when `if_none_match` names its ETag), 301 from
// "/console" to "/console/", index.html for "/console/", "config.json" built from
// `tiles_url` ([console] tiles_url), 404 for anything else.
http::Response ServeConsole(std::string_view path, std::string_view if_none_match, const std::string& tiles_url);

// Content-Type by file name extension; "application/octet-stream" when unknown.
std::string_view ConsoleContentType(std::string_view name);

}  // namespace freshsync::hub
