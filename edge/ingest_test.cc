// Ingest::HandleMessage driven directly (no broker): the per-message decisions, through the
// intake journal and the batch applier.
#include "edge/ingest.h"

#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "edge/store_test_support.h"

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
    ASSERT_TRUE(ingest_->StartIntake().ok());
  }
  void TearDown() override {
    ingest_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  int64_t Int(const std::string& sql) { return test_support::QueryInt(store_->db_for_test(), sql); }

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

// Many messages in one batch, with refusals in the middle: the refused ones become dead
// letters, the others all commit, and the change records stay dense.
TEST_F(IngestTest, RefusalsInsideABatchDoNotLoseTheirNeighbours) {
  uint64_t last = 0;
  for (int i = 0; i < 300; ++i) {
    std::string m;
    if (i % 50 == 25) m = R"({"id":"bad-)" + std::to_string(i) + R"(","sku":"pear","delta":-1000,"reason":"pick"})";
    else if (i % 50 == 30) m = "{not json";
    else m = R"({"id":"m-)" + std::to_string(i) + R"(","sku":"pear","delta":2,"reason":"receive"})";
    last = ingest_->Accept("fs/stock/movements", m);
  }
  ingest_->WaitApplied(last);
  EXPECT_EQ(ingest_->counters().applied, 288);
  EXPECT_EQ(ingest_->counters().refused, 12);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM dead_letters WHERE code = 'conflict'"), 6);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM dead_letters WHERE code = 'invalid'"), 6);
  EXPECT_EQ(Int("SELECT on_hand FROM stock WHERE sku = 'pear'"), 288 * 2);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox"), 288);
  EXPECT_EQ(Int("SELECT MAX(seq) - MIN(seq) + 1 FROM outbox"), 288);
  EXPECT_EQ(Int("SELECT value FROM edge_meta WHERE name = 'intake_applied'"), static_cast<int64_t>(last));
  EXPECT_LT(ingest_->counters().batches, 300);  // batched, not one transaction per message
}

// Inside one batch: an order stock cannot cover is committed as refused (Outcome::kRefused)
// and counts as a refused message (code conflict), not as applied or duplicate; a device clock
// too far ahead is refused (invalid) by the applier, judged on the time the message arrived.
TEST_F(IngestTest, RefusedOrdersAndSkewedClocksCountAsRefusedInABatch) {
  ingest_.reset();
  config_.max_clock_skew_s = 600;
  ingest_ = std::make_unique<Ingest>(config_, *store_);
  ASSERT_TRUE(ingest_->StartIntake().ok());
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string ts = std::to_string(now_ms), ahead = std::to_string(now_ms + 86'400'000);
  ingest_->Accept("fs/stock/movements", R"({"id":"m1","sku":"apple","delta":5,"reason":"receive"})");
  ingest_->Accept("fs/orders/status", R"({"order_id":"o-ok","status":"created","ts":)" + ts + R"(,"lines":[{"sku":"apple","qty":3}]})");
  ingest_->Accept("fs/orders/status", R"({"order_id":"o-short","status":"created","ts":)" + ts + R"(,"lines":[{"sku":"apple","qty":10}]})");
  ingest_->Accept("fs/vehicles/t1/gps", R"({"seq":1,"lat":31.2,"lon":121.4,"ts":)" + ahead + "}");
  const uint64_t last = ingest_->Accept("fs/vehicles/t1/gps", R"({"seq":2,"lat":31.2,"lon":121.4,"ts":)" + ts + "}");
  ingest_->WaitApplied(last);
  const auto& c = ingest_->counters();
  EXPECT_EQ(c.applied, 3);  // m1, o-ok, gps seq 2
  EXPECT_EQ(c.refused, 2);
  EXPECT_EQ(c.duplicates, 0);
  EXPECT_EQ(c.refused_by_code[0], 1);  // the clock
  EXPECT_EQ(c.refused_by_code[1], 1);  // the order
  EXPECT_EQ(Int("SELECT COUNT(*) FROM dead_letters"), 2);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM orders WHERE order_id = 'o-short' AND status = 'refused'"), 1);
  EXPECT_EQ(Int("SELECT reserved FROM stock WHERE sku = 'apple'"), 3);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM vehicle_positions"), 1);
  EXPECT_EQ(Int("SELECT MAX(seq) - MIN(seq) + 1 FROM outbox"), Int("SELECT COUNT(*) FROM outbox"));
}

// A restart replays the journal from the position recorded in the store; entries that were in
// fact applied already (the position is committed with the batch, so only a store restored
// from an older copy can be behind) are absorbed by dedupe.
TEST_F(IngestTest, JournalIsReplayedFromTheRecordedPosition) {
  ingest_->HandleMessage("fs/sensors/c1/climate", R"({"seq":1,"ts":1764000000000,"temp_c":2})");
  ingest_->HandleMessage("fs/sensors/c1/climate", R"({"seq":2,"ts":1764000001000,"temp_c":2})");
  EXPECT_EQ(Int("SELECT value FROM edge_meta WHERE name = 'intake_applied'"), 2);
  ingest_.reset();
  // A clean stop leaves an empty journal (IntakeJournal::RemoveIfAllApplied).
  EXPECT_EQ(*ReadJournalLastIndex(Ingest::JournalDir(config_.store.path)), 0u);
  // What a crash leaves, met by a store whose position is behind it (set to 1 below): entry 2
  // is already in the store (dedupe must absorb it), then entries acknowledged but not yet
  // applied when the process died, one of them a redelivery.
  {
    IntakeJournalOptions o;
    o.dir = Ingest::JournalDir(config_.store.path);
    auto j = IntakeJournal::Open(o, 1).value();
    ASSERT_EQ(*j->Append("fs/sensors/c1/climate", R"({"seq":2,"ts":1764000001000,"temp_c":2})", 4), 2u);
    ASSERT_EQ(*j->Append("fs/sensors/c1/climate", R"({"seq":3,"ts":1764000002000,"temp_c":2})", 5), 3u);
    ASSERT_EQ(*j->Append("fs/sensors/c1/climate", R"({"seq":1,"ts":1764000000000,"temp_c":2})", 6), 4u);  // a redelivery
    ASSERT_EQ(*j->Append("fs/sensors/c1/climate", R"({"seq":4,"ts":1764000003000,"temp_c":2})", 7), 5u);
  }
  ASSERT_EQ(sqlite3_exec(store_->db_for_test(), "UPDATE edge_meta SET value = 1 WHERE name = 'intake_applied'", nullptr, nullptr, nullptr),
            SQLITE_OK);
  ingest_ = std::make_unique<Ingest>(config_, *store_);
  ASSERT_TRUE(ingest_->StartIntake().ok());
  ingest_->WaitApplied(5);
  EXPECT_EQ(ingest_->counters().applied, 2);     // seq 3 and 4
  EXPECT_EQ(ingest_->counters().duplicates, 2);  // entry 2 (seq 2) again, and the redelivery
  EXPECT_EQ(Int("SELECT COUNT(*) FROM climate_readings"), 4);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox"), 4);
  EXPECT_EQ(Int("SELECT value FROM edge_meta WHERE name = 'intake_applied'"), 5);
}

// Little-endian bytes of v (docs/formats.md, "Intake journal").
std::string LE(uint64_t v, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}

// An entry of a version 1 segment, as the previous edged wrote it (no flags byte):
//   entry := body_len:u32 crc:u32 index:u64 body;  body := received_ms:i64 topic_len:u16 topic payload
std::string V1Entry(uint64_t index, int64_t received_ms, const std::string& topic, const std::string& payload) {
  const std::string body = LE(static_cast<uint64_t>(received_ms), 8) + LE(topic.size(), 2) + topic + payload;
  const std::string crc_input = LE(index, 8) + body;
  return LE(body.size(), 4) + LE(Crc32c(crc_input.data(), crc_input.size()), 4) + crc_input;
}

// An upgrade with messages still in the journal: the new edged applies the previous one's
// version 1 segment, each entry exactly once (a redelivery inside it is absorbed by dedupe),
// and a restart afterwards applies nothing again.
TEST_F(IngestTest, AVersion1JournalLeftByThePreviousEdgedIsAppliedExactlyOnce) {
  ingest_.reset();  // a clean stop: the journal directory is empty
  const std::string dir = Ingest::JournalDir(config_.store.path);
  std::filesystem::create_directories(dir);
  {
    std::ofstream out(dir + "/intake-00000000000000000001.log", std::ios::binary);
    out << "FSJRNL01" << V1Entry(1, 11, "fs/stock/movements", R"({"id":"m1","sku":"apple","delta":5,"reason":"receive"})")
        << V1Entry(2, 12, "fs/sensors/c1/climate", R"({"seq":1,"ts":1764000000000,"temp_c":2})")
        << V1Entry(3, 13, "fs/stock/movements", R"({"id":"m1","sku":"apple","delta":5,"reason":"receive"})")  // redelivery
        << V1Entry(4, 14, "fs/stock/movements", R"({"id":"m2","sku":"apple","delta":-2,"reason":"pick"})");
  }
  ingest_ = std::make_unique<Ingest>(config_, *store_);
  ASSERT_TRUE(ingest_->StartIntake().ok());
  ingest_->WaitApplied(4);
  EXPECT_EQ(ingest_->counters().applied, 3);
  EXPECT_EQ(ingest_->counters().duplicates, 1);
  EXPECT_EQ(ingest_->counters().refused, 0);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM climate_readings"), 1);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox"), 3);
  EXPECT_EQ(Int("SELECT value FROM edge_meta WHERE name = 'intake_applied'"), 4);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM dead_letters"), 0);
  // Restarted: nothing is applied a second time, and new messages follow on.
  ingest_.reset();
  ingest_ = std::make_unique<Ingest>(config_, *store_);
  ASSERT_TRUE(ingest_->StartIntake().ok());
  ingest_->HandleMessage("fs/sensors/c1/climate", R"({"seq":2,"ts":1764000001000,"temp_c":2})");
  EXPECT_EQ(ingest_->counters().applied, 1);
  EXPECT_EQ(ingest_->counters().duplicates, 0);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM climate_readings"), 2);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox"), 4);
  EXPECT_EQ(Int("SELECT value FROM edge_meta WHERE name = 'intake_applied'"), 5);
}

// A journal that cannot be written: Accept does not return (returning would acknowledge the
// message) until an append succeeds.
TEST_F(IngestTest, JournalFailureHoldsTheMessageUntilAnAppendSucceeds) {
  ingest_.reset();
  ingest_ = std::make_unique<Ingest>(config_, *store_);
  int failures = 3;
  ingest_->SetJournalFaultForTest([&] { return failures-- > 0 ? Status::IOError("injected") : Status::Ok(); });
  ASSERT_TRUE(ingest_->StartIntake().ok());
  ingest_->HandleMessage("fs/sensors/c1/climate", R"({"seq":1,"ts":1764000000000,"temp_c":2})");
  EXPECT_EQ(ingest_->counters().journal_retries, 3);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM climate_readings"), 1);
}

}  // namespace
}  // namespace freshsync::edge
