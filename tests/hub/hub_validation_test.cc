// Issue 11 part 4, "hubd trusts what a site sends": each attack against a real hubd over real
// HTTPS with a valid site certificate (TestPki; hubd started by the shared fixture,
// hubd_fixture.h), and a property-based test of hostile batches.
// docs/security.md lists each attack with its limit and this test.
#include <sqlite3.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <limits>
#include <random>
#include <thread>

#include <gtest/gtest.h>

#include "freshsync.pb.h"
#include "hub/codec.h"
#include "tests/hub/hubd_fixture.h"
#include "tests/support/zstd_bomb.h"
#include "wire/record_rules.h"

namespace freshsync::testing {
namespace {

using nlohmann::json;
constexpr int64_t kTs = 1764000000000;

v1::ChangeRecord StockRecord(uint64_t seq, const std::string& sku, int64_t on_hand, uint64_t version) {
  v1::ChangeRecord r;
  r.set_seq(seq);
  r.set_entity(v1::STOCK);
  r.set_key(sku);
  r.set_version(version);
  r.set_hlc(static_cast<uint64_t>(kTs + static_cast<int64_t>(seq)) << 16);
  r.set_ts_ms(kTs + static_cast<int64_t>(seq));
  r.mutable_stock()->set_sku(sku);
  r.mutable_stock()->set_on_hand(on_hand);
  return r;
}

v1::ChangeRecord PositionRecord(uint64_t seq, int32_t lat_e6) {
  v1::ChangeRecord r;
  r.set_seq(seq);
  r.set_entity(v1::VEHICLE_POSITION);
  r.set_key("truck-1");
  r.set_version(seq);
  r.set_ts_ms(kTs + static_cast<int64_t>(seq));
  r.set_hlc(static_cast<uint64_t>(r.ts_ms()) << 16);
  auto* p = r.mutable_position();
  p->set_vehicle("truck-1");
  p->set_device_seq(seq);
  p->set_lat_e6(lat_e6);
  p->set_lon_e6(121000000);
  return r;
}

std::string Compress(const v1::Batch& b) { return hub::ZstdCompress(b.SerializeAsString(), 1); }

long StatusKb(pid_t pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::string(field).size()));
  return -1;
}

int64_t FileBytes(const std::string& path) {
  struct stat st{};
  return stat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

// The shared fixture (hubd_fixture.h) with what these tests probe: hubd's own defaults for
// [limits] (each test sets the keys it tests), 8 threads for the parallel bombs, and the SQLite
// store, whose quarantine table Refused() reads directly. Each test starts hubd itself.
class HubValidationTest : public HubdTest {
 protected:
  void SetUp() override {
    threads_ = 8;
    read_timeout_s_ = 60;
    ASSERT_NO_FATAL_FAILURE(Prepare());
  }
  bool OnPostgres() const override { return false; }

  httplib::Result PushBody(const std::string& body) { return Push(*Site(site_a_), "site-a", body); }
  // Pushes and parses the BatchAck (status in *status).
  v1::BatchAck PushBatch(const v1::Batch& b, int* status) {
    auto r = PushBody(Compress(b));
    v1::BatchAck ack;
    *status = r ? r->status : 0;
    if (r) ack.ParseFromString(r->body);
    return ack;
  }
  // Rows of refused_records, read with the sqlite3 library (WAL: hubd may be running).
  std::vector<std::pair<uint64_t, std::string>> Refused() {
    std::vector<std::pair<uint64_t, std::string>> out;
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(dir_.File("hub.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) return out;
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT seq, reason FROM refused_records ORDER BY seq", -1, &st, nullptr);
    while (st && sqlite3_step(st) == SQLITE_ROW)
      out.emplace_back(sqlite3_column_int64(st, 0), reinterpret_cast<const char*>(sqlite3_column_text(st, 1)));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  }
};

// Every attack of the issue in one batch: each bad record is refused with a reason naming its
// seq and field, quarantined, counted per site; the valid ones around them are applied; the
// site's stream moves on (contiguous covers the refused seqs, so nothing wedges).
TEST_F(HubValidationTest, InvalidRecordsAreRefusedWithReasonQuarantinedAndCounted) {
  ASSERT_NO_FATAL_FAILURE(StartWithLimits(""));
  v1::Batch b;
  b.set_site("site-a");
  *b.add_records() = StockRecord(1, "sku-ok", 5, 1);
  *b.add_records() = StockRecord(2, std::string(1 << 20, 'k'), 1, 1);  // 1 MB key
  *b.add_records() = StockRecord(3, "sku-neg", -40, 1);                // negative quantity
  *b.add_records() = PositionRecord(4, 2147000000);                    // latitude 2,147 degrees
  {
    auto r = StockRecord(5, "sku-x", 1, 1);
    r.set_entity(static_cast<v1::Entity>(42));  // unknown entity
    *b.add_records() = r;
  }
  {
    v1::ChangeRecord r = StockRecord(6, "o-1", 1, 1);  // STOCK carrying an order body
    r.mutable_order()->set_order_id("o-1");
    r.mutable_order()->set_status("created");
    *b.add_records() = r;
  }
  {
    v1::ChangeRecord r;
    r.set_seq(7);
    r.set_entity(v1::ORDER);
    r.set_key("o-2");
    r.set_version(1);
    r.mutable_order()->set_order_id("o-2");
    r.mutable_order()->set_status("teleported");  // unknown status
    *b.add_records() = r;
  }
  *b.add_records() = PositionRecord(8, 31000000);
  int status = 0;
  const auto ack = PushBatch(b, &status);
  ASSERT_EQ(status, 200) << ack.error();
  EXPECT_EQ(ack.contiguous_seq(), 8u) << "refused seqs count as held: the stream is not wedged";
  EXPECT_EQ(ack.applied(), 2u);
  EXPECT_EQ(ack.refused(), 6u);
  EXPECT_NE(ack.error().find("seq 2: key: longer than 128 bytes"), std::string::npos) << ack.error();

  const auto refused = Refused();
  ASSERT_EQ(refused.size(), 6u);
  const std::vector<std::pair<uint64_t, std::string>> want = {
      {2, "key: longer than 128 bytes"}, {3, "stock.on_hand: -40"}, {4, "position.lat_e6: 2147000000 out of range"},
      {5, "entity: 42"},                 {6, "body:"},              {7, "order.status:"}};
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(refused[i].first, want[i].first);
    EXPECT_EQ(refused[i].second.rfind(want[i].second, 0), 0u) << refused[i].second;
  }
  // HQ sees only the two valid records.
  const json feed = GetJson("/v1/changes?limit=10000");
  ASSERT_EQ(feed["changes"].size(), 2u) << feed.dump();
  EXPECT_EQ(feed["changes"][0]["seq"], 1);
  EXPECT_EQ(feed["changes"][1]["seq"], 8);
  auto stock = Hq(kReaderToken)->Get("/v1/sites/site-a/stock");
  ASSERT_TRUE(stock);
  EXPECT_EQ(stock->body.find("sku-neg"), std::string::npos);
  const std::string m = Metrics();
  EXPECT_NE(m.find("freshsync_hub_records_refused_total{site=\"site-a\",reason=\"key\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("reason=\"position.lat_e6\"} 1"), std::string::npos) << m;
  EXPECT_NE(m.find("reason=\"entity\"} 1"), std::string::npos) << m;
  // Resending the same batch (reconciliation, a retry) changes nothing and counts nothing.
  const auto again = PushBatch(b, &status);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(again.duplicates(), 8u);
  EXPECT_EQ(again.refused(), 0u);
  EXPECT_EQ(Refused().size(), 6u);
  // The hub's range digest counts the quarantined seqs whose key was valid, as the edge does.
  auto d = Site(site_a_)->Get("/v1/sites/site-a/digest?from=3&to=8&buckets=1");
  ASSERT_TRUE(d && d->status == 200);
  v1::DigestReply reply;
  ASSERT_TRUE(reply.ParseFromString(d->body));
  EXPECT_EQ(reply.ranges(0).count(), 6u);
}

// Version 2^64-1 used to lose to version 3 (SQLite compares it as -1). The shared rules cap
// versions at 2^63-1: 2^64-1 is refused, 2^63-1 is accepted and wins.
TEST_F(HubValidationTest, VersionAboveInt64MaxIsRefusedAndInt64MaxWins) {
  ASSERT_NO_FATAL_FAILURE(StartWithLimits(""));
  v1::Batch b;
  b.set_site("site-a");
  *b.add_records() = StockRecord(1, "sku-v", 3, 3);
  *b.add_records() = StockRecord(2, "sku-v", 999, std::numeric_limits<uint64_t>::max());
  int status = 0;
  auto ack = PushBatch(b, &status);
  ASSERT_EQ(status, 200);
  EXPECT_EQ(ack.refused(), 1u);
  EXPECT_NE(ack.error().find("seq 2: version: 18446744073709551615 out of range 1..2^63-1"), std::string::npos)
      << ack.error();
  b.clear_records();
  *b.add_records() = StockRecord(3, "sku-v", 7, wire::kMaxVersion);
  *b.add_records() = StockRecord(4, "sku-v", 8, 4);  // older: must lose
  ack = PushBatch(b, &status);
  ASSERT_EQ(status, 200) << ack.error();
  EXPECT_EQ(ack.refused(), 0u);
  auto r = Hq(kReaderToken)->Get("/v1/sites/site-a/stock");
  ASSERT_TRUE(r && r->status == 200);
  const json j = json::parse(r->body);
  ASSERT_EQ(j["stock"].size(), 1u) << j.dump();
  EXPECT_EQ(j["stock"][0]["on_hand"], 7) << j.dump();
  EXPECT_EQ(j["stock"][0]["version"].get<uint64_t>(), wire::kMaxVersion);
}

// A stolen certificate pushing oversized keys grows the store by the refused rows only, and a
// per-site daily byte limit stops even valid-looking floods: 429 + Retry-After, nothing written.
TEST_F(HubValidationTest, OversizedKeysDoNotGrowTheStoreAndTheSiteByteLimitHolds) {
  ASSERT_NO_FATAL_FAILURE(StartWithLimits("site_bytes_per_day = 200000\n"));
  // Warm-up so that the file has its tables and first pages.
  v1::Batch b;
  b.set_site("site-a");
  *b.add_records() = StockRecord(1, "sku-1", 1, 1);
  int status = 0;
  PushBatch(b, &status);
  ASSERT_EQ(status, 200);
  auto db_bytes = [&] { return FileBytes(dir_.File("hub.db")) + FileBytes(dir_.File("hub.db-wal")); };
  const int64_t before = db_bytes();
  // 150 records with 1 MB keys each, in batches of 10 (each ~1.5 KB compressed).
  uint64_t seq = 2;
  for (int i = 0; i < 15; ++i) {
    b.clear_records();
    for (int k = 0; k < 10; ++k) *b.add_records() = StockRecord(seq++, std::string(1 << 20, 'a' + k), 1, 1);
    const std::string body = Compress(b);
    ASSERT_LT(body.size(), 64u << 10);
    auto r = PushBody(body);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
  }
  const int64_t grown = db_bytes() - before;
  // 150 quarantined rows of ~100 bytes; the WAL may hold a few 4 KB pages per commit. 150 MB before.
  EXPECT_LT(grown, 1 << 20) << "the store grew by " << grown << " bytes for 150 refused 1 MB keys";
  EXPECT_EQ(Refused().size(), 150u);

  // Now valid records until the daily limit: 200,000 bytes is about 1,500 small records.
  bool limited = false;
  for (int i = 0; i < 100 && !limited; ++i) {
    b.clear_records();
    for (int k = 0; k < 100; ++k, ++seq) *b.add_records() = StockRecord(seq, "sku-" + std::to_string(k), k, seq);
    auto r = PushBody(Compress(b));
    ASSERT_TRUE(r);
    if (r->status == 429) {
      limited = true;
      v1::BatchAck ack;
      ASSERT_TRUE(ack.ParseFromString(r->body));
      EXPECT_NE(ack.error().find("site_bytes_per_day"), std::string::npos) << ack.error();
      EXPECT_FALSE(r->get_header_value("Retry-After").empty());
      seq -= 100;
    } else {
      ASSERT_EQ(r->status, 200) << r->body;
    }
  }
  EXPECT_TRUE(limited);
  // Nothing of the refused batch was written: the next batch from the same seq is refused too
  // (not a gap, not a duplicate), and the hub's contiguous seq stops before it.
  auto ack = PushBatch(b, &status);
  EXPECT_EQ(status, 429);
  EXPECT_EQ(ack.contiguous_seq(), seq - 1);
  EXPECT_NE(Metrics().find("reason=\"site_bytes_per_day\"}"), std::string::npos);
}

// Sixteen parallel zstd bombs (2 GB of zeros each, no declared size) against the process-wide
// decompression budget. Bound: VmHWM stays under baseline + max_decompressed_total_bytes +
// 64 MiB (TLS buffers, compressed bodies, allocator slack). Before: 489 MB peak for 64 MB caps.
// A bomb declares no size, so it reserves 2 x 16 MiB + the window: one at a time is admitted
// and runs to its 413, the others get 503 at once.
TEST_F(HubValidationTest, SixteenParallelZstdBombsStayWithinTheProcessBudget) {
  // A 16 MiB per-request cap and a 56 MiB total (the least accepted is 2 x 16 + 20 = 52 MiB).
  ASSERT_NO_FATAL_FAILURE(StartWithLimits("max_decompressed_bytes = 16777216\nmax_decompressed_total_bytes = 58720256\n"));
  const std::string bomb = ZstdBombOfZeros(64, 19);  // 256 MiB of zeros
  const long base_kb = StatusKb(hubd_.pid(), "VmHWM:");
  ASSERT_GT(base_kb, 0);
  std::atomic<int> answered_413{0}, answered_503{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 3; ++i) {
        auto r = PushBody(bomb);
        if (r && r->status == 413) ++answered_413;
        else if (r && r->status == 503) ++answered_503;
        else ++other;
      }
    });
  }
  for (auto& t : threads) t.join();
  const long peak_kb = StatusKb(hubd_.pid(), "VmHWM:");
  std::cerr << "VmHWM before " << base_kb << " kB, after 48 bombs " << peak_kb << " kB; 413: " << answered_413
            << ", 503: " << answered_503 << ", other: " << other << "\n";
  EXPECT_EQ(other.load(), 0);
  EXPECT_GT(answered_413.load(), 0);
#if !defined(__SANITIZE_ADDRESS__)  // ASan's quarantine holds freed blocks: its peak says nothing about ours
  EXPECT_LT(peak_kb - base_kb, (56 + 64) * 1024) << "peak grew by " << (peak_kb - base_kb) << " kB";
#endif
  // Still serving, and a normal batch goes through once the bombs are gone.
  v1::Batch b;
  b.set_site("site-a");
  *b.add_records() = StockRecord(1, "sku-1", 1, 1);
  int status = 0;
  PushBatch(b, &status);
  EXPECT_EQ(status, 200);
}

// Property-based: hostile batches generated from a fixed, printed seed, at and beyond the rules'
// boundaries, random entities and bodies, both batch formats. hubd must answer every one (no
// crash, no hang), every refusal has a reason, and every record HQ can read passes the rules.
TEST_F(HubValidationTest, GeneratedHostileBatchesNeverCrashAndOnlyValidRecordsAreServed) {
  ASSERT_NO_FATAL_FAILURE(StartWithLimits(""));
  const uint32_t seed = 20261206;
  std::cerr << "property test seed " << seed << "\n";
  std::mt19937_64 rng(seed);
  auto pick = [&](auto... v) {
    const std::vector<std::common_type_t<decltype(v)...>> xs{v...};
    return xs[rng() % xs.size()];
  };
  auto key = [&]() -> std::string {
    switch (rng() % 6) {
      case 0: return "";
      case 1: return std::string(wire::kMaxIdBytes, 'k');
      case 2: return std::string(wire::kMaxIdBytes + 1, 'k');
      case 3: return std::string("bad\x01", 4);
      case 4: return "\xc3\x28";
      default: return "truck-" + std::to_string(rng() % 4);
    }
  };
  const int64_t i64max = std::numeric_limits<int64_t>::max(), i64min = std::numeric_limits<int64_t>::min();
  uint64_t next_seq = 1;
  int refused_total = 0, accepted_batches = 0;
  for (int round = 0; round < 60; ++round) {
    v1::Batch b;
    b.set_site("site-a");
    const bool format2 = rng() % 2 == 0;
    const int n = 1 + static_cast<int>(rng() % 20);
    for (int i = 0; i < n; ++i) {
      // A valid record of a random entity first, then (half the time) one to three hostile
      // mutations: values at and just beyond each boundary, wrong bodies, bad keys.
      const uint64_t seq = next_seq++;
      v1::ChangeRecord r;
      switch (rng() % 6) {
        case 0: r = StockRecord(seq, "sku-" + std::to_string(rng() % 5), static_cast<int64_t>(rng() % 100), seq); break;
        case 1: {
          r = StockRecord(seq, "o-" + std::to_string(rng() % 5), 1, seq);
          r.set_entity(v1::ORDER);
          r.mutable_order()->set_order_id(r.key());
          r.mutable_order()->set_status(pick(std::string("created"), std::string("refused"), std::string("delivered")));
          auto* line = r.mutable_order()->add_lines();
          line->set_sku("leek");
          line->set_qty(3);
          break;
        }
        case 2: r = PositionRecord(seq, static_cast<int32_t>(rng() % 180000001) - 90000000); break;
        case 3: {
          r = PositionRecord(seq, 0);
          r.set_entity(v1::CLIMATE);
          r.set_key("cold-" + std::to_string(rng() % 3));
          r.mutable_climate()->set_sensor(r.key());
          r.mutable_climate()->set_temp_dc(static_cast<int32_t>(rng() % 18001) - 8000);
          break;
        }
        case 4: {
          r = PositionRecord(seq, 0);
          r.set_entity(v1::GEOFENCE_EVENT);
          auto* g = r.mutable_geofence();
          g->set_vehicle(r.key());
          g->set_fence("depot");
          g->set_event(pick(std::string("enter"), std::string("exit")));
          break;
        }
        default: {
          r = StockRecord(seq, "al-" + std::to_string(rng() % 5), 1, seq);
          r.set_entity(v1::COLDCHAIN_ALERT);
          auto* a = r.mutable_alert();
          a->set_alert_id(r.key());
          a->set_sensor("cold-1");
          a->set_state(pick(std::string("open"), std::string("closed")));
          a->set_kind("excursion");
          a->set_min_c(1.5);
          a->set_max_c(9.25);
          a->set_started_ts_ms(kTs);
          break;
        }
      }
      const int mutations = rng() % 2 ? 0 : 1 + static_cast<int>(rng() % 3);
      for (int m = 0; m < mutations; ++m) {
        switch (rng() % 14) {
          case 0: r.set_entity(static_cast<v1::Entity>(pick(0, 7, 8, 99, -1))); break;
          case 1: r.set_key(key()); break;
          case 2: r.set_version(pick(uint64_t{0}, wire::kMaxVersion, wire::kMaxVersion + 1, std::numeric_limits<uint64_t>::max())); break;
          case 3: r.set_ts_ms(pick(wire::kMinTsMs - 1, wire::kMinTsMs, wire::kMaxTsMs - 1, wire::kMaxTsMs, i64max, i64min)); break;
          case 4: r.set_hlc(pick(wire::kMaxHlc, wire::kMaxHlc + 1, std::numeric_limits<uint64_t>::max())); break;
          case 5: {  // a body that does not match the entity
            if (r.has_stock()) r.mutable_order()->set_order_id(r.key());
            else r.mutable_stock()->set_sku(r.key());
            break;
          }
          case 6: r.clear_body(); break;
          case 7:
            if (r.has_stock()) r.mutable_stock()->set_on_hand(pick(int64_t{-1}, wire::kMaxStockUnits, wire::kMaxStockUnits + 1, i64min));
            break;
          case 8:
            if (r.has_stock()) {
              r.mutable_stock()->set_movement_id("m-1");
              r.mutable_stock()->set_reason(pick(std::string("receive"), std::string("pick"), std::string("stolen")));
              r.mutable_stock()->set_delta(pick(int64_t{0}, int64_t{-5}, int64_t{5}, wire::kMaxAbsDelta + 1, i64min));
            }
            break;
          case 9:
            if (r.has_position()) {
              r.mutable_position()->set_lat_e6(pick(90000000, 90000001, -90000001, 2147000000, std::numeric_limits<int32_t>::min()));
              r.mutable_position()->set_heading_deg(pick(0u, 360u, 361u, ~0u));
            }
            break;
          case 10:
            if (r.has_order()) {
              r.mutable_order()->set_status(pick(std::string("teleported"), std::string(""), std::string("cancelled")));
              r.mutable_order()->mutable_lines(0)->set_qty(pick(int64_t{-1}, int64_t{0}, wire::kMaxLineQty, wire::kMaxLineQty + 1));
              if (rng() % 3 == 0) r.mutable_order()->set_customer_sealed(std::string(wire::kMaxSealedBytes + 1, 'x'));
            }
            break;
          case 11:
            if (r.has_alert()) {
              r.mutable_alert()->set_min_c(pick(-80.0, -80.5, std::numeric_limits<double>::infinity(),
                                                std::numeric_limits<double>::quiet_NaN()));
              r.mutable_alert()->set_state(pick(std::string("open"), std::string("ajar")));
            }
            break;
          case 12:
            if (r.has_climate()) r.mutable_climate()->set_temp_dc(pick(-8000, -8001, 10000, 10001));
            if (r.has_geofence()) r.mutable_geofence()->set_fence(std::string(wire::kMaxFreeText + 1, 'f'));
            break;
          default:
            // Invalid UTF-8 in a proto3 string: the whole batch fails to parse (400), rarely.
            if (rng() % 4 == 0) r.set_key("\xc3\x28");
            break;
        }
      }
      if (format2) {
        // Format 2: seq implied after the first record, the HLC relative to ts_ms sometimes,
        // and the device id left out when it equals the key. The hub expands before the rules run.
        if (i > 0) r.set_seq(0);
        if (rng() % 2) {
          r.set_hlc_from_ts(static_cast<int64_t>(rng() % 100000));
          r.set_hlc(0);
        }
        if (r.has_position() && r.position().vehicle() == r.key()) r.mutable_position()->clear_vehicle();
      }
      *b.add_records() = r;
    }
    if (format2) b.set_format(2);
    auto res = PushBody(Compress(b));
    ASSERT_TRUE(res) << "round " << round << ": no answer (crash or hang?), seed " << seed;
    v1::BatchAck ack;
    ASSERT_TRUE(ack.ParseFromString(res->body)) << "round " << round;
    if (res->status == 200) {
      ++accepted_batches;
      refused_total += static_cast<int>(ack.refused());
      if (ack.refused() > 0) {
        EXPECT_NE(ack.error().find("seq "), std::string::npos) << ack.error();
      }
    } else {
      EXPECT_FALSE(ack.error().empty()) << "round " << round << ": " << res->status << " without a reason";
      // A structurally bad batch (e.g. format 2 with an implied seq 0) holds nothing; continue after it.
      next_seq = ack.contiguous_seq() + 1;
      if (res->status == 409 || res->status == 400) {
        auto c = Site(site_a_)->Get("/v1/sites/site-a/digest?from=1&to=1&buckets=1");
        ASSERT_TRUE(c && c->status == 200);
        v1::DigestReply d;
        ASSERT_TRUE(d.ParseFromString(c->body));
        next_seq = d.contiguous_seq() + 1;
      }
    }
  }
  EXPECT_GT(refused_total, 0);
  EXPECT_GT(accepted_batches, 0);
  for (const auto& [seq, reason] : Refused()) EXPECT_FALSE(reason.empty()) << "seq " << seq;
  // Every record HQ can read passes the shared rules.
  auto r = Hq(kReaderToken)->Get("/v1/changes?limit=10000", {{"Accept", "application/x-protobuf"}});
  ASSERT_TRUE(r && r->status == 200);
  v1::Feed feed;
  ASSERT_TRUE(feed.ParseFromString(r->body));
  for (const auto& c : feed.changes()) {
    Status s = wire::CheckChangeRecord(c.record());
    EXPECT_TRUE(s.ok()) << "served seq " << c.record().seq() << ": " << s.message();
  }
  std::cerr << "served " << feed.changes_size() << " records, refused " << refused_total << ", batches accepted "
            << accepted_batches << " of 60\n";
  EXPECT_GT(feed.changes_size(), 0);
}

}  // namespace
}  // namespace freshsync::testing
