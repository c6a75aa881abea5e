// Downstream, HQ to sites (issue 14), against the real hubd over real mutual TLS: the writer
// role, the HQ write routes and their validation, idempotency, the catalog's fan-out, the
// site's pull with its certificate, and the long poll (woken by an append, or timing out).
#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/hub/hubd_fixture.h"

namespace freshsync::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kOrder =
    R"({"order_id":"hq-1","lines":[{"sku":"apple","qty":3}],"customer":{"name":"Zhang Wei","phone":"+86 138 0000 1111","address":"88 Century Ave"},"ts":"2026-01-02T03:04:05Z"})";

class HubDownstreamTest : public HubdTest {
 protected:
  std::string MoreTables() override {
    if (!with_key_) return "";
    WriteFile(dir_.File("privacy.key"), std::string(64, 'a') + "\n");
    return "[privacy]\nkey_file = \"" + dir_.File("privacy.key") + "\"\n[downstream]\nretention_h = 72\n";
  }

  httplib::Result Send(const std::string& method, const std::string& path, const std::string& body,
                       const std::string& token = kWriterToken) {
    auto c = Hq(token);
    if (method == "PUT") return c->Put(path.c_str(), body, "application/json");
    return c->Post(path.c_str(), body, "application/json");
  }
  json Expect(const httplib::Result& r, int status) {
    EXPECT_TRUE(r);
    if (!r) return {};
    EXPECT_EQ(r->status, status) << r->body;
    return json::parse(r->body, nullptr, false);
  }
  // The site's pull with its certificate; the batch, or the HTTP status in *status.
  v1::DownBatch Pull(const TestPki::Files& cert, const std::string& site, const std::string& query,
                     int* status = nullptr) {
    auto c = Site(cert);
    auto r = c->Get(("/v1/sites/" + site + "/downstream/commands?" + query).c_str());
    v1::DownBatch b;
    EXPECT_TRUE(r);
    if (!r) return b;
    if (status) {
      *status = r->status;
    } else {
      EXPECT_EQ(r->status, 200) << r->body;
    }
    if (r->status == 200) {
      EXPECT_TRUE(b.ParseFromString(r->body));
    }
    return b;
  }

  bool with_key_ = true;
};

TEST_F(HubDownstreamTest, WriterAndAdminMayWriteReaderMayNot) {
  auto r = Send("POST", "/v1/sites/site-a/orders", kOrder, kReaderToken);
  json j = Expect(r, 403);
  EXPECT_NE(j["error"].get<std::string>().find("writer"), std::string::npos) << j.dump();
  Expect(Send("POST", "/v1/sites/site-a/orders", kOrder, kWriterToken), 202);
  Expect(Send("POST", "/v1/sites/site-a/orders/hq-1/cancel", R"({"reason":"customer called"})", kAdminToken), 202);
  Expect(Send("PUT", "/v1/catalog/apple", R"({"name":"Apple","unit":"kg","price_cents":250})", kReaderToken), 403);
  Expect(Send("POST", "/v1/sites/site-a/orders", kOrder, ""), 401);
  // The reader reads the lane.
  json lane = GetJson("/v1/sites/site-a/downstream", kReaderToken);
  EXPECT_EQ(lane["last_seq"], 2);
  EXPECT_EQ(lane["delivered_seq"], 0);
  EXPECT_EQ(lane["pending"], 2);
}

TEST_F(HubDownstreamTest, AnAcceptedOrderIsPulledByItsSiteWithTheCustomerAndNeverStoredInClear) {
  json a = Expect(Send("POST", "/v1/sites/site-a/orders", kOrder), 202);
  EXPECT_EQ(a, json({{"site", "site-a"}, {"down_seq", 1}, {"command_id", "order:hq-1"}, {"status", "pending"}, {"decided_by", "site"}}));
  int status = 0;
  Pull(site_b_, "site-a", "after=0", &status);
  EXPECT_EQ(status, 403);  // another site's certificate
  auto hq = Hq(kWriterToken);
  auto noCert = hq->Get("/v1/sites/site-a/downstream/commands?after=0");
  ASSERT_TRUE(noCert);
  EXPECT_EQ(noCert->status, 403);
  v1::DownBatch b = Pull(site_a_, "site-a", "after=0");
  ASSERT_EQ(b.commands_size(), 1);
  EXPECT_EQ(b.site(), "site-a");
  EXPECT_EQ(b.through_seq(), 1u);
  EXPECT_EQ(b.last_seq(), 1u);
  const v1::DownCommand& c = b.commands(0);
  EXPECT_EQ(c.down_seq(), 1u);
  EXPECT_EQ(c.kind(), v1::DOWN_ORDER);
  EXPECT_EQ(c.command_id(), "order:hq-1");
  EXPECT_EQ(c.issued_by(), "hq-orders");
  EXPECT_EQ(c.order().lines(0).sku(), "apple");
  EXPECT_EQ(c.order().lines(0).qty(), 3);
  EXPECT_EQ(c.order().customer().name(), "Zhang Wei");
  EXPECT_EQ(c.order().customer().phone(), "+86 138 0000 1111");
  EXPECT_EQ(c.order().ts_ms(), 1767323045000);
  // JSON when the site asks for it.
  auto site = Site(site_a_);
  auto jr = site->Get("/v1/sites/site-a/downstream/commands?after=0", {{"Accept", "application/json"}});
  ASSERT_TRUE(jr);
  json jb = json::parse(jr->body, nullptr, false);
  EXPECT_EQ(jb["through_seq"], 1) << jr->body;
  EXPECT_EQ(jb["commands"].size(), 1u) << jr->body;
  EXPECT_EQ(jb["commands"][0]["kind"], "DOWN_ORDER") << jr->body;
  EXPECT_EQ(jb["commands"][0]["order"]["order_id"], "hq-1") << jr->body;
  EXPECT_EQ(jb["commands"][0]["order"]["customer"]["name"], "Zhang Wei") << jr->body;
  // The acknowledgement: the next pull's `after`.
  json lane = GetJson("/v1/sites/site-a/downstream");
  EXPECT_EQ(lane["pending"], 1);
  EXPECT_GE(lane["oldest_pending_ms"].get<int64_t>(), 0);
  b = Pull(site_a_, "site-a", "after=1");
  EXPECT_EQ(b.commands_size(), 0);
  EXPECT_EQ(b.through_seq(), 1u);
  lane = GetJson("/v1/sites/site-a/downstream");
  EXPECT_EQ(lane, json({{"site", "site-a"}, {"last_seq", 1}, {"delivered_seq", 1}, {"pending", 0}, {"oldest_pending_ms", 0}}));
  // Personal data is sealed in the store: not in the database file nor its WAL.
  hubd_.Stop();
  std::string bytes;
  for (const char* f : {"hub.db", "hub.db-wal"}) bytes += ReadFile(dir_.File(f));
  ASSERT_FALSE(bytes.empty());
  EXPECT_EQ(bytes.find("Zhang Wei"), std::string::npos);
  EXPECT_EQ(bytes.find("138 0000"), std::string::npos);
  EXPECT_EQ(bytes.find("Century"), std::string::npos);
}

TEST_F(HubDownstreamTest, RepeatsAnswerAsTheFirstTimeAndAnotherBodyIs409) {
  json first = Expect(Send("POST", "/v1/sites/site-a/orders", kOrder), 202);
  json again = Expect(Send("POST", "/v1/sites/site-a/orders", kOrder), 202);
  EXPECT_EQ(first, again);
  json conflict = Expect(Send("POST", "/v1/sites/site-a/orders", R"({"order_id":"hq-1","lines":[{"sku":"apple","qty":4}]})"), 409);
  EXPECT_NE(conflict["error"].get<std::string>().find("hq-1"), std::string::npos);
  // Another customer is another body too (compared by the keyed digest).
  std::string other = kOrder;
  other.replace(other.find("Zhang Wei"), 9, "Li Na");
  Expect(Send("POST", "/v1/sites/site-a/orders", other), 409);
  // The same order id at another site is another command.
  EXPECT_EQ(Expect(Send("POST", "/v1/sites/site-b/orders", kOrder), 202)["down_seq"], 1);
  json fences = R"({"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"depot","radius_m":150},"geometry":{"type":"Point","coordinates":[121.5,31.2]}}]})"_json;
  json f1 = Expect(Send("PUT", "/v1/sites/site-a/fences", fences.dump()), 202);
  EXPECT_EQ(f1["version"], 1);
  EXPECT_EQ(f1["command_id"], "fences:1");
  EXPECT_EQ(Expect(Send("PUT", "/v1/sites/site-a/fences", fences.dump(2)), 202), f1);  // same collection, other spacing
  fences["features"][0]["properties"]["radius_m"] = 200;
  EXPECT_EQ(Expect(Send("PUT", "/v1/sites/site-a/fences", fences.dump()), 202)["version"], 2);
  const std::string rules = R"({"rules":[{"sensors":"cold-*","min_c":0,"max_c":4,"for_s":300}]})";
  json r1 = Expect(Send("PUT", "/v1/sites/site-a/coldchain-rules", rules), 202);
  EXPECT_EQ(r1["command_id"], "coldchain-rules:1");
  EXPECT_EQ(Expect(Send("PUT", "/v1/sites/site-a/coldchain-rules", rules), 202), r1);
  EXPECT_EQ(GetJson("/v1/sites/site-a/downstream")["last_seq"], 4);
}

// The reads of HQ's current fences and rules (docs/api.md): 404 until HQ sets them, then the
// body as PUT (fences as a FeatureCollection, rules as {"rules"}) with the version as ETag, and
// a 304 without a body for a caller that holds that version.
TEST_F(HubDownstreamTest, CurrentFencesAndRulesReadBackWithTheirVersion) {
  auto get = [&](const std::string& path, const std::string& if_none_match = "") {
    auto c = Hq(kReaderToken);
    httplib::Headers h;
    if (!if_none_match.empty()) h.emplace("If-None-Match", if_none_match);
    return c->Get(path.c_str(), h);
  };
  for (const char* path : {"/v1/sites/site-a/fences", "/v1/sites/site-a/coldchain-rules"}) {
    auto r = get(path);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404) << path << " " << r->body;
    EXPECT_FALSE(r->has_header("ETag"));
  }
  json fences = R"({"type":"FeatureCollection","features":[
    {"type":"Feature","properties":{"name":"depot","kind":"depot","radius_m":150},"geometry":{"type":"Point","coordinates":[121.5,31.2]}},
    {"type":"Feature","properties":{"name":"yard"},"geometry":{"type":"Polygon","coordinates":[[[121.5,31.2],[121.51,31.2],[121.51,31.21],[121.5,31.2]]]}}]})"_json;
  Expect(Send("PUT", "/v1/sites/site-a/fences", fences.dump()), 202);
  fences["features"][0]["properties"]["radius_m"] = 200;
  Expect(Send("PUT", "/v1/sites/site-a/fences", fences.dump(2)), 202);
  auto r = get("/v1/sites/site-a/fences");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body), fences);
  EXPECT_EQ(r->get_header_value("ETag"), "\"2\"");
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  auto same = get("/v1/sites/site-a/fences", "\"2\"");
  ASSERT_TRUE(same);
  EXPECT_EQ(same->status, 304);
  EXPECT_TRUE(same->body.empty());
  EXPECT_EQ(get("/v1/sites/site-a/fences", "\"1\"")->status, 200);  // an older version: the body
  EXPECT_EQ(get("/v1/sites/site-b/fences")->status, 404);           // per site
  // The body PUTs back as the same version: nothing new for the site.
  EXPECT_EQ(Expect(Send("PUT", "/v1/sites/site-a/fences", r->body), 202)["version"], 2);

  const std::string rules = R"({"rules":[{"sensors":"cold-*","min_c":0,"max_c":4,"for_s":300},{"sensors":"frozen-*","min_c":-25,"max_c":-18,"for_s":600}]})";
  Expect(Send("PUT", "/v1/sites/site-a/coldchain-rules", rules), 202);
  auto rr = get("/v1/sites/site-a/coldchain-rules");
  ASSERT_TRUE(rr);
  ASSERT_EQ(rr->status, 200) << rr->body;
  EXPECT_EQ(json::parse(rr->body), json::parse(rules));
  EXPECT_EQ(rr->get_header_value("ETag"), "\"1\"");
  EXPECT_EQ(Expect(Send("PUT", "/v1/sites/site-a/coldchain-rules", rr->body), 202)["version"], 1);
  // Reading needs a token; the reader's is enough (the write needs a writer).
  auto anon = Hq("")->Get("/v1/sites/site-a/fences");
  ASSERT_TRUE(anon);
  EXPECT_EQ(anon->status, 401);
}

TEST_F(HubDownstreamTest, CatalogFansOutToEverySiteAndKindsFilterWithThroughSeq) {
  // site-a is known by its batches, site-b by its first pull.
  auto push = Site(site_a_);
  ASSERT_EQ(Push(*push, "site-a", BatchBody("site-a", 1, 2))->status, 200);
  Pull(site_b_, "site-b", "after=0&kinds=order,cancel,catalog");
  json put = Expect(Send("PUT", "/v1/catalog/apple", R"({"name":"Apple","unit":"kg","price_cents":250,"temp_min_c":1,"temp_max_c":8,"shelf_life_h":240})"), 202);
  EXPECT_EQ(put["version"], 1);
  EXPECT_EQ(put["command_id"], "catalog:apple:1");
  EXPECT_EQ(put["sites"], json::parse(R"([{"site":"site-a","down_seq":1},{"site":"site-b","down_seq":1}])"));
  EXPECT_EQ(Expect(Send("PUT", "/v1/catalog/apple", R"({"name":"Apple","unit":"kg","price_cents":250,"temp_min_c":1,"temp_max_c":8,"shelf_life_h":240})"), 202), put);
  Expect(Send("POST", "/v1/sites/site-a/orders", kOrder), 202);  // down_seq 2
  for (const auto* cert : {&site_a_, &site_b_}) {
    const std::string site = cert == &site_a_ ? "site-a" : "site-b";
    v1::DownBatch b = Pull(*cert, site, "after=0&kinds=catalog,order");
    ASSERT_GE(b.commands_size(), 1) << site;
    EXPECT_EQ(b.commands(0).kind(), v1::DOWN_CATALOG);
    EXPECT_EQ(b.commands(0).catalog().version(), 1u);
    EXPECT_EQ(b.commands(0).catalog().price_cents(), 250);
    EXPECT_DOUBLE_EQ(b.commands(0).catalog().temp_max_c(), 8.0);
  }
  // A site without the catalog kind (the default set is order,cancel) skips it, and
  // through_seq moves it past.
  v1::DownBatch b = Pull(site_a_, "site-a", "after=0");
  ASSERT_EQ(b.commands_size(), 1);
  EXPECT_EQ(b.commands(0).down_seq(), 2u);
  EXPECT_EQ(b.through_seq(), 2u);
  b = Pull(site_b_, "site-b", "after=0&kinds=order");
  EXPECT_EQ(b.commands_size(), 0);
  EXPECT_EQ(b.through_seq(), 1u);
  json list = GetJson("/v1/catalog");
  ASSERT_EQ(list["items"].size(), 1u);
  EXPECT_EQ(list["items"][0]["version"], 1);
}

TEST_F(HubDownstreamTest, ALongPollIsAnsweredAsSoonAsACommandIsAppended) {
  std::atomic<int64_t> answered_ns{0};
  v1::DownBatch got;
  std::thread puller([&] {
    got = Pull(site_a_, "site-a", "after=0&wait_ms=20000");
    answered_ns = Clock::now().time_since_epoch().count();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(answered_ns.load(), 0);  // still waiting
  Expect(Send("POST", "/v1/sites/site-a/orders", kOrder), 202);
  const auto posted = Clock::now();
  puller.join();
  const auto late = std::chrono::nanoseconds(answered_ns.load()) - posted.time_since_epoch();
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(late).count(), 300);
  ASSERT_EQ(got.commands_size(), 1);
  EXPECT_EQ(got.commands(0).command_id(), "order:hq-1");
}

TEST_F(HubDownstreamTest, ALongPollWithNothingTimesOutEmptyAndStopAnswersParkedPulls) {
  const auto start = Clock::now();
  v1::DownBatch b = Pull(site_a_, "site-a", "after=0&wait_ms=600");
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  EXPECT_GE(waited, 550);
  EXPECT_LT(waited, 3000);
  EXPECT_EQ(b.commands_size(), 0);
  EXPECT_EQ(b.through_seq(), 0u);
  // Parked pulls hold no worker: more of them than hubd has threads (4) all wait, and an HQ
  // call is still answered meanwhile.
  std::vector<std::thread> pullers;
  std::atomic<int> done{0};
  for (int i = 0; i < 8; ++i) {
    pullers.emplace_back([&] {
      int status = 0;
      Pull(site_a_, "site-a", "after=0&wait_ms=20000", &status);
      if (status == 200) ++done;
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  GetJson("/v1/sites/site-a/downstream");
  EXPECT_EQ(done.load(), 0);
  // SIGTERM: the parked pulls are answered (empty) before hubd exits.
  const auto stop = Clock::now();
  hubd_.Signal(SIGTERM);
  for (auto& t : pullers) t.join();
  EXPECT_EQ(done.load(), 8);
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - stop).count(), 5000);
}

// Escrow (docs/escrow.md): the site's grant arrives on an ESCROW record; an order it covers is
// accepted by the hub at once, a repeat answers the same, one beyond it is the site's to decide;
// GET .../escrow shows granted, used and free; PUT .../escrow/{sku} is a command for the site.
TEST_F(HubDownstreamTest, EscrowOrdersAreDecidedByTheHubWithinTheGrant) {
  v1::Batch b;
  b.set_site("site-a");
  v1::ChangeRecord* r = b.add_records();
  r->set_seq(1);
  r->set_entity(v1::ESCROW);
  r->set_key("apple");
  r->set_version(1);
  r->set_hlc(uint64_t{1700000000000} << 16);
  r->set_ts_ms(1700000000000);
  auto* e = r->mutable_escrow();
  e->set_sku("apple");
  e->set_given(5);
  e->set_held(5);
  e->set_target(5);
  auto push = Site(site_a_);
  ASSERT_EQ(Push(*push, "site-a", hub::ZstdCompress(b.SerializeAsString(), 1))->status, 200);
  const std::string order = R"({"order_id":"e-1","lines":[{"sku":"apple","qty":3}]})";
  json first = Expect(Send("POST", "/v1/sites/site-a/orders", order), 202);
  EXPECT_EQ(first["decided_by"], "hub");
  EXPECT_EQ(first["status"], "accepted");
  EXPECT_EQ(Expect(Send("POST", "/v1/sites/site-a/orders", order), 202), first);
  json beyond = Expect(Send("POST", "/v1/sites/site-a/orders", R"({"order_id":"e-2","lines":[{"sku":"apple","qty":3}]})"), 202);
  EXPECT_EQ(beyond["decided_by"], "site");
  EXPECT_EQ(beyond["status"], "pending");
  // site-b never granted anything.
  EXPECT_EQ(Expect(Send("POST", "/v1/sites/site-b/orders", order), 202)["decided_by"], "site");
  json view = GetJson("/v1/sites/site-a/escrow", kReaderToken);
  EXPECT_EQ(view["site"], "site-a");
  ASSERT_EQ(view["escrow"].size(), 1u) << view.dump();
  EXPECT_EQ(view["escrow"][0]["sku"], "apple");
  EXPECT_EQ(view["escrow"][0]["granted"], 5);
  EXPECT_EQ(view["escrow"][0]["used"], 3);
  EXPECT_EQ(view["escrow"][0]["free"], 2);
  json t = Expect(Send("PUT", "/v1/sites/site-a/escrow/apple", R"({"target":8})"), 202);
  EXPECT_EQ(t["target"], 8);
  Expect(Send("PUT", "/v1/sites/site-a/escrow/apple", R"({"target":-1})"), 400);
  Expect(Send("PUT", "/v1/sites/site-a/escrow/apple", R"({"target":8})", kReaderToken), 403);
  v1::DownBatch got = Pull(site_a_, "site-a", "after=0&kinds=order,escrow-target");
  ASSERT_EQ(got.commands_size(), 3);
  EXPECT_TRUE(got.commands(0).order().escrow());
  EXPECT_FALSE(got.commands(1).order().escrow());
  EXPECT_EQ(got.commands(2).kind(), v1::DOWN_ESCROW_TARGET);
  EXPECT_EQ(got.commands(2).escrow_target().target(), 8);
}

TEST_F(HubDownstreamTest, HostileBodiesAre400) {
  auto bad = [&](const std::string& method, const std::string& path, const std::string& body, const std::string& needle) {
    json j = Expect(Send(method, path, body), 400);
    EXPECT_NE(j.value("error", "").find(needle), std::string::npos) << path << " " << body.substr(0, 80) << ": " << j.dump();
  };
  bad("POST", "/v1/sites/site-a/orders", "{not json", "not valid JSON");
  bad("POST", "/v1/sites/site-a/orders", "[1]", "object");
  bad("POST", "/v1/sites/site-a/orders", std::string(100, '[') + std::string(100, ']'), "deeper");
  bad("POST", "/v1/sites/site-a/orders", R"({"order_id":"","lines":[{"sku":"a","qty":1}]})", "order_id");
  bad("POST", "/v1/sites/site-a/orders", R"({"order_id":"x\u0001y","lines":[{"sku":"a","qty":1}]})", "order_id");
  bad("POST", "/v1/sites/site-a/orders", R"({"order_id":"o","lines":[]})", "lines");
  bad("POST", "/v1/sites/site-a/orders", R"({"order_id":"o","lines":[{"sku":"a","qty":0}]})", "lines[0].qty");
  bad("POST", "/v1/sites/site-a/orders", R"({"order_id":"o","lines":[{"sku":"a","qty":1}],"extra":1})", "extra");
  bad("POST", "/v1/sites/site-a/orders", R"({"order_id":"o","lines":[{"sku":"a","qty":1}],"ts":"yesterday"})", "ts");
  json huge = {{"order_id", "o"}, {"lines", json::array()}};
  for (int i = 0; i < 1001; ++i) huge["lines"].push_back({{"sku", "s" + std::to_string(i)}, {"qty", 1}});
  bad("POST", "/v1/sites/site-a/orders", huge.dump(), "at most 1000");
  bad("POST", "/v1/sites/site-a/orders/o1/cancel", R"({"reason":5})", "reason");
  bad("PUT", "/v1/catalog/apple", R"({"name":"Apple","unit":"kg"})", "price_cents");
  bad("PUT", "/v1/catalog/apple", R"({"name":"Apple","unit":"kg","price_cents":-1})", "price_cents");
  bad("PUT", "/v1/catalog/apple", R"({"name":"Apple","unit":"kg","price_cents":1,"temp_min_c":9,"temp_max_c":2})", "temp_min_c");
  bad("PUT", "/v1/sites/site-a/fences", R"({"type":"Feature"})", "FeatureCollection");
  bad("PUT", "/v1/sites/site-a/fences",
      R"({"type":"FeatureCollection","features":[{"type":"Feature","properties":{"name":"p"},"geometry":{"type":"Point","coordinates":[121,31]}}]})",
      "radius_m");
  bad("PUT", "/v1/sites/site-a/coldchain-rules", R"({"rules":[{"sensors":"c","min_c":5,"max_c":4,"for_s":1}]})", "min_c");
  bad("PUT", "/v1/sites/site-a/coldchain-rules", R"({"rules":{}})", "rules");
  // A site id outside the rule matches no route.
  Expect(Send("POST", "/v1/sites/Bad_Site/orders", kOrder), 404);
  int status = 0;
  Pull(site_a_, "site-a", "after=abc", &status);
  EXPECT_EQ(status, 400);
  // Nothing reached the log.
  EXPECT_EQ(GetJson("/v1/sites/site-a/downstream")["last_seq"], 0);
}

class HubDownstreamNoKeyTest : public HubDownstreamTest {
 protected:
  void SetUp() override {
    with_key_ = false;
    HubDownstreamTest::SetUp();
  }
};

TEST_F(HubDownstreamNoKeyTest, AnOrderWithACustomerNeedsTheHubsPrivacyKey) {
  json j = Expect(Send("POST", "/v1/sites/site-a/orders", kOrder), 400);
  EXPECT_NE(j["error"].get<std::string>().find("privacy"), std::string::npos) << j.dump();
  Expect(Send("POST", "/v1/sites/site-a/orders", R"({"order_id":"o2","lines":[{"sku":"apple","qty":1}]})"), 202);
}

}  // namespace
}  // namespace freshsync::testing
