// Issue 14, "Restores", end to end with real hubd, Mosquitto and edged (tests/support/site_hub.h):
//   - an edge restored from its own backup (`edgectl backup` / `edgectl restore`) pulls the
//     commands applied after the backup again (the hub keeps delivered commands for
//     retention_h) and applies each once;
//   - a hub restored from an older backup (SQLite: VACUUM INTO while it runs; PostgreSQL: pg_dump
//     while it runs, then dropdb, createdb and pg_restore, as docs/operations.md says) learns the site's position
//     from the next pull: commands HQ placed on it before that pull, and new ones, get a down_seq
//     above it; HQ re-sending the lost calls (same ids) has no second effect at the site;
//     upstream refills the hub.
// In every case, at the site: every HQ order exists once, accepted, its command applied once
// (down_applied), none refused as a repeat, and what is reserved is exactly what the orders hold.
#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/postgres.h"
#include "tests/support/site_hub.h"

namespace freshsync::testing {
namespace {

using std::chrono::seconds;

constexpr int64_t kSeed = 100000;  // apples: every order fits, so each must end accepted

class DownstreamRestore : public ::testing::Test {
 protected:
  void SetUp() override {
    SiteHubOptions o;
    o.edge_toml = "[downstream]\nwait_ms = 500\n";
    o.hub_store = HubStore();
    sh_ = std::make_unique<SiteHub>(o);
    ASSERT_TRUE(sh_->ok()) << sh_->HubLog();
    ASSERT_TRUE(site().StartEdged()) << site().log();
    auto pub = site().NewPublisher("restore-pub");
    pub->PublishReliably({"fs/stock/movements", R"({"id":"seed","sku":"apple","delta":)" + std::to_string(kSeed) +
                                                    R"(,"reason":"receive","lot":"L1","ts":1764000000000})"});
    ASSERT_TRUE(site().WaitInt("SELECT IFNULL(SUM(on_hand), 0) FROM stock", kSeed, seconds(30))) << site().log();
  }

  // hubd's [store] table; "" = its SQLite file.
  virtual std::string HubStore() { return ""; }
  // Takes a backup of the running hub's store, and later puts it back while hubd is stopped.
  virtual void BackupHub(const std::string& backup) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2(sh_->hub_db().c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    const int rc = sqlite3_exec(db, ("VACUUM INTO '" + backup + "'").c_str(), nullptr, nullptr, nullptr);
    sqlite3_close(db);
    ASSERT_EQ(rc, SQLITE_OK);
  }
  virtual void RestoreHub(const std::string& backup) {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(sh_->hub_db() + suffix);
    std::filesystem::copy_file(backup, sh_->hub_db());
  }
  void HubRestoredFromAnOlderBackupConverges();

  Site& site() { return sh_->site(); }
  static std::string Id(int i) { return "hq-" + std::to_string(i); }
  static int64_t Qty(int i) { return 1 + i % 3; }

  // HQ places orders [from, to] (each until the hub answers 202, as HQ's client retries).
  void Post(int from, int to) {
    for (int i = from; i <= to; ++i) {
      const std::string body = R"({"order_id":")" + Id(i) + R"(","lines":[{"sku":"apple","qty":)" + std::to_string(Qty(i)) + "}]}";
      int status = -1;
      for (int attempt = 0; attempt < 100 && status != 202; ++attempt) {
        status = sh_->HqWrite("POST", std::string("/v1/sites/") + SiteHub::kSiteId + "/orders", body);
        if (status != 202) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      ASSERT_EQ(status, 202) << Id(i);
    }
  }
  int64_t Applied() { return site().Int("SELECT IFNULL((SELECT value FROM sync_state WHERE name = 'down_applied_seq'), 0)"); }
  bool WaitOrders(int n) { return site().WaitInt("SELECT count(*) FROM orders", n, seconds(60)); }
  nlohmann::json Lane() { return sh_->HqJson(std::string("/v1/sites/") + SiteHub::kSiteId + "/downstream"); }

  // The invariants of issue 14's "Restores" at the site for orders 1..n.
  // `dense`: the outbox's seq has no holes (not after an edge restore, whose records written
  // since are moved above the hub's seqs: docs/operations.md, "Backup and restore").
  void ExpectEachOrderOnce(int n, bool dense) {
    int64_t want_reserved = 0;
    for (int i = 1; i <= n; ++i) {
      const std::string id = Id(i);
      EXPECT_EQ(site().Text("SELECT status FROM orders WHERE order_id = '" + id + "'"), "accepted") << id;
      EXPECT_EQ(site().Int("SELECT count(*) FROM down_applied WHERE command_id = 'order:" + id + "'"), 1) << id;
      want_reserved += Qty(i);
    }
    EXPECT_EQ(site().Int("SELECT count(*) FROM orders"), n);
    EXPECT_EQ(site().Int("SELECT count(*) FROM orders WHERE IFNULL(reason, '') != ''"), 0);  // e.g. "order id exists at site"
    EXPECT_EQ(site().Int("SELECT IFNULL(SUM(reserved), 0) FROM stock"), want_reserved);
    EXPECT_EQ(site().Int("SELECT IFNULL(SUM(on_hand), 0) FROM stock"), kSeed);
    if (dense) ExpectDenseOutbox(site());
  }
  // Upstream has drained and the hub's lane has nothing pending.
  bool WaitConverged() {
    return WaitFor(
        [&] {
          const auto lane = Lane();
          return sh_->EdgeBacklog() == 0 && lane.is_object() && lane["pending"] == 0;
        },
        seconds(60));
  }

  std::unique_ptr<SiteHub> sh_;
};

TEST_F(DownstreamRestore, EdgeRestoredFromItsBackupAppliesTheLaterCommandsOnce) {
  Post(1, 20);
  ASSERT_TRUE(site().WaitInt("SELECT count(*) FROM down_applied", 20, seconds(60))) << site().log();
  const std::string backup = sh_->dir().File("edge-backup.db");
  const std::string edgectl = BinDir() + "/edgectl --config " + site().config_path();
  ASSERT_EQ(RunShell(edgectl + " backup " + backup), 0);

  Post(21, 40);
  ASSERT_TRUE(WaitOrders(40)) << site().log();
  ASSERT_TRUE(WaitConverged()) << site().log();  // the hub has seen the site's later records too
  ASSERT_EQ(site().StopEdged(), 0);
  ASSERT_EQ(RunShell(edgectl + " restore " + backup), 0);
  ASSERT_EQ(site().Int("SELECT count(*) FROM orders"), 20);  // the backup's state
  ASSERT_TRUE(site().StartEdged()) << site().log();

  // The store's position is 20 again: its first pull asks from there, the hub sends 21..40
  // again, and they are applied once.
  ASSERT_TRUE(WaitOrders(40)) << site().log();
  Post(41, 50);
  ASSERT_TRUE(WaitOrders(50)) << site().log();
  ASSERT_TRUE(WaitConverged()) << site().log();
  EXPECT_EQ(Applied(), Lane()["last_seq"].get<int64_t>());
  // The hub holds every seq once: the lost timeline's records, and the ones written since the
  // restore moved above them (no seq reused with other content).
  EXPECT_EQ(sh_->HubRecords(), sh_->EdgeLastSeq());
  EXPECT_EQ(sh_->CheckFeedExactlyOnce(sh_->EdgeLastSeq()), "");
  ExpectEachOrderOnce(50, false);
}

void DownstreamRestore::HubRestoredFromAnOlderBackupConverges() {
  Post(1, 20);
  ASSERT_TRUE(WaitOrders(20)) << site().log();
  ASSERT_TRUE(WaitConverged()) << site().log();
  // A backup of the running hub.
  const std::string backup = sh_->dir().File("hub-backup");
  BackupHub(backup);
  if (HasFatalFailure()) return;
  Post(21, 40);
  ASSERT_TRUE(WaitOrders(40)) << site().log();
  ASSERT_TRUE(WaitConverged()) << site().log();
  const int64_t before = Applied();
  ASSERT_EQ(before, 40);

  // The hub's disk is replaced by the backup: it has lost commands 21..40 and the site's records
  // since the backup. The link stays cut while HQ places orders 41..45 on the restored hub:
  // they get down_seq 21..25, at or below the site's position.
  sh_->proxy().Cut();
  ASSERT_EQ(sh_->StopHubd(), 0);
  RestoreHub(backup);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(sh_->StartHubd()) << sh_->HubLog();
  Post(41, 45);
  EXPECT_EQ(Lane()["last_seq"], 25);
  // The site's next pull (after = 40) moves the log's unacknowledged tail above its position.
  sh_->proxy().Pass();
  ASSERT_TRUE(WaitFor([&] { return Lane()["last_seq"] == before + 5; }, seconds(30))) << sh_->HubLog();

  // HQ re-sends the calls the hub lost (same ids and bodies) and places new ones.
  Post(21, 40);
  Post(46, 50);
  ASSERT_TRUE(WaitOrders(50)) << site().log();
  ASSERT_TRUE(WaitConverged()) << site().log();
  for (int i = 41; i <= 50; ++i)
    EXPECT_GT(site().Int("SELECT down_seq FROM down_applied WHERE command_id = 'order:" + Id(i) + "'"), before) << Id(i);
  ExpectEachOrderOnce(50, true);
  // Upstream: the edge's outbox refills what the hub lost (reconciliation).
  EXPECT_TRUE(WaitFor([&] { return sh_->HubRecords() == sh_->EdgeLastSeq() && sh_->EdgeBacklog() == 0; }, seconds(60)))
      << "hub holds " << sh_->HubRecords() << " records, edge last seq " << sh_->EdgeLastSeq();
}

TEST_F(DownstreamRestore, HubRestoredFromAnOlderBackupConvergesWithoutARepeatOrALoss) {
  HubRestoredFromAnOlderBackupConverges();
}

// The same on PostgreSQL, with the documented backup and restore (docs/operations.md, "Hub on
// PostgreSQL: backup and restore"): pg_dump of the live database, and later dropdb, createdb
// and pg_restore into the stopped hub's database.
class DownstreamRestorePg : public DownstreamRestore {
 protected:
  void SetUp() override {
    pg_ = std::make_unique<PostgresServer>(dir_.File("pg"));
    ASSERT_TRUE(pg_->Start()) << ReadFile(pg_->log_path());
    ASSERT_TRUE(pg_->CreateDatabase("hub"));
    DownstreamRestore::SetUp();
  }
  void TearDown() override {
    sh_.reset();
    pg_.reset();
  }
  std::string HubStore() override { return "[store]\nbackend = \"postgresql\"\nurl = \"" + pg_->Url("hub") + "\"\n"; }
  void BackupHub(const std::string& backup) override {
    ASSERT_EQ(RunShell(PostgresServer::Bin("pg_dump") + " " + pg_->ClientArgs() + " -Fc -d hub -f '" + backup + "'",
                       pg_->log_path()),
              0)
        << ReadFile(pg_->log_path());
  }
  void RestoreHub(const std::string& backup) override {
    const std::string args = " " + pg_->ClientArgs() + " ";
    ASSERT_EQ(RunShell(PostgresServer::Bin("dropdb") + args + "hub", pg_->log_path()), 0) << ReadFile(pg_->log_path());
    ASSERT_EQ(RunShell(PostgresServer::Bin("createdb") + args + "hub", pg_->log_path()), 0) << ReadFile(pg_->log_path());
    ASSERT_EQ(RunShell(PostgresServer::Bin("pg_restore") + args + "--exit-on-error -d hub '" + backup + "'", pg_->log_path()), 0)
        << ReadFile(pg_->log_path());
  }

  TempDir dir_;
  std::unique_ptr<PostgresServer> pg_;
};

TEST_F(DownstreamRestorePg, HubOnPostgresRestoredFromAnOlderPgDumpConvergesWithoutARepeatOrALoss) {
  HubRestoredFromAnOlderBackupConverges();
}

}  // namespace
}  // namespace freshsync::testing
