// The sync path end to end: a real Mosquitto, the real edged (with its sync agent) and the
// real hubd over mutual TLS with certificates made by TestPki; a FaultProxy between edged and
// hubd for link faults; hubd's ForTest shed file for 503 + Retry-After.
#include <httplib.h>
#include <sqlite3.h>

#include <filesystem>
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "freshsync.pb.h"
#include "tests/hub/hubd_fixture.h"
#include "tests/ingest/site.h"
#include "tests/support/fault_proxy.h"

namespace freshsync::testing {
namespace {

using nlohmann::json;
constexpr const char* kSiteId = "test-site";  // tests/ingest/site.cc names its site so

Msg Gps(int truck, int seq) {
  const double lat = 31.2 + truck * 0.01 + seq * 1e-5;
  const double lon = 121.5 + seq * 1e-5;
  char payload[200];
  std::snprintf(payload, sizeof(payload), R"({"seq":%d,"lat":%.6f,"lon":%.6f,"ts":%lld,"speed_kmh":42.5})", seq, lat, lon,
                1764000000000LL + seq * 1000LL);
  return {"fs/vehicles/truck-" + std::to_string(truck) + "/gps", payload};
}

Msg Receive(int n, const std::string& sku, int qty) {
  return {"fs/stock/movements", R"({"id":"mv-)" + std::to_string(n) + R"(","sku":")" + sku + R"(","delta":)" +
                                    std::to_string(qty) + R"(,"reason":"receive","ts":1764000000000})"};
}

class SyncE2E : public HubdTest {
 protected:
  // hubd from the shared fixture (tests/hub/hubd_fixture.h) with the load-shedding switch file,
  // then the proxy and the site.
  void SetUp() override {
    hubd_env_ = {{"FRESHSYNC_HUB_SHED_FILE_FOR_TEST", dir_.File("shed")}};
    read_timeout_s_ = 10;  // as the test's own HQ client had
    ASSERT_NO_FATAL_FAILURE(HubdTest::SetUp());
    client_ = pki_.Client(kSiteId);
    metrics_port_ = PickFreePort();
    proxy_ = std::make_unique<FaultProxy>("127.0.0.1", port_);
    ASSERT_TRUE(proxy_->Start());
    site_ = std::make_unique<EdgeSite>("[hub]\nurl = \"https://127.0.0.1:" + std::to_string(proxy_->port()) + "\"\nca = \"" +
                                       pki_.ca_cert() + "\"\ncert = \"" + client_.cert + "\"\nkey = \"" + client_.key +
                                       "\"\nbatch_max_records = 500\ntimeout_ms = 3000\nbackoff_initial_ms = 50\n"
                                       "backoff_max_ms = 2000\nreconcile_interval_s = 2\n[metrics]\nlisten = \"127.0.0.1:" +
                                       std::to_string(metrics_port_) + "\"\n");
    ASSERT_TRUE(site_->StartEdged()) << site_->log();
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- edged log (tail)\n" << Tail(site_ ? site_->log() : "") << "\n";
    site_.reset();
    if (proxy_) proxy_->Stop();
    HubdTest::TearDown();
  }
  static std::string Tail(const std::string& s) { return s.size() > 6000 ? s.substr(s.size() - 6000) : s; }
  bool OnPostgres() const override { return false; }  // a case copies hub.db back in place

  // The whole HQ feed, in protobuf.
  std::vector<v1::FeedChange> Feed() {
    std::vector<v1::FeedChange> out;
    uint64_t after = 0;
    auto c = Hq(kReaderToken);
    while (true) {
      auto r = c->Get("/v1/changes?after=" + std::to_string(after) + "&limit=10000", {{"Accept", "application/x-protobuf"}});
      if (!r || r->status != 200) {
        ADD_FAILURE() << "feed: " << (r ? r->status : -1);
        return out;
      }
      v1::Feed f;
      EXPECT_TRUE(f.ParseFromString(r->body));
      if (f.changes_size() == 0) return out;
      for (auto& ch : *f.mutable_changes()) out.push_back(std::move(ch));
      after = f.next();
    }
  }

  json HqJson(const std::string& path) {
    auto r = Hq(kReaderToken)->Get(path);
    if (!r || r->status != 200) return json();
    return json::parse(r->body, nullptr, false);
  }

  // Records the hub holds for the site (-1 when it cannot be asked).
  int64_t HubRecords() {
    json j = HqJson("/v1/sites");
    if (!j.is_object()) return -1;
    for (auto& s : j["sites"])
      if (s["site"] == kSiteId) return s["records"].get<int64_t>();
    return 0;
  }
  int64_t EdgeLastSeq() { return site_->Int("SELECT IFNULL(max(seq), 0) FROM outbox"); }
  int64_t EdgeBacklog() {
    return site_->Int("SELECT count(*) FROM outbox WHERE seq > IFNULL((SELECT value FROM sync_state WHERE name = 'acked_seq'), 0)");
  }
  // Waits until the hub holds all `n` records and the edge backlog is zero.
  bool WaitSynced(int64_t n, std::chrono::seconds timeout = std::chrono::seconds(120)) {
    return WaitFor([&] { return EdgeLastSeq() == n && EdgeBacklog() == 0 && HubRecords() == n; }, timeout);
  }
  void Publish(const std::vector<Msg>& msgs) {
    auto pub = site_->NewPublisher("it-pub-" + std::to_string(publishers_++));
    for (const auto& m : msgs) pub->Publish(m);
    pub->Flush();
  }

  // The feed holds seq 1..last for the site exactly once, and every published GPS fix once.
  void ExpectExactlyOnce(int64_t last, const std::set<std::pair<std::string, uint64_t>>& gps) {
    std::map<uint64_t, int> seqs;
    std::map<std::pair<std::string, uint64_t>, int> fixes;
    for (const auto& ch : Feed()) {
      if (ch.site() != kSiteId) continue;
      seqs[ch.record().seq()]++;
      if (ch.record().has_position()) fixes[{ch.record().key(), ch.record().position().device_seq()}]++;
    }
    EXPECT_EQ(static_cast<int64_t>(seqs.size()), last);
    for (const auto& [s, n] : seqs) {
      ASSERT_EQ(n, 1) << "seq " << s << " in the feed " << n << " times";
    }
    if (!seqs.empty()) {
      EXPECT_EQ(seqs.begin()->first, 1u);
      EXPECT_EQ(static_cast<int64_t>(seqs.rbegin()->first), last);
    }
    EXPECT_EQ(fixes.size(), gps.size());
    for (const auto& f : gps) {
      auto it = fixes.find(f);
      ASSERT_TRUE(it != fixes.end()) << f.first << "#" << f.second << " missing at HQ";
      ASSERT_EQ(it->second, 1) << f.first << "#" << f.second;
    }
  }

  TestPki::Files client_;
  int metrics_port_ = 0;
  std::unique_ptr<FaultProxy> proxy_;
  std::unique_ptr<EdgeSite> site_;
  int publishers_ = 0;
};

TEST_F(SyncE2E, PublishedMessagesReachHqExactlyOnce) {
  std::vector<Msg> msgs;
  std::set<std::pair<std::string, uint64_t>> gps;
  for (int s = 1; s <= 100; ++s) {
    for (int t = 0; t < 3; ++t) {
      msgs.push_back(Gps(t, s));
      gps.insert({"truck-" + std::to_string(t), static_cast<uint64_t>(s)});
    }
    if (s % 10 == 0) msgs.push_back(Receive(s, "sku-apple", 5));
  }
  Publish(msgs);
  ASSERT_TRUE(site_->WaitInt("SELECT count(*) FROM vehicle_positions", 300));
  const int64_t last = EdgeLastSeq();
  ASSERT_GE(last, 310);
  ASSERT_TRUE(WaitSynced(last)) << "hub " << HubRecords() << " edge last " << EdgeLastSeq() << " backlog " << EdgeBacklog();
  ExpectExactlyOnce(last, gps);

  // Current state at HQ: the latest position of each truck, the stock on hand.
  json vehicles = HqJson(std::string("/v1/sites/") + kSiteId + "/vehicles");
  ASSERT_FALSE(vehicles.is_discarded());
  EXPECT_NE(vehicles.dump().find("truck-2"), std::string::npos) << vehicles.dump();
  json stock = HqJson(std::string("/v1/sites/") + kSiteId + "/stock");
  EXPECT_NE(stock.dump().find("sku-apple"), std::string::npos) << stock.dump();
  EXPECT_NE(stock.dump().find("50"), std::string::npos) << stock.dump();  // 10 receipts of 5
  EXPECT_EQ(site_->Int("SELECT value FROM sync_state WHERE name = 'link_up'"), 1);

  // What the operator sees while edged is connected to the running hubd: `edgectl status
  // --json` says the link is up, and once the agent has recorded the last ack the backlog
  // (there and in `edgectl backlog --json`) is 0.
  auto edgectl = [&](const std::string& args) {
    const std::string out = dir_.File("edgectl.out");
    std::filesystem::remove(out);  // RunShell appends
    const int rc = RunShell("'" + BinDir() + "/edgectl' --config '" + site_->config_path() + "' " + args, out);
    EXPECT_EQ(rc, 0) << args << ": " << ReadFile(out);
    return json::parse(ReadFile(out), nullptr, false);
  };
  json status;
  EXPECT_TRUE(WaitFor(
      [&] {
        status = edgectl("status --json");
        return status.is_object() && status["outbox"]["backlog"] == 0;
      },
      std::chrono::seconds(30)))
      << status.dump();
  EXPECT_EQ(status["link"], "up") << status.dump();
  EXPECT_EQ(status["site"], kSiteId);
  EXPECT_EQ(status["outbox"]["acked_seq"], status["outbox"]["last_seq"]) << status.dump();
  EXPECT_GE(status["outbox"]["last_seq"].get<int64_t>(), last);
  json backlog = edgectl("backlog --json");
  EXPECT_EQ(backlog["backlog"], 0) << backlog.dump();
  EXPECT_EQ(backlog["acked_seq"], status["outbox"]["acked_seq"]) << backlog.dump();
}

// edged's /metrics follows the sync path: HTTP codes from the hub (200, and 503 while the hub
// sheds), retries, batch sizes, backlog back to 0, lag 0 when caught up; `edgectl reconcile`
// makes the agent reconcile at once.
// A pallet scan at a dock door, JSON and protobuf, through the real broker, edged and hubd:
// recorded once each (a resent scan is a duplicate), served by HQ's dock-scans route, and
// without any effect on stock.
TEST_F(SyncE2E, DockScansReachHqRouteOnce) {
  const Msg json_scan{"fs/docks/door-3/scans",
                      R"({"scan_id":"sc-1","pallet_id":"P-77","sku":"sku-apple","lot":"L1","qty":40,"direction":"in","ts":1764000001000})"};
  v1::DockScanMsg p;
  p.set_scan_id("sc-2");
  p.set_pallet_id("P-78");
  p.set_sku("sku-pear");
  p.set_qty(12);
  p.set_direction("out");
  p.set_ts_ms(1764000002000);
  const Msg proto_scan{"fs/docks/door-4/scans", p.SerializeAsString()};
  Publish({Receive(1, "sku-apple", 5), json_scan, proto_scan, json_scan});
  ASSERT_TRUE(site_->WaitInt("SELECT count(*) FROM dedupe WHERE kind = 5", 2));
  ASSERT_TRUE(site_->WaitInt("SELECT count(*) FROM dock_scans", 2));
  ASSERT_TRUE(WaitSynced(3)) << "hub " << HubRecords() << " edge last " << EdgeLastSeq() << " backlog " << EdgeBacklog();

  json scans = HqJson(std::string("/v1/sites/") + kSiteId + "/dock-scans");
  ASSERT_TRUE(scans.is_object()) << scans.dump();
  ASSERT_EQ(scans["scans"].size(), 2u) << scans.dump();
  const json& a = scans["scans"][0];
  EXPECT_EQ(a["scan_id"], "sc-1") << scans.dump();
  EXPECT_EQ(a["door"], "door-3");
  EXPECT_EQ(a["pallet_id"], "P-77");
  EXPECT_EQ(a["lot"], "L1");
  EXPECT_EQ(a["qty"], 40);
  EXPECT_EQ(a["direction"], "in");
  EXPECT_EQ(a["ts"], 1764000001000LL);
  EXPECT_EQ(scans["scans"][1]["door"], "door-4");
  EXPECT_EQ(scans["scans"][1]["direction"], "out");
  json ranged = HqJson(std::string("/v1/sites/") + kSiteId + "/dock-scans?from=1764000001500&to=1764000003000");
  ASSERT_EQ(ranged["scans"].size(), 1u) << ranged.dump();
  EXPECT_EQ(ranged["scans"][0]["scan_id"], "sc-2");
  // A scan is a record only: the stock is the receipt's.
  json stock = HqJson(std::string("/v1/sites/") + kSiteId + "/stock");
  ASSERT_EQ(stock["stock"].size(), 1u) << stock.dump();
  EXPECT_EQ(stock["stock"][0]["on_hand"], 5) << stock.dump();
}

TEST_F(SyncE2E, MetricsFollowTheLinkAndEdgectlReconcile) {
  auto scrape = [&](const std::string& series) -> double {
    httplib::Client c("127.0.0.1", metrics_port_);
    auto r = c.Get("/metrics");
    if (!r || r->status != 200) return -2;
    const std::string key = series + " ";
    const size_t p = r->body.find("\n" + key);
    if (p == std::string::npos) return -1;
    return std::stod(r->body.substr(p + 1 + key.size()));
  };
  std::vector<Msg> msgs;
  for (int s = 1; s <= 50; ++s) msgs.push_back(Gps(1, s));
  Publish(msgs);
  ASSERT_TRUE(WaitSynced(50));
  ASSERT_TRUE(WaitFor([&] { return scrape("freshsync_outbox_backlog") == 0; }, std::chrono::seconds(20)));
  EXPECT_GE(scrape("freshsync_sync_http_responses_total{code=\"200\"}"), 1);
  EXPECT_GE(scrape("freshsync_sync_batch_records_count"), 1);
  EXPECT_EQ(scrape("freshsync_sync_batch_records_sum"), scrape("freshsync_sync_records_sent_total"));
  EXPECT_EQ(scrape("freshsync_sync_link_up"), 1);
  EXPECT_EQ(scrape("freshsync_sync_lag_seconds"), 0);

  // The hub sheds load (503 + Retry-After): codes and retries are counted, backlog grows.
  WriteFile(dir_.File("shed"), "1");
  msgs.clear();
  for (int s = 51; s <= 60; ++s) msgs.push_back(Gps(1, s));
  Publish(msgs);
  EXPECT_TRUE(WaitFor([&] { return scrape("freshsync_sync_http_responses_total{code=\"503\"}") >= 1; }, std::chrono::seconds(30)));
  EXPECT_GE(scrape("freshsync_sync_retries_total"), 1);
  EXPECT_GE(scrape("freshsync_outbox_backlog"), 1);
  std::filesystem::remove(dir_.File("shed"));
  ASSERT_TRUE(WaitSynced(60));
  EXPECT_TRUE(WaitFor([&] { return scrape("freshsync_outbox_backlog") == 0; }, std::chrono::seconds(30)));

  const double before = scrape("freshsync_sync_reconciliations_total");
  ASSERT_EQ(RunShell("'" + BinDir() + "/edgectl' --config '" + site_->config_path() + "' reconcile"), 0);
  // The agent picks the request up (and clears it) within about a second; this fixture also
  // reconciles every 2 s on its own, so the counter alone would not tell.
  EXPECT_TRUE(site_->WaitInt("SELECT value FROM sync_state WHERE name = 'reconcile_requested'", 0, std::chrono::seconds(20)));
  EXPECT_TRUE(WaitFor([&] { return scrape("freshsync_sync_reconciliations_total") > before; }, std::chrono::seconds(20)));
  EXPECT_NE(site_->log().find("reconciliation requested by an operator"), std::string::npos);
}

TEST_F(SyncE2E, SlowTwentyThousandThroughEveryFault) {
  constexpr int kTrucks = 10, kChunks = 20, kPerChunk = 100;  // 10 x 20 x 100 = 20,000 fixes
  std::set<std::pair<std::string, uint64_t>> gps;
  int next_fix = 1, movements = 0;
  auto chunk = [&] {
    std::vector<Msg> msgs;
    for (int i = 0; i < kPerChunk; ++i, ++next_fix) {
      for (int t = 0; t < kTrucks; ++t) {
        msgs.push_back(Gps(t, next_fix));
        gps.insert({"truck-" + std::to_string(t), static_cast<uint64_t>(next_fix)});
      }
    }
    ++movements;
    msgs.push_back(Receive(movements, "sku-" + std::to_string(movements % 3), 1));
    Publish(msgs);
  };
  const std::string shed = dir_.File("shed");
  int hub_kills = 0, edge_kills = 0;
  for (int c = 0; c < kChunks; ++c) {
    switch (c) {
      case 2: {  // hubd killed and restarted while batches flow
        chunk();
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
        hubd_.Kill();
        ++hub_kills;
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        ASSERT_NO_FATAL_FAILURE(StartHubd());
        break;
      }
      case 4:  // the link cut
        proxy_->Cut();
        chunk();
        std::this_thread::sleep_for(std::chrono::seconds(2));
        proxy_->Pass();
        break;
      case 6:  // the link slow
        proxy_->SetDelayMs(200);
        chunk();
        std::this_thread::sleep_for(std::chrono::seconds(2));
        proxy_->SetDelayMs(0);
        break;
      case 8: {  // connections reset, one of them in the middle of a request
        const int64_t before = proxy_->resets();
        proxy_->ResetAfterBytes(3000);
        chunk();
        proxy_->ResetAll();
        ASSERT_TRUE(WaitFor([&] { return proxy_->resets() > before; }, std::chrono::seconds(10)));
        break;
      }
      case 10:  // the hub shedding load: 503 + Retry-After: 1
        WriteFile(shed, "1");
        chunk();
        std::this_thread::sleep_for(std::chrono::seconds(3));
        std::filesystem::remove(shed);
        break;
      case 12: {  // the edge killed in the middle of a batch: the proxy holds each chunk 400 ms
        proxy_->SetDelayMs(400);
        const int64_t up_before = proxy_->bytes_up();
        chunk();
        // A request is on its way (bytes went up) and its answer cannot be back yet.
        ASSERT_TRUE(WaitFor([&] { return proxy_->bytes_up() > up_before + 1000 && EdgeBacklog() > 0; },
                            std::chrono::seconds(10)));
        // The agent sends one request at a time, so this is the ack before the one in flight.
        const int64_t acked_before = site_->Int("SELECT IFNULL((SELECT value FROM sync_state WHERE name = 'acked_seq'), 0)");
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        site_->KillEdged();
        ++edge_kills;
        // Nothing was acknowledged in the meantime: the batch was cut before its ack.
        EXPECT_EQ(site_->Int("SELECT IFNULL((SELECT value FROM sync_state WHERE name = 'acked_seq'), 0)"), acked_before);
        proxy_->SetDelayMs(0);
        ASSERT_TRUE(site_->StartEdged()) << site_->log();
        break;
      }
      default:
        chunk();
    }
  }
  ASSERT_TRUE(site_->WaitInt("SELECT count(*) FROM vehicle_positions", kTrucks * kChunks * kPerChunk, std::chrono::seconds(180)));
  const int64_t last = EdgeLastSeq();
  ASSERT_GE(last, kTrucks * kChunks * kPerChunk);
  ASSERT_TRUE(WaitSynced(last, std::chrono::seconds(300)))
      << "hub " << HubRecords() << " edge last " << EdgeLastSeq() << " backlog " << EdgeBacklog();
  ExpectExactlyOnce(last, gps);

  // Every fault really happened.
  const std::string elog = site_->log();
  EXPECT_EQ(hub_kills, 1);
  EXPECT_EQ(edge_kills, 1);
  EXPECT_GE(proxy_->resets(), 2);
  EXPECT_NE(elog.find("hub answered 503 Retry-After 1s"), std::string::npos) << "no 503 seen by the agent";
  EXPECT_NE(elog.find("link to hub down"), std::string::npos);
  EXPECT_EQ(EdgeBacklog(), 0);
}

TEST_F(SyncE2E, HubPutBackToAnEarlierCopyIsRefilledByReconciliation) {
  std::vector<Msg> first, second;
  std::set<std::pair<std::string, uint64_t>> gps;
  for (int s = 1; s <= 400; ++s) {
    (s <= 200 ? first : second).push_back(Gps(1, s));
    gps.insert({"truck-1", static_cast<uint64_t>(s)});
  }
  Publish(first);
  ASSERT_TRUE(WaitSynced(200));
  // An earlier copy of the hub's database, taken with hubd stopped.
  ASSERT_EQ(hubd_.Stop(), 0);
  for (const char* ext : {"", "-wal", "-shm"}) {
    const std::string f = dir_.File(std::string("hub.db") + ext);
    if (std::filesystem::exists(f)) std::filesystem::copy_file(f, dir_.File(std::string("backup.db") + ext));
  }
  ASSERT_NO_FATAL_FAILURE(StartHubd());
  Publish(second);
  ASSERT_TRUE(WaitSynced(400));
  // Put it back. The edge is idle: nothing will be sent unless reconciliation notices.
  ASSERT_EQ(hubd_.Stop(), 0);
  for (const char* ext : {"", "-wal", "-shm"}) {
    const std::string f = dir_.File(std::string("hub.db") + ext);
    std::filesystem::remove(f);
    if (std::filesystem::exists(dir_.File(std::string("backup.db") + ext)))
      std::filesystem::copy_file(dir_.File(std::string("backup.db") + ext), f);
  }
  ASSERT_NO_FATAL_FAILURE(StartHubd());
  ASSERT_EQ(HubRecords(), 200);
  ASSERT_TRUE(WaitSynced(400, std::chrono::seconds(60))) << "hub " << HubRecords();
  EXPECT_NE(site_->log().find("is below our acked_seq"), std::string::npos) << "not healed by reconciliation";
  ExpectExactlyOnce(400, gps);
}

TEST_F(SyncE2E, EdgePutBackToAnEarlierCopyNeverReusesASeq) {
  std::vector<Msg> first, second, third;
  std::set<std::pair<std::string, uint64_t>> gps;
  for (int s = 1; s <= 300; ++s) {
    (s <= 100 ? first : s <= 200 ? second : third).push_back(Gps(2, s));
    gps.insert({"truck-2", static_cast<uint64_t>(s)});
  }
  Publish(first);
  ASSERT_TRUE(WaitSynced(100));
  ASSERT_EQ(site_->StopEdged(), 0);
  for (const char* ext : {"", "-wal", "-shm"}) {
    const std::string f = site_->db_path() + ext;
    if (std::filesystem::exists(f)) std::filesystem::copy_file(f, dir_.File(std::string("edge-backup.db") + ext));
  }
  ASSERT_TRUE(site_->StartEdged());
  Publish(second);
  ASSERT_TRUE(WaitSynced(200));
  // Put the edge store back: it has forgotten seqs 101..200, which the hub holds.
  ASSERT_EQ(site_->StopEdged(), 0);
  for (const char* ext : {"", "-wal", "-shm"}) {
    const std::string f = site_->db_path() + ext;
    std::filesystem::remove(f);
    if (std::filesystem::exists(dir_.File(std::string("edge-backup.db") + ext)))
      std::filesystem::copy_file(dir_.File(std::string("edge-backup.db") + ext), f);
  }
  ASSERT_TRUE(site_->StartEdged());
  ASSERT_TRUE(WaitFor([&] { return site_->Int("SELECT value FROM sync_state WHERE name = 'seq_floor'") == 200; },
                      std::chrono::seconds(30)))
      << site_->log();
  Publish(third);
  // New records are numbered from 201: nothing is reused, nothing is taken as a duplicate.
  ASSERT_TRUE(WaitFor([&] { return EdgeLastSeq() == 300 && EdgeBacklog() == 0 && HubRecords() == 300; },
                      std::chrono::seconds(60)))
      << "edge last " << EdgeLastSeq() << " hub " << HubRecords();
  EXPECT_EQ(site_->Int("SELECT min(seq) FROM outbox WHERE seq > 100"), 201);
  ExpectExactlyOnce(300, gps);
}

// Issue 3, an edge restored from a backup, the operator's way (`edgectl backup`, `edgectl
// restore`), with the link down when edged comes back: the site goes on working, and its new
// records take seqs 101..200 that the hub holds with other content. Once the link is back the
// agent asks the hub first, moves those records above its seqs, and HQ gets every fix once.
TEST_F(SyncE2E, EdgeRestoredWithEdgectlWhileTheLinkIsDownLosesNothingWrittenAfter) {
  std::vector<Msg> first, second, third;
  std::set<std::pair<std::string, uint64_t>> gps;
  for (int s = 1; s <= 300; ++s) {
    (s <= 100 ? first : s <= 200 ? second : third).push_back(Gps(3, s));
    gps.insert({"truck-3", static_cast<uint64_t>(s)});
  }
  const std::string edgectl = "'" + BinDir() + "/edgectl' --config '" + site_->config_path() + "' ";
  Publish(first);
  ASSERT_TRUE(WaitSynced(100));
  ASSERT_EQ(RunShell(edgectl + "backup '" + dir_.File("backup.db") + "'"), 0);
  Publish(second);
  ASSERT_TRUE(WaitSynced(200));
  ASSERT_EQ(site_->StopEdged(), 0);
  ASSERT_EQ(RunShell(edgectl + "restore '" + dir_.File("backup.db") + "'"), 0);
  EXPECT_EQ(site_->Int("SELECT value FROM sync_state WHERE name = 'restored_last_seq'"), 100);

  proxy_->Cut();
  ASSERT_TRUE(site_->StartEdged());
  Publish(third);
  ASSERT_TRUE(site_->WaitInt("SELECT count(*) FROM vehicle_positions", 200)) << site_->log();
  EXPECT_EQ(EdgeLastSeq(), 200);  // the site kept working, numbering on from the copy
  EXPECT_EQ(site_->Int("SELECT value FROM sync_state WHERE name = 'restored_last_seq'"), 100);  // nothing sent yet

  proxy_->Pass();
  ASSERT_TRUE(WaitSynced(300)) << "edge last " << EdgeLastSeq() << " backlog " << EdgeBacklog() << " hub " << HubRecords()
                               << "\n" << site_->log();
  EXPECT_EQ(site_->Int("SELECT value FROM sync_state WHERE name = 'restored_last_seq'"), 0);
  EXPECT_EQ(site_->Int("SELECT min(seq) FROM outbox WHERE seq > 100"), 201);
  ExpectExactlyOnce(300, gps);
  // The moved store is still one that `edgectl verify` accepts (two dense runs around seq_floor).
  ASSERT_EQ(site_->StopEdged(), 0);
  EXPECT_EQ(RunShell(edgectl + "verify"), 0);
}

// Issue 3, current state: the hub's materialized stock is corrupted behind its back (the
// records it holds are fine); the agent's state digest sees the difference within a
// reconciliation interval, asks hubd to rebuild-state, and HQ's stock matches the edge again.
TEST_F(SyncE2E, CorruptedHubStockIsRebuiltByStateReconciliation) {
  std::vector<Msg> msgs;
  for (int i = 1; i <= 20; ++i) msgs.push_back(Receive(i, i % 2 ? "sku-apple" : "sku-pear", i));
  Publish(msgs);
  ASSERT_TRUE(site_->WaitInt("SELECT count(*) FROM stock_movements", 20));
  const int64_t last = EdgeLastSeq();
  ASSERT_TRUE(WaitSynced(last)) << "hub " << HubRecords() << " edge last " << EdgeLastSeq();

  // sku -> on_hand at HQ, and at the edge.
  auto hub_stock = [&] {
    std::map<std::string, int64_t> m;
    json j = HqJson(std::string("/v1/sites/") + kSiteId + "/stock");
    if (j.is_object())
      for (auto& r : j["stock"]) m[r["sku"].get<std::string>()] = r["on_hand"].get<int64_t>();
    return m;
  };
  const std::map<std::string, int64_t> edge = {
      {"sku-apple", site_->Int("SELECT on_hand FROM stock WHERE sku = 'sku-apple'")},
      {"sku-pear", site_->Int("SELECT on_hand FROM stock WHERE sku = 'sku-pear'")}};
  ASSERT_EQ(edge.at("sku-apple"), 100);  // 1 + 3 + ... + 19
  ASSERT_EQ(edge.at("sku-pear"), 110);   // 2 + 4 + ... + 20
  ASSERT_TRUE(WaitFor([&] { return hub_stock() == edge; }, std::chrono::seconds(30)));

  // Corrupt the hub's materialized stock while hubd runs (WAL): a wrong row and a lost row.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(dir_.File("hub.db").c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    // One transaction, so no reconciliation round can see (and repair) half of it.
    ASSERT_EQ(sqlite3_exec(db,
                           "BEGIN IMMEDIATE; UPDATE stock SET on_hand = on_hand + 1000 WHERE sku = 'sku-apple';"
                           "DELETE FROM stock WHERE sku = 'sku-pear'; COMMIT;",
                           nullptr, nullptr, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db);
    EXPECT_EQ(sqlite3_total_changes(db), 2);
    sqlite3_close(db);
  }
  // No operator: within a few reconciliation intervals (2 s here) HQ matches the edge again.
  ASSERT_TRUE(WaitFor([&] { return hub_stock() == edge; }, std::chrono::seconds(30)))
      << "hub apple " << hub_stock()["sku-apple"] << " pear " << hub_stock().count("sku-pear");
  // The repair went through rebuild-state and was audited.
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2(dir_.File("hub.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_busy_timeout(db, 10000);
    sqlite3_stmt* st = nullptr;
    ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT count(*), IFNULL(max(count), 0) FROM audit WHERE kind = 'rebuild-state'",
                                 -1, &st, nullptr),
              SQLITE_OK);
    ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
    EXPECT_GE(sqlite3_column_int64(st, 0), 1);
    EXPECT_EQ(sqlite3_column_int64(st, 1), 2);  // the rebuild that repaired changed both rows
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  // Nothing was re-sent for it: the seq ranges agreed all along.
  EXPECT_EQ(HubRecords(), last);
  EXPECT_EQ(EdgeBacklog(), 0);
}

}  // namespace
}  // namespace freshsync::testing
