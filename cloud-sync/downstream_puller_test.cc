// DownstreamPuller against an in-memory hub (tests/support/sync_fakes.h): the pull URL and the
// capability set, backoff on transport errors and 5xx, Retry-After, a sink that fails, and the
// thread stopping a poll promptly. The sink here is a recorder behind the CommandSink seam; the
// real one on a real store is tested in edge/downstream_test.cc.
#include "cloud-sync/downstream_puller.h"

#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "freshsync.pb.h"
#include "tests/support/sync_fakes.h"

namespace freshsync::sync {
namespace {

class RecordingSink final : public CommandSink {
 public:
  Result<uint64_t> AppliedSeq() override {
    reads++;
    return applied;
  }
  Result<uint64_t> Apply(const v1::DownBatch& batch) override {
    if (fail_next > 0) {
      --fail_next;
      // The first command committed before the failure (as the store would have).
      if (batch.commands_size() > 0) applied = batch.commands(0).down_seq();
      return Status::IOError("database is locked");
    }
    for (const auto& c : batch.commands()) seen.push_back(c.down_seq());
    applied = std::max<uint64_t>(applied, batch.through_seq());
    return applied;
  }
  uint64_t applied = 0;
  int reads = 0;
  int fail_next = 0;
  std::vector<uint64_t> seen;
};

v1::DownCommand Cmd(v1::DownKind kind) {
  v1::DownCommand c;
  c.set_kind(kind);
  c.set_command_id("c");
  return c;
}

class PullerTest : public ::testing::Test {
 protected:
  PullerTest() {
    config_.site = "site-a";
    config_.hub = HubLinkConfig{};
    config_.hub->url = "https://hub.test:8443/";
    config_.hub->backoff_initial_ms = 100;
    config_.hub->backoff_max_ms = 10000;
    config_.downstream.wait_ms = 20000;
  }
  std::unique_ptr<DownstreamPuller> Make() {
    auto hub = std::make_unique<testing::FakeDownstreamHub>();
    hub_ = hub.get();
    DownstreamPullerOptions o;
    o.rng_seed = 42;
    return std::make_unique<DownstreamPuller>(config_, sink_, clock_, std::move(hub), o);
  }
  EdgeConfig config_;
  RecordingSink sink_;
  testing::FakeClock clock_;
  testing::FakeDownstreamHub* hub_ = nullptr;
};

TEST_F(PullerTest, PullsFromTheAppliedSeqWithEveryKindAndLoopsAtOnce) {
  sink_.applied = 4;
  auto p = Make();
  for (int i = 0; i < 6; ++i) hub_->Append(Cmd(i % 2 ? v1::DOWN_CATALOG : v1::DOWN_ORDER));
  EXPECT_EQ(p->StepForTest(), 0);
  EXPECT_EQ(hub_->urls[0],
            "https://hub.test:8443/v1/sites/site-a/downstream/commands?after=4&wait_ms=20000"
            "&kinds=order,cancel,catalog,fences,coldchain-rules,escrow-return,escrow-target");
  EXPECT_EQ(sink_.seen, (std::vector<uint64_t>{5, 6}));
  EXPECT_EQ(p->StepForTest(), 0);  // the long poll: at once again, acknowledging 6
  EXPECT_EQ(hub_->acks, (std::vector<uint64_t>{4, 6}));
  const auto s = p->GetStats();
  EXPECT_TRUE(s.link_up);
  EXPECT_EQ(s.applied_seq, 6u);
  EXPECT_EQ(s.hub_last_seq, 6u);
  EXPECT_EQ(s.commands, 2u);
  EXPECT_EQ(sink_.reads, 1);  // the position is read from the sink once, then followed
}

TEST_F(PullerTest, AnOlderSiteAsksForItsKindsAndMovesPastTheOthers) {
  config_.downstream.kinds = {"order", "cancel"};
  auto p = Make();
  hub_->Append(Cmd(v1::DOWN_ORDER));
  hub_->Append(Cmd(v1::DOWN_FENCES));
  hub_->Append(Cmd(v1::DOWN_CATALOG));
  EXPECT_EQ(p->StepForTest(), 0);
  EXPECT_NE(hub_->urls[0].find("&kinds=order,cancel"), std::string::npos);
  EXPECT_EQ(hub_->urls[0].find("catalog"), std::string::npos);
  EXPECT_EQ(sink_.seen, (std::vector<uint64_t>{1}));
  EXPECT_EQ(p->GetStats().applied_seq, 3u);
}

TEST_F(PullerTest, BacksOffOnErrorsAndHonoursRetryAfter) {
  auto p = Make();
  hub_->Append(Cmd(v1::DOWN_ORDER));
  hub_->script.push_back(Status::Unavailable("reset: connection reset by peer"));
  hub_->script.push_back(testing::FakeHubTransport::Answer(503, "", 7));
  hub_->script.push_back(testing::FakeHubTransport::Answer(500));
  const int64_t first = p->StepForTest();
  EXPECT_GE(first, 0);
  EXPECT_LE(first, 100);  // full jitter under the first ceiling
  const int64_t hinted = p->StepForTest();
  EXPECT_GE(hinted, 7000);  // Retry-After is the floor
  EXPECT_LE(hinted, 8000);
  EXPECT_LE(p->StepForTest(), 400);  // grown: attempt 2 of 100 ms
  auto s = p->GetStats();
  EXPECT_FALSE(s.link_up);
  EXPECT_EQ(s.pull_errors, 3u);
  EXPECT_EQ(s.last_http_status, 500);
  EXPECT_TRUE(sink_.seen.empty());
  EXPECT_EQ(p->StepForTest(), 0);  // the hub is back: the same command, nothing skipped
  EXPECT_EQ(sink_.seen, (std::vector<uint64_t>{1}));
  EXPECT_TRUE(p->GetStats().link_up);
  EXPECT_EQ(hub_->acks, (std::vector<uint64_t>{0}));
  // A 404 (a hub without downstream) is retried at the cap, never skipped.
  hub_->script.push_back(testing::FakeHubTransport::Answer(404));
  EXPECT_GE(p->StepForTest(), 5000);
}

TEST_F(PullerTest, AFailingSinkRereadsThePositionAndPullsAgain) {
  auto p = Make();
  for (int i = 0; i < 3; ++i) hub_->Append(Cmd(v1::DOWN_ORDER));
  sink_.fail_next = 1;
  EXPECT_GE(p->StepForTest(), 0);
  EXPECT_EQ(p->GetStats().apply_errors, 1u);
  EXPECT_EQ(p->StepForTest(), 0);
  EXPECT_EQ(hub_->acks, (std::vector<uint64_t>{0, 1}));  // from what the store had committed
  EXPECT_EQ(sink_.seen, (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(sink_.reads, 2);
}

TEST_F(PullerTest, AnAnswerThatIsNotADownBatchMovesNothing) {
  auto p = Make();
  hub_->script.push_back(testing::FakeHubTransport::Answer(200, "\xff\xff\xff not protobuf"));
  EXPECT_GE(p->StepForTest(), 5000);
  EXPECT_EQ(p->GetStats().pull_errors, 1u);
  EXPECT_EQ(p->GetStats().applied_seq, 0u);
}

TEST_F(PullerTest, ThreadPullsAndStopsPromptly) {
  config_.downstream.wait_ms = 0;  // an empty answer then waits a second: Stop must cut it
  auto p = Make();
  hub_->Append(Cmd(v1::DOWN_ORDER));
  ASSERT_TRUE(p->Start().ok());
  for (int i = 0; i < 200 && p->GetStats().applied_seq < 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(p->GetStats().applied_seq, 1u);
  const auto t0 = std::chrono::steady_clock::now();
  p->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(900));
}

}  // namespace
}  // namespace freshsync::sync
