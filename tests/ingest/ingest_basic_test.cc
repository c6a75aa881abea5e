// Bad input (dead letters with reasons, on fs/deadletter, pipeline goes on), config refusal,
// edgectl, and a failing disk that must not lead to an acknowledgement.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "edge/ingest.h"
#include "edge/intake_journal.h"
#include "tests/ingest/workload.h"

namespace freshsync::testing {
namespace {

struct BadInput {
  std::string kind;
  Msg msg;
  std::string reason;  // expected substring of dead_letters.reason
};

std::string Gps(double lat, double lon) {
  v1::GpsMsg g;
  g.set_seq(1);
  g.set_lat(lat);
  g.set_lon(lon);
  g.set_ts_ms(1764000000000);
  return g.SerializeAsString();
}

std::vector<BadInput> BadInputs() {
  const std::string mv = "fs/stock/movements", od = "fs/orders/status", gps = "fs/vehicles/t1/gps", cl = "fs/sensors/c1/climate";
  return {
      {"broken JSON", {mv, R"({"id":"b1","sku":)"}, "malformed JSON"},
      {"wrong type", {mv, R"({"id":"b2","sku":"apple","delta":"5","reason":"receive"})"}, "delta: must be an integer"},
      {"fractional integer", {mv, R"({"id":"b3","sku":"apple","delta":2.5,"reason":"receive"})"}, "fraction"},
      {"missing field", {mv, R"({"id":"b4","delta":5,"reason":"receive"})"}, "sku: missing"},
      {"empty id", {mv, R"({"id":"","sku":"apple","delta":5,"reason":"receive"})"}, "id: must not be empty"},
      {"NaN literal in JSON", {gps, R"({"seq":1,"lat":NaN,"lon":1,"ts":1764000000000})"}, "malformed JSON"},
      {"NaN in protobuf", {gps, Gps(std::nan(""), 121)}, "lat: must be a finite number"},
      {"Inf in JSON", {gps, R"({"seq":1,"lat":1e999,"lon":1,"ts":1764000000000})"}, "Inf"},
      {"Inf in protobuf", {gps, Gps(31, -std::numeric_limits<double>::infinity())}, "lon: must be a finite number"},
      {"latitude out of range", {gps, R"({"seq":1,"lat":95.5,"lon":1,"ts":1764000000000})"}, "lat: 95.5 out of range"},
      {"longitude out of range", {gps, Gps(31, 200)}, "lon: 200 out of range"},
      {"300 KB payload", {mv, "{\"id\":\"" + std::string(300 * 1024, 'x') + "\"}"}, "payload too large"},
      {"invalid UTF-8", {mv, "{\"id\":\"b\xc3\x28\",\"sku\":\"apple\",\"delta\":1,\"reason\":\"receive\"}"}, "not valid UTF-8"},
      {"unknown topic", {"fs/stock/levels", R"({"sku":"apple"})"}, "unknown topic"},
      {"unknown reason", {mv, R"({"id":"b5","sku":"apple","delta":1,"reason":"stolen"})"}, "reason: must be one of"},
      {"negative stock", {mv, R"({"id":"b6","sku":"apple","delta":-1000,"reason":"pick"})"}, "negative stock"},
      {"illegal order transition", {od, R"({"order_id":"o-1","status":"delivered","ts":1764000000000})"}, "illegal order transition: order o-1 created -> delivered"},
      {"unknown order", {od, R"({"order_id":"o-404","status":"accepted","ts":1764000000000})"}, "is unknown"},
      {"unknown status", {od, R"({"order_id":"o-1","status":"teleported","ts":1764000000000})"}, "status: must be one of"},
      {"bad timestamp", {cl, R"({"seq":1,"ts":"tomorrow","temp_c":3})"}, "RFC 3339"},
      {"timestamp in seconds", {cl, R"({"seq":1,"ts":1764000000,"temp_c":3})"}, "out of range"},
      {"empty payload", {cl, ""}, "empty payload"},
      {"garbage binary", {gps, std::string("\xff\xff\xff\x01\x02", 5)}, "not a valid protobuf"},
      {"temperature out of range", {cl, R"({"seq":1,"ts":1764000000000,"temp_c":500})"}, "temp_c"},
      {"negative seq", {cl, R"({"seq":-4,"ts":1764000000000,"temp_c":3})"}, "seq"},
      {"order without lines", {od, R"({"order_id":"o-2","status":"created","ts":1764000000000,"customer":{"name":"Secret Person"}})"}, "lines"},
      {"broken order JSON with customer", {od, R"({"order_id":"o-3","customer":{"name":"Secret Person")"}, "malformed JSON"},
  };
}

TEST(IngestBasicTest, BadInputBecomesDeadLettersAndThePipelineGoesOn) {
  Site site;
  ASSERT_TRUE(site.StartEdged());
  Subscriber dead(site.broker().Uri(), "dl-watcher", "fs/deadletter");
  auto pub = site.NewPublisher("bad-pub");
  pub->Publish({"fs/stock/movements", R"({"id":"g1","sku":"apple","delta":10,"reason":"receive"})"});
  pub->Publish({"fs/orders/status", R"({"order_id":"o-1","status":"created","ts":1764000000000,"lines":[{"sku":"apple","qty":1}]})"});
  const auto bad = BadInputs();
  ASSERT_GE(bad.size(), 20u);
  uint64_t seq = 0;
  for (const auto& b : bad) {
    pub->Publish(b.msg);
    pub->Publish(Sentinel("ok", ++seq));  // the next message is applied as usual
  }
  pub->Flush();
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM climate_readings WHERE sensor = 'sentinel-ok'", static_cast<int64_t>(bad.size())));
  // The sentinels are telemetry; bad stock and order input comes over the other client.
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM dead_letters", static_cast<int64_t>(bad.size()), std::chrono::seconds(20)));
  // Telemetry and the rest arrive over two MQTT clients (edge/ingest.h): the order holds within each.
  const auto is_telemetry = [](const std::string& topic) { return topic.rfind("fs/vehicles/", 0) == 0 || topic.rfind("fs/sensors/", 0) == 0; };
  for (const bool telemetry : {false, true}) {
    std::vector<const BadInput*> lane;
    for (const auto& b : bad)
      if (is_telemetry(b.msg.topic) == telemetry) lane.push_back(&b);
    const std::string in_lane = std::string(telemetry ? "" : "NOT ") + "(topic LIKE 'fs/vehicles/%' OR topic LIKE 'fs/sensors/%')";
    ASSERT_EQ(site.Int("SELECT COUNT(*) FROM dead_letters WHERE " + in_lane), static_cast<int64_t>(lane.size()));
    for (size_t i = 0; i < lane.size(); ++i) {
      const std::string where = " FROM dead_letters WHERE id = (SELECT id FROM dead_letters WHERE " + in_lane + " ORDER BY id LIMIT 1 OFFSET " +
                                std::to_string(i) + ")";
      const std::string reason = site.Text("SELECT reason" + where);
      EXPECT_NE(reason.find(lane[i]->reason), std::string::npos) << lane[i]->kind << ": got '" << reason << "'";
      EXPECT_EQ(site.Text("SELECT topic" + where), lane[i]->msg.topic) << lane[i]->kind;
    }
  }
  EXPECT_EQ(site.Text("SELECT code FROM dead_letters WHERE reason LIKE 'negative stock%'"), "conflict");
  EXPECT_EQ(site.Int("SELECT on_hand FROM stock WHERE sku = 'apple'"), 10);  // refused whole
  // Customer data never reaches dead letters in clear.
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM dead_letters WHERE CAST(payload AS TEXT) LIKE '%Secret Person%'"), 0);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM dead_letters WHERE reason LIKE 'malformed%' AND topic = 'fs/orders/status' AND payload IS NULL"), 1);
  EXPECT_EQ(site.log().find("Secret Person"), std::string::npos);
  ExpectDenseOutbox(site);

  // ... and each was announced on fs/deadletter with its topic and reason.
  ASSERT_TRUE(WaitFor([&] { return dead.Payloads().size() >= bad.size(); }, std::chrono::seconds(10)));
  const auto notes = dead.Payloads();
  ASSERT_EQ(notes.size(), bad.size());
  for (const bool telemetry : {false, true}) {
    std::vector<const BadInput*> lane;
    for (const auto& b : bad)
      if (is_telemetry(b.msg.topic) == telemetry) lane.push_back(&b);
    size_t i = 0;
    for (const auto& note : notes) {
      auto j = nlohmann::json::parse(note, nullptr, false);
      ASSERT_TRUE(j.is_object()) << note;
      if (is_telemetry(j.value("topic", "")) != telemetry) continue;
      ASSERT_LT(i, lane.size());
      EXPECT_EQ(j.value("topic", ""), lane[i]->msg.topic);
      EXPECT_NE(j.value("reason", "").find(lane[i]->reason), std::string::npos) << note;
      ++i;
    }
    EXPECT_EQ(i, lane.size());
  }

  // edgectl reads the same store.
  TempDir out;
  ASSERT_EQ(RunShell("'" + BinDir() + "/edgectl' --config '" + site.config_path() + "' status --json > '" + out.File("s.json") + "'"), 0);
  auto status = nlohmann::json::parse(ReadFile(out.File("s.json")));
  EXPECT_EQ(status["site"], "test-site");
  EXPECT_EQ(status["link"], "down");
  EXPECT_EQ(status["dead_letters"], bad.size());
  EXPECT_EQ(status["outbox"]["last_seq"], site.Int("SELECT MAX(seq) FROM outbox"));
  EXPECT_EQ(status["outbox"]["acked_seq"], 0);
  EXPECT_EQ(status["outbox"]["backlog"], site.Int("SELECT COUNT(*) FROM outbox"));
  ASSERT_EQ(RunShell("'" + BinDir() + "/edgectl' --config '" + site.config_path() + "' dead-letters --json > '" + out.File("d.json") + "'"), 0);
  auto dls = nlohmann::json::parse(ReadFile(out.File("d.json")));
  ASSERT_EQ(dls.size(), bad.size());
  // Newest first: the last bad input, or the last one of the other client's lane.
  EXPECT_EQ(dls[0]["id"], site.Int("SELECT MAX(id) FROM dead_letters"));
  const std::string newest = dls[0]["topic"];
  std::string last_in_lane;
  for (const auto& b : bad)
    if (is_telemetry(b.msg.topic) == is_telemetry(newest)) last_in_lane = b.msg.topic;
  EXPECT_EQ(newest, last_in_lane);
  EXPECT_EQ(site.StopEdged(), 0);                    // SIGTERM: clean exit
}

TEST(IngestBasicTest, BadConfigIsRefusedNamingTheKey) {
  TempDir dir;
  const std::string good = "site = \"s1\"\n[mqtt]\nuri = \"tcp://127.0.0.1:1\"\n[store]\npath = \"" + dir.File("e.db") + "\"\n";
  WriteFile(dir.File("good.toml"), good);
  EXPECT_EQ(RunShell("'" + BinDir() + "/edged' --check-config --config '" + dir.File("good.toml") + "'", dir.File("log")), 0);
  struct Case {
    std::string text, key;
  };
  for (const Case& c : {Case{good + "durability = \"fast\"\n", "store.durability"},
                        Case{"site = \"s1\"\n[mqtt]\nuri = \"http://x\"\n[store]\npath = \"x\"\n", "mqtt.uri"},
                        Case{good + "colour = 1\n", "store.colour"},
                        Case{good + "[privacy]\nkey_file = \"" + dir.File("missing.key") + "\"\n", "privacy.key_file"},
                        Case{"site = \"s1\"\n[store]\npath = \"x\"\n", "mqtt"}}) {
    WriteFile(dir.File("bad.toml"), c.text);
    WriteFile(dir.File("err"), "");
    EXPECT_EQ(RunShell("'" + BinDir() + "/edged' --check-config --config '" + dir.File("bad.toml") + "'", dir.File("err")), 2) << c.key;
    EXPECT_NE(ReadFile(dir.File("err")).find(c.key), std::string::npos) << ReadFile(dir.File("err"));
    // Without --check-config it refuses to start the same way.
    EXPECT_EQ(RunShell("'" + BinDir() + "/edged' --config '" + dir.File("bad.toml") + "'", dir.File("err")), 2) << c.key;
  }
}

// The store fails (as on a full disk) from the 21st commit on. edged must hold that message
// unacknowledged: after kill -9 and a restart with a healthy disk, all 40 messages are there.
TEST(IngestBasicTest, FailingDiskNeverAcknowledges) {
  // The disk fails for both the intake journal (from the 21st append) and the store (from the
  // 21st commit): message 21 is held unacknowledged, and 21..40 stay with the broker.
  Site site;
  ASSERT_TRUE(site.StartEdged({{"FRESHSYNC_FAIL_COMMITS_FOR_TEST", "20:-1"}, {"FRESHSYNC_FAIL_JOURNAL_FOR_TEST", "20:-1"}}));
  auto pub = site.NewPublisher("disk-pub");
  for (uint64_t i = 1; i <= 40; ++i) pub->Publish(Sentinel("disk", i));
  pub->Flush();
  ASSERT_TRUE(WaitFor([&] { return site.log().find("holding the message unacknowledged") != std::string::npos; }, std::chrono::seconds(20)));
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM climate_readings", 20, std::chrono::seconds(20)));
  site.KillEdged();
  // Only 20 were ever journaled: the other 20 can only come back from the broker, which
  // therefore never got their acknowledgement.
  auto journaled = edge::ReadJournalLastIndex(edge::Ingest::JournalDir(site.db_path()));
  ASSERT_TRUE(journaled.ok());
  EXPECT_EQ(*journaled, 20u);
  ASSERT_TRUE(site.StartEdged());
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM climate_readings", 40, std::chrono::seconds(30)));
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM dead_letters"), 0);
  ExpectDenseOutbox(site);
}

// The journal works, the store fails: messages are acknowledged once journaled, held there
// while the store fails, and survive a kill -9 into the next run.
TEST(IngestBasicTest, JournaledMessagesSurviveAFailingStoreAndAKill) {
  Site site;
  ASSERT_TRUE(site.StartEdged({{"FRESHSYNC_FAIL_COMMITS_FOR_TEST", "0:-1"}}));
  auto pub = site.NewPublisher("store-fail-pub");
  for (uint64_t i = 1; i <= 40; ++i) pub->Publish(Sentinel("sf", i));
  pub->Flush();
  ASSERT_TRUE(WaitFor([&] { return site.log().find("store failed") != std::string::npos; }, std::chrono::seconds(20))) << site.log();
  ASSERT_TRUE(WaitFor(
      [&] {
        auto j = edge::ReadJournalLastIndex(edge::Ingest::JournalDir(site.db_path()));
        return j.ok() && *j == 40;
      },
      std::chrono::seconds(20)));
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM climate_readings"), 0);
  site.KillEdged();
  ASSERT_TRUE(site.StartEdged());
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM climate_readings", 40, std::chrono::seconds(30)));
  ExpectDenseOutbox(site);
  EXPECT_EQ(site.StopEdged(), 0);
}

// A transient failure: the batch is retried in place and then committed normally.
TEST(IngestBasicTest, TransientStoreFailureIsRetriedInPlace) {
  Site site;
  ASSERT_TRUE(site.StartEdged({{"FRESHSYNC_FAIL_COMMITS_FOR_TEST", "5:3"}}));
  auto pub = site.NewPublisher("transient-pub");
  for (uint64_t i = 1; i <= 20; ++i) {
    pub->Publish(Sentinel("t", i));
    pub->Flush();
    // One by one, so that there are more than 5 commits.
    if (i <= 10) {
      ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM climate_readings", static_cast<int64_t>(i), std::chrono::seconds(20)));
    }
  }
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM climate_readings", 20, std::chrono::seconds(30)));
  EXPECT_NE(site.log().find("store failed"), std::string::npos);
  ExpectDenseOutbox(site);
  EXPECT_EQ(site.StopEdged(), 0);
}

}  // namespace
}  // namespace freshsync::testing

namespace freshsync::testing {
namespace {

// edged over TLS with a client certificate (mqtt.ca/cert/key, ssl://): messages flow.
TEST(IngestTlsTest, ClientCertificateOverTls) {
  TempDir pki_dir;
  TestPki pki(pki_dir.path());
  ASSERT_TRUE(pki.Init());
  const auto client = pki.Client("test-site");
  const int tls_port = PickFreePort();
  SiteOptions o;
  o.broker_conf = "listener " + std::to_string(tls_port) + " 127.0.0.1\ncafile " + pki.ca_cert() + "\ncertfile " + pki.server().cert +
                  "\nkeyfile " + pki.server().key + "\nrequire_certificate true\n";
  o.mqtt_table = [&](const std::string&) {
    return "[mqtt]\nuri = \"ssl://127.0.0.1:" + std::to_string(tls_port) + "\"\nca = \"" + pki.ca_cert() + "\"\ncert = \"" + client.cert +
           "\"\nkey = \"" + client.key + "\"\n";
  };
  Site site(o);
  ASSERT_TRUE(site.StartEdged()) << site.log();
  auto pub = site.NewPublisher("tls-test-pub");  // plain listener; edged reads over TLS
  for (uint64_t i = 1; i <= 10; ++i) pub->Publish(Sentinel("tls", i));
  pub->Flush();
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM climate_readings", 10, std::chrono::seconds(20)));
  EXPECT_EQ(site.StopEdged(), 0);
}

// Without the CA it must not connect (server verification is on).
TEST(IngestTlsTest, RefusesAnUnverifiedServer) {
  TempDir pki_dir;
  TestPki pki(pki_dir.path());
  ASSERT_TRUE(pki.Init());
  TestPki other(pki_dir.File("other"));
  ASSERT_TRUE(other.Init());
  const int tls_port = PickFreePort();
  SiteOptions o;
  o.broker_conf = "listener " + std::to_string(tls_port) + " 127.0.0.1\ncafile " + pki.ca_cert() + "\ncertfile " + pki.server().cert +
                  "\nkeyfile " + pki.server().key + "\n";
  o.mqtt_table = [&](const std::string&) {
    return "[mqtt]\nuri = \"ssl://127.0.0.1:" + std::to_string(tls_port) + "\"\nca = \"" + other.ca_cert() + "\"\n";
  };
  Site site(o);
  EXPECT_FALSE(site.StartEdged({}, std::chrono::seconds(3)));
  EXPECT_NE(site.log().find("cannot connect"), std::string::npos) << site.log();
  EXPECT_TRUE(site.EdgedRunning());  // it keeps retrying rather than giving up
}

}  // namespace
}  // namespace freshsync::testing
