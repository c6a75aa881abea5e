#include "edge/decode.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "edge/message_types.h"
#include "freshsync.pb.h"

namespace freshsync::edge {
namespace {

constexpr const char* kMove = "fs/stock/movements";
constexpr const char* kOrder = "fs/orders/status";
constexpr const char* kGps = "fs/vehicles/truck-7/gps";
constexpr const char* kClimate = "fs/sensors/cold-1/climate";
constexpr const char* kScan = "fs/docks/door-3/scans";

TEST(DecodeTest, StockMovementJson) {
  auto r = Decode("fs", kMove, R"({"id":"m-1","sku":"apple","delta":-3,"reason":"pick","order_id":"o-1","lot":"L1","ts":"2026-11-25T08:00:00Z"})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const auto& m = std::get<StockMovement>(*r);
  EXPECT_EQ(m.id, "m-1");
  EXPECT_EQ(m.delta, -3);
  EXPECT_EQ(m.order_id, "o-1");
  EXPECT_EQ(*m.ts_ms, 1795593600000);
}

// Every row of the message-type table: its topic (device filled in) classifies as its kind with
// the device kept, lies under its own subscription filter, and the unknown-topic reason names it.
TEST(MessageTypesTest, EachRowClassifiesItsTopicAndItsFilterCoversIt) {
  for (const MessageType& type : kMessageTypes) {
    std::string topic = "fs";
    for (std::string_view segment : type.topic)
      if (!segment.empty()) topic += "/" + std::string(segment == "+" ? "dev-1" : segment);
    const TopicInfo info = ClassifyTopic("fs", topic);
    EXPECT_EQ(info.kind, type.kind) << topic;
    EXPECT_EQ(info.device, type.topic[1] == "+" ? "dev-1" : "") << topic;
    ASSERT_EQ(type.filter.substr(type.filter.size() - 2), "/#") << type.filter;
    const std::string prefix = "fs/" + std::string(type.filter.substr(0, type.filter.size() - 1));
    EXPECT_EQ(topic.rfind(prefix, 0), 0u) << topic << " is not under " << type.filter;
    auto r = Decode("fs", "fs/nowhere/at/all", "{}");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(std::string(type.topic_doc)), std::string::npos) << type.topic_doc;
  }
}

TEST(DecodeTest, LeadingWhitespaceStillJson) {
  auto r = Decode("fs", kMove, "  \n{\"id\":\"m\",\"sku\":\"s\",\"delta\":1,\"reason\":\"receive\"}");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(std::get<StockMovement>(*r).ts_ms.has_value());
}

TEST(DecodeTest, OrderJsonWithLinesAndCustomer) {
  auto r = Decode("fs", kOrder,
                  R"({"order_id":"o-1","status":"created","ts":1764000000000,"lines":[{"sku":"apple","qty":2}],
                      "customer":{"name":"Li Wei","phone":"+86 1","address":"1 Road"}})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const auto& o = std::get<OrderStatus>(*r);
  ASSERT_EQ(o.lines.size(), 1u);
  EXPECT_EQ(o.lines[0].qty, 2);
  ASSERT_TRUE(o.customer.has_value());
  EXPECT_EQ(o.customer->name, "Li Wei");
}

TEST(DecodeTest, GpsAndClimateJsonTakeDeviceFromTopic) {
  auto g = Decode("fs", kGps, R"({"seq":5,"lat":31.2,"lon":121.5,"ts":1764000000000,"speed_kmh":40.5})");
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(std::get<GpsFix>(*g).vehicle, "truck-7");
  EXPECT_DOUBLE_EQ(*std::get<GpsFix>(*g).speed_kmh, 40.5);
  auto c = Decode("fs", kClimate, R"({"seq":1,"ts":"2026-11-25T08:00:00.250+08:00","temp_c":3.5,"rh":80})");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(std::get<ClimateSample>(*c).sensor, "cold-1");
  EXPECT_EQ(std::get<ClimateSample>(*c).ts_ms, 1795593600000 - 8 * 3600000 + 250);
}

TEST(DecodeTest, ProtobufForms) {
  v1::GpsMsg g;
  g.set_seq(9);
  g.set_lat(1.5);
  g.set_lon(2.5);
  g.set_ts_ms(1764000000000);
  g.set_hdop(0.9);
  auto r = Decode("fs", kGps, g.SerializeAsString());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(std::get<GpsFix>(*r).seq, 9u);
  EXPECT_TRUE(std::get<GpsFix>(*r).hdop.has_value());
  EXPECT_FALSE(std::get<GpsFix>(*r).heading.has_value());

  v1::StockMovementMsg m;
  m.set_id("m-9");
  m.set_sku("pear");
  m.set_delta(4);
  m.set_reason("receive");
  r = Decode("fs", kMove, m.SerializeAsString());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(std::get<StockMovement>(*r).delta, 4);

  v1::OrderStatusMsg o;
  o.set_order_id("o-9");
  o.set_status("created");
  o.set_ts_ms(1764000000000);
  auto* l = o.add_lines();
  l->set_sku("pear");
  l->set_qty(1);
  o.mutable_customer()->set_name("X");
  r = Decode("fs", kOrder, o.SerializeAsString());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(std::get<OrderStatus>(*r).customer.has_value());

  v1::ClimateMsg c;
  c.set_seq(2);
  c.set_ts_ms(1764000000000);
  c.set_temp_c(-18.5);
  r = Decode("fs", kClimate, c.SerializeAsString());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
}

TEST(DecodeTest, DockScanJsonAndProtobufTakeDoorFromTopic) {
  auto r = Decode("fs", kScan,
                  R"({"scan_id":"sc-1","pallet_id":"P-77","sku":"apple","lot":"L1","qty":40,"direction":"in","ts":"2026-11-25T08:00:00Z"})");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const auto& d = std::get<DockScan>(*r);
  EXPECT_EQ(d.door, "door-3");
  EXPECT_EQ(d.scan_id, "sc-1");
  EXPECT_EQ(d.pallet_id, "P-77");
  EXPECT_EQ(d.lot, "L1");
  EXPECT_EQ(d.qty, 40);
  EXPECT_EQ(d.direction, "in");
  EXPECT_EQ(d.ts_ms, 1795593600000);

  v1::DockScanMsg p;
  p.set_scan_id("sc-2");
  p.set_pallet_id("P-78");
  p.set_sku("pear");
  p.set_qty(2);
  p.set_direction("out");
  p.set_ts_ms(1764000000000);
  r = Decode("fs", kScan, p.SerializeAsString());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(std::get<DockScan>(*r).door, "door-3");
  EXPECT_EQ(std::get<DockScan>(*r).lot, "");
  EXPECT_FALSE(MayCarryPersonalData(TopicKind::kDockScans, p.SerializeAsString()));

  p.clear_scan_id();
  r = Decode("fs", kScan, p.SerializeAsString());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "scan_id: missing");
}

struct Bad {
  std::string name;
  std::string topic;
  std::string payload;
  std::string reason_contains;
};

class DecodeRefusalTest : public ::testing::TestWithParam<Bad> {};

TEST_P(DecodeRefusalTest, RefusedWithReason) {
  const auto& b = GetParam();
  auto r = Decode("fs", b.topic, b.payload);
  ASSERT_FALSE(r.ok()) << b.name;
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(b.reason_contains), std::string::npos) << b.name << ": " << r.status().message();
}

std::string ProtoGps(double lat, double lon) {
  v1::GpsMsg g;
  g.set_seq(1);
  g.set_lat(lat);
  g.set_lon(lon);
  g.set_ts_ms(1764000000000);
  return g.SerializeAsString();
}

const std::string kOkMove = R"("id":"m","sku":"s","reason":"receive")";

INSTANTIATE_TEST_SUITE_P(
    Cases, DecodeRefusalTest,
    ::testing::Values(
        Bad{"broken_json", kMove, R"({"id":"m",)", "malformed JSON"},
        Bad{"json_array", kMove, R"({"a":1} [)", "malformed JSON"},
        Bad{"nan_literal", kGps, R"({"seq":1,"lat":NaN,"lon":1,"ts":1764000000000})", "malformed JSON"},
        Bad{"empty", kMove, "   ", "empty payload"},
        Bad{"too_large", kMove, "{\"x\":\"" + std::string(300 * 1024, 'a') + "\"}", "payload too large"},
        Bad{"bad_utf8", kMove, "{\"id\":\"m\xff\xfe\",\"sku\":\"s\",\"delta\":1,\"reason\":\"receive\"}", "UTF-8"},
        Bad{"overlong_utf8", kMove, "{\"id\":\"\xc0\xaf\",\"sku\":\"s\",\"delta\":1,\"reason\":\"receive\"}", "UTF-8"},
        Bad{"missing_id", kMove, R"({"sku":"s","delta":1,"reason":"receive"})", "id: missing"},
        Bad{"empty_id", kMove, R"({"id":"","sku":"s","delta":1,"reason":"receive"})", "id: must not be empty"},
        Bad{"long_id", kMove, "{\"id\":\"" + std::string(200, 'x') + "\",\"sku\":\"s\",\"delta\":1,\"reason\":\"receive\"}", "id: longer"},
        Bad{"control_char_id", kMove, "{\"id\":\"a\\u0001\",\"sku\":\"s\",\"delta\":1,\"reason\":\"receive\"}", "control"},
        Bad{"delta_string", kMove, "{" + kOkMove + R"(,"delta":"5"})", "delta: must be an integer"},
        Bad{"delta_fraction", kMove, "{" + kOkMove + R"(,"delta":1.5})", "fraction"},
        Bad{"delta_zero", kMove, "{" + kOkMove + R"(,"delta":0})", "delta: must not be zero"},
        Bad{"delta_huge", kMove, "{" + kOkMove + R"(,"delta":99999999999})", "delta: magnitude"},
        Bad{"delta_sign", kMove, "{" + kOkMove + R"(,"delta":-1})", "must be positive"},
        Bad{"unknown_reason", kMove, R"({"id":"m","sku":"s","delta":1,"reason":"stolen"})", "reason: must be one of"},
        Bad{"reason_type", kMove, R"({"id":"m","sku":"s","delta":1,"reason":7})", "reason: must be a string"},
        Bad{"ts_garbage", kMove, "{" + kOkMove + R"(,"delta":1,"ts":"yesterday"})", "RFC 3339"},
        Bad{"ts_seconds", kMove, "{" + kOkMove + R"(,"delta":1,"ts":1764000000})", "out of range"},
        Bad{"ts_bad_date", kMove, "{" + kOkMove + R"(,"delta":1,"ts":"2026-02-30T00:00:00Z"})", "RFC 3339"},
        Bad{"ts_bool", kMove, "{" + kOkMove + R"(,"delta":1,"ts":true})", "RFC 3339 string or epoch"},
        Bad{"no_fields", kMove, R"({"a":1})", "id: missing"},
        Bad{"unknown_topic", "fs/stock/levels", R"({"id":"m"})", "unknown topic"},
        Bad{"other_root", "xx/stock/movements", R"({"id":"m"})", "unknown topic"},
        Bad{"bad_vehicle_id", "fs/vehicles/a b/gps", R"({"seq":1})", "unknown topic"},
        Bad{"order_unknown_status", kOrder, R"({"order_id":"o","status":"lost","ts":1764000000000})", "status: must be one of"},
        Bad{"order_missing_ts", kOrder, R"({"order_id":"o","status":"accepted"})", "ts: missing"},
        Bad{"order_created_no_lines", kOrder, R"({"order_id":"o","status":"created","ts":1764000000000})", "lines"},
        Bad{"order_line_qty", kOrder, R"({"order_id":"o","status":"created","ts":1764000000000,"lines":[{"sku":"a","qty":0}]})", "lines[0].qty"},
        Bad{"order_lines_type", kOrder, R"({"order_id":"o","status":"created","ts":1764000000000,"lines":5})", "lines: must be an array"},
        Bad{"order_customer_type", kOrder, R"({"order_id":"o","status":"created","ts":1764000000000,"lines":[{"sku":"a","qty":1}],"customer":"Li"})", "customer: must be an object"},
        Bad{"order_lines_late", kOrder, R"({"order_id":"o","status":"accepted","ts":1764000000000,"lines":[{"sku":"a","qty":1}]})", "only accepted with status created"},
        Bad{"gps_lat_range", kGps, R"({"seq":1,"lat":91,"lon":0,"ts":1764000000000})", "lat: 91 out of range"},
        Bad{"gps_lon_range", kGps, R"({"seq":1,"lat":0,"lon":-180.5,"ts":1764000000000})", "lon:"},
        Bad{"gps_inf", kGps, R"({"seq":1,"lat":1e999,"lon":0,"ts":1764000000000})", "Inf"},
        Bad{"gps_lat_string", kGps, R"({"seq":1,"lat":"31.2","lon":0,"ts":1764000000000})", "lat: must be a number"},
        Bad{"gps_negative_seq", kGps, R"({"seq":-1,"lat":1,"lon":0,"ts":1764000000000})", "seq"},
        Bad{"gps_missing_seq", kGps, R"({"lat":1,"lon":0,"ts":1764000000000})", "seq: missing"},
        Bad{"gps_speed", kGps, R"({"seq":1,"lat":1,"lon":0,"ts":1764000000000,"speed_kmh":-3})", "speed_kmh"},
        Bad{"proto_nan", kGps, ProtoGps(std::nan(""), 1), "lat: must be a finite number"},
        Bad{"proto_inf", kGps, ProtoGps(1, std::numeric_limits<double>::infinity()), "lon: must be a finite number"},
        Bad{"proto_garbage", kGps, std::string("\xff\xff\xff\xff", 4), "not a valid protobuf"},
        Bad{"climate_temp", kClimate, R"({"seq":1,"ts":1764000000000,"temp_c":150})", "temp_c"},
        Bad{"climate_missing_temp", kClimate, R"({"seq":1,"ts":1764000000000})", "temp_c: missing"},
        Bad{"climate_rh", kClimate, R"({"seq":1,"ts":1764000000000,"temp_c":1,"rh":101})", "rh"},
        Bad{"scan_missing_scan_id", kScan, R"({"pallet_id":"P","sku":"s","qty":1,"direction":"in","ts":1764000000000})", "scan_id: missing"},
        Bad{"scan_missing_pallet", kScan, R"({"scan_id":"x","sku":"s","qty":1,"direction":"in","ts":1764000000000})", "pallet_id: missing"},
        Bad{"scan_missing_ts", kScan, R"({"scan_id":"x","pallet_id":"P","sku":"s","qty":1,"direction":"in"})", "ts: missing"},
        Bad{"scan_qty_zero", kScan, R"({"scan_id":"x","pallet_id":"P","sku":"s","qty":0,"direction":"in","ts":1764000000000})", "qty: "},
        Bad{"scan_qty_fraction", kScan, R"({"scan_id":"x","pallet_id":"P","sku":"s","qty":1.5,"direction":"in","ts":1764000000000})", "qty: must be an integer, not a fraction"},
        Bad{"scan_direction", kScan, R"({"scan_id":"x","pallet_id":"P","sku":"s","qty":1,"direction":"sideways","ts":1764000000000})", "direction: must be one of in, out"},
        Bad{"scan_bad_door", "fs/docks/door 3/scans", R"({"scan_id":"x"})", "unknown topic"}),
    [](const ::testing::TestParamInfo<Bad>& info) { return info.param.name; });

// DecodeTest.Rfc3339 moved to wire/rfc3339_test.cc with the parser.

// The plain GPS fix is decoded without the DOM (edge/json_fast.h). An unknown key makes the
// fast path decline (the general decoder ignores unknown keys), so each payload with one
// prepended is the general decoder's answer: both must agree, accepted or refused, on every
// edge the number grammar and the field rules have.
TEST(DecodeTest, PlainGpsFastPathAgreesWithTheGeneralDecoder) {
  const std::vector<std::string> bodies = {
      R"("seq":5,"lat":31.2,"lon":121.5,"ts":1764000000000,"speed_kmh":40.5})",
      R"("seq":5,"lat":31.230412345678901,"lon":121.47370000000001,"ts":1764000000000,"speed_kmh":42.75,"heading":181.5,"hdop":0.9})",
      R"( "seq" : 5 , "lat" : -0.0 , "lon" : 0 , "ts" : 1764000000000 , "hdop" : null })",
      R"("seq":5,"lat":-0,"lon":1E1,"ts":1764000000000,"heading":3.6e2})",
      R"("seq":5,"lat":1e-400,"lon":4.9e-324,"ts":1764000000000})",
      R"("seq":5,"lat":12345678901234567890,"lon":1,"ts":1764000000000})",
      R"("seq":9223372036854775807,"lat":1,"lon":1,"ts":1764000000000})",
      R"("seq":9223372036854775808,"lat":1,"lon":1,"ts":1764000000000})",
      R"("seq":0,"lat":1,"lon":1,"ts":1764000000000})",
      R"("seq":-0,"lat":1,"lon":1,"ts":1764000000000})",
      R"("seq":5.0,"lat":1,"lon":1,"ts":1764000000000})",
      R"("seq":5,"lat":1,"lon":1,"ts":1764000000000.0})",
      R"("seq":5,"lat":1,"lon":1,"ts":"2025-11-24T16:00:00Z"})",
      R"("seq":5,"lat":1,"lon":1,"ts":1})",
      R"("seq":5,"lat":91,"lon":1,"ts":1764000000000})",
      R"("seq":5,"lat":1,"lon":1,"ts":1764000000000,"speed_kmh":-1})",
      R"("seq":5,"lat":1,"lon":1,"ts":1764000000000,"speed_kmh":"fast"})",
      R"("seq":5,"lat":null,"lon":1,"ts":1764000000000})",
      R"("seq":5,"lon":1,"ts":1764000000000})",
      R"("seq":5,"lat":1,"lat":2,"lon":1,"ts":1764000000000})",
      R"("seq":5,"lat":01,"lon":1,"ts":1764000000000})",
      R"("seq":5,"lat":1.,"lon":1,"ts":1764000000000})",
      R"("seq":5,"lat":.5,"lon":1,"ts":1764000000000})",
      R"("seq":5,"lat":+1,"lon":1,"ts":1764000000000})",
      R"("seq":5,"lat":1,"lon":1,"ts":1764000000000,})",
      R"("seq":5,"lat":1,"lon":1,"ts":1764000000000} x)",
      R"("seq":5,"lat":1,"lon":1,"ts":1764000000000,"hdop":[1]})",
      R"("seq":5,"lat":1,"lon":1,"ts":1764000000000})",
      R"("seq":5,"lat":1,"lon":1,"ts":1764000000000,"hdop":nul})",
  };
  int fast_accepted = 0;
  for (const std::string& body : bodies) {
    const std::string plain = "{" + body;
    const std::string general = R"({"zz_unknown":0,)" + body;
    auto a = Decode("fs", kGps, plain);
    auto b = Decode("fs", kGps, general);
    ASSERT_EQ(a.ok(), b.ok()) << plain << " / " << (a.ok() ? b.status().message() : a.status().message());
    if (!a.ok()) {
      // A malformed-JSON refusal names a byte offset, which the extra key moves.
      if (a.status().message().find("byte") == std::string::npos) {
        EXPECT_EQ(a.status().message(), b.status().message()) << plain;
      }
      continue;
    }
    ++fast_accepted;
    const auto& x = std::get<GpsFix>(*a);
    const auto& y = std::get<GpsFix>(*b);
    EXPECT_EQ(x.vehicle, y.vehicle) << plain;
    EXPECT_EQ(x.seq, y.seq) << plain;
    EXPECT_EQ(std::memcmp(&x.lat, &y.lat, sizeof x.lat), 0) << plain << " " << x.lat << " vs " << y.lat;  // bit for bit (-0.0)
    EXPECT_EQ(std::memcmp(&x.lon, &y.lon, sizeof x.lon), 0) << plain;
    EXPECT_EQ(x.ts_ms, y.ts_ms) << plain;
    EXPECT_EQ(x.speed_kmh, y.speed_kmh) << plain;
    EXPECT_EQ(x.heading, y.heading) << plain;
    EXPECT_EQ(x.hdop, y.hdop) << plain;
  }
  EXPECT_GE(fast_accepted, 6);  // the accepted ones above are really compared
}

TEST(DecodeTest, Utf8) {
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("\xe4\xb8\x8a\xe6\xb5\xb7"));        // 上海
  EXPECT_TRUE(IsValidUtf8("\xf0\x9f\xa5\xac"));                // 🥬
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));                   // surrogate
  EXPECT_FALSE(IsValidUtf8("\xe4\xb8"));                       // truncated
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));               // > U+10FFFF
}

TEST(DecodeTest, OrderLifecycle) {
  EXPECT_TRUE(IsLegalOrderTransition("", "created"));
  EXPECT_FALSE(IsLegalOrderTransition("", "accepted"));
  EXPECT_TRUE(IsLegalOrderTransition("created", "accepted"));
  EXPECT_TRUE(IsLegalOrderTransition("packed", "dispatched"));
  EXPECT_TRUE(IsLegalOrderTransition("dispatched", "delivered"));
  EXPECT_FALSE(IsLegalOrderTransition("created", "packed"));
  EXPECT_FALSE(IsLegalOrderTransition("delivered", "created"));
  EXPECT_TRUE(IsLegalOrderTransition("picking", "cancelled"));
  EXPECT_FALSE(IsLegalOrderTransition("dispatched", "cancelled"));
  EXPECT_FALSE(IsLegalOrderTransition("cancelled", "accepted"));
  // refused (stock could not cover it, local or HQ's) is terminal, and no message asks for it.
  for (const char* to : {"accepted", "picking", "cancelled", "created"}) EXPECT_FALSE(IsLegalOrderTransition("refused", to)) << to;
  EXPECT_FALSE(IsLegalOrderTransition("created", "refused"));
  EXPECT_FALSE(IsKnownOrderStatus("refused"));
}

TEST(DecodeTest, TopicClassification) {
  EXPECT_EQ(ClassifyTopic("fs", "fs/deadletter").kind, TopicKind::kOwnOutput);
  EXPECT_EQ(ClassifyTopic("fs", "fs/events/geofence").kind, TopicKind::kOwnOutput);
  EXPECT_EQ(ClassifyTopic("fs", "fs/alerts/coldchain").kind, TopicKind::kOwnOutput);
  EXPECT_EQ(ClassifyTopic("fs", "fs/orders/o-1/state").kind, TopicKind::kOwnOutput);
  EXPECT_EQ(ClassifyTopic("site/a", "site/a/orders/status").kind, TopicKind::kOrderStatus);
  EXPECT_EQ(ClassifyTopic("fs", "fsx/orders/status").kind, TopicKind::kUnknown);
  EXPECT_EQ(ClassifyTopic("fs", "fs/vehicles//gps").kind, TopicKind::kUnknown);
}

TEST(DecodeTest, RedactsCustomerFromOrderPayloads) {
  auto r = RedactPersonalData(TopicKind::kOrderStatus, R"({"order_id":"o","status":"created","customer":{"name":"Li Wei","phone":"+86 138"}})");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->find("Li Wei"), std::string::npos);
  EXPECT_EQ(r->find("138"), std::string::npos);
  EXPECT_NE(r->find("\"order_id\":\"o\""), std::string::npos);
  EXPECT_FALSE(RedactPersonalData(TopicKind::kOrderStatus, R"({"order_id":"o","customer":{"name":"Li Wei")").has_value());
  v1::OrderStatusMsg o;
  o.set_order_id("o");
  o.mutable_customer()->set_name("Li Wei");
  auto p = RedactPersonalData(TopicKind::kOrderStatus, o.SerializeAsString());
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->find("Li Wei"), std::string::npos);
}

// Free text holds no control characters, in either form, so that the journal's two ways of
// keeping a payload that may carry personal data agree: sealed (key; Decode sees the original)
// and redacted (no key; Decode sees RedactPersonalData's copy) are refused for the same reason.
TEST(DecodeTest, ControlCharactersInFreeTextAreRefusedWithAndWithoutRedaction) {
  v1::OrderStatusMsg o;
  o.set_order_id("o-1");
  o.set_status("created");
  o.set_ts_ms(1764000000000);
  auto* line = o.add_lines();
  line->set_sku("apple");
  line->set_qty(1);
  o.set_actor(std::string("picker\x01", 7));
  auto r = Decode("fs", kOrder, o.SerializeAsString());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "actor: contains control characters");
  o.set_actor("picker-7");
  o.mutable_customer()->set_name("Li Wei");
  // A bell (0x07) is refused; line breaks and tabs are not (a delivery address on two lines).
  o.mutable_customer()->set_address("1 Road\aShanghai");
  for (const std::string& payload :
       {o.SerializeAsString(),
        std::string(R"({"order_id":"o-1","status":"created","ts":1764000000000,"lines":[{"sku":"apple","qty":1}],)"
                    R"("customer":{"name":"Li Wei","address":"1 Road\u0007Shanghai"}})")}) {
    auto original = Decode("fs", kOrder, payload);
    ASSERT_FALSE(original.ok());
    EXPECT_EQ(original.status().message(), "customer.address: contains control characters");
    auto redacted = RedactPersonalData(TopicKind::kOrderStatus, payload);
    ASSERT_TRUE(redacted.has_value());
    EXPECT_EQ(redacted->find("Shanghai"), std::string::npos);
    auto again = Decode("fs", kOrder, *redacted);
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.status().message(), original.status().message());
  }
  o.mutable_customer()->set_address("1 Road\r\n\tShanghai");
  EXPECT_TRUE(Decode("fs", kOrder, o.SerializeAsString()).ok());
  o.mutable_customer()->set_address("1 Road, Shanghai");
  EXPECT_TRUE(Decode("fs", kOrder, o.SerializeAsString()).ok());
}

TEST(DecodeTest, RefusalReasonsDoNotEchoCustomerData) {
  const std::string name(300, 'Z');
  auto r = Decode("fs", kOrder,
                  R"({"order_id":"o","status":"created","ts":1764000000000,"lines":[{"sku":"a","qty":1}],"customer":{"name":")" + name + "\"}}");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message().find("ZZZ"), std::string::npos);
  EXPECT_NE(r.status().message().find("customer.name"), std::string::npos);
}

}  // namespace
}  // namespace freshsync::edge
