#include "edge/store.h"

#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>

#include "audit/export.h"
#include "edge/migrations.h"
#include "edge/store_test_support.h"
#include "freshsync.pb.h"

namespace freshsync::edge {
namespace {

std::pair<int64_t, int64_t> P(int64_t on_hand, int64_t reserved) { return {on_hand, reserved}; }

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (dir_ / "edge.db").string();
    Reopen();
  }
  void TearDown() override {
    store_.reset();
  }
  void Reopen(std::optional<Sealer> sealer = std::nullopt, std::optional<audit::SigningKey> signing_key = std::nullopt) {
    store_.reset();
    StoreOptions o;
    o.path = path_;
    o.clock = &clock_;
    o.sealer = sealer;
    o.signing_key = signing_key;
    auto s = EdgeStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }
  int64_t Int(const std::string& sql) { return test_support::QueryInt(store_->db_for_test(), sql); }
  std::string Text(const std::string& sql) { return test_support::QueryBytes(store_->db_for_test(), sql); }
  Result<EdgeStore::Outcome> Move(const std::string& id, const std::string& sku, int64_t delta, const std::string& reason = "adjust",
                                  const std::string& lot = "", const std::string& expiry = "", const std::string& order = "") {
    return store_->Apply(StockMovement{id, sku, delta, reason, order, lot, clock_.now, expiry}, clock_.now);
  }
  Result<EdgeStore::Outcome> Order(const std::string& id, const std::string& status, std::optional<Customer> customer = std::nullopt,
                                   std::vector<OrderLine> lines = {{"apple", 2}}) {
    OrderStatus o;
    o.order_id = id;
    o.status = status;
    o.ts_ms = clock_.now;
    if (status == "created") o.lines = std::move(lines);
    o.customer = customer;
    return store_->Apply(o, clock_.now);
  }
  // (on_hand, reserved) of a lot, of a SKU's stock row, and an order's reservation of a SKU.
  std::pair<int64_t, int64_t> Lot(const std::string& sku, const std::string& lot) {
    return {Int("SELECT on_hand FROM stock_lots WHERE sku='" + sku + "' AND lot='" + lot + "'"),
            Int("SELECT reserved FROM stock_lots WHERE sku='" + sku + "' AND lot='" + lot + "'")};
  }
  std::pair<int64_t, int64_t> Sku(const std::string& sku) {
    return {Int("SELECT on_hand FROM stock WHERE sku='" + sku + "'"), Int("SELECT reserved FROM stock WHERE sku='" + sku + "'")};
  }
  int64_t ReservedFor(const std::string& order, const std::string& sku) {
    return Int("SELECT IFNULL(SUM(qty), 0) FROM reservations WHERE order_id='" + order + "' AND sku='" + sku + "'");
  }
  v1::ChangeRecord LastRecord() { return Record(Int("SELECT MAX(seq) FROM outbox")); }
  v1::ChangeRecord Record(int64_t seq) {
    v1::ChangeRecord r;
    EXPECT_TRUE(r.ParseFromString(Text("SELECT record FROM outbox WHERE seq = " + std::to_string(seq))));
    return r;
  }
  void ExpectDenseOutbox() {
    EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox"), Int("SELECT IFNULL(MAX(seq),0) FROM outbox"));
    EXPECT_EQ(Int("SELECT COUNT(DISTINCT seq) FROM outbox"), Int("SELECT COUNT(*) FROM outbox"));
  }

  test_support::HandClock clock_{1764000000000};
  test_support::TestDir test_dir_{"edge-store-test"};
  const std::filesystem::path& dir_ = test_dir_.path();
  std::string path_;
  std::unique_ptr<EdgeStore> store_;
};

// The cold-chain audit chain (docs/formats.md): each reading of a sensor is the next link,
// chained in the record it commits with; the first reading of a later hour is preceded by a
// signed seal of the links before it, with seq and hlc still rising together.
TEST_F(StoreTest, ClimateReadingsAreChainedAndSealedHourly) {
  const auto key = audit::SigningKey::FromSeed(std::string(32, '\x03'));
  Reopen(std::nullopt, key);
  const int64_t hour = 3'600'000, t0 = 1767225600000;
  const int64_t ts[] = {t0 + 10, t0 + 20, t0 + hour - 1, t0 + hour + 5, t0 + hour + 6};
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(store_->Apply(ClimateSample{"cold-1", static_cast<uint64_t>(i + 1), ts[i], 2.5 + i, 60.0, {}}, clock_.now).ok());
  ASSERT_TRUE(store_->Apply(ClimateSample{"cold-2", 1, t0, 3.0, {}, {}}, clock_.now).ok());
  ExpectDenseOutbox();
  ASSERT_EQ(Int("SELECT COUNT(*) FROM outbox"), 7);  // 6 readings and one seal
  audit::ChainVerifier v(key.public_key());
  v.Start(0, "");
  uint64_t last_hlc = 0;
  for (int64_t seq = 1; seq <= 7; ++seq) {
    const v1::ChangeRecord r = Record(seq);
    EXPECT_GT(r.hlc(), last_hlc) << "hlc rises with seq";
    last_hlc = r.hlc();
    if (r.has_seal()) {
      EXPECT_EQ(seq, 4) << "the seal goes just before the first link of the next hour";
      EXPECT_EQ(r.entity(), v1::COLDCHAIN_SEAL);
      EXPECT_EQ(r.seal().first_index(), 1u);
      EXPECT_EQ(r.seal().last_index(), 3u);
      EXPECT_EQ(r.seal().last_ts_ms(), ts[2]);
      EXPECT_TRUE(v.AddSeal(r.seal(), r.seq())) << v.first_bad()->reason;
      continue;
    }
    if (r.key() != "cold-1") {
      EXPECT_EQ(r.chain_index(), 1u) << "each sensor has its own chain";
      EXPECT_EQ(r.chain_prev(), audit::GenesisHash());
      continue;
    }
    EXPECT_TRUE(v.AddLink(audit::LinkOf(r), r.seq(), r.chain_prev(), r.chain_hash())) << v.first_bad()->reason;
  }
  EXPECT_TRUE(v.ok());
  EXPECT_EQ(v.links(), 5u);
  EXPECT_EQ(v.seals(), 1u);
  EXPECT_EQ(Int("SELECT last_index FROM coldchain_heads WHERE sensor = 'cold-1'"), 5);
  EXPECT_EQ(Int("SELECT sealed_index FROM coldchain_heads WHERE sensor = 'cold-1'"), 3);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM coldchain_links"), 6);
  // The export's read joins each link to its reading and rebuilds the same link.
  auto reader = StoreReader::Open(path_, 1000);
  ASSERT_TRUE(reader.ok());
  audit::ExportHeader h;
  std::vector<audit::ExportItem> items;
  ASSERT_TRUE(reader->ColdchainExport("cold-1", t0 + 15, t0 + hour + 5, &h, &items).ok());
  ASSERT_EQ(items.size(), 4u);  // links 2, 3, the seal after link 3, link 4
  EXPECT_EQ(h.before_index, 1u);
  auto check = audit::VerifyExport(audit::WriteExport(h, items, key), key.public_key());
  EXPECT_TRUE(check.ok) << check.error;
  EXPECT_EQ(check.seals, 1u);
}

TEST_F(StoreTest, OpensInWalAtLatestVersion) {
  EXPECT_EQ(Text("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(Int("PRAGMA user_version"), LatestStoreVersion());
  EXPECT_EQ(Int("PRAGMA synchronous"), 1);  // NORMAL
}

TEST_F(StoreTest, StrictDurabilityIsSynchronousFull) {
  store_.reset();
  StoreOptions o;
  o.path = path_;
  o.durability = Durability::kStrict;
  auto s = EdgeStore::Open(o);
  ASSERT_TRUE(s.ok());
  store_ = std::move(*s);
  EXPECT_EQ(Int("PRAGMA synchronous"), 2);  // FULL
}

TEST_F(StoreTest, MovementAppliesOnceWithOutboxRecord) {
  ASSERT_EQ(*Move("m-1", "apple", 10, "receive"), EdgeStore::Outcome::kApplied);
  EXPECT_EQ(*Move("m-1", "apple", 10, "receive"), EdgeStore::Outcome::kDuplicate);
  EXPECT_EQ(Int("SELECT on_hand FROM stock WHERE sku='apple'"), 10);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM stock_movements"), 1);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox"), 1);
  EXPECT_EQ(Int("SELECT priority FROM outbox WHERE seq=1"), 1);
  auto r = Record(1);
  EXPECT_EQ(r.seq(), 1u);
  EXPECT_EQ(r.entity(), v1::STOCK);
  EXPECT_EQ(r.key(), "apple");
  EXPECT_EQ(r.version(), 1u);
  EXPECT_EQ(r.stock().on_hand(), 10);
  EXPECT_EQ(r.stock().movement_id(), "m-1");
  EXPECT_GT(r.hlc(), 0u);
}

// A dock scan is a record only: claimed by scan id, one DOCK_SCAN record, its row; stock untouched.
TEST_F(StoreTest, DockScanAppliesOnceAsARecordOnly) {
  ASSERT_EQ(*Move("m-1", "apple", 10, "receive"), EdgeStore::Outcome::kApplied);
  const DockScan scan{"door-3", "sc-1", "P-77", "apple", "L1", 40, "out", clock_.now};
  ASSERT_EQ(*store_->Apply(scan, clock_.now), EdgeStore::Outcome::kApplied);
  EXPECT_EQ(*store_->Apply(scan, clock_.now), EdgeStore::Outcome::kDuplicate);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM dock_scans"), 1);
  EXPECT_EQ(Int("SELECT qty FROM dock_scans WHERE scan_id='sc-1'"), 40);
  EXPECT_EQ(Int("SELECT outbox_seq FROM dock_scans WHERE scan_id='sc-1'"), 2);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM dedupe WHERE kind = 5 AND key = 'sc-1'"), 1);
  EXPECT_EQ(Sku("apple"), std::make_pair(int64_t{10}, int64_t{0}));
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox"), 2);
  EXPECT_EQ(Int("SELECT priority FROM outbox WHERE seq=2"), 1);
  auto r = Record(2);
  EXPECT_EQ(r.entity(), v1::DOCK_SCAN);
  EXPECT_EQ(r.key(), "sc-1");
  EXPECT_EQ(r.version(), 1u);
  EXPECT_EQ(r.ts_ms(), clock_.now);
  EXPECT_EQ(r.dock_scan().door(), "door-3");
  EXPECT_EQ(r.dock_scan().pallet_id(), "P-77");
  EXPECT_EQ(r.dock_scan().lot(), "L1");
  EXPECT_EQ(r.dock_scan().qty(), 40);
  EXPECT_EQ(r.dock_scan().direction(), "out");
  EXPECT_TRUE(wire::CheckChangeRecord(r).ok()) << wire::CheckChangeRecord(r).ToString();
  ExpectDenseOutbox();
}

TEST_F(StoreTest, NegativeStockIsRefusedWhole) {
  ASSERT_TRUE(Move("m-1", "apple", 5, "receive").ok());
  auto r = Move("m-2", "apple", -6, "pick");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kConflict);
  EXPECT_NE(r.status().message().find("negative stock"), std::string::npos);
  EXPECT_EQ(Int("SELECT on_hand FROM stock WHERE sku='apple'"), 5);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM stock_movements"), 1);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM dedupe WHERE key='m-2'"), 0);  // refusal leaves no trace
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox"), 1);
  // The same id can be applied later, once there is stock.
  ASSERT_TRUE(Move("m-3", "apple", 10, "receive").ok());
  EXPECT_EQ(*Move("m-2", "apple", -6, "pick"), EdgeStore::Outcome::kApplied);
  EXPECT_EQ(Int("SELECT on_hand FROM stock WHERE sku='apple'"), 9);
  // Unknown sku going negative.
  EXPECT_EQ(Move("m-4", "pear", -1, "pick").status().code(), StatusCode::kConflict);
  ExpectDenseOutbox();
}

TEST_F(StoreTest, VersionsIncreasePerEntityAndSeqIsDense) {
  ASSERT_TRUE(Move("a1", "apple", 1).ok());
  ASSERT_TRUE(Move("p1", "pear", 1).ok());
  ASSERT_TRUE(Move("a2", "apple", 1).ok());
  ASSERT_TRUE(store_->Apply(GpsFix{"t1", 1, 31, 121, clock_.now, {}, {}, {}}, clock_.now).ok());
  ASSERT_TRUE(store_->Apply(GpsFix{"t1", 2, 31, 121, clock_.now, 50.0, {}, {}}, clock_.now).ok());
  ASSERT_TRUE(store_->Apply(ClimateSample{"c1", 1, clock_.now, 3.25, {}, {}}, clock_.now).ok());
  EXPECT_EQ(*store_->Apply(GpsFix{"t1", 2, 31, 121, clock_.now, {}, {}, {}}, clock_.now), EdgeStore::Outcome::kDuplicate);
  EXPECT_EQ(Record(3).version(), 2u);  // apple again
  EXPECT_EQ(Record(2).version(), 1u);
  EXPECT_EQ(Record(5).version(), 2u);  // t1 again
  EXPECT_EQ(Record(5).position().speed_dkmh(), 500u);
  EXPECT_EQ(Record(6).climate().temp_dc(), 325);
  EXPECT_EQ(Int("SELECT priority FROM outbox WHERE seq=4"), 0);
  EXPECT_EQ(Int("SELECT priority FROM outbox WHERE seq=6"), 0);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox"), 6);
  uint64_t prev = 0;
  for (int s = 1; s <= 6; ++s) {
    EXPECT_GT(Record(s).hlc(), prev);
    prev = Record(s).hlc();
  }
  ExpectDenseOutbox();
}

// The outbox writer remembers the versions a transaction wrote (edge/outbox_writer.h): they
// must count on within a batch, go with a rolled-back batch, and give way to another writer.
TEST_F(StoreTest, VersionsInABatchFollowRollbacksAndOtherWriters) {
  auto fix = [&](uint64_t seq) { return GpsFix{"t1", seq, 31, 121, clock_.now, {}, {}, {}}; };
  ASSERT_TRUE(store_->BeginBatch().ok());
  for (uint64_t s = 1; s <= 3; ++s) ASSERT_TRUE(store_->ApplyInBatch(fix(s), clock_.now).ok());
  ASSERT_TRUE(store_->CommitBatch().ok());
  EXPECT_EQ(Record(1).version(), 1u);
  EXPECT_EQ(Record(3).version(), 3u);
  // A rolled-back batch leaves nothing behind, remembered versions included.
  ASSERT_TRUE(store_->BeginBatch().ok());
  ASSERT_TRUE(store_->ApplyInBatch(fix(4), clock_.now).ok());
  ASSERT_TRUE(store_->ApplyInBatch(fix(5), clock_.now).ok());
  store_->RollbackBatch();
  ASSERT_TRUE(store_->Apply(fix(4), clock_.now).ok());
  EXPECT_EQ(Record(4).version(), 4u);
  // Another connection moves the row between two transactions (the downstream applier and the
  // disk quota write versions on their own connections): the next record follows it.
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "UPDATE entity_versions SET version = 10 WHERE key = 't1'", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  ASSERT_TRUE(store_->Apply(fix(5), clock_.now).ok());
  EXPECT_EQ(Record(5).version(), 11u);
  EXPECT_EQ(Int("SELECT version FROM entity_versions WHERE key = 't1'"), 11);
  ExpectDenseOutbox();
}

TEST_F(StoreTest, SeqContinuesPastTrimmedOutbox) {
  ASSERT_TRUE(Move("a1", "apple", 1).ok());
  ASSERT_TRUE(Move("a2", "apple", 1).ok());
  ASSERT_EQ(sqlite3_exec(store_->db_for_test(), "INSERT INTO sync_state VALUES('acked_seq', 2); DELETE FROM outbox;", nullptr, nullptr, nullptr),
            SQLITE_OK);
  ASSERT_TRUE(Move("a3", "apple", 1).ok());
  EXPECT_EQ(Int("SELECT MAX(seq) FROM outbox"), 3);
}

TEST_F(StoreTest, HlcSurvivesRestartEvenIfTheClockStepsBack) {
  ASSERT_TRUE(Move("a1", "apple", 1).ok());
  const uint64_t before = Record(1).hlc();
  clock_.now -= 3600 * 1000;  // wall clock stepped back an hour while we were down
  Reopen();
  ASSERT_TRUE(Move("a2", "apple", 1).ok());
  EXPECT_GT(Record(2).hlc(), before);
}

TEST_F(StoreTest, HlcSurvivesRestartAfterTheOutboxWasTrimmed) {
  ASSERT_TRUE(Move("a1", "apple", 1).ok());
  const uint64_t before = Record(1).hlc();
  ASSERT_EQ(sqlite3_exec(store_->db_for_test(), "INSERT INTO sync_state VALUES('acked_seq', 1); DELETE FROM outbox;", nullptr, nullptr, nullptr),
            SQLITE_OK);
  clock_.now -= 3600 * 1000;
  Reopen();
  ASSERT_TRUE(Move("a2", "apple", 1).ok());
  EXPECT_GT(Record(2).hlc(), before);
}

TEST_F(StoreTest, OrderLifecycle) {
  ASSERT_TRUE(Move("r-1", "apple", 10, "receive").ok());  // seq 1
  ASSERT_EQ(*Order("o-1", "created"), EdgeStore::Outcome::kApplied);
  EXPECT_EQ(*Order("o-1", "created"), EdgeStore::Outcome::kDuplicate);
  auto r = Order("o-1", "packed");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kConflict);
  EXPECT_NE(r.status().message().find("illegal order transition"), std::string::npos);
  for (const char* s : {"accepted", "picking", "packed", "dispatched", "delivered"}) ASSERT_TRUE(Order("o-1", s).ok()) << s;
  EXPECT_EQ(Text("SELECT status FROM orders WHERE order_id='o-1'"), "delivered");
  EXPECT_EQ(Int("SELECT version FROM orders WHERE order_id='o-1'"), 6);
  EXPECT_EQ(Order("o-1", "cancelled").status().code(), StatusCode::kConflict);
  EXPECT_EQ(Order("o-2", "accepted").status().code(), StatusCode::kConflict);
  // seq 2: the reservation's STOCK record, then created, accepted, picking, packed; dispatched
  // released the 2 never picked (STOCK, seq 7) before its ORDER record (seq 8).
  EXPECT_EQ(Record(2).stock().reason(), "reserve");
  EXPECT_EQ(Record(7).stock().reason(), "release");
  EXPECT_EQ(Sku("apple"), P(10, 0));
  auto last = Record(9);
  EXPECT_EQ(last.entity(), v1::ORDER);
  EXPECT_EQ(last.order().status(), "delivered");
  ASSERT_EQ(last.order().lines_size(), 1);
  EXPECT_EQ(last.version(), 6u);
  ExpectDenseOutbox();
}

TEST_F(StoreTest, CustomerDataIsSealedNeverClear) {
  std::array<unsigned char, Sealer::kKeyBytes> key{};
  key.fill(7);
  const Sealer sealer = Sealer::FromKey(key);
  Reopen(sealer);
  ASSERT_TRUE(Move("r-1", "apple", 10, "receive").ok());
  ASSERT_TRUE(Order("o-1", "created", Customer{"Li Wei", "+86 13800000000", "88 Century Avenue"}).ok());
  const std::string sealed = Text("SELECT customer_sealed FROM orders");
  ASSERT_FALSE(sealed.empty());
  EXPECT_EQ(sealed.find("Li Wei"), std::string::npos);
  auto opened = sealer.Open(sealed);
  ASSERT_TRUE(opened.ok());
  EXPECT_NE(opened->find("Li Wei"), std::string::npos);
  EXPECT_EQ(Record(3).order().customer_sealed(), sealed);
  // Nowhere in the database file in clear.
  store_.reset();
  for (const char* f : {"edge.db", "edge.db-wal"}) {
    std::ifstream in(dir_ / f, std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(all.find("Li Wei"), std::string::npos) << f;
    EXPECT_EQ(all.find("13800000000"), std::string::npos) << f;
  }
}

TEST_F(StoreTest, CustomerDataIsDroppedWithoutKey) {
  ASSERT_TRUE(Move("r-1", "apple", 10, "receive").ok());
  ASSERT_TRUE(Order("o-1", "created", Customer{"Li Wei", "1", "2"}).ok());
  EXPECT_EQ(Int("SELECT customer_sealed IS NULL FROM orders"), 1);
  EXPECT_EQ(store_->customers_dropped(), 1);
}

TEST_F(StoreTest, CommitFailureWritesNothingAndIsAnIoError) {
  int failures = 1;
  store_->SetCommitFaultForTest([&] { return failures-- > 0 ? Status::IOError("disk full (injected)") : Status::Ok(); });
  auto r = Move("a1", "apple", 3);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIOError);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox"), 0);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM dedupe"), 0);
  EXPECT_EQ(*Move("a1", "apple", 3), EdgeStore::Outcome::kApplied);  // the retry applies it
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox"), 1);
}

TEST_F(StoreTest, RealDiskFullIsAnIoError) {
  // max_page_count makes SQLite report SQLITE_FULL exactly as a full disk does.
  ASSERT_TRUE(Move("a0", "apple", 1).ok());
  const int64_t pages = Int("PRAGMA page_count");
  ASSERT_EQ(sqlite3_exec(store_->db_for_test(), ("PRAGMA max_page_count=" + std::to_string(pages)).c_str(), nullptr, nullptr, nullptr), SQLITE_OK);
  Status last;
  for (int i = 0; i < 2000 && last.ok(); ++i) {
    auto r = store_->Apply(ClimateSample{"c" + std::to_string(i), 1, clock_.now, 1.0, {}, {}}, clock_.now);
    last = r.ok() ? Status::Ok() : r.status();
  }
  EXPECT_EQ(last.code(), StatusCode::kIOError) << last.ToString();
  ExpectDenseOutbox();
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox"), Int("SELECT COUNT(*) FROM dedupe"));
}

TEST_F(StoreTest, DeadLettersAreKeptTruncated) {
  DeadLetter dl{"fs/x", "unknown topic", "invalid", std::string(10000, 'p'), 10000, clock_.now};
  ASSERT_TRUE(store_->AddDeadLetter(dl).ok());
  EXPECT_EQ(Int("SELECT length(payload) FROM dead_letters"), static_cast<int64_t>(EdgeStore::kMaxDeadLetterPayload));
  EXPECT_EQ(Int("SELECT payload_bytes FROM dead_letters"), 10000);
  auto rows = ReadDeadLetters(path_, 10);
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].reason, "unknown topic");
}

TEST_F(StoreTest, SummaryForEdgectl) {
  ASSERT_TRUE(Move("a1", "apple", 1).ok());
  ASSERT_TRUE(Move("a2", "apple", 1).ok());
  ASSERT_TRUE(Move("a3", "apple", 1).ok());
  ASSERT_TRUE(store_->ResetLinkState().ok());
  ASSERT_EQ(sqlite3_exec(store_->db_for_test(), "INSERT INTO sync_state VALUES('acked_seq', 1)", nullptr, nullptr, nullptr), SQLITE_OK);
  auto s = ReadStoreSummary(path_);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->last_seq, 3);
  EXPECT_EQ(s->acked_seq, 1);
  EXPECT_EQ(s->backlog, 2);
  EXPECT_FALSE(s->link_up);
  EXPECT_EQ(ReadStoreSummary((dir_ / "nope.db").string()).status().code(), StatusCode::kNotFound);

  // edgectl backlog: the same backlog, by lane (stock is lane 1, climate lane 0).
  ASSERT_TRUE(store_->Apply(ClimateSample{"c1", 1, clock_.now, 1.0, {}, {}}, clock_.now).ok());
  ASSERT_TRUE(store_->Apply(ClimateSample{"c1", 2, clock_.now, 1.5, {}, {}}, clock_.now).ok());
  auto b = ReadBacklog(path_);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->last_seq, 5);
  EXPECT_EQ(b->acked_seq, 1);
  EXPECT_EQ(b->backlog, 4);
  EXPECT_EQ(b->priority, 2);
  EXPECT_EQ(b->bulk, 2);
  EXPECT_EQ(b->backlog, ReadStoreSummary(path_)->backlog);
  EXPECT_EQ(b->oldest_created_ms, Int("SELECT MIN(created_ms) FROM outbox WHERE seq > 1"));
  EXPECT_GT(b->oldest_created_ms, 0);
  // Everything acknowledged: nothing left, no oldest.
  ASSERT_EQ(sqlite3_exec(store_->db_for_test(), "UPDATE sync_state SET value = 5 WHERE name = 'acked_seq'", nullptr, nullptr,
                         nullptr),
            SQLITE_OK);
  b = ReadBacklog(path_);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->backlog, 0);
  EXPECT_EQ(b->priority + b->bulk, 0);
  EXPECT_EQ(b->oldest_created_ms, 0);
  EXPECT_EQ(ReadBacklog((dir_ / "nope.db").string()).status().code(), StatusCode::kNotFound);
}

// The readers' own numbers: Head() is the outbox's max(seq) as stored (/metrics, the systemd
// monitor), while the summary never shows a last seq below acked_seq (edgectl status).
TEST_F(StoreTest, StoreReaderForMetricsAndMonitor) {
  ASSERT_TRUE(Move("a1", "apple", 1).ok());
  ASSERT_TRUE(Move("a2", "apple", 1).ok());
  ASSERT_TRUE(store_->AddDeadLetter(DeadLetter{"fs/x", "bad", "invalid", "p", 1, clock_.now}).ok());
  ASSERT_TRUE(store_->AddDeadLetter(DeadLetter{"fs/y", "rule", "conflict", "q", 1, clock_.now}).ok());
  ASSERT_TRUE(store_->AddDeadLetter(DeadLetter{"fs/z", "rule", "conflict", "r", 1, clock_.now}).ok());
  ASSERT_EQ(sqlite3_exec(store_->db_for_test(), "INSERT INTO sync_state VALUES('acked_seq', 9)", nullptr, nullptr, nullptr), SQLITE_OK);
  auto r = StoreReader::Open(path_, 500);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto h = r->Head();
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->last_seq, 2);
  EXPECT_EQ(h->acked_seq, 9);
  EXPECT_EQ(r->Summary()->last_seq, 9);
  EXPECT_EQ(*r->OldestUnackedCreatedMs(), 0);
  auto by_code = r->DeadLettersByCode();
  ASSERT_TRUE(by_code.ok());
  EXPECT_EQ(*by_code, (std::vector<std::pair<std::string, int64_t>>{{"conflict", 2}, {"invalid", 1}}));
  auto replayable = r->ReplayableDeadLetters();
  ASSERT_TRUE(replayable.ok());
  ASSERT_EQ(replayable->size(), 2u);
  EXPECT_EQ((*replayable)[0].payload, "q");
  EXPECT_EQ(r->DeadLetter((*replayable)[1].id)->topic, "fs/z");
  EXPECT_EQ(r->DeadLetter(12345).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(*r->OpenColdchainAlerts(), 0);
  EXPECT_TRUE(r->IsEdgeStore());
  std::vector<std::string> findings;
  ASSERT_TRUE(r->IntegrityCheck(&findings).ok());
  EXPECT_TRUE(findings.empty());
  EXPECT_EQ(StoreReader::Open((dir_ / "nope.db").string(), 500).status().code(), StatusCode::kNotFound);
}

// The committed v1 fixture (edge/testdata/make_fixture_v1.sh) migrates to the latest schema,
// keeps its rows, and ends with the same schema as a fresh database.
TEST_F(StoreTest, MigratesV1Fixture) {
  store_.reset();
  const auto fixture = dir_ / "v1.db";
  std::filesystem::copy_file(std::string(FRESHSYNC_EDGE_TESTDATA) + "/store_v1.db", fixture);
  StoreOptions o;
  o.path = fixture.string();
  o.clock = &clock_;
  auto s = EdgeStore::Open(o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  store_ = std::move(*s);
  EXPECT_EQ(Int("PRAGMA user_version"), LatestStoreVersion());
  EXPECT_EQ(Int("SELECT on_hand FROM stock WHERE sku='apple'"), 10);
  EXPECT_EQ(Lot("apple", ""), P(10, 0));  // migration 4: existing stock is lot ""
  EXPECT_EQ(Text("SELECT code FROM dead_letters"), "invalid");
  // Applying continues the fixture's seq, versions and HLC.
  ASSERT_EQ(*Move("m-2", "apple", -4, "pick"), EdgeStore::Outcome::kApplied);
  EXPECT_EQ(*Move("m-1", "apple", 10, "receive"), EdgeStore::Outcome::kDuplicate);
  auto r = Record(3);
  EXPECT_EQ(r.version(), 2u);
  EXPECT_EQ(r.stock().on_hand(), 6);
  EXPECT_GT(r.hlc(), 115670016000065536u);
  EXPECT_EQ(Int("SELECT version FROM stock WHERE sku='apple'"), 2);
  // Reservations work on migrated stock, and the migrated CHECKs hold.
  ASSERT_EQ(*Order("o-9", "created", std::nullopt, {{"apple", 6}}), EdgeStore::Outcome::kApplied);
  EXPECT_EQ(Sku("apple"), P(6, 6));
  EXPECT_EQ(Move("m-3", "apple", -1, "spoil").status().code(), StatusCode::kConflict);
  ExpectDenseOutbox();

  auto schema = [](sqlite3* db) {
    std::map<std::string, std::string> out;
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL", -1, &st, nullptr);
    while (sqlite3_step(st) == SQLITE_ROW) {
      std::string sql = reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
      std::string squashed;
      for (char c : sql)
        if (!std::isspace(static_cast<unsigned char>(c))) squashed += c;
      out[reinterpret_cast<const char*>(sqlite3_column_text(st, 0))] = squashed;
    }
    sqlite3_finalize(st);
    return out;
  };
  const auto migrated = schema(store_->db_for_test());
  Reopen();  // the fresh database of this test
  const auto fresh = schema(store_->db_for_test());
  EXPECT_EQ(migrated, fresh);
}

TEST_F(StoreTest, CreatedOrderReservesFefoAndPickConsumesIt) {
  ASSERT_TRUE(Move("r-late", "apple", 5, "receive", "L-late", "2026-12-20").ok());
  ASSERT_TRUE(Move("r-none", "apple", 5, "receive", "L-none").ok());
  ASSERT_TRUE(Move("r-early", "apple", 4, "receive", "L-early", "2026-12-01").ok());
  ASSERT_TRUE(Move("r-pear", "pear", 3, "receive", "P1", "2026-12-05").ok());
  EXPECT_EQ(Text("SELECT expiry FROM stock_lots WHERE sku='apple' AND lot='L-early'"), "2026-12-01");
  EXPECT_EQ(Text("SELECT expiry FROM stock_movements WHERE id='r-late'"), "2026-12-20");
  const int64_t before = Int("SELECT MAX(seq) FROM outbox");
  ASSERT_EQ(*Order("o-1", "created", std::nullopt, {{"apple", 6}, {"pear", 1}, {"apple", 1}}), EdgeStore::Outcome::kApplied);
  // 7 apples: the 4 expiring first, then 3 of the next one; lots without expiry last.
  EXPECT_EQ(Lot("apple", "L-early"), P(4, 4));
  EXPECT_EQ(Lot("apple", "L-late"), P(5, 3));
  EXPECT_EQ(Lot("apple", "L-none"), P(5, 0));
  EXPECT_EQ(Sku("apple"), P(14, 7));
  EXPECT_EQ(Sku("pear"), P(3, 1));
  // One STOCK record per SKU touched, with on_hand, reserved and the order; then the ORDER record.
  ASSERT_EQ(Int("SELECT MAX(seq) FROM outbox"), before + 3);
  auto apple = Record(before + 1), pear = Record(before + 2);
  EXPECT_EQ(apple.key(), "apple");
  EXPECT_EQ(apple.stock().on_hand(), 14);
  EXPECT_EQ(apple.stock().reserved(), 7);
  EXPECT_EQ(apple.stock().order_id(), "o-1");
  EXPECT_EQ(apple.stock().reason(), "reserve");
  EXPECT_EQ(apple.version(), 4u);  // three receives, then the reservation
  EXPECT_EQ(Int("SELECT version FROM stock WHERE sku='apple'"), 4);
  EXPECT_EQ(pear.stock().reserved(), 1);
  EXPECT_EQ(Record(before + 3).order().status(), "created");

  // Free stock is 7 apples: an unrelated 8-apple pick is refused whole, a 7-apple one is not.
  EXPECT_EQ(Move("x-1", "apple", -8, "pick").status().code(), StatusCode::kConflict);
  // A pick for the order takes its reservation (FEFO) before any free stock.
  ASSERT_EQ(*Move("p-1", "apple", -5, "pick", "", "", "o-1"), EdgeStore::Outcome::kApplied);
  EXPECT_EQ(Lot("apple", "L-early"), P(0, 0));
  EXPECT_EQ(Lot("apple", "L-late"), P(4, 2));
  EXPECT_EQ(ReservedFor("o-1", "apple"), 2);
  auto pick = LastRecord();
  EXPECT_EQ(pick.stock().on_hand(), 9);
  EXPECT_EQ(pick.stock().reserved(), 2);
  EXPECT_EQ(pick.stock().order_id(), "o-1");
  EXPECT_EQ(pick.stock().movement_id(), "p-1");
  ASSERT_EQ(*Move("x-2", "apple", -7, "pick"), EdgeStore::Outcome::kApplied);
  EXPECT_EQ(Sku("apple"), P(2, 2));
  // Cancel returns what is left of the reservation, as a STOCK record per SKU.
  const int64_t at_cancel = Int("SELECT MAX(seq) FROM outbox");
  ASSERT_EQ(*Order("o-1", "cancelled"), EdgeStore::Outcome::kApplied);
  EXPECT_EQ(Sku("apple"), P(2, 0));
  EXPECT_EQ(Sku("pear"), P(3, 0));
  EXPECT_EQ(Int("SELECT COUNT(*) FROM reservations"), 0);
  ASSERT_EQ(Int("SELECT MAX(seq) FROM outbox"), at_cancel + 3);
  EXPECT_EQ(Record(at_cancel + 1).key(), "apple");
  EXPECT_EQ(Record(at_cancel + 1).stock().reserved(), 0);
  EXPECT_EQ(Record(at_cancel + 1).stock().reason(), "release");
  EXPECT_EQ(Record(at_cancel + 2).key(), "pear");
  EXPECT_EQ(LastRecord().order().status(), "cancelled");
  ExpectDenseOutbox();
}

TEST_F(StoreTest, OrderStockCannotCoverIsRefusedVisiblyAndOnce) {
  ASSERT_TRUE(Move("r-1", "apple", 5, "receive").ok());
  ASSERT_TRUE(Move("r-2", "pear", 1, "receive").ok());
  // apple could be reserved, pear cannot: nothing is reserved (all or nothing).
  ASSERT_EQ(*Order("o-1", "created", std::nullopt, {{"apple", 2}, {"pear", 3}}), EdgeStore::Outcome::kRefused);
  EXPECT_EQ(Sku("apple"), P(5, 0));
  EXPECT_EQ(Sku("pear"), P(1, 0));
  EXPECT_EQ(Int("SELECT COUNT(*) FROM reservations"), 0);
  EXPECT_EQ(Text("SELECT status FROM orders WHERE order_id='o-1'"), "refused");
  // HQ sees it: one ORDER record `refused`, with its lines; no STOCK record.
  EXPECT_EQ(Int("SELECT COUNT(*) FROM outbox"), 3);
  auto r = Record(3);
  EXPECT_EQ(r.entity(), v1::ORDER);
  EXPECT_EQ(r.order().status(), "refused");
  EXPECT_EQ(r.order().lines_size(), 2);
  // The dead letter names order, sku, needed and free.
  const std::string reason = Text("SELECT reason FROM dead_letters");
  EXPECT_EQ(reason, "insufficient stock: order o-1 needs 3 of sku pear, 1 free; nothing reserved");
  EXPECT_EQ(Text("SELECT code FROM dead_letters"), "conflict");
  EXPECT_EQ(Text("SELECT topic FROM dead_letters"), "fs/orders/status");
  // Published only after commit: dead-letter notice, retained state, order event.
  auto pubs = store_->TakePublications();
  ASSERT_EQ(pubs.size(), 3u);
  EXPECT_EQ(pubs[0].topic, "fs/deadletter");
  EXPECT_NE(pubs[0].payload.find("needs 3 of sku pear, 1 free"), std::string::npos);
  EXPECT_EQ(pubs[1].topic, "fs/orders/o-1/state");
  EXPECT_TRUE(pubs[1].retained);
  EXPECT_NE(pubs[1].payload.find("\"status\":\"refused\""), std::string::npos);
  EXPECT_EQ(pubs[2].topic, "fs/events/orders");
  EXPECT_NE(pubs[2].payload.find("\"event\":\"refused\""), std::string::npos);
  // A redelivery has no second effect; the order goes nowhere from refused.
  EXPECT_EQ(*Order("o-1", "created", std::nullopt, {{"apple", 2}, {"pear", 3}}), EdgeStore::Outcome::kDuplicate);
  EXPECT_EQ(Order("o-1", "accepted").status().code(), StatusCode::kConflict);
  EXPECT_EQ(Order("o-1", "cancelled").status().code(), StatusCode::kConflict);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM dead_letters"), 1);
  EXPECT_TRUE(store_->TakePublications().empty());
  ExpectDenseOutbox();
}

TEST_F(StoreTest, RefusalThatFailsToCommitLeavesNothing) {
  ASSERT_TRUE(Move("r-1", "apple", 1, "receive").ok());
  store_->TakePublications();
  int failures = 1;
  store_->SetCommitFaultForTest([&] { return failures-- > 0 ? Status::IOError("disk full (injected)") : Status::Ok(); });
  auto r = Order("o-1", "created", std::nullopt, {{"apple", 2}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIOError);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM dead_letters"), 0);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM orders"), 0);
  EXPECT_TRUE(store_->TakePublications().empty());
  EXPECT_EQ(*Order("o-1", "created", std::nullopt, {{"apple", 2}}), EdgeStore::Outcome::kRefused);  // the retry
  EXPECT_EQ(Int("SELECT COUNT(*) FROM dead_letters"), 1);
  EXPECT_EQ(store_->TakePublications().size(), 3u);
}

TEST_F(StoreTest, DispatchReleasesUnpickedReservation) {
  ASSERT_TRUE(Move("r-1", "apple", 10, "receive", "A", "2026-12-01").ok());
  ASSERT_EQ(*Order("o-1", "created", std::nullopt, {{"apple", 4}}), EdgeStore::Outcome::kApplied);
  for (const char* s : {"accepted", "picking"}) ASSERT_TRUE(Order("o-1", s).ok());
  ASSERT_EQ(*Move("p-1", "apple", -3, "pick", "A", "", "o-1"), EdgeStore::Outcome::kApplied);
  EXPECT_EQ(Sku("apple"), P(7, 1));
  for (const char* s : {"packed", "dispatched"}) ASSERT_TRUE(Order("o-1", s).ok());
  EXPECT_EQ(Sku("apple"), P(7, 0));
  EXPECT_EQ(Lot("apple", "A"), P(7, 0));
  ASSERT_TRUE(Order("o-1", "delivered").ok());
  EXPECT_EQ(Sku("apple"), P(7, 0));
  ExpectDenseOutbox();
}

TEST_F(StoreTest, RefusesANewerSchema) {
  ASSERT_EQ(sqlite3_exec(store_->db_for_test(), "PRAGMA user_version=99", nullptr, nullptr, nullptr), SQLITE_OK);
  store_.reset();
  StoreOptions o;
  o.path = path_;
  auto s = EdgeStore::Open(o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace freshsync::edge

// ---------- Escrow (docs/escrow.md) ----------

namespace freshsync::edge {
namespace {

v1::DownCommand EscrowOrder(uint64_t down_seq, const std::string& id, const std::string& sku, int64_t qty) {
  v1::DownCommand c;
  c.set_down_seq(down_seq);
  c.set_kind(v1::DOWN_ORDER);
  c.set_command_id("order:" + id);
  c.mutable_order()->set_order_id(id);
  c.mutable_order()->set_escrow(true);
  auto* l = c.mutable_order()->add_lines();
  l->set_sku(sku);
  l->set_qty(qty);
  return c;
}

class EscrowStoreTest : public StoreTest {
 protected:
  v1::EscrowGrant Grant(const std::string& sku) {
    v1::ChangeRecord r = Record(Int("SELECT MAX(seq) FROM outbox WHERE entity = 9 AND key = '" + sku + "'"));
    EXPECT_EQ(r.entity(), v1::ESCROW);
    return r.escrow();
  }
  int64_t Held(const std::string& sku) { return ReservedFor(EdgeStore::kEscrowHolder, sku); }
};

}  // namespace

// The allotment is a reservation: local orders cannot take it, it tops up from receipts, an
// escrow order takes exactly it, and every change goes up as an ESCROW record.
TEST_F(EscrowStoreTest, TheAllotmentIsReservedToppedUpAndConsumedByEscrowOrders) {
  ASSERT_TRUE(Move("m1", "apple", 6, "receive").ok());
  ASSERT_TRUE(store_->ConfigureEscrow({{"apple", 10}}, clock_.now).ok());
  EXPECT_EQ(Held("apple"), 6);  // as far as stock allows
  EXPECT_EQ(Sku("apple"), (std::pair<int64_t, int64_t>{6, 6}));
  EXPECT_EQ(Grant("apple").given(), 6);
  EXPECT_EQ(*Order("pos-1", "created", std::nullopt, {{"apple", 1}}), EdgeStore::Outcome::kRefused);  // nothing free
  ASSERT_TRUE(Move("m2", "apple", 7, "receive").ok());
  EXPECT_EQ(Held("apple"), 10);
  EXPECT_EQ(Sku("apple"), (std::pair<int64_t, int64_t>{13, 10}));
  EXPECT_EQ(Grant("apple").given(), 10);
  EXPECT_EQ(Grant("apple").held(), 10);
  EXPECT_EQ(*Order("pos-2", "created", std::nullopt, {{"apple", 3}}), EdgeStore::Outcome::kApplied);  // the free 3
  // The hub accepted 4 while the site was offline: they come out of the allotment.
  auto r = store_->ApplyDownCommand(EscrowOrder(1, "hq-1", "apple", 4), clock_.now);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->effect, EdgeStore::DownResult::Effect::kApplied);
  EXPECT_EQ(ReservedFor("hq-1", "apple"), 4);
  EXPECT_EQ(Held("apple"), 6);
  EXPECT_EQ(Grant("apple").consumed_applied(), 4);
  EXPECT_EQ(Grant("apple").held(), 6);
  // A cancelled local order frees stock: the allotment tops up to its target again.
  ASSERT_TRUE(Order("pos-2", "cancelled").ok());
  EXPECT_EQ(Held("apple"), 9);
  EXPECT_EQ(Grant("apple").given(), 13);
  Reopen();
  EXPECT_EQ(Held("apple"), 9);
  ASSERT_TRUE(store_->ConfigureEscrow({{"apple", 10}}, clock_.now).ok());  // unchanged config: nothing
  EXPECT_EQ(Grant("apple").given(), 13);
  ExpectDenseOutbox();
}

// Lowering the target asks; only the hub's escrow-return shrinks the reservation. HQ's target
// command grants more as stock allows.
TEST_F(EscrowStoreTest, ReturnsShrinkAndTargetsGrow) {
  ASSERT_TRUE(Move("m1", "apple", 20, "receive").ok());
  ASSERT_TRUE(store_->ConfigureEscrow({{"apple", 8}}, clock_.now).ok());
  ASSERT_TRUE(store_->ConfigureEscrow({{"apple", 3}}, clock_.now).ok());
  EXPECT_EQ(Held("apple"), 8);
  EXPECT_EQ(Grant("apple").target(), 3);
  v1::DownCommand ret;
  ret.set_down_seq(1);
  ret.set_kind(v1::DOWN_ESCROW_RETURN);
  ret.set_command_id("escrow-return:apple:5");
  ret.mutable_escrow_return()->set_sku("apple");
  ret.mutable_escrow_return()->set_returned(5);
  ASSERT_TRUE(store_->ApplyDownCommand(ret, clock_.now).ok());
  EXPECT_EQ(Held("apple"), 3);
  EXPECT_EQ(Grant("apple").returned_applied(), 5);
  ret.set_down_seq(2);  // the same command again under a new down_seq: no second effect
  ASSERT_TRUE(store_->ApplyDownCommand(ret, clock_.now).ok());
  EXPECT_EQ(Held("apple"), 3);
  v1::DownCommand t;
  t.set_down_seq(3);
  t.set_kind(v1::DOWN_ESCROW_TARGET);
  t.set_command_id("escrow-target:apple:3");
  t.mutable_escrow_target()->set_sku("apple");
  t.mutable_escrow_target()->set_target(30);
  ASSERT_TRUE(store_->ApplyDownCommand(t, clock_.now).ok());
  EXPECT_EQ(Held("apple"), 20);  // all the stock there is
  EXPECT_EQ(Grant("apple").given(), 25);
  EXPECT_EQ(Sku("apple"), (std::pair<int64_t, int64_t>{20, 20}));
}

// Spoilage takes free stock first and the allotment only when nothing else is left; the
// reservation stays lower and the record says so. An escrow order the lost stock cannot cover
// is the one refusal, with its reason.
TEST_F(EscrowStoreTest, SpoilageTakesTheAllotmentLastAndAShortEscrowOrderIsRefusedWithItsReason) {
  ASSERT_TRUE(Move("m1", "apple", 10, "receive", "L1", "2027-01-01").ok());
  ASSERT_TRUE(store_->ConfigureEscrow({{"apple", 6}}, clock_.now).ok());
  ASSERT_TRUE(Move("s1", "apple", -3, "spoil").ok());
  EXPECT_EQ(Held("apple"), 6);  // free stock went first
  ASSERT_TRUE(Move("s2", "apple", -4, "spoil").ok());
  EXPECT_EQ(Held("apple"), 3);  // 1 free, then 3 of the allotment
  EXPECT_EQ(Sku("apple"), (std::pair<int64_t, int64_t>{3, 3}));
  v1::EscrowGrant g = Grant("apple");
  EXPECT_EQ(g.held(), 3);
  EXPECT_EQ(g.given() - g.returned_applied() - g.consumed_applied(), 6);  // the hub sees the shortfall
  EXPECT_FALSE(Move("s3", "apple", -4, "spoil").ok());  // more than there is: refused whole
  auto r = store_->ApplyDownCommand(EscrowOrder(1, "hq-1", "apple", 5), clock_.now);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->effect, EdgeStore::DownResult::Effect::kRefused);
  EXPECT_EQ(r->reason.rfind("escrow order short", 0), 0u) << r->reason;
  EXPECT_EQ(Grant("apple").consumed_applied(), 5);
  EXPECT_EQ(Held("apple"), 3);  // released by the short order, taken back towards the target
  auto e = store_->Escrow();
  ASSERT_TRUE(e.ok());
  ASSERT_EQ(e->size(), 1u);
  EXPECT_EQ((*e)[0].held, 3);
}

}  // namespace freshsync::edge
