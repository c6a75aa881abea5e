// `hubd --migrate-from-sqlite` (issue 13, operations): a hub that ran on SQLite, with sites'
// records (one quarantined, some held above a gap), HQ's catalog and orders, a lane with a
// delivered part and an audit log, is copied into PostgreSQL by the real binary; the copy is
// interrupted once and resumed, and run a third time with nothing left to do. hubd then runs
// on PostgreSQL and answers every HQ read as it did on SQLite, and the site's next pull
// carries on from its acknowledged position.
#include <string>

#include <gtest/gtest.h>

#include "tests/hub/hubd_fixture.h"
#include "tests/support/postgres.h"

namespace freshsync::testing {
namespace {

// Starts on the SQLite file; the test body starts the fixture's PostgreSQL (pg_) later, and
// from then on the config it writes names that store.
class HubMigrateTest : public HubdTest {
 protected:
  bool OnPostgres() const override { return false; }
  // What HQ sees, for comparing the hub before and after: each answer as JSON, with the feed's
  // cursors (the target numbers its own feed) left out.
  json Snapshot() {
    json out;
    json sites = GetJson("/v1/sites");
    for (auto& s : sites["sites"]) s.erase("last_push_ms");  // the time of the copy
    out["sites"] = sites;
    for (const char* site : {"site-a", "site-b"}) {
      for (const char* what : {"/stock", "/orders", "/vehicles", "/alerts", "/downstream"}) {
        json answer = GetJson(std::string("/v1/sites/") + site + what);
        answer.erase("oldest_pending_ms");  // an age: it grows while the test runs
        out[std::string(site) + what] = answer;
      }
    }
    out["catalog"] = GetJson("/v1/catalog");
    json feed = json::array();
    for (json e : Feed(500)) {
      e.erase("cursor");
      feed.push_back(e);
    }
    out["feed"] = feed;
    return out;
  }
  int Migrate(const std::string& extra_env = "") {
    return RunShell(extra_env + BinDir() + "/hubd --config " + dir_.File("hubd.toml") + " --migrate-from-sqlite " +
                        dir_.File("hub.db"),
                    dir_.File("migrate.log"));
  }
};

TEST_F(HubMigrateTest, ASqliteHubMovesIntoPostgresResumablyAndAnswersAsBefore) {
  // Site data: site-a 1..300, a record the field rules refuse at 301, then 302..310; site-b
  // 1..50 and an urgent batch held above a gap (60..65).
  auto a = Site(site_a_);
  for (uint64_t first = 1; first <= 300; first += 100) ASSERT_EQ(Push(*a, "site-a", BatchBody("site-a", first, first + 99))->status, 200);
  {
    v1::Batch b;
    b.set_site("site-a");
    for (uint64_t s = 301; s <= 310; ++s) *b.add_records() = Record(s);
    b.mutable_records(0)->set_entity(v1::VEHICLE_POSITION);
    b.mutable_records(0)->set_key("truck-x");
    b.mutable_records(0)->mutable_position()->set_vehicle("truck-x");
    b.mutable_records(0)->mutable_position()->set_lat_e6(95000000);  // beyond the pole: quarantined
    ASSERT_EQ(Push(*a, "site-a", hub::ZstdCompress(b.SerializeAsString(), 1))->status, 200);
  }
  auto b = Site(site_b_);
  ASSERT_EQ(Push(*b, "site-b", BatchBody("site-b", 1, 50))->status, 200);
  {
    v1::Batch u;
    u.set_site("site-b");
    u.set_urgent(true);
    for (uint64_t s = 60; s <= 65; ++s) *u.add_records() = Record(s);
    ASSERT_EQ(Push(*b, "site-b", hub::ZstdCompress(u.SerializeAsString(), 1))->status, 200);
  }
  // HQ: a catalog item and two orders for site-a; the site pulls and acknowledges the first
  // two commands (the catalog is down_seq 1, order 1 down_seq 2).
  auto hq = Hq(kWriterToken);
  ASSERT_EQ(hq->Put("/v1/catalog/apple", R"({"name":"Apple","unit":"kg","price_cents":250})", "application/json")->status, 202);
  for (const char* id : {"hq-1", "hq-2"}) {
    const std::string body = std::string(R"({"order_id":")") + id + R"(","lines":[{"sku":"sku-1","qty":1}]})";
    auto r = hq->Post("/v1/sites/site-a/orders", body, "application/json");
    ASSERT_EQ(r->status, 202) << r->body;
  }
  ASSERT_EQ(a->Get("/v1/sites/site-a/downstream/commands?after=0&wait_ms=0")->status, 200);
  ASSERT_EQ(a->Get("/v1/sites/site-a/downstream/commands?after=2&wait_ms=0")->status, 200);  // acknowledges 1..2

  const json before = Snapshot();
  ASSERT_EQ(before["sites"]["sites"].size(), 2u) << before["sites"].dump();
  ASSERT_EQ(before["site-a/downstream"]["delivered_seq"], 2) << before["site-a/downstream"].dump();
  const json audit_before = GetJson("/v1/audit?limit=1000", kAdminToken);
  ASSERT_GT(audit_before["entries"].size(), 5u) << audit_before.dump();
  ASSERT_EQ(hubd_.Stop(), 0);

  // The target: a PostgreSQL database, named in hubd.toml in place of the SQLite file.
  pg_ = std::make_unique<PostgresServer>(dir_.File("pg"));
  ASSERT_TRUE(pg_->Start()) << ReadFile(pg_->log_path());
  ASSERT_TRUE(pg_->CreateDatabase("hub"));
  WriteConfig();
  // Interrupted after one applied batch (site-a's 310 seqs), as a crash or a Ctrl-C would leave
  // it ...
  EXPECT_EQ(Migrate("FRESHSYNC_MIGRATE_STOP_AFTER_BATCHES_FOR_TEST=1 "), 1) << ReadFile(dir_.File("migrate.log"));
  EXPECT_EQ(pg_->Query("hub", "SELECT count(*) FROM changes"), "309");
  // ... then run again to the end, and a third time, which finds nothing left to apply.
  ASSERT_EQ(Migrate(), 0) << ReadFile(dir_.File("migrate.log"));
  ASSERT_EQ(Migrate(), 0) << ReadFile(dir_.File("migrate.log"));
  const std::string log = ReadFile(dir_.File("migrate.log"));
  EXPECT_NE(log.find("site-a: records up to seq 310 (resumed after seq 310)"), std::string::npos) << log;
  EXPECT_NE(log.find("done: 2 sites, 56 records applied, 0 refused seqs"), std::string::npos) << log;  // site-b
  EXPECT_NE(log.find("done: 2 sites, 0 records applied, 0 refused seqs"), std::string::npos) << log;
  EXPECT_EQ(pg_->Query("hub", "SELECT count(*) FROM refused_records"), "1");

  StartHubd();
  // hubd's telemetry upkeep ran its first round at start: the day partitions of position
  // history exist (a week back to three days ahead).
  EXPECT_TRUE(WaitFor(
      [&] {
        return pg_->Query("hub", "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent "
                                 "JOIN pg_class c ON c.oid = i.inhrelid WHERE p.relname = 'position_chunks' "
                                 "AND c.relname LIKE 'position_chunks_p%'") == "11";
      },
      std::chrono::seconds(10)));
  const json after = Snapshot();
  for (const auto& [name, answer] : before.items()) EXPECT_EQ(after[name], answer) << name;
  // The audit log came along, in order and once (three runs of the copy), followed by the
  // entries of the reads since (HQ's reads are audited).
  const json audit_after = GetJson("/v1/audit?limit=1000", kAdminToken);
  ASSERT_GE(audit_after["entries"].size(), audit_before["entries"].size());
  EXPECT_EQ(pg_->Query("hub", "SELECT count(*) FROM audit WHERE path = '/v1/audit'"), "2");  // before's read, copied; after's
  for (size_t i = 0; i < audit_before["entries"].size(); ++i) {
    json x = audit_before["entries"][i], y = audit_after["entries"][i];
    x.erase("id"), y.erase("id");
    EXPECT_EQ(x, y) << i;
  }
  // The site carries on: its next pull after its acknowledged position gets order hq-2 (down_seq 3).
  a = Site(site_a_);
  auto pull = a->Get("/v1/sites/site-a/downstream/commands?after=2&wait_ms=0");
  ASSERT_TRUE(pull);
  ASSERT_EQ(pull->status, 200) << pull->body;
  v1::DownBatch down;
  ASSERT_TRUE(down.ParseFromString(pull->body));
  ASSERT_EQ(down.commands_size(), 1);
  EXPECT_EQ(down.commands(0).command_id(), "order:hq-2");
  EXPECT_EQ(down.commands(0).down_seq(), 3u);
  // And its pushes continue from the contiguous seq the copy kept.
  auto next = Push(*a, "site-a", BatchBody("site-a", 311, 320));
  ASSERT_EQ(next->status, 200) << next->body;
  EXPECT_EQ(Ack(next).contiguous_seq(), 320u);
}

}  // namespace
}  // namespace freshsync::testing
