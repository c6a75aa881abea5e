// hub/openapi.json against hubd itself (docs/api.md, "OpenAPI"):
//   - the route table of a HubServer equals the spec's paths and methods, so a route added to
//     hubd without its description (or described but not served) fails here;
//   - the real hubd (SQLite, data pushed by a site) serves the spec at /v1/openapi.json, byte
//     for byte the source file;
//   - every operation is called with real requests for its main answers (200/202, 400, 401,
//     403, 404, 409 where they exist); tests/hub/openapi_check.py, run by /usr/bin/python3,
//     checks the spec's structure and that each status is documented and each JSON body valid
//     against its documented schema, with Debian's python3-jsonschema.
#include <httplib.h>

#include <fstream>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/clock.h"
#include "common/config.h"
#include "hub/server.h"
#include "hub/sqlite_store.h"
#include "tests/hub/hubd_fixture.h"
#include "tests/support/harness.h"

namespace freshsync::testing {
namespace {

using json = nlohmann::json;

const std::string kSpecFile = std::string(FRESHSYNC_SOURCE_DIR) + "/hub/openapi.json";
const std::string kChecker = std::string(FRESHSYNC_SOURCE_DIR) + "/tests/hub/openapi_check.py";

json Spec() { return json::parse(ReadFile(kSpecFile)); }

// A route's name ("/v1/sites/{site}/vehicles/([^/]+)/track") and a spec path
// ("/v1/sites/{site}/vehicles/{vehicle}/track") on one form: every parameter as "{}".
std::string Normalize(const std::string& path) {
  static const std::regex group(R"(\((\[\^/\]\+|\.\+|/\.\*)\)\??)");
  static const std::regex param(R"(\{[^}]+\})");
  return std::regex_replace(std::regex_replace(path, group, "{}"), param, "{}");
}

class OpenApiTest : public HubdTest {
 protected:
  // Customer streams on, so that their routes answer more than 404.
  std::string MoreTables() override {
    WriteFile(dir_.File("stream.key"), std::string(64, 'k') + "\n");
    return "[customer_stream]\nkey_file = \"" + dir_.File("stream.key") + "\"\n";
  }

  struct Call {
    std::string method, path;  // path: the spec's template
    int status;
    std::string content_type, body;
  };
  std::vector<Call> calls_;

  // Records the answer to check it against the spec, and expects `want`.
  void Note(const std::string& method, const std::string& templ, const httplib::Result& r, int want,
            const std::string& what) {
    ASSERT_TRUE(r) << method << " " << what << ": " << httplib::to_string(r.error());
    EXPECT_EQ(r->status, want) << method << " " << what << ": " << r->body;
    calls_.push_back({method, templ, r->status, r->get_header_value("Content-Type"), r->body});
  }
  void Get(httplib::SSLClient& c, const std::string& templ, const std::string& path, int want,
           httplib::Headers h = {}) {
    Note("GET", templ, c.Get(path.c_str(), h), want, path);
  }
  void Send(httplib::SSLClient& c, const std::string& method, const std::string& templ, const std::string& path,
            const std::string& body, int want, httplib::Headers h = {}) {
    auto r = method == "PUT" ? c.Put(path.c_str(), h, body, "application/json")
                             : c.Post(path.c_str(), h, body, "application/json");
    Note(method, templ, r, want, path);
  }
  // A stream's status and Content-Type, read from its head; the body is not waited for.
  void GetHead(httplib::SSLClient& c, const std::string& templ, const std::string& path, int want) {
    int status = 0;
    std::string type, body;
    auto r = c.Get(
        path.c_str(), {{"Accept", "text/event-stream"}},
        [&](const httplib::Response& res) {
          status = res.status;
          type = res.get_header_value("Content-Type");
          return status != 200;  // an error's body is read; a stream is cut here
        },
        [&](const char* data, size_t n) {
          body.append(data, n);
          return true;
        });
    EXPECT_EQ(status, want) << path << ": " << body;
    calls_.push_back({"GET", templ, status, type, body});
  }

  // Runs openapi_check.py over the spec and the calls; its findings in the failure.
  void CheckCalls() {
    json out = json::array();
    for (const Call& c : calls_)
      out.push_back({{"method", c.method}, {"path", c.path}, {"status", c.status}, {"content_type", c.content_type},
                     {"body", c.body}});
    // Protobuf bodies are not UTF-8; only JSON bodies are validated.
    WriteFile(dir_.File("calls.json"), out.dump(-1, ' ', false, json::error_handler_t::replace));
    const std::string log = dir_.File("check.log");
    const int rc = RunShell("/usr/bin/python3 " + kChecker + " " + kSpecFile + " " + dir_.File("calls.json"), log);
    EXPECT_EQ(rc, 0) << ReadFile(log);
  }
};

TEST_F(OpenApiTest, RouteTableEqualsTheSpec) {
  // The server's own table, from a HubServer started on the same config (port 0, its own file).
  auto config = LoadHubConfig(dir_.File("hubd.toml"));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  config->listen = "127.0.0.1:0";
  hub::SqliteHubStoreOptions so;
  so.path = dir_.File("routes.db");
  auto store = hub::SqliteHubStore::Open(so);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  hub::HubServer server(*config, **store, SystemClock());
  ASSERT_TRUE(server.Start().ok());
  std::thread run([&] { server.Run(); });
  std::set<std::string> served;
  for (const auto& r : server.RoutesForTest()) {
    // Every route is one operation: a second route on the same method and path would be
    // unreachable (the first match answers).
    EXPECT_TRUE(served.insert(r.method + " " + Normalize(r.name)).second) << r.method << " " << r.name;
  }
  server.Stop();
  run.join();

  std::set<std::string> described;
  const json spec = Spec();
  for (const auto& [path, item] : spec["paths"].items())
    for (const auto& [method, op] : item.items()) {
      std::string m = method;
      for (char& ch : m) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      described.insert(m + " " + Normalize(path));
    }
  for (const auto& r : served) EXPECT_TRUE(described.count(r)) << "served but not in hub/openapi.json: " << r;
  for (const auto& d : described) EXPECT_TRUE(served.count(d)) << "in hub/openapi.json but not served: " << d;
  EXPECT_GE(served.size(), 30u);
}

// The checker finds what it is for: a spec with an undocumented status and a broken $ref
// fails, so a passing run below means something.
TEST_F(OpenApiTest, CheckerRefusesABrokenSpec) {
  json spec = Spec();
  spec["paths"]["/v1/sites"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] =
      "#/components/schemas/NoSuchSchema";
  spec["paths"]["/healthz"]["get"].erase("operationId");
  WriteFile(dir_.File("broken.json"), spec.dump());
  const std::string log = dir_.File("broken.log");
  EXPECT_NE(RunShell("/usr/bin/python3 " + kChecker + " " + dir_.File("broken.json"), log), 0);
  const std::string out = ReadFile(log);
  EXPECT_NE(out.find("NoSuchSchema does not resolve"), std::string::npos) << out;
  EXPECT_NE(out.find("operationId"), std::string::npos) << out;

  // A body that breaks its schema, and a status the operation does not document.
  json calls = json::array({{{"method", "GET"}, {"path", "/v1/sites"}, {"status", 200},
                             {"content_type", "application/json"}, {"body", R"({"sites": [{"site": 7}]})"}},
                            {{"method", "GET"}, {"path", "/v1/sites"}, {"status", 418},
                             {"content_type", "application/json"}, {"body", "{}"}}});
  WriteFile(dir_.File("bad_calls.json"), calls.dump());
  EXPECT_NE(RunShell("/usr/bin/python3 " + kChecker + " " + kSpecFile + " " + dir_.File("bad_calls.json"), log), 0);
  const std::string out2 = ReadFile(log);
  EXPECT_NE(out2.find("body at /sites/0"), std::string::npos) << out2;
  EXPECT_NE(out2.find("418: status not documented"), std::string::npos) << out2;
}

TEST_F(OpenApiTest, EveryRouteAnswersAsDocumented) {
  auto none = Hq("");
  auto reader = Hq(kReaderToken);
  auto writer = Hq(kWriterToken);
  auto admin = Hq(kAdminToken);
  auto site = Site(site_a_);
  const httplib::Headers as_json = {{"Accept", "application/json"}};
  const httplib::Headers as_pb = {{"Accept", "application/x-protobuf"}};

  // Operations.
  Get(*none, "/healthz", "/healthz", 200);
  Get(*none, "/readyz", "/readyz", 200);
  Get(*none, "/metrics", "/metrics", 200);
  auto spec = none->Get("/v1/openapi.json");
  Note("GET", "/v1/openapi.json", spec, 200, "/v1/openapi.json");
  ASSERT_TRUE(spec);
  EXPECT_TRUE(spec->body == ReadFile(kSpecFile)) << "hubd serves another hub/openapi.json than the source's";
  Get(*none, "/v1/openapi.json", "/v1/openapi.json", 304, {{"If-None-Match", spec->get_header_value("ETag")}});
  Get(*none, "/console/", "/console/", 200);
  Get(*none, "/console/", "/console/no-such-file.js", 404);

  // Site routes: data pushed by site-a.
  Note("POST", "/v1/sites/{site}/batches", Push(*site, "site-a", BatchBody("site-a", 1, 40), true), 200, "push 1..40");
  Note("POST", "/v1/sites/{site}/batches", Push(*site, "site-a", BatchBody("site-a", 50, 52), true), 409, "push with a gap");
  Note("POST", "/v1/sites/{site}/batches", Push(*site, "site-a", "not zstd at all", true), 400, "push garbage");
  Note("POST", "/v1/sites/{site}/batches", Push(*none, "site-a", BatchBody("site-a", 41, 41), true), 403, "push without certificate");
  Note("POST", "/v1/sites/{site}/batches", Push(*site, "site-a", BatchBody("site-a", 41, 42)), 200, "push, protobuf answer");
  {
    // Two climate readings (43, 44), so that the climate history answers real items.
    v1::Batch climate;
    climate.set_site("site-a");
    for (uint64_t seq : {43, 44}) {
      v1::ChangeRecord& r = *climate.add_records();
      r = Record(seq);
      r.clear_alert();
      r.clear_stock();
      r.set_entity(v1::CLIMATE);
      r.set_key("cold-1");
      r.mutable_climate()->set_sensor("cold-1");
      r.mutable_climate()->set_device_seq(seq);
      r.mutable_climate()->set_temp_dc(-1850);
      r.mutable_climate()->set_rh_d(650);
    }
    Note("POST", "/v1/sites/{site}/batches", Push(*site, "site-a", hub::ZstdCompress(climate.SerializeAsString(), 1), true), 200,
         "push climate readings");
  }
  Get(*site, "/v1/sites/{site}/digest", "/v1/sites/site-a/digest?from=1&to=40&buckets=4", 200, as_json);
  Get(*site, "/v1/sites/{site}/digest", "/v1/sites/site-a/digest?from=1&to=40&buckets=0", 400, as_json);
  Get(*none, "/v1/sites/{site}/digest", "/v1/sites/site-a/digest?from=1&to=40&buckets=4", 403, as_json);
  Get(*site, "/v1/sites/{site}/state-digest", "/v1/sites/site-a/state-digest", 200, as_json);
  Get(*site, "/v1/sites/{site}/state-digest", "/v1/sites/site-b/state-digest", 403, as_json);
  Send(*site, "POST", "/v1/sites/{site}/rebuild-state", "/v1/sites/site-a/rebuild-state", "", 200, as_json);
  Send(*none, "POST", "/v1/sites/{site}/rebuild-state", "/v1/sites/site-a/rebuild-state", "", 403, as_json);

  // HQ reads.
  Get(*reader, "/v1/changes", "/v1/changes?after=0&limit=100", 200);
  Get(*reader, "/v1/changes", "/v1/changes?limit=0", 400);
  Get(*none, "/v1/changes", "/v1/changes", 401);
  Get(*reader, "/v1/changes", "/v1/changes?limit=5", 200, as_pb);
  Get(*reader, "/v1/sites", "/v1/sites", 200);
  Get(*none, "/v1/sites", "/v1/sites", 401);
  for (const std::string entity : {"stock", "orders", "vehicles", "alerts", "geofence", "dock-scans", "escrow"}) {
    Get(*reader, "/v1/sites/{site}/" + entity, "/v1/sites/site-a/" + entity, 200);
    Get(*none, "/v1/sites/{site}/" + entity, "/v1/sites/site-a/" + entity, 401);
  }
  Get(*reader, "/v1/sites/{site}/geofence", "/v1/sites/site-a/geofence?from=yesterday", 400);
  Get(*reader, "/v1/sites/{site}/dock-scans", "/v1/sites/site-a/dock-scans?limit=0", 400);
  const std::string track = "/v1/sites/{site}/vehicles/{vehicle}/track";
  Get(*reader, track, "/v1/sites/site-a/vehicles/truck-1/track", 200);
  Get(*reader, track, "/v1/sites/site-a/vehicles/truck-1/track?limit=0", 400);
  Get(*none, track, "/v1/sites/site-a/vehicles/truck-1/track", 401);
  const std::string climate = "/v1/sites/{site}/sensors/{sensor}/climate";
  auto readings = reader->Get("/v1/sites/site-a/sensors/cold-1/climate?from=0&limit=10", as_json);
  Note("GET", climate, readings, 200, "/v1/sites/site-a/sensors/cold-1/climate?from=0&limit=10");
  ASSERT_TRUE(readings);
  EXPECT_EQ(json::parse(readings->body)["readings"].size(), 2u) << readings->body;
  Get(*reader, climate, "/v1/sites/site-a/sensors/cold-1/climate?from=5&to=4", 400);
  Get(*none, climate, "/v1/sites/site-a/sensors/cold-1/climate", 401);
  Get(*admin, "/v1/audit", "/v1/audit?after=0&limit=50", 200);
  Get(*admin, "/v1/audit", "/v1/audit?after=x", 400);
  Get(*reader, "/v1/audit", "/v1/audit", 403);
  Get(*none, "/v1/audit", "/v1/audit", 401);

  // Streams.
  GetHead(*reader, "/v1/stream", "/v1/stream?after=0", 200);
  GetHead(*reader, "/v1/stream", "/v1/stream?entity=no-such-entity", 400);
  GetHead(*none, "/v1/stream", "/v1/stream", 401);
  auto minted = writer->Post("/v1/orders/o-2/stream-token", "", "application/json");
  Note("POST", "/v1/orders/{order_id}/stream-token", minted, 200, "stream-token");
  Send(*reader, "POST", "/v1/orders/{order_id}/stream-token", "/v1/orders/o-2/stream-token", "", 403);
  Send(*none, "POST", "/v1/orders/{order_id}/stream-token", "/v1/orders/o-2/stream-token", "", 401);
  ASSERT_TRUE(minted && minted->status == 200);
  const std::string token = json::parse(minted->body)["token"];
  const std::string order_stream = "/v1/orders/{order_id}/stream";
  GetHead(*none, order_stream, "/v1/orders/o-2/stream?token=" + token, 200);
  GetHead(*none, order_stream, "/v1/orders/o-6/stream?token=" + token, 403);
  GetHead(*none, order_stream, "/v1/orders/o-2/stream", 401);
  GetHead(*none, order_stream, "/v1/orders/o-2/stream?token=" + token + "&after=x", 400);

  // HQ writes and the downstream.
  const std::string orders = "/v1/sites/{site}/orders";
  const std::string order = R"({"order_id":"hq-1","lines":[{"sku":"sku-1","qty":2}]})";
  Send(*writer, "POST", orders, "/v1/sites/site-a/orders", order, 202);
  Send(*writer, "POST", orders, "/v1/sites/site-a/orders", order, 202);  // a repeat answers the same
  Send(*writer, "POST", orders, "/v1/sites/site-a/orders", R"({"order_id":"hq-1","lines":[{"sku":"sku-1","qty":3}]})", 409);
  Send(*writer, "POST", orders, "/v1/sites/site-a/orders", R"({"order_id":"hq-2","lines":[]})", 400);
  Send(*reader, "POST", orders, "/v1/sites/site-a/orders", order, 403);
  Send(*none, "POST", orders, "/v1/sites/site-a/orders", order, 401);
  const std::string cancel = "/v1/sites/{site}/orders/{order_id}/cancel";
  Send(*writer, "POST", cancel, "/v1/sites/site-a/orders/hq-1/cancel", R"({"reason":"customer called"})", 202);
  Send(*writer, "POST", cancel, "/v1/sites/site-a/orders/hq-1/cancel", R"({"reason":"changed mind"})", 409);
  Send(*writer, "POST", cancel, "/v1/sites/site-a/orders/hq-1/cancel", R"({"why":"x"})", 400);
  Send(*reader, "POST", cancel, "/v1/sites/site-a/orders/hq-1/cancel", "", 403);
  const std::string fences = "/v1/sites/{site}/fences";
  Send(*writer, "PUT", fences, "/v1/sites/site-a/fences",
       R"({"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"depot","radius_m":150},"geometry":{"type":"Point","coordinates":[121.5,31.2]}}]})",
       202);
  Send(*writer, "PUT", fences, "/v1/sites/site-a/fences", R"({"type":"Feature"})", 400);
  Send(*reader, "PUT", fences, "/v1/sites/site-a/fences", "{}", 403);
  const std::string rules = "/v1/sites/{site}/coldchain-rules";
  Send(*writer, "PUT", rules, "/v1/sites/site-a/coldchain-rules",
       R"({"rules":[{"sensors":"cold-*","min_c":0,"max_c":4,"for_s":300}]})", 202);
  Send(*writer, "PUT", rules, "/v1/sites/site-a/coldchain-rules", R"({"rules":{}})", 400);
  Send(*reader, "PUT", rules, "/v1/sites/site-a/coldchain-rules", "{}", 403);
  const std::string escrow = "/v1/sites/{site}/escrow/{sku}";
  Send(*writer, "PUT", escrow, "/v1/sites/site-a/escrow/sku-1", R"({"target":5})", 202);
  Send(*writer, "PUT", escrow, "/v1/sites/site-a/escrow/sku-1", R"({"target":-1})", 400);
  Send(*reader, "PUT", escrow, "/v1/sites/site-a/escrow/sku-1", R"({"target":5})", 403);
  const std::string catalog = "/v1/catalog/{sku}";
  Send(*writer, "PUT", catalog, "/v1/catalog/apple", R"({"name":"Apple","unit":"kg","price_cents":250,"shelf_life_h":240})", 202);
  Send(*writer, "PUT", catalog, "/v1/catalog/apple", R"({"name":"Apple","unit":"kg"})", 400);
  Send(*reader, "PUT", catalog, "/v1/catalog/apple", "{}", 403);
  Get(*reader, "/v1/catalog", "/v1/catalog", 200);
  Get(*none, "/v1/catalog", "/v1/catalog", 401);
  Get(*reader, "/v1/sites/{site}/downstream", "/v1/sites/site-a/downstream", 200);
  Get(*none, "/v1/sites/{site}/downstream", "/v1/sites/site-a/downstream", 401);
  const std::string pull = "/v1/sites/{site}/downstream/commands";
  Get(*site, pull, "/v1/sites/site-a/downstream/commands?after=0&kinds=order,cancel,catalog,fences,coldchain-rules", 200, as_json);
  Get(*site, pull, "/v1/sites/site-a/downstream/commands?after=0", 200, as_pb);
  Get(*site, pull, "/v1/sites/site-a/downstream/commands?after=x", 400, as_json);
  Get(*none, pull, "/v1/sites/site-a/downstream/commands", 403, as_json);
  // HQ's current sets, read back (ETag = version).
  auto current = reader->Get("/v1/sites/site-a/fences");
  Note("GET", fences, current, 200, "fences");
  ASSERT_TRUE(current);
  Get(*reader, fences, "/v1/sites/site-a/fences", 304, {{"If-None-Match", current->get_header_value("ETag")}});
  Get(*reader, fences, "/v1/sites/site-b/fences", 404);
  Get(*none, fences, "/v1/sites/site-a/fences", 401);
  Get(*reader, rules, "/v1/sites/site-a/coldchain-rules", 200);
  Get(*reader, rules, "/v1/sites/site-b/coldchain-rules", 404);
  // A site rebuilt from the hub reads what the hub holds of it.
  const std::string snapshot = "/v1/sites/{site}/rebuild-snapshot";
  Get(*site, snapshot, "/v1/sites/site-a/rebuild-snapshot", 200, as_pb);
  Get(*admin, snapshot, "/v1/sites/site-a/rebuild-snapshot", 200, as_json);
  Get(*reader, snapshot, "/v1/sites/site-a/rebuild-snapshot", 403, as_json);
  // The cold-chain audit chain's verdict (no chained record here: ok with 0 records).
  const std::string verify = "/v1/sites/{site}/coldchain/verify";
  Get(*reader, verify, "/v1/sites/site-a/coldchain/verify?sensor=cold-1&from=0&to=1900000000000", 200);
  Get(*reader, verify, "/v1/sites/site-a/coldchain/verify?from=0", 400);
  Get(*none, verify, "/v1/sites/site-a/coldchain/verify?sensor=cold-1", 401);
  // Webhook dead letters (admin; no webhook configured here: an empty list).
  const std::string dead = "/v1/webhooks/deadletters";
  Get(*admin, dead, "/v1/webhooks/deadletters?limit=10", 200);
  Get(*admin, dead, "/v1/webhooks/deadletters?limit=x", 400);
  Get(*reader, dead, "/v1/webhooks/deadletters", 403);
  Get(*none, dead, "/v1/webhooks/deadletters", 401);
  Send(*admin, "POST", "/v1/webhooks/deadletters/{id}/replay", "/v1/webhooks/deadletters/12345/replay", "", 404);
  Send(*reader, "POST", "/v1/webhooks/deadletters/{id}/replay", "/v1/webhooks/deadletters/1/replay", "", 403);
  Send(*admin, "POST", "/v1/webhooks/deadletters/replay", "/v1/webhooks/deadletters/replay?webhook=ops", "", 202);
  Send(*admin, "POST", "/v1/webhooks/deadletters/replay", "/v1/webhooks/deadletters/replay", "", 400);

  CheckCalls();
}

}  // namespace
}  // namespace freshsync::testing
