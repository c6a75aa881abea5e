// BatchEncoder: both batch formats decode, through the hub's own ExpandBatch, to exactly the
// records the edge stored (docs/sync-protocol.md, "Batch format 2").
#include "wire/batch_format.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include <string>
#include <vector>

#include "freshsync.pb.h"

namespace freshsync::wire {
namespace {

// An outbox row as the agent reads it (cloud-sync/sync_store.h OutboxRow).
struct OutboxRow {
  uint64_t seq = 0;
  int priority = 0;
  int64_t created_ms = 0;
  std::string record;
};

// Plain zstd decompression of one frame with a declared size (the encoder always declares it);
// the hub's capped decompression is hub/codec.h's concern, not the format's.
Result<std::string> Decompress(std::string_view body) {
  const unsigned long long n = ZSTD_getFrameContentSize(body.data(), body.size());
  if (n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN) return Status::InvalidArgument("zstd frame");
  std::string out(n, '\0');
  const size_t got = ZSTD_decompress(out.data(), out.size(), body.data(), body.size());
  if (ZSTD_isError(got) || got != n) return Status::InvalidArgument("zstd");
  return out;
}

v1::ChangeRecord Position(uint64_t seq, const std::string& vehicle, const std::string& body_vehicle, int64_t ts,
                          uint64_t hlc) {
  v1::ChangeRecord r;
  r.set_seq(seq);
  r.set_entity(v1::VEHICLE_POSITION);
  r.set_key(vehicle);
  r.set_version(seq);
  r.set_hlc(hlc);
  r.set_ts_ms(ts);
  auto* p = r.mutable_position();
  p->set_vehicle(body_vehicle);
  p->set_device_seq(seq * 3);
  p->set_lat_e6(31'200'000 + static_cast<int32_t>(seq));
  p->set_lon_e6(-121'500'000 - static_cast<int32_t>(seq));
  p->set_speed_dkmh(420);
  p->set_heading_deg(90);
  p->set_hdop_d(9);
  return r;
}

// A mix that covers every rewrite and every "leave it alone" case.
std::vector<v1::ChangeRecord> Mixed() {
  std::vector<v1::ChangeRecord> out;
  const int64_t t0 = 1'764'000'000'000;
  out.push_back(Position(10, "truck-1", "truck-1", t0, static_cast<uint64_t>(t0 + 37) << 16 | 3));
  out.push_back(Position(11, "truck-2", "truck-2", t0, static_cast<uint64_t>(t0 + 120) << 16));
  // Body vehicle differs from the key: must travel.
  out.push_back(Position(12, "truck-3", "other", t0, static_cast<uint64_t>(t0) << 16));
  // HLC below ts << 16 (device clock ahead), and a negative ts: the difference wraps.
  out.push_back(Position(13, "truck-1", "truck-1", t0 + 5000, static_cast<uint64_t>(t0) << 16));
  out.push_back(Position(14, "truck-1", "truck-1", -42, 7));
  // No HLC at all.
  out.push_back(Position(15, "truck-1", "truck-1", t0, 0));
  v1::ChangeRecord climate;
  climate.set_seq(16);
  climate.set_entity(v1::CLIMATE);
  climate.set_key("cold-1");
  climate.set_version(1);
  climate.set_hlc(static_cast<uint64_t>(t0 + 50) << 16);
  climate.set_ts_ms(t0);
  climate.mutable_climate()->set_sensor("cold-1");
  climate.mutable_climate()->set_temp_dc(-1850);
  out.push_back(climate);
  v1::ChangeRecord stock;
  stock.set_seq(17);
  stock.set_entity(v1::STOCK);
  stock.set_key("sku-1");
  stock.set_version(4);
  stock.set_hlc(static_cast<uint64_t>(t0 + 60) << 16);
  stock.set_ts_ms(t0);
  stock.mutable_stock()->set_sku("sku-1");  // STOCK bodies are never rewritten
  stock.mutable_stock()->set_on_hand(12);
  out.push_back(stock);
  // A seq gap (as in an urgent batch): the seq after it must travel.
  v1::ChangeRecord order;
  order.set_seq(40);
  order.set_entity(v1::ORDER);
  order.set_key("o-1");
  order.set_version(2);
  order.set_hlc(static_cast<uint64_t>(t0 + 70) << 16);
  order.set_ts_ms(t0);
  order.mutable_order()->set_order_id("o-1");
  order.mutable_order()->set_status("picking");
  out.push_back(order);
  out.push_back(Position(41, "truck-1", "truck-1", t0, static_cast<uint64_t>(t0 + 1) << 16));
  return out;
}

std::vector<OutboxRow> Rows(const std::vector<v1::ChangeRecord>& records) {
  std::vector<OutboxRow> rows;
  for (const auto& r : records) rows.push_back({r.seq(), 0, 0, r.SerializeAsString()});
  return rows;
}

v1::Batch DecodeAsHub(std::string_view body) {
  auto raw = Decompress(body);
  EXPECT_TRUE(raw.ok());
  v1::Batch b;
  EXPECT_TRUE(b.ParseFromString(*raw));
  const Status s = ExpandBatch(b);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return b;
}

void ExpectSameRecords(const v1::Batch& got, const std::vector<v1::ChangeRecord>& want) {
  ASSERT_EQ(got.records_size(), static_cast<int>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(got.records(static_cast<int>(i)).SerializeAsString(), want[i].SerializeAsString())
        << "record " << i << ": got " << got.records(static_cast<int>(i)).ShortDebugString() << " want "
        << want[i].ShortDebugString();
  }
}

TEST(BatchCodecTest, Format2DecodesToTheStoredRecords) {
  const auto records = Mixed();
  BatchEncoder enc(3);
  const v1::Batch b = DecodeAsHub(enc.Encode("site-a", Rows(records), true, 2));
  EXPECT_EQ(b.site(), "site-a");
  EXPECT_TRUE(b.urgent());
  ExpectSameRecords(b, records);
}

TEST(BatchCodecTest, Format1IsTheStoredRecordsAsTheyAre) {
  const auto records = Mixed();
  BatchEncoder enc(3);
  const std::string body(enc.Encode("site-a", Rows(records), false, 1));
  auto raw = Decompress(body);
  ASSERT_TRUE(raw.ok());
  v1::Batch b;
  ASSERT_TRUE(b.ParseFromString(*raw));
  EXPECT_EQ(b.format(), 0u);  // an older hub sees exactly what it always saw
  ExpectSameRecords(b, records);
  ASSERT_TRUE(ExpandBatch(b).ok());  // and a newer hub leaves it alone
  ExpectSameRecords(b, records);
}

TEST(BatchCodecTest, Format2OmitsWhatTheHubCanRestore) {
  std::vector<v1::ChangeRecord> records;
  const int64_t t0 = 1'764'000'000'000;
  for (uint64_t s = 1; s <= 200; ++s)
    records.push_back(Position(s, "truck-7", "truck-7", t0 + static_cast<int64_t>(s) * 1000,
                               static_cast<uint64_t>(t0 + static_cast<int64_t>(s) * 1000 + 40) << 16));
  BatchEncoder enc(3);
  (void)enc.Encode("site-a", Rows(records), false, 1);
  const size_t raw1 = enc.raw_size();
  const std::string body(enc.Encode("site-a", Rows(records), false, 2));
  const size_t raw2 = enc.raw_size();
  // Per record: the seq (2 B), the vehicle (9 B), 4-5 B of HLC.
  EXPECT_LE(raw2 + 200 * 14, raw1) << raw1 << " vs " << raw2;
  auto raw = Decompress(body);
  ASSERT_TRUE(raw.ok());
  v1::Batch b;
  ASSERT_TRUE(b.ParseFromString(*raw));
  EXPECT_EQ(b.format(), 2u);
  EXPECT_EQ(b.records(0).seq(), 1u);        // the first record keeps its seq
  EXPECT_EQ(b.records(1).seq(), 0u);        // the others are implied
  EXPECT_TRUE(b.records(1).position().vehicle().empty());
  EXPECT_EQ(b.records(1).hlc(), 0u);
  EXPECT_EQ(b.records(1).hlc_from_ts(), 40 << 16);
  ASSERT_TRUE(ExpandBatch(b).ok());
  ExpectSameRecords(b, records);
}

TEST(BatchCodecTest, ARecordThatCannotBeWalkedTravelsWholeWithItsSeq) {
  auto records = Mixed();
  auto rows = Rows(records);
  // A truncated varint as the last byte: not a walkable protobuf. The hub parses the batch
  // as a whole, so use bytes that are a valid message for it: an unknown group field fails
  // our walker but protobuf skips it.
  rows[2].record += std::string("\x9B\x06\x9C\x06", 4);  // field 99 start-group, end-group
  BatchEncoder enc(3);
  const v1::Batch b = DecodeAsHub(enc.Encode("site-a", rows, false, 2));
  ASSERT_EQ(b.records_size(), static_cast<int>(records.size()));
  EXPECT_EQ(b.records(2).seq(), records[2].seq());
  EXPECT_EQ(b.records(2).position().vehicle(), records[2].position().vehicle());
  EXPECT_EQ(b.records(3).seq(), records[3].seq());  // the next one is implied from it
  EXPECT_EQ(b.records(3).hlc(), records[3].hlc());
}

TEST(BatchCodecTest, HubRefusesAFormatItDoesNotKnow) {
  v1::Batch b;
  b.set_format(kMaxBatchFormat + 1);
  EXPECT_EQ(ExpandBatch(b).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace freshsync::wire
