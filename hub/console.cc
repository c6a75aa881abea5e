#include "hub/console.h"

#include <nlohmann/json.hpp>

#include "hub/query.h"

namespace freshsync::hub {
namespace {

bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// "https://tiles.example:8080/{z}/{x}/{y}.png" -> "https://tiles.example:8080"; "" for none.
std::string Origin(const std::string& url) {
  const size_t scheme = url.find("://");
  if (scheme == std::string::npos) return "";
  const size_t end = url.find('/', scheme + 3);
  return url.substr(0, end);
}

// Every answer under /console/: the page may talk to its own origin only (the API and the
// stream), and load images from itself and the tile server. No inline script, no framing, no
// Referer (the token is never in a URL, but a fragment-less address still names the hub).
void Harden(http::Response& res, const std::string& tiles_url) {
  std::string img = "'self' data:";
  if (const std::string o = Origin(tiles_url); !o.empty()) img += " " + o;
  res.set_header("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src " + img +
                                                "; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
}

}  // namespace

std::string_view ConsoleContentType(std::string_view name) {
  if (EndsWith(name, ".html")) return "text/html; charset=utf-8";
  if (EndsWith(name, ".js")) return "text/javascript; charset=utf-8";
  if (EndsWith(name, ".css")) return "text/css; charset=utf-8";
  if (EndsWith(name, ".json")) return "application/json";
  if (EndsWith(name, ".svg")) return "image/svg+xml";
  if (EndsWith(name, ".png")) return "image/png";
  return "application/octet-stream";
}

http::Response ServeConsole(std::string_view path, std::string_view if_none_match, const std::string& tiles_url) {
  http::Response res;
  Harden(res, tiles_url);
  const std::string_view prefix = kConsolePath;
  if (path == prefix) {
    res.status = 301;
    res.set_header("Location", "/console/");
    return res;
  }
  if (path.substr(0, prefix.size() + 1) != std::string(prefix) + "/") {
    res.status = 404;
    res.set_content("not found\n", "text/plain; charset=utf-8");
    return res;
  }
  std::string_view name = path.substr(prefix.size() + 1);
  if (name.empty()) name = "index.html";
  if (name == "config.json") {
    // Settings the page needs before it has a token: nothing secret.
    res.set_header("Cache-Control", "no-cache");
    res.set_content(nlohmann::json{{"tiles_url", tiles_url}}.dump(), "application/json");
    return res;
  }
  for (const ConsoleFile& f : ConsoleFiles()) {
    if (f.name != name) continue;
    res.set_header("ETag", std::string(f.etag));
    // The files change only with hubd; "no-cache" lets a browser keep them and revalidate
    // by ETag (a 304 without a body), so an upgraded hub never runs an old app.js.
    res.set_header("Cache-Control", "no-cache");
    if (EtagMatches(if_none_match, f.etag)) {
      res.status = 304;
      return res;
    }
    res.set_content(std::string(f.body), std::string(ConsoleContentType(f.name)));
    return res;
  }
  res.status = 404;
  res.set_content("not found\n", "text/plain; charset=utf-8");
  return res;
}

}  // namespace freshsync::hub
