// The hub's security features against the real hubd over HTTPS (mutual TLS for sites, bearer
// tokens for HQ): rate limits per token and per site with 429 + Retry-After, counted in
// /metrics and the audit log; and the audit trail of who pulled what. hubd is started by the
// shared fixture, tests/hub/hubd_fixture.h.
#include <thread>

#include <gtest/gtest.h>

#include "freshsync.pb.h"
#include "hub/codec.h"
#include "tests/hub/hubd_fixture.h"
#include "wire/digest.h"

namespace freshsync::testing {
namespace {

using nlohmann::json;
constexpr const char* kOtherReaderToken = "second-reader-token-for-security-tests";

std::string Body(const std::string& site, uint64_t first, uint64_t last) {
  v1::Batch b;
  b.set_site(site);
  for (uint64_t s = first; s <= last; ++s) {
    auto* r = b.add_records();
    r->set_seq(s);
    r->set_entity(v1::STOCK);
    r->set_key("sku-" + std::to_string(s % 3));
    r->set_version(s);
    r->set_hlc(s << 16);
    r->mutable_stock()->set_sku(r->key());
    r->mutable_stock()->set_on_hand(static_cast<int64_t>(s));
  }
  return hub::ZstdCompress(b.SerializeAsString(), 1);
}

// The shared fixture (tests/hub/hubd_fixture.h) with a second reader token, for the per-token
// buckets; each test starts hubd with its own top-level config (the rate limits).
class HubSecurityTest : public HubdTest {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(Prepare()); }
  std::string MoreTables() override {
    return "[[tokens]]\nname = \"hq-reports\"\nrole = \"reader\"\nsha256 = \"" + digest::Sha256Hex(kOtherReaderToken) + "\"\n";
  }
  httplib::Result PushSeqs(const TestPki::Files& cert, const std::string& site, uint64_t first, uint64_t last) {
    return Push(*Site(cert), site, Body(site, first, last));
  }
  json Audit() { return GetJson("/v1/audit?limit=10000", kAdminToken); }
};

TEST_F(HubSecurityTest, RateLimitsPerTokenAndPerSite) {
  // Slow refill so that a loaded test machine does not refill a bucket between two requests:
  // 3 pulls at once, then one every 5 s; 2 batches at once, then one every 20 s.
  WriteConfig("[rate_limits]\npull_per_s = 0.2\npull_burst = 3\npush_per_s = 0.05\npush_burst = 2\n");
  ASSERT_NO_FATAL_FAILURE(StartHubd());
  auto hq = Hq(kReaderToken);
  for (int i = 0; i < 3; ++i) {
    auto r = hq->Get("/v1/changes?limit=10");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << i << ": " << r->body;
  }
  auto limited = hq->Get("/v1/changes?limit=10");
  ASSERT_TRUE(limited);
  EXPECT_EQ(limited->status, 429) << limited->body;
  ASSERT_TRUE(limited->has_header("Retry-After"));
  const int retry_after = std::stoi(limited->get_header_value("Retry-After"));
  EXPECT_GE(retry_after, 1);
  EXPECT_LE(retry_after, 5);
  EXPECT_NE(limited->body.find("hq-analytics"), std::string::npos) << limited->body;
  EXPECT_EQ(limited->body.find(kReaderToken), std::string::npos);
  // Further refusals in the same minute are counted, not each audited.
  for (int i = 0; i < 4; ++i) EXPECT_EQ(hq->Get("/v1/sites")->status, 429);
  // Another token has its own bucket.
  auto other = Hq(kOtherReaderToken)->Get("/v1/changes");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 200);
  // Retry-After is honest: after it, the token may pull again.
  std::this_thread::sleep_for(std::chrono::seconds(retry_after) + std::chrono::milliseconds(200));
  EXPECT_EQ(hq->Get("/v1/changes")->status, 200);

  // Sites: two batches at once, then the third is refused with Retry-After, per site.
  auto p1 = PushSeqs(site_a_, "site-a", 1, 5);
  auto p2 = PushSeqs(site_a_, "site-a", 6, 10);
  ASSERT_TRUE(p1 && p2);
  EXPECT_EQ(p1->status, 200);
  EXPECT_EQ(p2->status, 200);
  auto p3 = PushSeqs(site_a_, "site-a", 11, 15);
  ASSERT_TRUE(p3);
  EXPECT_EQ(p3->status, 429);
  ASSERT_TRUE(p3->has_header("Retry-After"));
  EXPECT_GE(std::stoi(p3->get_header_value("Retry-After")), 1);
  auto pb = PushSeqs(site_b_, "site-b", 1, 5);
  ASSERT_TRUE(pb);
  EXPECT_EQ(pb->status, 200) << "site-b is not limited by site-a's traffic";
  // The refused batch was not applied: the hub holds 10 records of site-a.
  auto sites = json::parse(Hq(kAdminToken)->Get("/v1/sites")->body, nullptr, false);
  bool saw_site_a = false;
  for (const auto& s : sites["sites"]) {
    if (s["site"] != "site-a") continue;
    saw_site_a = true;
    EXPECT_EQ(s["contiguous_seq"], 10);
  }
  EXPECT_TRUE(saw_site_a);

  // Counted in /metrics ...
  auto m = Hq("")->Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("freshsync_hub_rate_limited_total{scope=\"token\"} 5"), std::string::npos) << m->body;
  EXPECT_NE(m->body.find("freshsync_hub_rate_limited_total{scope=\"site\"} 1"), std::string::npos) << m->body;
  // ... and audited once per key per minute, with who and where, never the token.
  int token_rows = 0, site_rows = 0;
  const json audit = Audit();  // named: a range-for over a temporary's member would dangle
  for (const auto& e : audit["entries"]) {
    if (e["kind"] != "rate-limited") continue;
    EXPECT_EQ(e["status"], 429);
    if (e["actor"] == "hq-analytics") {
      ++token_rows;
      EXPECT_EQ(e["path"], "/v1/changes");
    }
    if (e["actor"] == "site-a") {
      ++site_rows;
      EXPECT_EQ(e["path"], "/v1/sites/site-a/batches");
    }
  }
  EXPECT_EQ(token_rows, 1);
  EXPECT_EQ(site_rows, 1);
  const std::string file = ReadFile(dir_.File("audit.jsonl"));
  EXPECT_NE(file.find("rate-limited"), std::string::npos);
  EXPECT_EQ(file.find(kReaderToken), std::string::npos);
}

TEST_F(HubSecurityTest, AuditRecordsWhoPulledWhat) {
  WriteConfig();
  ASSERT_NO_FATAL_FAILURE(StartHubd());
  ASSERT_EQ(PushSeqs(site_a_, "site-a", 1, 9)->status, 200);
  auto hq = Hq(kReaderToken);
  ASSERT_EQ(hq->Get("/v1/changes?after=2&limit=4")->status, 200);
  ASSERT_EQ(hq->Get("/v1/sites/site-a/stock")->status, 200);
  ASSERT_EQ(hq->Get("/v1/changes?limit=0")->status, 400);
  ASSERT_EQ(Hq(kAdminToken)->Get("/v1/sites")->status, 200);

  std::vector<json> pulls;
  const json audit = Audit();
  for (const auto& e : audit["entries"])
    if (e["kind"] == "pull") pulls.push_back(e);
  ASSERT_GE(pulls.size(), 4u) << audit.dump();
  // Token name and role, endpoint, query, rows returned, status.
  EXPECT_EQ(pulls[0]["actor"], "hq-analytics");
  EXPECT_EQ(pulls[0]["path"], "/v1/changes");
  EXPECT_EQ(pulls[0]["count"], 4);
  EXPECT_EQ(pulls[0]["status"], 200);
  EXPECT_NE(pulls[0]["detail"].get<std::string>().find("role=reader"), std::string::npos) << pulls[0].dump();
  EXPECT_NE(pulls[0]["detail"].get<std::string>().find("query=after=2&limit=4"), std::string::npos) << pulls[0].dump();
  EXPECT_EQ(pulls[1]["path"], "/v1/sites/site-a/stock");
  EXPECT_EQ(pulls[1]["count"], 3);  // sku-0, sku-1, sku-2
  EXPECT_EQ(pulls[2]["status"], 400);
  EXPECT_NE(pulls[2]["detail"].get<std::string>().find("query=limit=0"), std::string::npos) << pulls[2].dump();
  EXPECT_EQ(pulls[3]["actor"], "hq-ops");
  EXPECT_NE(pulls[3]["detail"].get<std::string>().find("role=admin"), std::string::npos) << pulls[3].dump();
  EXPECT_EQ(pulls[3]["count"], 1);
  // The file mirror carries the same.
  const std::string file = ReadFile(dir_.File("audit.jsonl"));
  EXPECT_NE(file.find("query=after=2&limit=4"), std::string::npos) << file;
}

}  // namespace
}  // namespace freshsync::testing
