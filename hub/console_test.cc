// The console's static files as hubd serves them (hub/console.h): the embedded table, content
// types, revalidation, and that no path outside the table answers.
#include "hub/console.h"

#include <gtest/gtest.h>

#include <string>

namespace freshsync::hub {
namespace {

TEST(ConsoleTest, EmbedsThePageItsScriptAndStyle) {
  for (const char* name : {"index.html", "app.js", "style.css"}) {
    http::Response r = ServeConsole(std::string("/console/") + name, "", "");
    EXPECT_EQ(r.status, 200) << name;
    EXPECT_FALSE(r.body.empty()) << name;
    EXPECT_EQ(r.get_header_value("Cache-Control"), "no-cache") << name;
    EXPECT_EQ(r.get_header_value("X-Content-Type-Options"), "nosniff") << name;
    EXPECT_EQ(r.get_header_value("ETag").front(), '"') << name;
  }
  EXPECT_EQ(ServeConsole("/console/index.html", "", "").get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(ServeConsole("/console/app.js", "", "").get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(ServeConsole("/console/style.css", "", "").get_header_value("Content-Type"), "text/css; charset=utf-8");
  // The page is index.html; the bare prefix redirects so that relative links resolve.
  EXPECT_EQ(ServeConsole("/console/", "", "").body, ServeConsole("/console/index.html", "", "").body);
  http::Response bare = ServeConsole("/console", "", "");
  EXPECT_EQ(bare.status, 301);
  EXPECT_EQ(bare.get_header_value("Location"), "/console/");
}

TEST(ConsoleTest, EtagRevalidatesWithoutABody) {
  const http::Response first = ServeConsole("/console/app.js", "", "");
  const std::string etag = first.get_header_value("ETag");
  const http::Response again = ServeConsole("/console/app.js", etag, "");
  EXPECT_EQ(again.status, 304);
  EXPECT_TRUE(again.body.empty());
  EXPECT_EQ(ServeConsole("/console/app.js", "\"other\", " + etag, "").status, 304);
  EXPECT_EQ(ServeConsole("/console/app.js", "\"other\"", "").status, 200);
  // Each file has its own tag (the hash of its bytes).
  EXPECT_NE(ServeConsole("/console/style.css", "", "").get_header_value("ETag"), etag);
}

TEST(ConsoleTest, NothingOutsideTheTableAnswers) {
  // Paths arrive %-decoded; none of these is a file of the table, whatever a filesystem would
  // make of it.
  for (const char* path : {"/console/../hub.db", "/console/..", "/console/./app.js", "/console//app.js", "/console/app.js/",
                           "/console/APP.JS", "/console/app.js%00", "/console/nope.html", "/console/console/app.js",
                           "/console/../../etc/passwd", "/consolex", "/console.js"}) {
    const http::Response r = ServeConsole(path, "", "");
    EXPECT_EQ(r.status, 404) << path;
    EXPECT_EQ(r.body, "not found\n") << path;
  }
}

TEST(ConsoleTest, ConfigCarriesTheTilesTemplateAndThePolicyItsOrigin) {
  const http::Response none = ServeConsole("/console/config.json", "", "");
  EXPECT_EQ(none.body, R"({"tiles_url":""})");
  EXPECT_EQ(none.get_header_value("Content-Security-Policy").find("tiles"), std::string::npos);
  EXPECT_NE(none.get_header_value("Content-Security-Policy").find("connect-src 'self'"), std::string::npos);
  const std::string url = "https://tiles.example:8080/{z}/{x}/{y}.png";
  const http::Response with = ServeConsole("/console/config.json", "", url);
  EXPECT_EQ(with.body, R"({"tiles_url":"https://tiles.example:8080/{z}/{x}/{y}.png"})");
  // Images from the tile server, and nothing else from anywhere else.
  EXPECT_NE(with.get_header_value("Content-Security-Policy").find("img-src 'self' data: https://tiles.example:8080;"), std::string::npos)
      << with.get_header_value("Content-Security-Policy");
}

}  // namespace
}  // namespace freshsync::hub
