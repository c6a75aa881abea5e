// Ingest::HandleMessage driven directly (no broker): the per-message decisions.
#include "edge/ingest.h"

#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

namespace freshsync::edge {
namespace {

class IngestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("edge-ingest-test-" + std::to_string(getpid()) + "-" +
                                                     ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
    config_.site = "s1";
    config_.mqtt.uri = "tcp://127.0.0.1:1";
    config_.store.path = (dir_ / "e.db").string();
    StoreOptions o;
    o.path = config_.store.path;
    store_ = EdgeStore::Open(o).value();
    ingest_ = std::make_unique<Ingest>(config_, *store_);
  }
  void TearDown() override {
    ingest_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  int64_t Int(const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(store_->db_for_test(), sql.c_str(), -1, &st, nullptr);
    int64_t v = -1;
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
  }

  std::filesystem::path dir_;
  EdgeConfig config_;
  std::unique_ptr<EdgeStore> store_;
  std::unique_ptr<Ingest> ingest_;
};

TEST_F(IngestTest, AppliesCountsDuplicatesAndIgnoresOwnOutput) {
  const std::string m = R"({"id":"m1","sku":"apple","delta":5,"reason":"receive"})";
  ingest_->HandleMessage("fs/stock/movements", m);
  ingest_->HandleMessage("fs/stock/movements", m);
  ingest_->HandleMessage("fs/deadletter", R"({"topic":"x","reason":"y"})");
  ingest_->HandleMessage("fs/orders/o-1/state", "{}");
  EXPECT_EQ(ingest_->counters().applied, 1);
  EXPECT_EQ(ingest_->counters().duplicates, 1);
  EXPECT_EQ(ingest_->counters().ignored, 2);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM dead_letters"), 0);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox"), 1);
}

TEST_F(IngestTest, RefusalsAreDeadLetteredWithCustomerDataRedacted) {
  ingest_->HandleMessage("fs/orders/status",
                         R"({"order_id":"o1","status":"created","ts":1764000000000,"lines":[],"customer":{"name":"Secret Person"}})");
  ingest_->HandleMessage("fs/stock/movements", R"({"id":"m1","sku":"apple","delta":-5,"reason":"pick"})");
  EXPECT_EQ(ingest_->counters().refused, 2);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM dead_letters"), 2);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM dead_letters WHERE CAST(payload AS TEXT) LIKE '%Secret%'"), 0);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM dead_letters WHERE CAST(payload AS TEXT) LIKE '%<redacted>%'"), 1);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM dead_letters WHERE code = 'conflict'"), 1);
}

TEST_F(IngestTest, StoreFailureIsRetriedInPlaceUntilItCommits) {
  int failures = 3;
  store_->SetCommitFaultForTest([&] { return failures-- > 0 ? Status::IOError("injected") : Status::Ok(); });
  ingest_->HandleMessage("fs/sensors/c1/climate", R"({"seq":1,"ts":1764000000000,"temp_c":2})");
  EXPECT_EQ(ingest_->counters().store_retries, 3);
  EXPECT_EQ(ingest_->counters().applied, 1);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM climate_readings"), 1);
}

}  // namespace
}  // namespace freshsync::edge
