// Three hubd replicas on one PostgreSQL database (issue 13 items 2 and 3), the real binaries
// over real mutual TLS: sites push concurrently, each batch through another replica, while an
// HQ follower pages GET /v1/changes from the three replicas in turn, following `next`. Every
// record must reach the follower exactly once, and every replica must answer the same state.
#include <atomic>
#include <chrono>
#include <map>
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
  void SetUp() override {
    pg_ = std::make_unique<PostgresServer>(dir_.File("pg"));
    ASSERT_TRUE(pg_->Start()) << ReadFile(pg_->log_path());
    ASSERT_TRUE(pg_->CreateDatabase("hub"));
    HubdTest::SetUp();  // replica 0, on port_
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
  }
  void TearDown() override {
    for (auto& r : replicas_) r.Kill();
    HubdTest::TearDown();
    pg_.reset();
  }
  std::string StoreSection() override {
    return "[store]\nbackend = \"postgresql\"\nurl = \"" + pg_->Url("hub") + "\"\n";
  }
  std::unique_ptr<httplib::SSLClient> Client(int replica, const TestPki::Files* site) {
    const int port = ports_[static_cast<size_t>(replica)];
    auto c = site ? std::make_unique<httplib::SSLClient>("127.0.0.1", port, site->cert, site->key)
                  : std::make_unique<httplib::SSLClient>("127.0.0.1", port);
    Configure(*c);
    if (site == nullptr) c->set_bearer_token_auth(kReaderToken);
    return c;
  }

  std::unique_ptr<PostgresServer> pg_;
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

}  // namespace
}  // namespace freshsync::testing
