// DiskQuota's policy against fakes of its seams (a store whose used size is its row count,
// a gate that records pauses), and the SQLite QuotaStore against a real store file.
#include "edge/disk_quota.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "edge/store.h"
#include "edge/store_test_support.h"

namespace freshsync::edge {
namespace {

class TestClock final : public Clock {
 public:
  int64_t NowMs() override { return 1'764'000'000'000 + mono_; }
  int64_t MonotonicMs() override { return mono_; }
  void Advance(int64_t ms) { mono_ += ms; }

 private:
  int64_t mono_ = 1000;
};

// Rows of a fake store; each costs kRowBytes. Raw telemetry rows have a bucket (device +
// interval); "kept" rows (stock, orders, alerts) are never deletable.
struct FakeRow {
  enum Kind { kRaw, kKept } kind;
  bool acked;
  int bucket;
};

class FakeQuotaStore final : public QuotaStore {
 public:
  static constexpr int64_t kRowBytes = 1000;
  std::vector<FakeRow> rows;
  std::vector<std::string> calls;  // "downsample", "drop", "alert-open", "alert-closed"
  QuotaState published = QuotaState::kOk;

  Result<int64_t> UsedBytes() override { return static_cast<int64_t>(rows.size()) * kRowBytes; }
  Result<int64_t> Downsample(int max_rows) override {
    calls.push_back("downsample");
    int64_t n = 0;
    std::vector<int> seen;
    std::vector<FakeRow> keep;
    for (const auto& r : rows) {
      const bool dup = r.kind == FakeRow::kRaw && r.acked && std::find(seen.begin(), seen.end(), r.bucket) != seen.end();
      if (r.kind == FakeRow::kRaw && r.acked) seen.push_back(r.bucket);
      if (dup && n < max_rows) ++n;
      else keep.push_back(r);
    }
    rows = keep;
    return n;
  }
  Result<int64_t> DropAcked(int max_rows, int64_t) override {
    calls.push_back("drop");
    int64_t n = 0;
    std::vector<FakeRow> keep;
    for (const auto& r : rows) {
      if (r.kind == FakeRow::kRaw && r.acked && n < max_rows) ++n;
      else keep.push_back(r);
    }
    rows = keep;
    return n;
  }
  Status RecordAlert(bool open, int64_t, int64_t) override {
    calls.push_back(open ? "alert-open" : "alert-closed");
    return Status::Ok();
  }
  Status PublishState(QuotaState state, int64_t, std::optional<int64_t>) override {
    published = state;
    return Status::Ok();
  }
  int64_t Count(FakeRow::Kind kind, bool acked) const {
    return std::count_if(rows.begin(), rows.end(), [&](const FakeRow& r) { return r.kind == kind && r.acked == acked; });
  }
};

class FakeGate final : public TelemetryGate {
 public:
  int pauses = 0, resumes = 0;
  bool paused = false;
  void Pause() override {
    ++pauses;
    paused = true;
  }
  void Resume() override {
    ++resumes;
    paused = false;
  }
};

class DiskQuotaTest : public ::testing::Test {
 protected:
  void Add(FakeRow::Kind kind, bool acked, int count, int buckets = 1) {
    for (int i = 0; i < count; ++i) store_.rows.push_back({kind, acked, i % buckets});
  }
  QuotaOptions Options(int64_t quota_rows) {
    QuotaOptions o;
    o.quota_bytes = quota_rows * FakeQuotaStore::kRowBytes;
    o.rows_per_step = 10;
    return o;
  }
  FakeQuotaStore store_;
  FakeGate gate_;
  TestClock clock_;
};

TEST_F(DiskQuotaTest, BelowTheSoftMarkNothingIsTouched) {
  Add(FakeRow::kRaw, true, 70, 7);
  DiskQuota quota(Options(100), store_, &gate_, clock_);
  ASSERT_TRUE(quota.Tick().ok());
  EXPECT_TRUE(store_.calls.empty());
  EXPECT_EQ(store_.rows.size(), 70u);
  EXPECT_EQ(quota.status().state, QuotaState::kOk);
}

TEST_F(DiskQuotaTest, DownsamplesBeforeDroppingAndKeepsTheRest) {
  Add(FakeRow::kKept, true, 20);
  Add(FakeRow::kRaw, false, 10);       // not yet acknowledged by the hub
  Add(FakeRow::kRaw, true, 90, 5);     // acknowledged, 5 buckets
  DiskQuota quota(Options(100), store_, &gate_, clock_);
  ASSERT_TRUE(quota.Tick().ok());
  // Downsampling alone brings the 120 rows under the soft mark (80), and it stops there: no
  // drop, and no more thinning than needed (10 rows a step).
  EXPECT_LT(static_cast<int64_t>(store_.rows.size()), 80);
  EXPECT_GE(static_cast<int64_t>(store_.rows.size()), 70);
  EXPECT_EQ(std::count(store_.calls.begin(), store_.calls.end(), "drop"), 0);
  EXPECT_EQ(quota.status().state, QuotaState::kDownsampling);
  EXPECT_EQ(quota.status().downsampled_rows, 90 - store_.Count(FakeRow::kRaw, true));
  EXPECT_EQ(store_.Count(FakeRow::kKept, true), 20);
  EXPECT_EQ(store_.Count(FakeRow::kRaw, false), 10);
  EXPECT_EQ(gate_.pauses, 0);
}

TEST_F(DiskQuotaTest, DropsOnlyOnceDownsamplingIsSpent) {
  Add(FakeRow::kKept, true, 60);
  Add(FakeRow::kRaw, false, 5);
  Add(FakeRow::kRaw, true, 40, 40);  // one row per bucket: nothing to downsample
  DiskQuota quota(Options(100), store_, &gate_, clock_);
  ASSERT_TRUE(quota.Tick().ok());
  ASSERT_FALSE(store_.calls.empty());
  const auto first_drop = std::find(store_.calls.begin(), store_.calls.end(), "drop");
  ASSERT_NE(first_drop, store_.calls.end());
  EXPECT_EQ(std::find(first_drop, store_.calls.end(), "downsample"), store_.calls.end()) << "downsampled after a drop";
  EXPECT_LT(static_cast<int64_t>(store_.rows.size()), 80);
  EXPECT_EQ(quota.status().state, QuotaState::kDropping);
  EXPECT_EQ(store_.Count(FakeRow::kKept, true), 60);
  EXPECT_EQ(store_.Count(FakeRow::kRaw, false), 5);
  EXPECT_EQ(gate_.pauses, 0);
}

TEST_F(DiskQuotaTest, FullPausesTelemetryRaisesTheAlertAndResumesWhenSpaceFrees) {
  Add(FakeRow::kKept, true, 50);
  Add(FakeRow::kRaw, false, 55);  // the hub is unreachable: nothing acknowledged
  DiskQuota quota(Options(100), store_, &gate_, clock_);
  ASSERT_TRUE(quota.Tick().ok());
  EXPECT_EQ(gate_.pauses, 1);
  EXPECT_TRUE(gate_.paused);
  EXPECT_EQ(quota.status().state, QuotaState::kFull);
  EXPECT_EQ(store_.published, QuotaState::kFull);
  EXPECT_TRUE(quota.status().alert_open);
  EXPECT_EQ(std::count(store_.calls.begin(), store_.calls.end(), "alert-open"), 1);
  EXPECT_EQ(store_.rows.size(), 105u);  // nothing lost

  ASSERT_TRUE(quota.Tick().ok());  // still full: no second pause, no second alert
  EXPECT_EQ(gate_.pauses, 1);
  EXPECT_EQ(std::count(store_.calls.begin(), store_.calls.end(), "alert-open"), 1);

  for (auto& r : store_.rows) r.acked = true;  // the hub is back and acknowledges
  for (size_t i = 0; i < store_.rows.size(); ++i) store_.rows[i].bucket = static_cast<int>(i);
  ASSERT_TRUE(quota.Tick().ok());
  EXPECT_EQ(gate_.resumes, 1);
  EXPECT_FALSE(gate_.paused);
  EXPECT_FALSE(quota.status().alert_open);
  EXPECT_EQ(std::count(store_.calls.begin(), store_.calls.end(), "alert-closed"), 1);
  EXPECT_NE(quota.status().state, QuotaState::kFull);
  EXPECT_EQ(store_.Count(FakeRow::kKept, true), 50);
}

TEST_F(DiskQuotaTest, NoQuotaMeasuresOnly) {
  Add(FakeRow::kRaw, true, 500, 2);
  DiskQuota quota(Options(0), store_, &gate_, clock_);
  ASSERT_TRUE(quota.Tick().ok());
  EXPECT_TRUE(store_.calls.empty());
  EXPECT_EQ(quota.status().used_bytes, 500 * FakeQuotaStore::kRowBytes);
  EXPECT_FALSE(quota.status().forecast_full_s.has_value());
}

TEST_F(DiskQuotaTest, ForecastsTimeToFullFromTheGrowthRate) {
  DiskQuota quota(Options(1000), store_, &gate_, clock_);
  Add(FakeRow::kKept, true, 100);
  ASSERT_TRUE(quota.Tick().ok());
  EXPECT_FALSE(quota.status().forecast_full_s.has_value());  // one sample: no rate yet
  clock_.Advance(10'000);
  Add(FakeRow::kKept, true, 100);  // 10 rows/s, 800 rows to go (soft mark aside)
  ASSERT_TRUE(quota.Tick().ok());
  ASSERT_TRUE(quota.status().forecast_full_s.has_value());
  EXPECT_EQ(*quota.status().forecast_full_s, 80);
  clock_.Advance(70'000);  // not growing over the window: no forecast
  ASSERT_TRUE(quota.Tick().ok());
  clock_.Advance(10'000);
  ASSERT_TRUE(quota.Tick().ok());
  EXPECT_FALSE(quota.status().forecast_full_s.has_value());
}

// ---- the SQLite QuotaStore on a real store ----

class SqliteQuotaStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("quota-test-" + std::to_string(getpid()) + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    StoreOptions o;
    o.path = (dir_ / "edge.db").string();
    auto s = EdgeStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
    auto q = OpenSqliteQuotaStore(o.path, 2000, clock_);
    ASSERT_TRUE(q.ok());
    quota_store_ = std::move(*q);
  }
  void TearDown() override {
    quota_store_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  int64_t Int(const std::string& sql) { return test_support::QueryInt(store_->db_for_test(), sql); }
  void Exec(const std::string& sql) { ASSERT_EQ(sqlite3_exec(store_->db_for_test(), sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sql; }
  void Gps(const std::string& vehicle, uint64_t seq, int64_t ts_ms) {
    GpsFix g;
    g.vehicle = vehicle;
    g.seq = seq;
    g.ts_ms = ts_ms;
    g.lat = 31.2;
    g.lon = 121.5;
    ASSERT_TRUE(store_->Apply(g, ts_ms).ok());
  }
  void Move(const std::string& id, int64_t delta) {
    StockMovement m;
    m.id = id;
    m.sku = "apple";
    m.delta = delta;
    m.reason = "receive";
    ASSERT_TRUE(store_->Apply(m, 1'764'000'000'000).ok());
  }
  std::filesystem::path dir_;
  TestClock clock_;
  std::unique_ptr<EdgeStore> store_;
  std::unique_ptr<QuotaStore> quota_store_;
};

TEST_F(SqliteQuotaStoreTest, DownsamplesAndDropsOnlyAcknowledgedTelemetry) {
  const int64_t t0 = 1'764'000'000'000 - 1'764'000'000'000 % 30'000;
  Move("m1", 5);
  for (uint64_t i = 0; i < 60; ++i) Gps("t1", i + 1, t0 + static_cast<int64_t>(i) * 1000);  // 1 Hz: 2 intervals of 30 s
  Move("m2", 5);
  for (uint64_t i = 60; i < 90; ++i) Gps("t1", i + 1, t0 + static_cast<int64_t>(i) * 1000);
  // The hub holds everything up to the second movement: the first 60 fixes are acknowledged.
  const int64_t acked = Int("SELECT seq FROM outbox WHERE entity = 1 ORDER BY seq DESC LIMIT 1");
  Exec("INSERT INTO sync_state(name, value) VALUES ('acked_seq', " + std::to_string(acked) + ")");

  auto n = quota_store_->Downsample(1000);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 58);  // 60 acknowledged fixes in 2 intervals keep 2
  EXPECT_EQ(Int("SELECT COUNT(*) FROM vehicle_positions WHERE outbox_seq <= " + std::to_string(acked)), 2);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM vehicle_positions WHERE outbox_seq > " + std::to_string(acked)), 30);
  EXPECT_EQ(Int("SELECT MIN(seq) FROM vehicle_positions"), 1);   // the oldest of each interval stays
  EXPECT_EQ(*quota_store_->Downsample(1000), 0);                  // converged

  const int64_t last_acked_fix = Int("SELECT MAX(seq) FROM outbox WHERE entity = 3 AND seq <= " + std::to_string(acked));
  auto d = quota_store_->DropAcked(1000, clock_.NowMs());
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(Int("SELECT COUNT(*) FROM vehicle_positions"), 30);  // only the unacknowledged
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox WHERE entity = 3 AND seq <= " + std::to_string(acked)), 0);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox WHERE seq > " + std::to_string(acked)), 30);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox WHERE entity = 1"), 2);   // stock records kept
  EXPECT_EQ(Int("SELECT COUNT(*) FROM stock_movements"), 2);
  EXPECT_EQ(Int("SELECT on_hand FROM stock WHERE sku = 'apple'"), 10);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM dedupe WHERE kind = 1"), 2);
  // The holes are marked, for reconciliation and `edgectl verify`.
  EXPECT_EQ(Int("SELECT value FROM sync_state WHERE name = 'quota_dropped_upto'"), last_acked_fix);

  // The seq counter stays dense after the drop.
  Gps("t1", 500, t0 + 500'000);
  EXPECT_EQ(Int("SELECT MAX(seq) FROM outbox"), acked + 31);
}

TEST_F(SqliteQuotaStoreTest, AlertIsAPriorityRecordWithTheNextSeq) {
  Move("m1", 5);
  ASSERT_TRUE(quota_store_->RecordAlert(true, clock_.NowMs(), clock_.NowMs()).ok());
  ASSERT_TRUE(quota_store_->RecordAlert(false, clock_.NowMs(), clock_.NowMs() + 5).ok());
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox WHERE entity = 6 AND key = 'disk-quota' AND priority = 1"), 2);
  EXPECT_EQ(Int("SELECT MAX(version) FROM outbox WHERE key = 'disk-quota'"), 2);
  EXPECT_EQ(Int("SELECT MAX(seq) FROM outbox"), 3);
  Move("m2", 5);  // the store's own counter continues after them
  EXPECT_EQ(Int("SELECT MAX(seq) FROM outbox"), 4);
  EXPECT_GT(Int("SELECT hlc FROM outbox WHERE seq = 4"), Int("SELECT hlc FROM outbox WHERE seq = 1"));
}

// Two writers on two connections, each with its own clock: the quota's runs a year ahead of
// the store's (the system clock). HLC must still rise with seq, or the hub would order the
// store's next record before the alert (the writer observes the newest row at each append's
// transaction; edge/outbox_writer.h).
TEST_F(SqliteQuotaStoreTest, HlcRisesWithSeqAcrossWritersWhoseClocksDisagree) {
  Move("m1", 5);
  clock_.Advance(int64_t{400} * 86'400'000 + (SystemClock().NowMs() - clock_.NowMs()));
  ASSERT_TRUE(quota_store_->RecordAlert(true, clock_.NowMs(), clock_.NowMs()).ok());
  Move("m2", 5);
  Move("m3", 5);
  EXPECT_EQ(Int("SELECT MAX(seq) FROM outbox"), 4);
  EXPECT_GT(Int("SELECT hlc FROM outbox WHERE seq = 2"), Int("SELECT hlc FROM outbox WHERE seq = 1"));
  EXPECT_GT(Int("SELECT hlc FROM outbox WHERE seq = 3"), Int("SELECT hlc FROM outbox WHERE seq = 2"));
  EXPECT_GT(Int("SELECT hlc FROM outbox WHERE seq = 4"), Int("SELECT hlc FROM outbox WHERE seq = 3"));
}

TEST_F(SqliteQuotaStoreTest, StateIsReadableByEdgectl) {
  ASSERT_TRUE(quota_store_->PublishState(QuotaState::kDropping, 12345, 60).ok());
  auto st = ReadQuotaState((dir_ / "edge.db").string());
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->state, "dropping");
  EXPECT_EQ(st->forecast_full_s, 60);
  EXPECT_GT(st->used_bytes, 0);
  ASSERT_TRUE(quota_store_->PublishState(QuotaState::kOk, 1, std::nullopt).ok());
  EXPECT_FALSE(ReadQuotaState((dir_ / "edge.db").string())->forecast_full_s.has_value());
}

}  // namespace
}  // namespace freshsync::edge
