// The tamper test of the cold-chain audit chain (docs/formats.md, "Cold-chain audit chain"):
// a real Mosquitto, edged and hubd over mutual TLS. A cold room's readings (and the excursion
// alert they open and close) flow through the site to the hub over more than two hours of
// device time, so the site seals them hourly with its Ed25519 key. Then:
//   (a) at the hub, with raw SQL on its store: a reading's temperature altered, a link
//       deleted, two links swapped, a seal's hash replaced: each time GET .../coldchain/verify
//       answers ok=false naming the first bad link, while an untouched range stays ok;
//   (b) at the site, with raw SQL on its store: the same three edits, each caught by
//       `edgectl export-coldchain` + `edgectl verify-coldchain` (and an edited export file
//       fails its signature, which plain openssl checks too);
//   (c) the disk quota downsamples the acknowledged readings at the site, and the hub's verify
//       of the whole range is still ok, while the site's export says what it thinned.
// Each tamper case restores the data before the next.
#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/support/harness.h"
#include "tests/support/site_hub.h"

namespace freshsync::testing {
namespace {

using nlohmann::json;

constexpr int64_t kT0 = 1767225600000;  // 2026-01-01T00:00:00Z: an hour boundary
constexpr int kReadings = 600;           // every 15 s: 2.5 h of device time
constexpr int64_t kStepMs = 15'000;

std::string ClimateMsg(int seq, int64_t ts, double temp) {
  return R"({"seq":)" + std::to_string(seq) + R"(,"ts":)" + std::to_string(ts) + R"(,"temp_c":)" + std::to_string(temp) +
         R"(,"rh":61.5})";
}

// Raw SQL on a store, as an intruder with file access would run it.
void Exec(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 10000);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

class ColdchainTamper : public ::testing::Test {
 protected:
  void SetUp() override {
    SiteHubOptions o;
    key_file_ = hub_dir_.File("audit.key");
    o.edge_toml = "[audit]\nsigning_key_file = \"" + key_file_ +
                  "\"\n[[coldchain.rule]]\nsensors = \"cold-*\"\nmin_c = 0.0\nmax_c = 8.0\nfor_s = 60\n";
    sh_ = std::make_unique<SiteHub>(o);
    ASSERT_TRUE(sh_->ok());
    ASSERT_TRUE(sh_->site().StartEdged()) << sh_->site().log();
  }
  void TearDown() override { sh_.reset(); }

  std::string Verify(const std::string& query) {
    return "/v1/sites/" + std::string(SiteHub::kSiteId) + "/coldchain/verify?sensor=cold-1&" + query;
  }
  json VerifyAll() { return sh_->HqJson(Verify("from=0&to=" + std::to_string(kT0 + 10 * 3'600'000))); }
  // Links 400..599 by device time: far from every edit of the test.
  json VerifyLate() {
    return sh_->HqJson(Verify("from=" + std::to_string(kT0 + 400 * kStepMs) + "&to=" + std::to_string(kT0 + 599 * kStepMs)));
  }
  // edgectl with its output in `log` (just this run's: RunShell appends).
  int Edgectl(const std::string& args, const std::string& log) {
    WriteFile(log, "");
    return RunShell(BinDir() + "/edgectl " + args, log);
  }
  // export-coldchain + verify-coldchain: verify's exit code, its output in *out.
  int ExportAndVerify(std::string* out) {
    const std::string csv = hub_dir_.File("export.csv");
    EXPECT_EQ(Edgectl("--config " + sh_->site().config_path() + " export-coldchain --sensor cold-1 --out " + csv,
                      hub_dir_.File("export.log")),
              0)
        << ReadFile(hub_dir_.File("export.log"));
    const int rc = Edgectl("verify-coldchain " + csv + " --key " + PublicKeyHex(), hub_dir_.File("verify.log"));
    *out = ReadFile(hub_dir_.File("verify.log"));
    return rc;
  }
  std::string PublicKeyHex() {
    EXPECT_EQ(Edgectl("--config " + sh_->site().config_path() + " audit-key", hub_dir_.File("key.log")), 0);
    const std::string line = ReadFile(hub_dir_.File("key.log"));
    return line.substr(0, line.find(' '));
  }
  std::string ReadingOf(int index) {
    return "(SELECT seq FROM coldchain_links WHERE sensor = 'cold-1' AND idx = " + std::to_string(index) + ")";
  }

  TempDir hub_dir_;
  std::string key_file_;
  std::unique_ptr<SiteHub> sh_;
};

TEST_F(ColdchainTamper, EditsAtTheHubAndAtTheSiteAreFoundAndThinningKeepsTheHubWhole) {
  // Readings at 4..6 degC, with an excursion to 12 degC from reading 100 to 119 (5 min), which
  // opens and closes an alert: two alert links between the readings.
  auto pub = sh_->site().NewPublisher("coldchain-pub");
  for (int i = 0; i < kReadings; ++i) {
    const double temp = i >= 100 && i < 120 ? 12.0 : 4.0 + (i % 20) / 10.0;
    pub->Publish({"fs/sensors/cold-1/climate", ClimateMsg(i + 1, kT0 + i * kStepMs, temp)});
  }
  pub->Flush();
  ASSERT_TRUE(sh_->site().WaitInt("SELECT COUNT(*) FROM climate_readings", kReadings, std::chrono::seconds(60)));
  const int64_t links = sh_->site().Int("SELECT COUNT(*) FROM coldchain_links WHERE sensor = 'cold-1'");
  ASSERT_EQ(sh_->site().Int("SELECT COUNT(*) FROM coldchain_links WHERE sensor = 'cold-1' AND alert IS NULL"), kReadings);
  ASSERT_GE(links, kReadings + 2) << "and at least the alert's open and close records";
  ASSERT_EQ(sh_->site().Int("SELECT COUNT(*) FROM coldchain_seals WHERE sensor = 'cold-1'"), 2) << "hours 0 and 1 sealed";
  ASSERT_TRUE(sh_->WaitSynced(sh_->EdgeLastSeq())) << sh_->HubLog();

  // The whole chain verifies at the hub, under the key edgectl prints.
  json all = VerifyAll();
  ASSERT_TRUE(all.is_object()) << all.dump();
  EXPECT_EQ(all["ok"], true) << all.dump();
  EXPECT_EQ(all["records"], links);
  EXPECT_EQ(all["seals"], 2);
  EXPECT_EQ(all["sensor"], "cold-1");
  EXPECT_FALSE(all.contains("first_bad"));
  PublicKeyHex();  // writes key.log: "<hex> <fingerprint>"
  const std::string key_line = ReadFile(hub_dir_.File("key.log"));
  EXPECT_NE(key_line.find(all["key"].get<std::string>()), std::string::npos) << key_line << " vs " << all.dump();

  // ---- (a) at the hub ----
  const std::string hub_db = sh_->hub_db();
  const std::string hub_where = "site_id = (SELECT site_id FROM sites WHERE site = 'test-site') AND sensor = 'cold-1'";
  auto expect_bad_at_hub = [&](int index, const std::string& what) {
    json v = VerifyAll();
    EXPECT_EQ(v["ok"], false) << what << ": " << v.dump();
    EXPECT_EQ(v["first_bad"]["index"], index) << what << ": " << v.dump();
    EXPECT_FALSE(v["first_bad"]["reason"].get<std::string>().empty());
    json late = VerifyLate();
    EXPECT_EQ(late["ok"], true) << what << ": an untouched range stays ok: " << late.dump();
  };
  // Altered temperature.
  Exec(hub_db, "UPDATE coldchain_links SET temp_dc = temp_dc - 300 WHERE " + hub_where + " AND idx = 50");
  expect_bad_at_hub(50, "altered");
  Exec(hub_db, "UPDATE coldchain_links SET temp_dc = temp_dc + 300 WHERE " + hub_where + " AND idx = 50");
  EXPECT_EQ(VerifyAll()["ok"], true);
  // Deleted link.
  Exec(hub_db, "CREATE TABLE saved AS SELECT * FROM coldchain_links WHERE " + hub_where + " AND idx = 60; "
               "DELETE FROM coldchain_links WHERE " + hub_where + " AND idx = 60");
  expect_bad_at_hub(60, "deleted");
  Exec(hub_db, "INSERT INTO coldchain_links SELECT * FROM saved; DROP TABLE saved");
  EXPECT_EQ(VerifyAll()["ok"], true);
  // Two links swapped (reordered).
  const std::string swap = "UPDATE coldchain_links SET idx = -1 WHERE " + hub_where + " AND idx = 70; "
                           "UPDATE coldchain_links SET idx = 70 WHERE " + hub_where + " AND idx = 71; "
                           "UPDATE coldchain_links SET idx = 71 WHERE " + hub_where + " AND idx = -1;";
  Exec(hub_db, swap);
  expect_bad_at_hub(70, "reordered");
  Exec(hub_db, swap);
  EXPECT_EQ(VerifyAll()["ok"], true);
  // A seal's hash replaced: its signature no longer covers it.
  Exec(hub_db, "CREATE TABLE saved AS SELECT * FROM coldchain_seals WHERE " + hub_where + "; "
               "UPDATE coldchain_seals SET last_hash = zeroblob(32) WHERE " + hub_where);
  {
    json v = VerifyAll();
    EXPECT_EQ(v["ok"], false) << v.dump();
    EXPECT_NE(v["first_bad"]["reason"].get<std::string>().find("seal"), std::string::npos) << v.dump();
  }
  Exec(hub_db, "DELETE FROM coldchain_seals WHERE " + hub_where + "; INSERT INTO coldchain_seals SELECT * FROM saved; "
               "DROP TABLE saved");
  EXPECT_EQ(VerifyAll()["ok"], true);

  // ---- (b) at the site ----
  const std::string edge_db = sh_->site().db_path();
  std::string out;
  ASSERT_EQ(ExportAndVerify(&out), 0) << out;
  EXPECT_NE(out.find(std::to_string(links) + " links (0 thinned"), std::string::npos) << out;
  EXPECT_NE(out.find("2 seals"), std::string::npos) << out;
  // Plain tools: the export's signature with openssl and the PEM of `edgectl audit-key --pem`.
  {
    const std::string csv = hub_dir_.File("export.csv");
    ASSERT_EQ(Edgectl("--config " + sh_->site().config_path() + " audit-key --pem", hub_dir_.File("site.pem")), 0);
    const std::string check = "head -n -1 " + csv + " > " + hub_dir_.File("body") + " && tail -n 1 " + csv +
                              " | cut -d, -f2 | xxd -r -p > " + hub_dir_.File("sig") +
                              " && openssl pkeyutl -verify -pubin -inkey " + hub_dir_.File("site.pem") + " -rawin -in " +
                              hub_dir_.File("body") + " -sigfile " + hub_dir_.File("sig");
    WriteFile(hub_dir_.File("openssl.log"), "");
    EXPECT_EQ(RunShell(check, hub_dir_.File("openssl.log")), 0) << ReadFile(hub_dir_.File("openssl.log"));
    std::string text = ReadFile(csv);
    const size_t at = text.find(",400,");
    ASSERT_NE(at, std::string::npos);
    text.replace(at, 5, ",399,");
    WriteFile(csv, text);
    EXPECT_NE(RunShell(check, hub_dir_.File("openssl.log")), 0) << "an edited export fails openssl's check";
    EXPECT_EQ(Edgectl("verify-coldchain " + csv + " --key " + PublicKeyHex(), hub_dir_.File("verify.log")), 1);
    EXPECT_NE(ReadFile(hub_dir_.File("verify.log")).find("signature"), std::string::npos);
  }
  auto expect_bad_at_site = [&](int index, const std::string& what) {
    std::string o;
    EXPECT_EQ(ExportAndVerify(&o), 1) << what << ": " << o;
    EXPECT_NE(o.find("link " + std::to_string(index) + ":"), std::string::npos) << what << ": " << o;
  };
  // Altered temperature.
  Exec(edge_db, "UPDATE climate_readings SET temp_c = temp_c - 3 WHERE outbox_seq = " + ReadingOf(50));
  expect_bad_at_site(50, "altered");
  Exec(edge_db, "UPDATE climate_readings SET temp_c = temp_c + 3 WHERE outbox_seq = " + ReadingOf(50));
  ASSERT_EQ(ExportAndVerify(&out), 0) << out;
  // Deleted reading.
  Exec(edge_db, "CREATE TABLE saved AS SELECT * FROM climate_readings WHERE outbox_seq = " + ReadingOf(60) +
                    "; DELETE FROM climate_readings WHERE outbox_seq = " + ReadingOf(60));
  expect_bad_at_site(60, "deleted");
  Exec(edge_db, "INSERT INTO climate_readings SELECT * FROM saved; DROP TABLE saved");
  ASSERT_EQ(ExportAndVerify(&out), 0) << out;
  // Two readings swapped: each row takes the other's time and temperature.
  const std::string edge_swap =
      "CREATE TABLE saved AS SELECT outbox_seq, ts_ms, temp_c FROM climate_readings WHERE outbox_seq IN (" + ReadingOf(70) +
      ", " + ReadingOf(71) + "); UPDATE climate_readings SET ts_ms = (SELECT s.ts_ms FROM saved s WHERE s.outbox_seq <> "
      "climate_readings.outbox_seq), temp_c = (SELECT s.temp_c FROM saved s WHERE s.outbox_seq <> climate_readings.outbox_seq) "
      "WHERE outbox_seq IN (SELECT outbox_seq FROM saved); DROP TABLE saved";
  Exec(edge_db, edge_swap);
  expect_bad_at_site(70, "reordered");
  Exec(edge_db, edge_swap);
  ASSERT_EQ(ExportAndVerify(&out), 0) << out;

  // ---- (c) downsampling under the disk quota ----
  ASSERT_EQ(sh_->site().StopEdged(), 0);
  std::string config = ReadFile(sh_->site().config_path());
  config.replace(config.find("durability = \"normal\"\n"), 22, "durability = \"normal\"\nquota_mb = 1\n");
  WriteFile(sh_->site().config_path(), config);
  ASSERT_TRUE(sh_->site().StartEdged({{"FRESHSYNC_QUOTA_TICK_MS_FOR_TEST", "100"}})) << sh_->site().log();
  int gps = 0;
  for (int round = 0; round < 60 && sh_->site().Int("SELECT COUNT(*) FROM coldchain_links WHERE thinned = 1") == 0; ++round) {
    for (int i = 0; i < 500; ++i, ++gps)
      pub->Publish({"fs/vehicles/van-1/gps", R"({"seq":)" + std::to_string(gps + 1) + R"(,"lat":31.2,"lon":121.5,"ts":)" +
                                                std::to_string(kT0 + (gps % 7000) * 1000) + "}"});
    pub->Flush();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  const int64_t thinned = sh_->site().Int("SELECT COUNT(*) FROM coldchain_links WHERE thinned = 1");
  ASSERT_GT(thinned, 0) << "the quota should have downsampled the acknowledged readings";
  EXPECT_EQ(sh_->site().Int("SELECT COUNT(*) FROM climate_readings") + thinned, kReadings);
  // The hub holds every reading: its verify of the whole range is untouched (with whatever
  // the site chained and sealed since, e.g. a sensor-silence alert).
  ASSERT_TRUE(sh_->WaitSynced(sh_->EdgeLastSeq())) << sh_->HubLog();
  all = VerifyAll();
  EXPECT_EQ(all["ok"], true) << all.dump();
  EXPECT_EQ(all["records"], sh_->site().Int("SELECT COUNT(*) FROM coldchain_links WHERE sensor = 'cold-1'"));
  EXPECT_EQ(all["seals"], sh_->site().Int("SELECT COUNT(*) FROM coldchain_seals WHERE sensor = 'cold-1'"));
  EXPECT_GE(all["seals"], 2);
  // The site's export still verifies, and says how many links it could not show.
  ASSERT_EQ(ExportAndVerify(&out), 0) << out;
  EXPECT_NE(out.find("(" + std::to_string(thinned) + " thinned"), std::string::npos) << out;
}

}  // namespace
}  // namespace freshsync::testing
