#include "hub/codec.h"

#include <gtest/gtest.h>
#include <zstd.h>

namespace freshsync::hub {
namespace {

TEST(ZstdTest, RoundTripsWithinTheCap) {
  const std::string text(100000, 'a');
  auto out = ZstdDecompressCapped(ZstdCompress(text), {200000, 24});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(*out, text);
}

TEST(ZstdTest, OutputOfExactlyTheCapIsAccepted) {
  const std::string text(4096, 'b');
  auto out = ZstdDecompressCapped(ZstdCompress(text), {4096, 24});
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->size(), 4096u);
  auto over = ZstdDecompressCapped(ZstdCompress(text), {4095, 24});
  EXPECT_EQ(over.status().code(), StatusCode::kConflict);
}

// A bomb whose frame header does not declare its size (streaming compression): the cap must
// stop it while decompressing, not after.
std::string StreamingBomb(size_t size) {
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), &ZSTD_freeCCtx);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_contentSizeFlag, 0);
  const std::string zeros(1 << 20, '\0');
  std::string out;
  std::string buf(ZSTD_CStreamOutSize(), '\0');
  for (size_t done = 0; done < size; done += zeros.size()) {
    const bool last = done + zeros.size() >= size;
    ZSTD_inBuffer in{zeros.data(), zeros.size(), 0};
    size_t rem;
    do {
      ZSTD_outBuffer ob{buf.data(), buf.size(), 0};
      rem = ZSTD_compressStream2(cctx.get(), &ob, &in, last ? ZSTD_e_end : ZSTD_e_continue);
      out.append(buf.data(), ob.pos);
    } while (last ? rem != 0 : in.pos < in.size);
  }
  return out;
}

TEST(ZstdTest, BombWithoutDeclaredSizeStopsAtTheCap) {
  const std::string bomb = StreamingBomb(256u << 20);
  ASSERT_LT(bomb.size(), 64u << 10);
  EXPECT_EQ(ZSTD_getFrameContentSize(bomb.data(), bomb.size()), ZSTD_CONTENTSIZE_UNKNOWN);
  auto out = ZstdDecompressCapped(bomb, {1 << 20, 24});
  EXPECT_EQ(out.status().code(), StatusCode::kConflict) << out.status().ToString();
}

TEST(ZstdTest, BombWithDeclaredSizeIsRefusedUpFront) {
  const std::string bomb = ZstdCompress(std::string(32u << 20, '\0'));
  auto out = ZstdDecompressCapped(bomb, {1 << 20, 24});
  EXPECT_EQ(out.status().code(), StatusCode::kConflict);
}

TEST(ZstdTest, TruncatedAndGarbageAreInvalid) {
  const std::string z = ZstdCompress(std::string(50000, 'x') + "tail");
  EXPECT_EQ(ZstdDecompressCapped(z.substr(0, z.size() - 3), {1 << 20, 24}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ZstdDecompressCapped("not zstd at all", {1 << 20, 24}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ZstdDecompressCapped("", {1 << 20, 24}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ZstdDecompressCapped(z + "junk", {1 << 20, 24}).status().code(), StatusCode::kInvalidArgument);
}

TEST(CodecTest, RecordFieldsAreJsonWithPlainNumbers) {
  v1::ChangeRecord r;
  r.set_seq(5);
  r.set_entity(v1::VEHICLE_POSITION);
  r.set_key("truck-7");
  r.set_version(2);
  r.set_hlc(uint64_t{1732500000000} << 16);
  r.set_ts_ms(1732500000000);
  auto* p = r.mutable_position();
  p->set_vehicle("truck-7");
  p->set_lat_e6(31230416);
  p->set_lon_e6(121473701);
  p->set_speed_dkmh(425);
  const auto j = ChangeToJson(9, "sh-pudong-01", r);
  EXPECT_EQ(j["cursor"], 9);
  EXPECT_EQ(j["site"], "sh-pudong-01");
  EXPECT_EQ(j["entity"], "VEHICLE_POSITION");
  EXPECT_EQ(j["hlc"].get<uint64_t>(), uint64_t{1732500000000} << 16);
  EXPECT_DOUBLE_EQ(j["fields"]["lat"].get<double>(), 31.230416);
  EXPECT_DOUBLE_EQ(j["fields"]["speed_kmh"].get<double>(), 42.5);

  v1::ChangeRecord o;
  o.set_entity(v1::ORDER);
  o.mutable_order()->set_status("created");
  o.mutable_order()->set_customer_sealed(std::string("\x00\xff\x10", 3));
  auto* line = o.mutable_order()->add_lines();
  line->set_sku("tomato");
  line->set_qty(3);
  const auto f = RecordFieldsToJson(o);
  EXPECT_EQ(f["lines"][0]["qty"], 3);
  EXPECT_EQ(f["customer_sealed"], "AP8Q");
  EXPECT_EQ(EntityName(99), "99");
}

// An alert has one JSON form, whether it is served by /alerts or in the feed's fields.
TEST(CodecTest, AlertJsonIsTheSameInTheFeedAndInTheAlertsAnswer) {
  v1::ChangeRecord r;
  r.set_entity(v1::COLDCHAIN_ALERT);
  auto* a = r.mutable_alert();
  a->set_alert_id("al-1");
  a->set_state("open");
  a->set_min_c(-1.5);
  a->set_started_ts_ms(1000);
  v1::AlertItem item;
  *item.mutable_alert() = *a;
  item.set_version(3);
  item.set_seq(7);
  nlohmann::json served = ToJson(item);
  EXPECT_EQ(served["version"], 3);
  EXPECT_EQ(served["seq"], 7);
  served.erase("version");
  served.erase("seq");
  EXPECT_EQ(served, RecordFieldsToJson(r));
  EXPECT_EQ(served["started_ts"], 1000);
  EXPECT_FALSE(served.contains("ended_ts"));  // 0: not set

  a->set_ended_ts_ms(2000);
  *item.mutable_alert() = *a;
  EXPECT_EQ(ToJson(item)["ended_ts"], 2000);
  EXPECT_EQ(RecordFieldsToJson(r)["ended_ts"], 2000);
}

TEST(CodecTest, ToJsonKeepsTheApiNamesAndUnits) {
  v1::PositionItem p;
  p.set_site("s1");
  p.set_ts_ms(5);
  p.mutable_position()->set_vehicle("truck-1");
  p.mutable_position()->set_lat_e6(-33868800);
  p.mutable_position()->set_heading_deg(270);
  p.mutable_position()->set_hdop_d(12);
  const auto j = ToJson(p);
  EXPECT_EQ(j["vehicle"], "truck-1");  // the position's fields are in the item
  EXPECT_EQ(j["site"], "s1");
  EXPECT_EQ(j["ts"], 5);
  EXPECT_FALSE(j.contains("position"));
  EXPECT_DOUBLE_EQ(j["lat"].get<double>(), -33.8688);
  EXPECT_TRUE(j["heading"].is_number_integer());
  EXPECT_DOUBLE_EQ(j["hdop"].get<double>(), 1.2);

  v1::RangeDigest d;
  d.set_digest(std::string("\x01\xab", 2));
  EXPECT_EQ(ToJson(d)["digest"], "01ab");  // digests in hex, other bytes base64

  v1::ChangeRecord none;
  EXPECT_EQ(ToJson(none)["fields"], nlohmann::json::object());
  EXPECT_FALSE(ToJson(none).contains("hlc_from_ts"));
}

TEST(CodecTest, Base64) {
  EXPECT_EQ(Base64(""), "");
  EXPECT_EQ(Base64("f"), "Zg==");
  EXPECT_EQ(Base64("fo"), "Zm8=");
  EXPECT_EQ(Base64("foo"), "Zm9v");
  EXPECT_EQ(Base64("foobar"), "Zm9vYmFy");
}

}  // namespace
}  // namespace freshsync::hub
