// The one home for "start a real hubd for a test", shared by the tests that start one
// (tests/hub, tests/security, tests/rules, tests/sync): the real binary on a free loopback port,
// real mutual TLS with certificates from TestPki, HQ and site clients over httplib's SSLClient,
// and Record() / BatchBody(), a deterministic mix of entities (fixed seqs, versions, HLCs and
// timestamps). tests/hub/README.md says what it offers and how a test changes the config.
#pragma once

#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "freshsync.pb.h"
#include "hub/codec.h"
#include "tests/support/harness.h"
#include "tests/support/postgres.h"
#include "wire/digest.h"

namespace freshsync::testing {

inline constexpr const char* kReaderToken = "reader-token-0123456789";
inline constexpr const char* kAdminToken = "admin-token-9876543210";
inline constexpr const char* kWriterToken = "writer-token-5555544444";

inline v1::ChangeRecord Record(uint64_t seq) {
  // A mix of entities, so that every materialized table is exercised.
  v1::ChangeRecord r;
  r.set_seq(seq);
  r.set_version(seq);
  r.set_hlc((uint64_t{1764000000000} + seq) << 16);
  r.set_ts_ms(1764000000000 + static_cast<int64_t>(seq) * 1000);
  switch (seq % 4) {
    case 0:
      r.set_entity(v1::STOCK);
      r.set_key("sku-" + std::to_string(seq % 7));
      r.mutable_stock()->set_sku(r.key());
      r.mutable_stock()->set_on_hand(static_cast<int64_t>(seq));
      break;
    case 1:
      r.set_entity(v1::VEHICLE_POSITION);
      r.set_key("truck-" + std::to_string(seq % 3));
      r.mutable_position()->set_vehicle(r.key());
      r.mutable_position()->set_lat_e6(31000000 + static_cast<int32_t>(seq));
      r.mutable_position()->set_lon_e6(121000000);
      break;
    case 2:
      r.set_entity(v1::ORDER);
      r.set_key("o-" + std::to_string(seq));
      r.mutable_order()->set_order_id(r.key());
      r.mutable_order()->set_status("created");
      break;
    default:
      r.set_entity(v1::COLDCHAIN_ALERT);
      r.set_key("al-" + std::to_string(seq));
      r.mutable_alert()->set_alert_id(r.key());
      r.mutable_alert()->set_sensor("cold-1");
      r.mutable_alert()->set_state("open");
      break;
  }
  return r;
}

inline std::string BatchBody(const std::string& site, uint64_t first, uint64_t last, bool urgent = false) {
  v1::Batch b;
  b.set_site(site);
  b.set_urgent(urgent);
  for (uint64_t s = first; s <= last; ++s) *b.add_records() = Record(s);
  return hub::ZstdCompress(b.SerializeAsString(), 1);
}


class HubdTest : public ::testing::Test {
 protected:
  using json = nlohmann::json;

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(Prepare());
    WriteConfig();
    StartHubd();
  }
  void TearDown() override {
    if (HasFailure()) {
      const std::string log = ReadFile(dir_.File("hubd.log"));
      std::cerr << "---- hubd log (last 20000 bytes)\n" << log.substr(log.size() > 20000 ? log.size() - 20000 : 0) << "\n";
    }
    hubd_.Kill();
    pg_.reset();
  }

  // Everything but hubd: the store (when OnPostgres()), the PKI, the port. A fixture whose tests
  // each start hubd with a config of their own overrides SetUp() with this alone, and each test
  // then calls WriteConfig(...) and StartHubd().
  void Prepare() {
    signal(SIGPIPE, SIG_IGN);  // refused connections must fail a request, not kill the test
    if (OnPostgres()) {
      pg_ = std::make_unique<PostgresServer>(dir_.File("pg"));
      ASSERT_TRUE(pg_->Start()) << ReadFile(pg_->log_path());
      ASSERT_TRUE(pg_->CreateDatabase("hub")) << ReadFile(pg_->log_path());
    }
    ASSERT_TRUE(pki_.Init());
    site_a_ = pki_.Client("site-a");
    site_b_ = pki_.Client("site-b");
    port_ = PickFreePort();
  }

  // The store behind hubd: its SQLite file, or a PostgreSQL 15 of the test's own when the
  // environment says FRESHSYNC_TEST_HUB_STORE=postgresql (ctest runs hub_integration_test both
  // ways, issue 13: "the integration tests also run with PostgreSQL"). A fixture that needs one
  // store whatever the environment says overrides this.
  virtual bool OnPostgres() const {
    const char* store = std::getenv("FRESHSYNC_TEST_HUB_STORE");
    return store != nullptr && std::string(store) == "postgresql";
  }

  // `extra` goes before the first table: top-level keys and tables of a test's own
  // ([rate_limits], [stream], ...). threads_ and limits_ set the rest.
  void WriteConfig(const std::string& extra = "") {
    std::ostringstream c;
    c << "listen = \"127.0.0.1:" << port_ << "\"\n"
      << "threads = " << threads_ << "\n"
      << "audit_log = \"" << dir_.File("audit.jsonl") << "\"\n"
      << extra << "[tls]\nca = \"" << pki_.ca_cert() << "\"\ncert = \"" << pki_.server().cert << "\"\nkey = \""
      << pki_.server().key << "\"\n"
      << StoreSection()
      // The fixtures' records are from November 2025: telemetry retention would remove their
      // position history at hubd's start. Kept; retention has tests of its own.
      << "[retention]\ntelemetry_days = 0\n"
      << "[limits]\n" << limits_
      << "[[tokens]]\nname = \"hq-analytics\"\nrole = \"reader\"\nsha256 = \"" << digest::Sha256Hex(kReaderToken)
      << "\"\n"
      << "[[tokens]]\nname = \"hq-ops\"\nrole = \"admin\"\nsha256 = \"" << digest::Sha256Hex(kAdminToken) << "\"\n"
      << "[[tokens]]\nname = \"hq-orders\"\nrole = \"writer\"\nsha256 = \"" << digest::Sha256Hex(kWriterToken) << "\"\n"
      << MoreTables();
    WriteFile(dir_.File("hubd.toml"), c.str());
  }

  // Tables a test adds at the end of the config ([privacy], [downstream], more [[tokens]], ...).
  virtual std::string MoreTables() { return ""; }
  // The [store] table of the config: a SQLite file in the test's folder unless a test says
  // otherwise (hub_golden_test runs the same answers on PostgreSQL).
  virtual std::string StoreSection() {
    if (pg_ != nullptr) return "[store]\nbackend = \"postgresql\"\nurl = \"" + pg_->Url("hub") + "\"\n";
    return "[store]\npath = \"" + dir_.File("hub.db") + "\"\n";
  }

  void StartHubd() {
    hubd_ = ChildProcess({BinDir() + "/hubd", "--config", dir_.File("hubd.toml")}, dir_.File("hubd.log"), hubd_env_);
    ASSERT_TRUE(hubd_.Start());
    WaitHealthy(dir_.File("hubd.log"));
  }

  // hubd on hubd's defaults for [limits] but the keys in `limits`, for the tests of its own
  // limits (validation, HTTP abuse); with Prepare() alone as their SetUp().
  void StartWithLimits(const std::string& limits) {
    limits_ = limits;
    WriteConfig();
    StartHubd();
  }

  // Until the hubd on port_ answers /healthz (20 s at most; its log in the failure).
  void WaitHealthy(const std::string& log) {
    ASSERT_TRUE(WaitFor(
        [&] {
          auto c = Hq("");
          auto r = c->Get("/healthz");
          return r && r->status == 200;
        },
        std::chrono::seconds(20)))
        << ReadFile(log);
  }

  std::unique_ptr<httplib::SSLClient> Site(const TestPki::Files& f) {
    auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", port_, f.cert, f.key);
    Configure(*c);
    return c;
  }
  std::unique_ptr<httplib::SSLClient> Hq(const std::string& token) {
    auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", port_);
    Configure(*c);
    if (!token.empty()) c->set_bearer_token_auth(token);
    return c;
  }
  void Configure(httplib::SSLClient& c) {
    c.set_ca_cert_path(pki_.ca_cert());
    c.enable_server_certificate_verification(true);
    c.set_connection_timeout(5);
    c.set_read_timeout(read_timeout_s_);
  }

  // hubd's Prometheus text ("" without an answer).
  std::string Metrics() {
    auto r = Hq("")->Get("/metrics");
    return r ? r->body : "";
  }

  httplib::Result Push(httplib::SSLClient& c, const std::string& site, const std::string& body, bool json = false) {
    httplib::Headers h = {{"Content-Encoding", "zstd"}};
    if (json) h.emplace("Accept", "application/json");
    return c.Post(("/v1/sites/" + site + "/batches").c_str(), h, body, "application/x-protobuf");
  }

  v1::BatchAck Ack(const httplib::Result& r) {
    v1::BatchAck a;
    EXPECT_TRUE(r);
    if (r) {
      EXPECT_TRUE(a.ParseFromString(r->body)) << r->body;
    }
    return a;
  }

  json GetJson(const std::string& path, const std::string& token = kReaderToken, int want = 200) {
    auto c = Hq(token);
    auto r = c->Get(path.c_str());
    EXPECT_TRUE(r) << path;
    if (!r) return {};
    EXPECT_EQ(r->status, want) << path << ": " << r->body;
    return json::parse(r->body, nullptr, false);
  }

  // GET `path` in both forms over HTTPS: without Accept (JSON, the default) and with
  // Accept: application/x-protobuf, each with its Content-Type.
  template <typename Msg>
  std::pair<json, Msg> GetBoth(const std::string& path, const std::string& token = kReaderToken) {
    std::pair<json, Msg> out;
    auto c = Hq(token);
    auto r = c->Get(path.c_str());
    EXPECT_TRUE(r) << path;
    if (!r) return out;
    EXPECT_EQ(r->status, 200) << path << ": " << r->body;
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json") << path;
    EXPECT_EQ(r->get_header_value("Vary"), "Accept") << path;
    out.first = json::parse(r->body, nullptr, false);
    auto p = c->Get(path.c_str(), {{"Accept", "application/x-protobuf"}});
    EXPECT_TRUE(p) << path;
    if (!p) return out;
    EXPECT_EQ(p->status, 200) << path << ": " << p->body;
    EXPECT_EQ(p->get_header_value("Content-Type"), "application/x-protobuf") << path;
    EXPECT_TRUE(out.second.ParseFromString(p->body)) << path;
    return out;
  }

  // Every change in the feed, paging with `page`.
  std::vector<json> Feed(int page) {
    std::vector<json> out;
    uint64_t after = 0;
    while (true) {
      json j = GetJson("/v1/changes?after=" + std::to_string(after) + "&limit=" + std::to_string(page));
      if (!j.is_object()) break;
      for (auto& c : j["changes"]) out.push_back(c);
      const uint64_t next = j["next"];
      if (j["changes"].empty()) {
        EXPECT_EQ(next, after);
        break;
      }
      after = next;
    }
    return out;
  }

  // Config knobs, read by WriteConfig() and the clients: a test changes them before hubd starts.
  int threads_ = 4;
  // The [limits] table's keys. A test of hubd's own limits sets "" (hubd's defaults) or its own.
  std::string limits_ = "max_body_bytes = 1048576\nmax_decompressed_bytes = 8388608\nmax_records_per_batch = 20000\n";
  int read_timeout_s_ = 30;  // each client's
  std::map<std::string, std::string> hubd_env_;  // hubd's environment beyond the test's own

  TempDir dir_;
  TestPki pki_{dir_.File("pki")};
  TestPki::Files site_a_, site_b_;
  int port_ = 0;
  ChildProcess hubd_;
  std::unique_ptr<PostgresServer> pg_;  // with OnPostgres() only
};

}  // namespace freshsync::testing
