// SyncAgent against a real edge store file (migrated by the edge store's own migrations) and
// an in-memory hub.
#include "cloud-sync/sync_agent.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <thread>

#include "cloud-sync/outbox_schema.h"
#include "edge/migrations.h"
#include "freshsync.pb.h"
#include "tests/support/harness.h"
#include "tests/support/sync_fakes.h"

namespace freshsync::sync {
namespace {

using testing::FakeClock;
using testing::FakeHubTransport;

class Db {
 public:
  explicit Db(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
    Exec("PRAGMA journal_mode=WAL");
    // The schema edged runs on, by the runner EdgeStore::Open uses: no copy of the DDL to drift.
    auto version = sqlite::Migrate(db_, edge::StoreMigrations(), {});
    EXPECT_TRUE(version.ok()) << version.status().ToString();
  }
  ~Db() { sqlite3_close(db_); }
  void Exec(const std::string& sql) {
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  }
  int64_t Int(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr);
    int64_t v = -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
  }
  // Rows from..to; `priority(seq)` picks the lane. with_seq=false stores records without their seq.
  void Add(uint64_t from, uint64_t to, int64_t created_ms, const std::function<int(uint64_t)>& priority = nullptr,
           bool with_seq = true, size_t pad = 0) {
    Exec("BEGIN");
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db_, "INSERT INTO outbox VALUES(?,?,?,?,?,?,?,?)", -1, &st, nullptr);
    for (uint64_t s = from; s <= to; ++s) {
      const int prio = priority ? priority(s) : 0;
      v1::ChangeRecord r;
      if (with_seq) r.set_seq(s);
      r.set_entity(prio ? v1::ORDER : v1::VEHICLE_POSITION);
      r.set_key((prio ? "order-" : "truck-") + std::to_string(s % 7) + std::string(pad, 'p'));
      r.set_version(s);
      r.set_hlc(s << 16);
      r.set_ts_ms(created_ms);
      const std::string blob = r.SerializeAsString();
      sqlite3_bind_int64(st, 1, static_cast<int64_t>(s));
      sqlite3_bind_int(st, 2, r.entity());
      sqlite3_bind_text(st, 3, r.key().c_str(), -1, SQLITE_TRANSIENT);
      sqlite3_bind_int64(st, 4, static_cast<int64_t>(s));
      sqlite3_bind_int64(st, 5, static_cast<int64_t>(s << 16));
      sqlite3_bind_int(st, 6, prio);
      sqlite3_bind_int64(st, 7, created_ms);
      sqlite3_bind_blob(st, 8, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
      EXPECT_EQ(sqlite3_step(st), SQLITE_DONE);
      sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    Exec("COMMIT");
  }
  void SetState(const std::string& name, int64_t v) {
    Exec("INSERT OR REPLACE INTO sync_state VALUES('" + name + "'," + std::to_string(v) + ")");
  }
  int64_t State(const std::string& name) { return Int("SELECT value FROM sync_state WHERE name='" + name + "'"); }

 private:
  sqlite3* db_ = nullptr;
};

class SyncAgentTest : public ::testing::Test {
 protected:
  SyncAgentTest() : db(dir.File("edge.db")) {
    cfg.site = "site-a";
    cfg.store.path = dir.File("edge.db");
    HubLinkConfig h;
    h.url = "https://hub.test:8443/";
    h.batch_max_records = 10;
    h.batch_max_bytes = 1 << 20;
    h.batch_max_age_ms = 0;
    h.backoff_initial_ms = 100;
    h.backoff_max_ms = 1000;
    h.reconcile_interval_s = 3600;
    cfg.hub = h;
  }

  std::unique_ptr<SyncAgent> Make() {
    auto t = std::make_unique<FakeHubTransport>();
    hub = t.get();
    SyncAgentOptions o;
    o.rng_seed = 99;
    o.digest_buckets = 8;
    auto a = std::make_unique<SyncAgent>(cfg, clock, std::move(t), o);
    EXPECT_TRUE(a->OpenForTest().ok());
    return a;
  }
  // Steps until the hub holds `n` contiguous records or `max_steps` pass; advances the fake
  // clock by each returned wait.
  void Drain(SyncAgent& a, uint64_t n, int max_steps = 200) {
    for (int i = 0; i < max_steps && (hub->Contiguous() < n || a.GetStats().acked_seq < n); ++i) {
      clock.Advance(a.StepForTest());
    }
  }
  std::vector<FakeHubTransport::Seen> Posts() {
    std::vector<FakeHubTransport::Seen> out;
    for (auto& r : hub->requests)
      if (r.method == "POST") out.push_back(r);
    return out;
  }

  testing::TempDir dir;
  Db db;
  EdgeConfig cfg;
  FakeClock clock;
  FakeHubTransport* hub = nullptr;
};

TEST_F(SyncAgentTest, BatchesByCountAndPersistsAcked) {
  db.Add(1, 25, clock.NowMs());
  auto a = Make();
  Drain(*a, 25);
  auto posts = Posts();
  ASSERT_EQ(posts.size(), 3u);
  EXPECT_EQ(posts[0].records, 10u);
  EXPECT_EQ(posts[1].records, 10u);
  EXPECT_EQ(posts[2].records, 5u);
  EXPECT_EQ(db.State("acked_seq"), 25);
  EXPECT_EQ(db.State("link_up"), 1);
  auto s = a->GetStats();
  EXPECT_EQ(s.backlog, 0u);
  EXPECT_EQ(s.batches_sent, 3u);
  EXPECT_EQ(s.last_http_status, 200);
  EXPECT_TRUE(hub->requests[0].url.find("/v1/sites/site-a/digest?from=1&to=1&buckets=1") != std::string::npos)
      << hub->requests[0].url;
  EXPECT_EQ(hub->requests[1].url, "https://hub.test:8443/v1/sites/site-a/batches");
}

TEST_F(SyncAgentTest, SendsFormat2OnlyAfterTheHubAnnouncesIt) {
  db.Add(1, 30, clock.NowMs());
  auto a = Make();
  hub->max_format = 2;
  Drain(*a, 30);
  auto posts = Posts();
  ASSERT_EQ(posts.size(), 3u);
  EXPECT_EQ(posts[0].format, 0u);  // nothing heard from the hub yet: the original format
  EXPECT_EQ(posts[1].format, 2u);
  EXPECT_EQ(posts[2].format, 2u);
  EXPECT_EQ(hub->batches[1], (std::vector<uint64_t>{11, 12, 13, 14, 15, 16, 17, 18, 19, 20}));
  EXPECT_EQ(db.State("acked_seq"), 30);
}

TEST_F(SyncAgentTest, AnOlderHubKeepsGettingFormat1) {
  db.Add(1, 30, clock.NowMs());
  auto a = Make();  // the fake announces no max_format, as hubs before format 2
  Drain(*a, 30);
  for (const auto& p : Posts()) EXPECT_EQ(p.format, 0u);
  EXPECT_EQ(db.State("acked_seq"), 30);
}

TEST_F(SyncAgentTest, FallsBackToFormat1WhenTheHubIsReplacedByAnOlderOne) {
  db.Add(1, 30, clock.NowMs());
  auto a = Make();
  hub->max_format = 2;
  Drain(*a, 10);
  hub->max_format = 0;  // downgraded behind the same URL: refuses format 2 with 400
  Drain(*a, 30);
  auto posts = Posts();
  ASSERT_EQ(posts.size(), 4u);
  EXPECT_EQ(posts[1].format, 2u);  // refused
  EXPECT_EQ(posts[2].format, 0u);
  EXPECT_EQ(posts[3].format, 0u);
  EXPECT_EQ(db.State("acked_seq"), 30);
}

TEST_F(SyncAgentTest, BatchesByBytes) {
  cfg.hub->batch_max_records = 1000;
  cfg.hub->batch_max_bytes = 2048;
  db.Add(1, 100, clock.NowMs(), nullptr, true, 150);  // ~180-byte records
  auto a = Make();
  Drain(*a, 100);
  auto posts = Posts();
  for (size_t i = 0; i < posts.size(); ++i) {
    EXPECT_LE(posts[i].records, 2048u / 170u);
    if (i + 1 < posts.size()) {
      EXPECT_GE(posts[i].records, 5u);
    }
  }
  EXPECT_EQ(hub->held.size(), 100u);
}

TEST_F(SyncAgentTest, WaitsForAgeBeforeSendingASmallBatch) {
  cfg.hub->batch_max_age_ms = 100;
  db.Add(1, 3, clock.NowMs() - 30);
  auto a = Make();
  int64_t w = a->StepForTest();  // reconcile, then waits on the batch's age
  EXPECT_EQ(w, 70);
  EXPECT_EQ(Posts().size(), 0u);
  clock.Advance(w);
  EXPECT_EQ(a->StepForTest(), 0);
  ASSERT_EQ(Posts().size(), 1u);
  EXPECT_EQ(Posts()[0].records, 3u);
  // A full batch goes at once, whatever its age.
  db.Add(4, 20, clock.NowMs());
  a->StepForTest();
  EXPECT_EQ(Posts().size(), 2u);
  EXPECT_EQ(Posts()[1].records, 10u);
}

TEST_F(SyncAgentTest, UrgentRecordsOvertakeTheBacklogOnce) {
  db.Add(1, 100, clock.NowMs(), [](uint64_t s) { return s == 60 || s == 90 ? 1 : 0; });
  auto a = Make();
  Drain(*a, 100);
  auto posts = Posts();
  ASSERT_GE(posts.size(), 2u);
  EXPECT_TRUE(posts[0].urgent);
  EXPECT_EQ(posts[0].records, 2u);
  ASSERT_EQ(hub->batches.size(), posts.size());
  EXPECT_EQ(hub->batches[0], (std::vector<uint64_t>{60, 90}));
  for (size_t i = 1; i < posts.size(); ++i) EXPECT_FALSE(posts[i].urgent);
  EXPECT_EQ(hub->held.size(), 100u);
  EXPECT_GE(db.State("urgent_sent_seq"), 90);
  EXPECT_EQ(a->GetStats().urgent_batches_sent, 1u);
}

TEST_F(SyncAgentTest, PriorityRowsInsideTheNextBatchTravelWithIt) {
  db.Add(1, 8, clock.NowMs(), [](uint64_t s) { return s == 5 ? 1 : 0; });
  auto a = Make();
  Drain(*a, 8);
  for (const auto& p : Posts()) EXPECT_FALSE(p.urgent);
}

TEST_F(SyncAgentTest, RewindsOnGap409) {
  // The hub lost everything after acknowledging 50 (digest endpoint off: only the 409 path).
  db.Add(1, 60, clock.NowMs());
  db.SetState("acked_seq", 50);
  auto a = Make();
  hub->handler = [](const HttpRequest& r) -> std::optional<Result<HttpResponse>> {
    if (r.method == "GET") return FakeHubTransport::Answer(404);
    return std::nullopt;
  };
  clock.Advance(a->StepForTest());  // digest 404: skipped, then POST 51.. -> 409
  auto s = a->GetStats();
  EXPECT_EQ(s.acked_seq, 0u);
  EXPECT_EQ(s.rewinds, 1u);
  EXPECT_EQ(db.State("acked_seq"), 0);
  Drain(*a, 60);
  EXPECT_EQ(hub->held.size(), 60u);
  EXPECT_EQ(hub->batches.front().front(), 1u);
}

TEST_F(SyncAgentTest, Honours503RetryAfterAsAFloor) {
  db.Add(1, 5, clock.NowMs());
  auto a = Make();
  a->StepForTest();  // reconcile + first batch
  db.Add(6, 10, clock.NowMs());
  hub->script.push_back({FakeHubTransport::Answer(503, "", 7)});
  const int64_t w = a->StepForTest();
  EXPECT_GE(w, 7000);
  EXPECT_LE(w, 7000 + cfg.hub->backoff_max_ms);
  auto s = a->GetStats();
  EXPECT_FALSE(s.link_up);
  EXPECT_EQ(s.last_http_status, 503);
  EXPECT_EQ(s.retries, 1u);
  EXPECT_EQ(db.State("link_up"), 0);
  clock.Advance(w);
  Drain(*a, 10);
  EXPECT_EQ(hub->held.size(), 10u);
  EXPECT_TRUE(a->GetStats().link_up);
}

// The shipped backoff (200 ms .. 30 s), with a 1 s probe interval.
void UseShippedBackoffWithProbeEvery1s(EdgeConfig& cfg) {
  cfg.hub->backoff_initial_ms = 200;
  cfg.hub->backoff_max_ms = 30000;
  cfg.hub->probe_interval_ms = 1000;
}

// Fast return (docs/sync-agent.md): a hub that refuses connections is probed on a short
// jittered interval however long the outage, and once it answers 503 + Retry-After the agent
// comes back after that time, not after a backoff grown during the outage.
TEST_F(SyncAgentTest, ProbesARefusingHubOnAShortIntervalThenHonoursRetryAfter) {
  UseShippedBackoffWithProbeEvery1s(cfg);
  db.Add(1, 5, clock.NowMs());
  auto a = Make();
  bool down = true;
  int shed = 0;
  hub->handler = [&](const HttpRequest&) -> std::optional<Result<HttpResponse>> {
    if (down) return Result<HttpResponse>(Status::Unavailable("connect: refused"));
    if (shed > 0) {
      --shed;
      return Result<HttpResponse>(FakeHubTransport::Answer(503, "", 2));
    }
    return std::nullopt;
  };
  for (int i = 0; i < 30; ++i) {  // ~30 s of outage: a backoff would be at its 30 s cap
    const int64_t w = a->StepForTest();
    EXPECT_LE(w, 1500) << i;
    if (i >= 5) {
      EXPECT_GE(w, 500) << i;
    }
    clock.Advance(w);
  }
  EXPECT_FALSE(a->GetStats().link_up);
  down = false;
  shed = 3;
  for (int i = 0; i < 3; ++i) {
    const int64_t w = a->StepForTest();
    EXPECT_GE(w, 2000) << i;
    EXPECT_LE(w, 3000) << i;
    EXPECT_EQ(a->GetStats().last_http_status, 503);
    clock.Advance(w);
  }
  Drain(*a, 5);
  EXPECT_EQ(hub->held.size(), 5u);
  EXPECT_TRUE(a->GetStats().link_up);
}

// A timeout may be a hub that is up and struggling: that one still backs off past the probe
// interval.
TEST_F(SyncAgentTest, TimeoutsStillBackOffPastTheProbeInterval) {
  UseShippedBackoffWithProbeEvery1s(cfg);
  db.Add(1, 5, clock.NowMs());
  auto a = Make();
  hub->handler = [&](const HttpRequest&) -> std::optional<Result<HttpResponse>> {
    return Result<HttpResponse>(Status::Unavailable("timeout: operation timed out"));
  };
  int64_t total = 0;
  for (int i = 0; i < 20; ++i) {
    const int64_t w = a->StepForTest();
    total += w;
    clock.Advance(w);
  }
  EXPECT_GT(total, 20 * 1500);  // mostly near the 30 s cap: well beyond 20 probes
}

TEST_F(SyncAgentTest, BackoffGrowsWithJitterUnderTheCapOnTransportErrors) {
  db.Add(1, 5, clock.NowMs());
  auto a = Make();
  for (int i = 0; i < 12; ++i) hub->script.push_back({Status::Unavailable("reset: connection reset by peer")});
  int64_t ceiling = cfg.hub->backoff_initial_ms;
  int64_t total = 0;
  for (int i = 0; i < 12; ++i) {
    const int64_t w = a->StepForTest();
    EXPECT_GE(w, 0);
    EXPECT_LE(w, ceiling) << i;
    total += w;
    ceiling = std::min<int64_t>(ceiling * 2, cfg.hub->backoff_max_ms);
    clock.Advance(w);
  }
  EXPECT_GT(total, 2000);  // not a busy loop: mostly near the 1 s cap
  EXPECT_EQ(a->GetStats().retries, 12u);
  EXPECT_FALSE(a->GetStats().link_up);
  Drain(*a, 5);
  EXPECT_EQ(hub->held.size(), 5u);
}

TEST_F(SyncAgentTest, OtherClientErrorsRetryAtTheCapAndKeepRecords) {
  db.Add(1, 5, clock.NowMs());
  auto a = Make();
  hub->handler = [](const HttpRequest& r) -> std::optional<Result<HttpResponse>> {
    if (r.method == "POST") return FakeHubTransport::Answer(403, "site mismatch");
    return std::nullopt;
  };
  EXPECT_EQ(a->StepForTest(), cfg.hub->backoff_max_ms);
  EXPECT_EQ(a->StepForTest(), cfg.hub->backoff_max_ms);
  EXPECT_NE(a->GetStats().last_error.find("403"), std::string::npos);
  EXPECT_EQ(db.Int("SELECT count(*) FROM outbox"), 5);
  hub->handler = nullptr;
  Drain(*a, 5);
  EXPECT_EQ(hub->held.size(), 5u);
}

TEST_F(SyncAgentTest, LostAckResendsAndTheHubCountsDuplicates) {
  db.Add(1, 10, clock.NowMs());
  auto a = Make();
  a->StepForTest();  // reconcile + first batch 1..10 acked
  db.Add(11, 20, clock.NowMs());
  // The hub commits the batch, then the connection resets before the answer arrives.
  hub->script.push_back({Status::Unavailable("reset: after commit"), true});
  clock.Advance(a->StepForTest());
  EXPECT_EQ(a->GetStats().acked_seq, 10u);
  EXPECT_EQ(hub->held.size(), 20u);
  Drain(*a, 20);
  EXPECT_EQ(hub->held.size(), 20u);
  EXPECT_EQ(db.State("acked_seq"), 20);
}

TEST_F(SyncAgentTest, RecordsWithoutTheirSeqGetTheRowSeq) {
  db.Add(1, 5, clock.NowMs(), nullptr, /*with_seq=*/false);
  auto a = Make();
  Drain(*a, 5);
  for (uint64_t s = 1; s <= 5; ++s) EXPECT_TRUE(hub->held.count(s)) << s;
}

TEST_F(SyncAgentTest, RetentionNeverTrimsUnackedRows) {
  const int64_t old = clock.NowMs() - 100LL * 3600 * 1000;  // older than 72 h
  db.Add(1, 100, old);
  db.Add(101, 120, clock.NowMs());
  db.SetState("acked_seq", 50);
  auto a = Make();
  for (uint64_t s = 1; s <= 50; ++s) hub->held[s] = {s, 3, s, "truck-" + std::to_string(s % 7), 1};
  hub->handler = [](const HttpRequest&) -> std::optional<Result<HttpResponse>> {
    return Result<HttpResponse>(Status::Unavailable("connect: refused"));
  };
  a->StepForTest();
  EXPECT_EQ(db.Int("SELECT min(seq) FROM outbox"), 51);
  EXPECT_EQ(db.Int("SELECT count(*) FROM outbox"), 70);
  EXPECT_EQ(a->GetStats().trimmed, 50u);
  // Acknowledged but young rows stay for the window; the newest row always stays.
  hub->handler = nullptr;
  clock.Advance(2000);
  Drain(*a, 120);
  clock.Advance(61'000);
  a->StepForTest();
  EXPECT_EQ(db.Int("SELECT min(seq) FROM outbox"), 101);
  clock.Advance(73LL * 3600 * 1000);
  a->StepForTest();
  EXPECT_EQ(db.Int("SELECT count(*) FROM outbox"), 1);
  EXPECT_EQ(db.Int("SELECT max(seq) FROM outbox"), 120);
}

TEST_F(SyncAgentTest, RestartResumesFromPersistedAcked) {
  db.Add(1, 30, clock.NowMs());
  {
    auto a = Make();
    clock.Advance(a->StepForTest());  // 1..10
    clock.Advance(a->StepForTest());  // 11..20
  }
  EXPECT_EQ(db.State("acked_seq"), 20);
  auto b = Make();  // a new hub fake that already holds 1..20
  for (uint64_t s = 1; s <= 20; ++s) hub->held[s] = {s, 3, s, "truck-" + std::to_string(s % 7), 1};
  Drain(*b, 30);
  ASSERT_EQ(hub->batches.size(), 1u);
  EXPECT_EQ(hub->batches[0].front(), 21u);
  EXPECT_EQ(hub->batches[0].back(), 30u);
}

TEST_F(SyncAgentTest, ReconcileRewindsWhenTheHubWasRestoredFromAnOlderBackup) {
  db.Add(1, 100, clock.NowMs());
  auto a = Make();
  Drain(*a, 100);
  for (uint64_t s = 41; s <= 100; ++s) hub->held.erase(s);
  const size_t before = hub->batches.size();
  a->RequestReconcileForTest();
  clock.Advance(a->StepForTest());  // digest: rewind to 40, then the first batch from 41
  EXPECT_EQ(a->GetStats().rewinds, 1u);
  ASSERT_GT(hub->batches.size(), before);
  EXPECT_EQ(hub->batches[before].front(), 41u);
  Drain(*a, 100);
  EXPECT_EQ(hub->held.size(), 100u);
  EXPECT_EQ(a->GetStats().backlog, 0u);
}

TEST_F(SyncAgentTest, OperatorReconcileRequestIsPickedUpAndCleared) {
  // `edgectl reconcile` sets sync_state('reconcile_requested') = 1 (edge/admin.h).
  db.Add(1, 100, clock.NowMs());
  auto a = Make();
  Drain(*a, 100);
  const uint64_t before = a->GetStats().reconciliations;
  for (int i = 0; i < 5; ++i) clock.Advance(a->StepForTest() + 1);
  EXPECT_EQ(a->GetStats().reconciliations, before);  // idle: none due for an hour
  db.SetState("reconcile_requested", 1);
  for (int i = 0; i < 5; ++i) clock.Advance(std::max<int64_t>(a->StepForTest(), 1000));
  EXPECT_EQ(a->GetStats().reconciliations, before + 1);
  EXPECT_EQ(db.State("reconcile_requested"), 0);
}

TEST_F(SyncAgentTest, StatsCountHttpCodesAndBatchSizes) {
  db.Add(1, 25, clock.NowMs());
  auto a = Make();
  Drain(*a, 25);
  const auto s = a->GetStats();
  EXPECT_EQ(s.http_codes.at(200), 4u);  // the digest and three batches
  // Batches of 10, 10 and 5 records: all in the (1, 10] bucket.
  EXPECT_EQ(s.batch_size_buckets[1], 3u);
  EXPECT_EQ(s.batch_size_buckets[0] + s.batch_size_buckets[2] + s.batch_size_buckets[5], 0u);
}

TEST_F(SyncAgentTest, ReconcileResendsADifferingRange) {
  db.Add(1, 100, clock.NowMs());
  auto a = Make();
  Drain(*a, 100);
  hub->held[37].version = 999;  // the hub's copy differs
  const size_t before = hub->batches.size();
  a->RequestReconcileForTest();
  clock.Advance(a->StepForTest());
  EXPECT_EQ(a->GetStats().reconcile_resends, 1u);
  clock.Advance(a->StepForTest());
  clock.Advance(a->StepForTest());
  std::vector<uint64_t> resent;
  for (size_t i = before; i < hub->batches.size(); ++i)
    resent.insert(resent.end(), hub->batches[i].begin(), hub->batches[i].end());
  // Exactly the bucket holding 37 (27..39 with w = ceil(100/8)), not everything.
  ASSERT_EQ(resent.size(), 13u);
  EXPECT_EQ(resent.front(), 27u);
  EXPECT_EQ(resent.back(), 39u);
}

TEST_F(SyncAgentTest, ReconcileMovesTheSeqCounterPastTheHubAfterAnEdgeRestore) {
  db.Add(1, 100, clock.NowMs());
  db.SetState("acked_seq", 80);
  auto a = Make();
  for (uint64_t s = 1; s <= 150; ++s)
    hub->held[s] = {s, 3, s, "truck-" + std::to_string(s % 7), 1};
  clock.Advance(a->StepForTest());
  EXPECT_EQ(db.State("seq_floor"), 150);
  EXPECT_EQ(db.State("acked_seq"), 150);
  EXPECT_EQ(a->GetStats().seq_floor, 150u);
  // New rows from 151 flow on.
  db.Add(151, 155, clock.NowMs());
  Drain(*a, 155);
  EXPECT_EQ(hub->Contiguous(), 155u);
}

// `edgectl restore` marks the copy (restored_last_seq); edged then writes new records while
// the hub is unreachable, taking seqs 101..120 that the hub already holds with other content
// (the timeline the backup lost). Nothing may be sent before the hub says what it holds; then
// those records move above the hub's seqs and reach it as new ones, none taken as a repeat.
TEST_F(SyncAgentTest, RecordsWrittenAfterARestoreMoveAboveTheHubsSeqsBeforeAnythingIsSent) {
  db.Add(1, 100, clock.NowMs());
  db.SetState("acked_seq", 80);
  db.SetState("restored_last_seq", 100);
  db.Add(101, 120, clock.NowMs(), [](uint64_t) { return 1; });  // after the restore: orders, urgent lane
  bool hub_down = true;
  auto a = Make();
  for (uint64_t s = 1; s <= 150; ++s) hub->held[s] = {s, 3, s, "truck-" + std::to_string(s % 7), 1};
  hub->handler = [&](const HttpRequest&) -> std::optional<Result<HttpResponse>> {
    if (hub_down) return Result<HttpResponse>(Status::Unavailable("connect: refused"));
    return std::nullopt;
  };
  for (int i = 0; i < 20; ++i) clock.Advance(a->StepForTest());
  EXPECT_TRUE(Posts().empty()) << "sent before the hub said what it holds";
  EXPECT_EQ(db.State("restored_last_seq"), 100);

  hub_down = false;
  Drain(*a, 170);
  EXPECT_EQ(hub->Contiguous(), 170u);
  for (uint64_t s = 101; s <= 150; ++s) EXPECT_EQ(hub->held[s].entity, 3) << "hub record " << s << " overwritten";
  for (uint64_t s = 151; s <= 170; ++s) {
    EXPECT_EQ(hub->held[s].entity, v1::ORDER) << s;
    EXPECT_EQ(hub->held[s].version, s - 50) << s;  // the row written as seq s - 50 after the restore
    EXPECT_EQ(hub->held[s].applied, 1) << s;
  }
  EXPECT_EQ(db.Int("SELECT count(*) FROM outbox WHERE seq BETWEEN 101 AND 150"), 0);
  EXPECT_EQ(db.Int("SELECT min(seq) FROM outbox WHERE seq > 100"), 151);
  // The seq inside each moved record follows its row.
  EXPECT_EQ(db.State("restored_last_seq"), 0);
  EXPECT_EQ(db.State("seq_floor"), 150);
  EXPECT_EQ(a->GetStats().acked_seq, 170u);
}

// A restored copy that is ahead of the hub (the hub lost more than the edge): nothing moves.
TEST_F(SyncAgentTest, ARestoredCopyAheadOfTheHubSendsAsUsual) {
  db.Add(1, 100, clock.NowMs());
  db.SetState("acked_seq", 60);
  db.SetState("restored_last_seq", 100);
  auto a = Make();
  for (uint64_t s = 1; s <= 60; ++s) hub->held[s] = {s, 3, s, "truck-" + std::to_string(s % 7), 1};
  Drain(*a, 100);
  EXPECT_EQ(hub->Contiguous(), 100u);
  EXPECT_EQ(db.State("restored_last_seq"), 0);
  EXPECT_EQ(db.Int("SELECT max(seq) FROM outbox"), 100);
}

TEST_F(SyncAgentTest, NoBusyLoopWhileTheLinkIsDownAndStopIsPrompt) {
  cfg.hub->backoff_initial_ms = 20;
  cfg.hub->backoff_max_ms = 100;
  db.Add(1, 5, SystemClock().NowMs());
  auto t = std::make_unique<FakeHubTransport>();
  auto* h = t.get();
  h->handler = [](const HttpRequest&) -> std::optional<Result<HttpResponse>> {
    return Result<HttpResponse>(Status::Unavailable("connect: refused"));
  };
  SyncAgent a(cfg, SystemClock(), std::move(t));
  ASSERT_TRUE(a.Start().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  const size_t calls = h->RequestCount();
  // Expected ~ 1000 ms / 50 ms mean delay at the cap = ~20.
  EXPECT_GE(calls, 5u);
  EXPECT_LE(calls, 60u);
  const auto t0 = std::chrono::steady_clock::now();
  a.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(300));
}

TEST_F(SyncAgentTest, StopIsPromptMidBackoffAtALongCap) {
  cfg.hub->backoff_initial_ms = 60'000;
  cfg.hub->backoff_max_ms = 60'000;
  db.Add(1, 5, SystemClock().NowMs());
  auto t = std::make_unique<FakeHubTransport>();
  auto* h = t.get();
  h->handler = [](const HttpRequest&) -> std::optional<Result<HttpResponse>> {
    return FakeHubTransport::Answer(503, "", 120);
  };
  SyncAgent a(cfg, SystemClock(), std::move(t));
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(testing::WaitFor([&] { return h->RequestCount() >= 1; }, std::chrono::seconds(5)));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto t0 = std::chrono::steady_clock::now();
  a.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(300));
  EXPECT_EQ(h->RequestCount(), 1u);
}

TEST_F(SyncAgentTest, ThreadDrainsAndNotifyWakesIt) {
  cfg.hub->batch_max_records = 100;
  db.Add(1, 1000, SystemClock().NowMs());
  auto t = std::make_unique<FakeHubTransport>();
  auto* h = t.get();
  SyncAgentOptions o;
  o.idle_poll_ms = 5000;  // only Notify() can make the second burst go quickly
  SyncAgent a(cfg, SystemClock(), std::move(t), o);
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(testing::WaitFor([&] { return a.GetStats().acked_seq == 1000; }, std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  db.Add(1001, 1010, SystemClock().NowMs());
  a.Notify();
  EXPECT_TRUE(testing::WaitFor([&] { return a.GetStats().acked_seq == 1010; }, std::chrono::seconds(2)));
  a.Stop();
  std::lock_guard<std::mutex> lock(h->mu);
  EXPECT_EQ(h->held.size(), 1010u);
}

TEST_F(SyncAgentTest, MissingStoreIsNotFound) {
  cfg.store.path = dir.File("nope.db");
  SyncAgent a(cfg, clock, std::make_unique<FakeHubTransport>());
  EXPECT_EQ(a.Start().code(), StatusCode::kNotFound);
}

// --- current-state digest (docs/sync-agent.md, "State digest") ---

class StateDigestTest : public SyncAgentTest {
 protected:
  void SetUp() override {
    // The edge store's stock table, with two SKUs.
    db.Exec("INSERT INTO stock VALUES('sku-2', 20, 1, 2, 0), ('sku-1', 7, 0, 3, 0)");
    good = {{"sku-1", {7, 0, 3}}, {"sku-2", {20, 1, 2}}};
    db.Add(1, 10, clock.NowMs());
    a = Make();
    Drain(*a, 10);
    hub->rebuild_source = good;
  }
  size_t Requests(const std::string& path) {
    size_t n = 0;
    for (auto& r : hub->requests)
      if (r.url.find(path) != std::string::npos) ++n;
    return n;
  }
  std::map<std::string, FakeHubTransport::StockState> good;
  std::unique_ptr<SyncAgent> a;
};

TEST_F(StateDigestTest, EqualStateNeedsNoRebuild) {
  hub->stock = good;
  a->RequestReconcileForTest();
  clock.Advance(a->StepForTest());
  const auto st = a->GetStats();
  EXPECT_EQ(st.state_compares, 1u);
  EXPECT_EQ(st.state_rebuilds, 0u);
  EXPECT_EQ(hub->rebuilds, 0);
  EXPECT_EQ(Requests("/state-digest"), 1u);
}

TEST_F(StateDigestTest, DifferentHubStockIsRebuiltAndComparedAgain) {
  hub->stock = good;
  hub->stock["sku-1"].on_hand = 5000;  // the hub's materialized row is wrong
  hub->stock.erase("sku-2");           // and one is lost
  a->RequestReconcileForTest();
  clock.Advance(a->StepForTest());
  const auto st = a->GetStats();
  EXPECT_EQ(st.state_compares, 1u);
  EXPECT_EQ(st.state_rebuilds, 1u);
  EXPECT_EQ(st.state_repaired, 1u);
  EXPECT_EQ(st.state_mismatches, 0u);
  EXPECT_EQ(hub->rebuilds, 1);
  EXPECT_EQ(hub->stock.at("sku-1").on_hand, 7);
  EXPECT_EQ(hub->stock.count("sku-2"), 1u);
  EXPECT_EQ(Requests("/state-digest"), 2u);  // before and after the rebuild
  // The stream is not disturbed: nothing re-sent, backlog zero.
  EXPECT_EQ(st.backlog, 0u);
  EXPECT_EQ(st.reconcile_resends, 0u);
}

TEST_F(StateDigestTest, StillDifferentAfterRebuildIsCountedLoggedAndNotRetriedHot) {
  hub->stock = good;
  hub->stock["sku-1"].version = 4;
  hub->rebuild_restores = false;  // the hub's records themselves disagree with the edge
  a->RequestReconcileForTest();
  clock.Advance(a->StepForTest());
  auto st = a->GetStats();
  EXPECT_EQ(st.state_rebuilds, 1u);
  EXPECT_EQ(st.state_repaired, 0u);
  EXPECT_EQ(st.state_mismatches, 1u);
  EXPECT_NE(st.last_error.find("state digest differs and rebuild-state did not repair it"), std::string::npos) << st.last_error;
  // Both digests are named (64 hex digits each).
  EXPECT_NE(st.last_error.find("edge "), std::string::npos);
  EXPECT_NE(st.last_error.find(" hub "), std::string::npos);
  // Many idle steps within the interval: no further comparison or rebuild.
  for (int i = 0; i < 50; ++i) clock.Advance(std::max<int64_t>(1, a->StepForTest()));
  EXPECT_EQ(hub->rebuilds, 1);
  EXPECT_EQ(Requests("/state-digest"), 2u);
  // The next interval compares again and reports again, but does not ask for the same
  // rebuild that already failed to help (it would re-derive the same rows).
  clock.Advance(int64_t{cfg.hub->reconcile_interval_s} * 1000);
  clock.Advance(a->StepForTest());
  EXPECT_EQ(Requests("/state-digest"), 3u);
  EXPECT_EQ(hub->rebuilds, 1);
  EXPECT_EQ(a->GetStats().state_mismatches, 2u);
  // The hub's stock changed meanwhile: a rebuild is worth asking for again.
  hub->stock["sku-2"].on_hand = 1;
  clock.Advance(int64_t{cfg.hub->reconcile_interval_s} * 1000);
  clock.Advance(a->StepForTest());
  EXPECT_EQ(hub->rebuilds, 2);
  EXPECT_EQ(a->GetStats().state_mismatches, 3u);
}

TEST_F(StateDigestTest, SkippedWhileTheOutboxHasUnackedRecords) {
  hub->stock = {{"sku-1", {1, 0, 1}}};  // would differ
  db.Add(11, 12, clock.NowMs());        // written but not yet acknowledged
  a->RequestReconcileForTest();
  clock.Advance(a->StepForTest());
  auto st = a->GetStats();
  EXPECT_GE(st.state_skipped, 1u);
  EXPECT_EQ(st.state_compares, 0u);
  EXPECT_EQ(Requests("/state-digest"), 0u);
  EXPECT_EQ(hub->rebuilds, 0);
}

TEST_F(StateDigestTest, AHubWithoutTheEndpointDoesNotStopTheStream) {
  hub->handler = [](const sync::HttpRequest& req) -> std::optional<Result<sync::HttpResponse>> {
    if (req.url.find("/state-digest") != std::string::npos) return FakeHubTransport::Answer(404, "not found");
    return std::nullopt;
  };
  a->RequestReconcileForTest();
  clock.Advance(a->StepForTest());
  EXPECT_EQ(a->GetStats().state_compares, 0u);
  EXPECT_EQ(hub->rebuilds, 0);
  db.Add(11, 20, clock.NowMs());
  Drain(*a, 20);
  EXPECT_EQ(hub->Contiguous(), 20u);
}

}  // namespace
}  // namespace freshsync::sync
