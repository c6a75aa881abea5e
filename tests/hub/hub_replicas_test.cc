// Three hubd replicas on one PostgreSQL database (issue 13 items 2 and 3), the real binaries
// over real mutual TLS: sites push concurrently, each batch through another replica, while an
// HQ follower pages GET /v1/changes from the three replicas in turn, following `next`. Every
// record must reach the follower exactly once, and every replica must answer the same state.
#include <atomic>
#include <chrono>
#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "tests/hub/hubd_fixture.h"
#include "tests/hub/sse_client.h"
#include "tests/support/postgres.h"

namespace freshsync::testing {
namespace {

class HubReplicasTest : public HubdTest {
 protected:
  static constexpr int kReplicas = 3;
  bool OnPostgres() const override { return true; }
  void SetUp() override {
    HubdTest::SetUp();  // replica 0, on port_, and the database
    if (HasFatalFailure()) return;
    ports_.push_back(port_);
    const int first = port_;
    for (int i = 1; i < kReplicas; ++i) {
      // The same config but the port; started as the fixture starts hubd.
      port_ = PickFreePort();
      WriteConfig();
      const std::string config = dir_.File("hubd-" + std::to_string(i) + ".toml");
      WriteFile(config, ReadFile(dir_.File("hubd.toml")));
      replicas_.emplace_back(std::vector<std::string>{BinDir() + "/hubd", "--config", config},
                             dir_.File("hubd-" + std::to_string(i) + ".log"));
      ASSERT_TRUE(replicas_.back().Start());
      WaitHealthy(dir_.File("hubd-" + std::to_string(i) + ".log"));
      if (HasFatalFailure()) return;
      ports_.push_back(port_);
    }
    port_ = first;
    WriteConfig();  // hubd.toml is replica 0's again, for a restart of it
  }
  void TearDown() override {
    for (auto& r : replicas_) r.Kill();
    HubdTest::TearDown();
  }
  std::unique_ptr<httplib::SSLClient> Client(int replica, const TestPki::Files* site) {
    const int port = ports_[static_cast<size_t>(replica)];
    auto c = site ? std::make_unique<httplib::SSLClient>("127.0.0.1", port, site->cert, site->key)
                  : std::make_unique<httplib::SSLClient>("127.0.0.1", port);
    Configure(*c);
    if (site == nullptr) c->set_bearer_token_auth(kReaderToken);
    return c;
  }

  // Replica 0 is the fixture's hubd; the others were started above.
  ChildProcess& Replica(int i) { return i == 0 ? hubd_ : replicas_[static_cast<size_t>(i - 1)]; }

  std::vector<int> ports_;
  std::vector<ChildProcess> replicas_;
};

TEST_F(HubReplicasTest, AFollowerPagingEveryReplicaSeesEveryRecordOfConcurrentPushesOnce) {
  constexpr int kSites = 6, kBatches = 12, kPerBatch = 50;
  std::vector<TestPki::Files> certs;
  for (int s = 0; s < kSites; ++s) certs.push_back(pki_.Client("site-" + std::to_string(s)));
  std::atomic<int> pushing{kSites};
  std::vector<std::thread> pushers;
  for (int s = 0; s < kSites; ++s) {
    pushers.emplace_back([&, s] {
      struct Done {
        std::atomic<int>& n;
        ~Done() { --n; }
      } done{pushing};
      const std::string site = "site-" + std::to_string(s);
      for (int b = 0; b < kBatches; ++b) {
        const uint64_t first = static_cast<uint64_t>(b * kPerBatch + 1);
        // Each batch through another replica than the last, as behind HAProxy. A busy replica
        // answers 503 + Retry-After (threads / 2 batches at once); the sync agent retries, so
        // does this pusher, through the next replica.
        auto push = [&](int attempt) {
          auto c = Client((s + b + attempt) % kReplicas, &certs[static_cast<size_t>(s)]);
          return Push(*c, site, BatchBody(site, first, first + kPerBatch - 1));
        };
        int attempt = 0;
        auto r = push(attempt);
        while (r && r->status == 503 && ++attempt < 200) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          r = push(attempt);
        }
        ASSERT_TRUE(r) << site;
        ASSERT_EQ(r->status, 200) << site << ": " << r->body;
        EXPECT_EQ(Ack(r).contiguous_seq(), first + kPerBatch - 1);
      }
    });
  }
  std::map<std::pair<std::string, uint64_t>, int> seen;
  uint64_t after = 0;
  int turn = 0;
  auto page = [&] {
    auto c = Client(turn++ % kReplicas, nullptr);
    auto r = c->Get(("/v1/changes?after=" + std::to_string(after) + "&limit=97").c_str());
    EXPECT_TRUE(r && r->status == 200);
    if (!r || r->status != 200) return size_t{0};
    const json j = json::parse(r->body, nullptr, false);
    for (const auto& e : j["changes"]) ++seen[{e["site"].get<std::string>(), e["seq"].get<uint64_t>()}];
    after = j["next"].get<uint64_t>();  // a cursor from one replica, used on the next
    return j["changes"].size();
  };
  while (pushing > 0) page();
  for (auto& t : pushers) t.join();
  while (page() > 0) {
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kSites * kBatches * kPerBatch));
  for (const auto& [key, n] : seen) EXPECT_EQ(n, 1) << key.first << " seq " << key.second;
  // Every replica answers the same sites' state.
  for (int i = 0; i < kReplicas; ++i) {
    auto c = Client(i, nullptr);
    auto r = c->Get("/v1/sites");
    ASSERT_TRUE(r && r->status == 200);
    const json j = json::parse(r->body, nullptr, false);
    ASSERT_EQ(j["sites"].size(), static_cast<size_t>(kSites)) << r->body;
    for (const auto& s : j["sites"]) EXPECT_EQ(s["contiguous_seq"].get<uint64_t>(), uint64_t{kBatches * kPerBatch});
  }
}

// The live stream on replicas (issue 15 item 3): sites push concurrently, each batch through
// another replica, while an SSE client disconnects at random points and resumes with
// Last-Event-ID on another replica each time. Every replica's stream reads the shared feed
// (commit-order cursors), so the client ends with every record exactly once, in cursor order.
TEST_F(HubReplicasTest, AStreamClientHoppingBetweenReplicasGetsEveryRecordOnceInOrder) {
  constexpr int kSites = 4, kBatches = 10, kPerBatch = 40;
  std::vector<TestPki::Files> certs;
  for (int s = 0; s < kSites; ++s) certs.push_back(pki_.Client("site-" + std::to_string(s)));
  std::vector<std::thread> pushers;
  for (int s = 0; s < kSites; ++s) {
    pushers.emplace_back([&, s] {
      const std::string site = "site-" + std::to_string(s);
      for (int b = 0; b < kBatches; ++b) {
        const uint64_t first = static_cast<uint64_t>(b * kPerBatch + 1);
        int status = 0;
        for (int attempt = 0; attempt < 200; ++attempt) {
          auto c = Client((s + b + attempt) % 2, &certs[static_cast<size_t>(s)]);  // two replicas
          auto r = Push(*c, site, BatchBody(site, first, first + kPerBatch - 1));
          status = r ? r->status : -1;
          if (status != 503) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        ASSERT_EQ(status, 200) << site;
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
      }
    });
  }
  constexpr size_t kTotal = static_cast<size_t>(kSites * kBatches * kPerBatch);
  std::mt19937 rng(2026);
  std::vector<SseEvent> got;
  std::string last;
  int hop = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (got.size() < kTotal && std::chrono::steady_clock::now() < deadline) {
    httplib::Headers h;
    if (!last.empty()) h.emplace("Last-Event-ID", last);
    const int replica = hop++ % 2;
    SseClient sse([this, replica] { return Client(replica, nullptr); }, "/v1/stream", h);
    sse.StopAfter(1 + rng() % 250);
    sse.WaitDone(std::chrono::seconds(2));
    sse.Stop();
    for (auto& e : sse.events()) got.push_back(e);
    if (!got.empty()) last = got.back().id;
  }
  for (auto& t : pushers) t.join();
  ASSERT_EQ(got.size(), kTotal) << "after " << hop << " connections";
  std::map<std::pair<std::string, uint64_t>, int> seen;
  for (size_t i = 0; i < got.size(); ++i) {
    if (i > 0) {
      ASSERT_LT(std::stoull(got[i - 1].id), std::stoull(got[i].id));
    }
    const json d = json::parse(got[i].data);
    ++seen[{d["site"].get<std::string>(), d["seq"].get<uint64_t>()}];
  }
  EXPECT_EQ(seen.size(), kTotal);
  EXPECT_GT(hop, 4);
}

// Downstream across replicas (issue 14): a pull parked on one replica wakes when HQ's order
// is appended through another, by the parked sites' periodic recheck of their lanes.
TEST_F(HubReplicasTest, APullParkedOnOneReplicaWakesForAnAppendOnAnother) {
  std::atomic<int64_t> answered_ns{0};
  v1::DownBatch got;
  std::thread puller([&] {
    auto c = Client(1, &site_a_);
    auto r = c->Get("/v1/sites/site-a/downstream/commands?after=0&wait_ms=20000");
    answered_ns = std::chrono::steady_clock::now().time_since_epoch().count();
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_TRUE(got.ParseFromString(r->body));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(answered_ns.load(), 0);
  auto hq = Client(0, nullptr);
  hq->set_bearer_token_auth(kWriterToken);
  auto r = hq->Post("/v1/sites/site-a/orders", R"({"order_id":"hq-7","lines":[{"sku":"apple","qty":2}]})", "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 202) << r->body;
  const auto posted = std::chrono::steady_clock::now();
  puller.join();
  const auto late = std::chrono::nanoseconds(answered_ns.load()) - posted.time_since_epoch();
  EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(late).count(), 1000);
  ASSERT_EQ(got.commands_size(), 1);
  EXPECT_EQ(got.commands(0).command_id(), "order:hq-7");
  // Every replica answers the same lane.
  for (int i = 0; i < kReplicas; ++i) {
    auto c = Client(i, nullptr);
    auto lane = c->Get("/v1/sites/site-a/downstream");
    ASSERT_TRUE(lane);
    EXPECT_EQ(json::parse(lane->body)["last_seq"], 1) << lane->body;
  }
}

// Issue 13's damage with replicas: twenty sites push through the three replicas while replicas
// are killed with SIGKILL at random and PostgreSQL is crashed (`pg_ctl stop -m immediate`) and
// restarted. A pusher behaves as the sync agent does: it sends the records after the hub's last
// contiguous ack, and after any failure (refused connection, reset, 5xx) it sends the same range
// again through the next replica, so batches whose ack was lost arrive twice. A follower pages
// the feed from the replicas in turn throughout. Afterwards every record is at the hub exactly
// once, the follower saw each exactly once, and every site's backlog is 0, with no operator step.
TEST_F(HubReplicasTest, SlowDamageReplicaKillsAndPostgresCrashesDuringPushesLoseNothing) {
  constexpr int kSites = 20;
  constexpr uint64_t kPerSite = 1500, kPerBatch = 50;
  std::vector<TestPki::Files> certs;
  for (int s = 0; s < kSites; ++s) certs.push_back(pki_.Client("site-" + std::to_string(s)));

  std::mutex process_mu;  // the chaos thread restarts processes; the end of the test checks them
  std::atomic<int> pushing{kSites};
  std::atomic<int> failures{0}, resent_ok{0};
  std::vector<uint64_t> acked(kSites, 0);
  std::vector<std::thread> pushers;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(240);
  for (int s = 0; s < kSites; ++s) {
    pushers.emplace_back([&, s] {
      struct Done {
        std::atomic<int>& n;
        ~Done() { --n; }
      } done{pushing};
      const std::string site = "site-" + std::to_string(s);
      uint64_t& ack = acked[static_cast<size_t>(s)];
      bool after_failure = false;
      for (int attempt = s; ack < kPerSite && std::chrono::steady_clock::now() < deadline; ++attempt) {
        const uint64_t first = ack + 1, last = std::min(ack + kPerBatch, kPerSite);
        auto c = Client(attempt % kReplicas, &certs[static_cast<size_t>(s)]);
        c->set_connection_timeout(2);
        c->set_read_timeout(10);
        auto r = Push(*c, site, BatchBody(site, first, last));
        if (!r || r->status != 200) {
          ++failures;
          after_failure = true;
          std::this_thread::sleep_for(std::chrono::milliseconds(50 + 10 * (attempt % 7)));
          continue;
        }
        v1::BatchAck a;
        ASSERT_TRUE(a.ParseFromString(r->body)) << site;
        // The ack can be ahead of what this pusher knew (its earlier try committed, the answer
        // was lost), never behind it.
        ASSERT_GE(a.contiguous_seq(), last) << site;
        if (after_failure) ++resent_ok;
        after_failure = false;
        ack = a.contiguous_seq();
        // Paced as sites trickle in, so that the pushes last well beyond a dozen rounds of
        // damage however fast the machine is (~20 s unharmed).
        std::this_thread::sleep_for(std::chrono::milliseconds(600));
      }
    });
  }

  // The follower: pages /v1/changes from the replicas in turn, keeping its cursor across
  // failures (a replica that is down or a database that is gone answers nothing or 5xx).
  std::map<std::pair<std::string, uint64_t>, int> seen;
  uint64_t after = 0;
  int turn = 0, follower_errors = 0;
  auto page = [&]() -> int {
    auto c = Client(turn++ % kReplicas, nullptr);
    c->set_connection_timeout(2);
    c->set_read_timeout(10);
    auto r = c->Get(("/v1/changes?after=" + std::to_string(after) + "&limit=500").c_str());
    if (!r || r->status != 200) {
      ++follower_errors;
      return -1;
    }
    const json j = json::parse(r->body, nullptr, false);
    if (j.is_discarded()) return -1;
    for (const auto& e : j["changes"]) ++seen[{e["site"].get<std::string>(), e["seq"].get<uint64_t>()}];
    after = j["next"].get<uint64_t>();
    return static_cast<int>(j["changes"].size());
  };
  std::atomic<bool> follow{true};
  std::thread follower([&] {
    while (follow) {
      if (page() <= 0) std::this_thread::sleep_for(std::chrono::milliseconds(30));
    }
  });

  // The damage: SIGKILL a random replica and start it again a moment later; every fourth round
  // crash PostgreSQL instead (immediate stop: no checkpoint, crash recovery on start).
  std::mt19937 rng(DamageSeed(13));
  int kills = 0, pg_crashes = 0;
  auto restart_down_replicas = [&] {
    for (int i = 0; i < kReplicas; ++i) {
      if (!Replica(i).Running()) {
        EXPECT_TRUE(Replica(i).Start()) << "replica " << i;
      }
    }
  };
  for (int round = 0; pushing > 0 && std::chrono::steady_clock::now() < deadline; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(400 + rng() % 600));
    if (pushing == 0) break;
    std::lock_guard<std::mutex> lock(process_mu);
    if (round % 4 == 3) {
      pg_->Crash();
      ++pg_crashes;
      std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 700));
      ASSERT_TRUE(pg_->Start()) << ReadFile(pg_->log_path());
    } else {
      const int victim = static_cast<int>(rng() % kReplicas);
      Replica(victim).Kill();
      ++kills;
      std::this_thread::sleep_for(std::chrono::milliseconds(200 + rng() % 500));
    }
    restart_down_replicas();
  }
  for (auto& t : pushers) t.join();
  {
    // A replica may have exited by itself while the database was gone; bring every one back and
    // wait until each answers before the final pages.
    std::lock_guard<std::mutex> lock(process_mu);
    restart_down_replicas();
  }
  bool all_ready = true;
  for (int i = 0; i < kReplicas; ++i) {
    const bool ready = WaitFor(
        [&] {
          // As systemd would (Restart=always): a replica that exited is started again. One
          // can exit at start when a client connection of this test holds its port.
          if (!Replica(i).Running()) Replica(i).Start();
          auto c = Client(i, nullptr);
          auto r = c->Get("/v1/sites");  // answered from the database
          return r && r->status == 200;
        },
        std::chrono::seconds(30));
    if (!ready) {
      const std::string log = ReadFile(Replica(i).log_path());
      ADD_FAILURE() << "replica " << i << " not ready; its log ends:\n" << log.substr(log.size() > 3000 ? log.size() - 3000 : 0);
    }
    all_ready = all_ready && ready;
  }
  follow = false;
  follower.join();
  ASSERT_TRUE(all_ready);
  for (int empty = 0; empty < kReplicas;) empty = page() == 0 ? empty + 1 : 0;  // every replica: nothing newer

  EXPECT_GE(kills, 5);
  EXPECT_GE(pg_crashes, 2);
  EXPECT_GT(failures.load(), 0) << "the damage never reached a pusher";
  // Every site's backlog is 0: each pusher holds an ack for its last record.
  for (int s = 0; s < kSites; ++s) EXPECT_EQ(acked[static_cast<size_t>(s)], kPerSite) << "site-" << s;
  // The follower saw every record exactly once.
  EXPECT_EQ(seen.size(), static_cast<size_t>(kSites) * kPerSite);
  int repeats = 0;
  for (const auto& [key, n] : seen) {
    if (n != 1 && ++repeats < 10) ADD_FAILURE() << key.first << " seq " << key.second << " seen " << n << " times";
  }
  EXPECT_EQ(repeats, 0);
  // The database holds each record once (the unique (site, seq) index makes a second row
  // impossible; the count shows none is missing) and every replica answers every site whole.
  EXPECT_EQ(pg_->Query("hub", "SELECT count(*) FROM changes"), std::to_string(kSites * kPerSite));
  for (int i = 0; i < kReplicas; ++i) {
    auto c = Client(i, nullptr);
    auto r = c->Get("/v1/sites");
    ASSERT_TRUE(r && r->status == 200) << "replica " << i;
    const json j = json::parse(r->body, nullptr, false);
    ASSERT_EQ(j["sites"].size(), static_cast<size_t>(kSites)) << r->body;
    for (const auto& site : j["sites"]) {
      EXPECT_EQ(site["contiguous_seq"].get<uint64_t>(), kPerSite) << site.dump();
    }
  }
  std::printf("damage: %d replica kills, %d PostgreSQL crashes, %d failed pushes (%d ranges resent and "
              "acked), %d follower errors\n",
              kills, pg_crashes, failures.load(), resent_ok.load(), follower_errors);
}

}  // namespace
}  // namespace freshsync::testing
