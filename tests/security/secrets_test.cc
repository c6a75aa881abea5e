// Secrets and personal data never appear in logs or in clear in the stores: edged and hubd run
// with debug logging through a workload with customer personal data in orders (accepted and
// refused ones), HQ pulls with a bearer token (and a wrong one), then every log (stdout and
// stderr of each process: what journald would get), the audit file, the broker's log, the
// output of edgectl, and the SQLite files (db, -wal) of edge and hub are searched for the
// personal data, the tokens, the privacy key (hex, base64, raw) and the TLS private keys.
// Then `edgectl rotate-key` moves the stored data to a new key and the old key can go.
// (tests/ingest/ingest_volume_test.cc checks the edge store alone at volume.)
#include <fstream>
#include <sstream>

#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "hub/codec.h"
#include "tests/hub/hubd_fixture.h"
#include "tests/ingest/site.h"

namespace freshsync::testing {
namespace {

using nlohmann::json;
constexpr const char* kWrongToken = "hq-bearer-WRONG-0a1b2c3d4e5f6789";

std::string Hex(const std::string& bytes, bool upper) {
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string RandomBytes(size_t n) {
  std::ifstream in("/dev/urandom", std::ios::binary);
  std::string out(n, '\0');
  in.read(out.data(), static_cast<std::streamsize>(n));
  return out;
}

// The base64 body lines of a PEM file (each one a secret when the file is a private key).
std::vector<std::string> PemBodyLines(const std::string& path) {
  std::vector<std::string> out;
  std::istringstream in(ReadFile(path));
  std::string line;
  while (std::getline(in, line))
    if (!line.empty() && line.rfind("-----", 0) != 0 && line.size() >= 16) out.push_back(line);
  return out;
}

// hubd from the shared fixture (tests/hub/hubd_fixture.h) at debug level, on its SQLite file
// (searched below); the site's edged from tests/ingest/site.h.
class SecretsTest : public HubdTest {
 protected:
  void SetUp() override {
    read_timeout_s_ = 10;
    ASSERT_NO_FATAL_FAILURE(Prepare());
    client_ = pki_.Client("test-site");
    WriteConfig("[log]\nlevel = \"debug\"\n");
    ASSERT_NO_FATAL_FAILURE(StartHubd());
    key_ = RandomBytes(32);
    WriteFile(dir_.File("privacy.key"), Hex(key_, false) + "\n");
  }
  void TearDown() override {
    site_.reset();
    HubdTest::TearDown();
  }
  bool OnPostgres() const override { return false; }

  int64_t HubRecords() {
    auto r = Hq(kReaderToken)->Get("/v1/sites");
    if (!r || r->status != 200) return -1;
    auto j = json::parse(r->body, nullptr, false);
    for (auto& s : j["sites"])
      if (s["site"] == "test-site") return s["records"].get<int64_t>();
    return 0;
  }

  TestPki::Files client_;
  std::string key_;
  std::unique_ptr<EdgeSite> site_;
};

TEST_F(SecretsTest, NoSecretOrPersonalDataInLogsOrStoresThenKeyRotation) {
  site_ = std::make_unique<EdgeSite>("[log]\nlevel = \"debug\"\n[privacy]\nkey_file = \"" + dir_.File("privacy.key") +
                                 "\"\n[hub]\nurl = \"https://127.0.0.1:" + std::to_string(port_) + "\"\nca = \"" +
                                 pki_.ca_cert() + "\"\ncert = \"" + client_.cert + "\"\nkey = \"" + client_.key +
                                 "\"\nbackoff_initial_ms = 50\nbackoff_max_ms = 1000\n");
  ASSERT_TRUE(site_->StartEdged()) << site_->log();

  // Customer data in every shape edged accepts or refuses.
  const std::vector<std::string> pii = {"Zhou Xiaoming", "13912345678", "77 Secret Garden Road", "Qian Duoduo", "Lane 9 Hidden Court"};
  auto pub = site_->NewPublisher("secrets-pub");
  pub->Publish({"fs/stock/movements", R"({"id":"m1","sku":"apple","delta":50,"reason":"receive","ts":1764000000000})"});
  for (int i = 0; i < 20; ++i) {
    json o = {{"order_id", "o-" + std::to_string(i)}, {"status", "created"}, {"ts", 1764000000000 + i},
              {"lines", {{{"sku", "apple"}, {"qty", 1}}}},
              {"customer", {{"name", pii[0] + " " + std::to_string(i)}, {"phone", "+86 " + pii[1]}, {"address", pii[2]}}}};
    pub->Publish({"fs/orders/status", o.dump()});
  }
  // Refused: illegal transition, missing lines, malformed JSON, each carrying customer data.
  pub->Publish({"fs/orders/status", json{{"order_id", "o-0"}, {"status", "delivered"}, {"ts", 1764000000100},
                                         {"lines", {{{"sku", "apple"}, {"qty", 1}}}},
                                         {"customer", {{"name", pii[3]}, {"phone", pii[1]}, {"address", pii[4]}}}}
                                        .dump()});
  pub->Publish({"fs/orders/status", json{{"order_id", "o-x"}, {"status", "created"}, {"ts", 1764000000100},
                                         {"customer", {{"name", pii[3]}, {"address", pii[4]}}}}
                                        .dump()});
  pub->Publish({"fs/orders/status", "{\"order_id\":\"o-y\",\"customer\":{\"name\":\"" + pii[3] + "\",\"address\":\"" + pii[4] + "\""});
  pub->Flush();
  ASSERT_TRUE(site_->WaitInt("SELECT COUNT(*) FROM dead_letters", 3, std::chrono::seconds(60))) << site_->log();
  ASSERT_TRUE(site_->WaitInt("SELECT COUNT(*) FROM orders WHERE customer_sealed IS NOT NULL", 20, std::chrono::seconds(60)));
  const int64_t last = site_->Int("SELECT MAX(seq) FROM outbox");
  ASSERT_TRUE(WaitFor([&] { return HubRecords() == last; }, std::chrono::seconds(60))) << site_->log();

  // HQ pulls the orders (sealed blobs) and the feed; a wrong token is refused and logged.
  auto orders = Hq(kReaderToken)->Get("/v1/sites/test-site/orders");
  ASSERT_TRUE(orders);
  ASSERT_EQ(orders->status, 200);
  for (const auto& p : pii) EXPECT_EQ(orders->body.find(p), std::string::npos) << p;
  ASSERT_EQ(Hq(kReaderToken)->Get("/v1/changes?limit=1000")->status, 200);
  ASSERT_EQ(Hq(kWrongToken)->Get("/v1/changes")->status, 401);

  // Operator tools print nothing secret either.
  const std::string tools = dir_.File("edgectl.out");
  ASSERT_EQ(RunShell(BinDir() + "/edgectl --config '" + site_->config_path() + "' dead-letters --json", tools), 0);
  ASSERT_EQ(RunShell(BinDir() + "/edgectl --config '" + site_->config_path() + "' dead-letters show 1", tools), 0);
  ASSERT_EQ(RunShell(BinDir() + "/edgectl --config '" + site_->config_path() + "' status --json", tools), 0);

  // The WAL files as they are while the daemons run (a clean stop checkpoints them away).
  for (const auto& [from, to] : {std::pair<std::string, std::string>{site_->db_path() + "-wal", dir_.File("edge-wal.copy")},
                                 {dir_.File("hub.db-wal"), dir_.File("hub-wal.copy")}}) {
    ASSERT_TRUE(std::ifstream(from)) << from;
    WriteFile(to, ReadFile(from));
  }
  EXPECT_EQ(site_->StopEdged(), 0);
  hubd_.Stop();

  std::vector<std::pair<std::string, std::string>> needles;  // what, bytes
  for (const auto& p : pii) needles.push_back({"personal data '" + p + "'", p});
  needles.push_back({"the bearer token", kReaderToken});
  needles.push_back({"the wrong bearer token", kWrongToken});
  needles.push_back({"the privacy key (hex)", Hex(key_, false)});
  needles.push_back({"the privacy key (HEX)", Hex(key_, true)});
  needles.push_back({"the privacy key (base64)", hub::Base64(key_).substr(0, 40)});
  needles.push_back({"the privacy key (raw)", key_});
  for (const auto& f : {client_.key, pki_.server().key})
    for (const auto& l : PemBodyLines(f)) needles.push_back({"TLS private key material of " + f, l});
  ASSERT_GT(needles.size(), 12u);
  // Control: the search does find a secret where it is meant to be.
  ASSERT_NE(ReadFile(dir_.File("privacy.key")).find(Hex(key_, false)), std::string::npos);
  ASSERT_NE(ReadFile(client_.key).find(PemBodyLines(client_.key).front()), std::string::npos);

  const std::string site_dir = site_->db_path().substr(0, site_->db_path().rfind('/'));
  std::vector<std::string> files = {site_dir + "/edged.log",      dir_.File("hubd.log"),  dir_.File("audit.jsonl"),
                                    site_dir + "/broker/mosquitto.log", tools,               site_->db_path(),
                                    site_->db_path() + "-wal",    dir_.File("hub.db"),    dir_.File("hub.db-wal"),
                                    dir_.File("edge-wal.copy"),   dir_.File("hub-wal.copy")};
  int searched = 0;
  for (const auto& f : files) {
    if (!std::ifstream(f)) continue;  // a -wal checkpointed away at close
    const std::string content = ReadFile(f);
    ++searched;
    for (const auto& [what, bytes] : needles) EXPECT_EQ(content.find(bytes), std::string::npos) << what << " found in " << f;
  }
  EXPECT_GE(searched, 9);
  // The logs did run at debug level and saw the traffic (the search above is not vacuous).
  EXPECT_NE(ReadFile(dir_.File("hubd.log")).find("401"), std::string::npos);
  EXPECT_GT(ReadFile(site_dir + "/edged.log").size(), 1000u);
  // Sealed, not dropped: the edge store holds the customers, openable with the key only.
  EXPECT_EQ(site_->Int("SELECT COUNT(*) FROM orders WHERE customer_sealed IS NOT NULL"), 20);

  // Key rotation as docs/operations.md tells an operator: new key current, old key listed,
  // edged restarted, then `edgectl rotate-key` re-seals every row while edged runs and keeps
  // taking orders (sealed with the new key at once).
  const std::string new_key = RandomBytes(32);
  WriteFile(dir_.File("privacy-2.key"), Hex(new_key, false) + "\n");
  std::string config = ReadFile(site_->config_path());
  const std::string old_line = "key_file = \"" + dir_.File("privacy.key") + "\"\n";
  ASSERT_NE(config.find(old_line), std::string::npos);
  config.replace(config.find(old_line), old_line.size(),
                 "key_file = \"" + dir_.File("privacy-2.key") + "\"\nold_key_files = [\"" + dir_.File("privacy.key") + "\"]\n");
  WriteFile(site_->config_path(), config);
  ASSERT_TRUE(site_->StartEdged()) << site_->log();
  constexpr int kDuring = 200;
  std::thread orders_during([&] {
    auto p = site_->NewPublisher("rotation-pub");
    p->Publish({"fs/stock/movements", R"({"id":"m2","sku":"apple","delta":1000,"reason":"receive","ts":1764000001000})"});
    for (int i = 0; i < kDuring; ++i) {
      json o = {{"order_id", "r-" + std::to_string(i)}, {"status", "created"}, {"ts", 1764000002000 + i},
                {"lines", {{{"sku", "apple"}, {"qty", 1}}}},
                {"customer", {{"name", "Rotation Customer " + std::to_string(i)}, {"phone", "+86 100"}, {"address", "1 Road"}}}};
      p->Publish({"fs/orders/status", o.dump()});
      if (i % 20 == 19) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    p->Flush();
  });
  ASSERT_TRUE(site_->WaitInt("SELECT COUNT(*) > 20 FROM orders", 1, std::chrono::seconds(60)));  // edged is taking orders
  const std::string rot = dir_.File("rotate.out");
  const int rot_rc = RunShell(BinDir() + "/edgectl --config '" + site_->config_path() + "' rotate-key --json --batch 7", rot);
  orders_during.join();
  ASSERT_EQ(rot_rc, 0) << ReadFile(rot);
  auto report = json::parse(ReadFile(rot), nullptr, false);
  ASSERT_TRUE(report.is_object()) << ReadFile(rot);
  EXPECT_EQ(report["resealed"], 20);  // the orders sealed under the old key; the new ones already are current
  EXPECT_EQ(report["remaining_old"], 0);
  ASSERT_TRUE(site_->WaitInt("SELECT COUNT(*) FROM orders WHERE customer_sealed IS NOT NULL", 20 + kDuring, std::chrono::seconds(60)));
  EXPECT_TRUE(site_->EdgedRunning());
  EXPECT_EQ(site_->StopEdged(), 0);
  // Without the old key: nothing left to re-seal, and edged starts on the new key alone.
  config = ReadFile(site_->config_path());
  config.replace(config.find("old_key_files"), config.find('\n', config.find("old_key_files")) - config.find("old_key_files"),
                 "old_key_files = []");
  WriteFile(site_->config_path(), config);
  const std::string rot2 = dir_.File("rotate2.out");
  ASSERT_EQ(RunShell(BinDir() + "/edgectl --config '" + site_->config_path() + "' rotate-key --json", rot2), 0) << ReadFile(rot2);
  report = json::parse(ReadFile(rot2), nullptr, false);
  EXPECT_EQ(report["already_current"], 20 + kDuring);
  EXPECT_EQ(report["unreadable"], 0);
  ASSERT_TRUE(site_->StartEdged()) << site_->log();
  EXPECT_EQ(site_->StopEdged(), 0);
  EXPECT_EQ(ReadFile(rot).find(Hex(new_key, false)), std::string::npos);
}

}  // namespace
}  // namespace freshsync::testing
