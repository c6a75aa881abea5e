// The shared field rules: each attack a site could push, at the record level, the boundaries
// on both sides, and that a record as the edge writes it passes.
#include "wire/record_rules.h"

#include <gtest/gtest.h>

#include <limits>

namespace freshsync::wire {
namespace {

v1::ChangeRecord Stock(const std::string& sku = "sku-1") {
  v1::ChangeRecord r;
  r.set_seq(1);
  r.set_entity(v1::STOCK);
  r.set_key(sku);
  r.set_version(1);
  r.set_hlc(uint64_t{1764000000000} << 16);
  r.set_ts_ms(1764000000000);
  auto* s = r.mutable_stock();
  s->set_sku(sku);
  s->set_on_hand(10);
  s->set_movement_id("m-1");
  s->set_delta(10);
  s->set_reason("receive");
  return r;
}

v1::ChangeRecord Position(int32_t lat_e6 = 31000000) {
  v1::ChangeRecord r;
  r.set_seq(2);
  r.set_entity(v1::VEHICLE_POSITION);
  r.set_key("truck-1");
  r.set_version(1);
  r.set_ts_ms(1764000000000);
  auto* p = r.mutable_position();
  p->set_vehicle("truck-1");
  p->set_device_seq(7);
  p->set_lat_e6(lat_e6);
  p->set_lon_e6(121000000);
  p->set_speed_dkmh(500);
  p->set_heading_deg(90);
  p->set_hdop_d(12);
  return r;
}

std::string Refusal(const v1::ChangeRecord& r) {
  Status s = CheckChangeRecord(r);
  return s.ok() ? "" : s.message();
}

bool StartsWith(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

TEST(RecordRules, RecordsAsTheEdgeWritesThemPass) {
  EXPECT_EQ(Refusal(Stock()), "");
  EXPECT_EQ(Refusal(Position()), "");
  v1::ChangeRecord o;
  o.set_entity(v1::ORDER);
  o.set_key("o-1");
  o.set_version(3);
  o.mutable_order()->set_order_id("o-1");
  o.mutable_order()->set_status("refused");
  auto* l = o.mutable_order()->add_lines();
  l->set_sku("leek");
  l->set_qty(3);
  EXPECT_EQ(Refusal(o), "");
  v1::ChangeRecord a;
  a.set_entity(v1::COLDCHAIN_ALERT);
  a.set_key("disk-quota");
  a.set_version(1);
  a.mutable_alert()->set_alert_id("disk-quota");
  a.mutable_alert()->set_state("open");
  a.mutable_alert()->set_kind("disk_quota");  // no sensor: allowed
  EXPECT_EQ(Refusal(a), "");
  // A reservation: no movement, no delta, reason reserve.
  auto res = Stock();
  res.mutable_stock()->clear_movement_id();
  res.mutable_stock()->set_delta(0);
  res.mutable_stock()->set_reason("reserve");
  res.mutable_stock()->set_reserved(4);
  EXPECT_EQ(Refusal(res), "");
}

TEST(RecordRules, OversizedKeyIsRefusedAndNotQuoted) {
  auto r = Stock(std::string(1 << 20, 'k'));
  const std::string m = Refusal(r);
  EXPECT_TRUE(StartsWith(m, "key: longer than 128 bytes")) << m;
  EXPECT_LT(m.size(), 100u);
  EXPECT_EQ(Refusal(Stock(std::string(kMaxIdBytes, 'k'))), "");
  EXPECT_NE(Refusal(Stock(std::string(kMaxIdBytes + 1, 'k'))), "");
  EXPECT_TRUE(StartsWith(Refusal(Stock(std::string("a\x01", 2))), "key: contains control"));
  EXPECT_TRUE(StartsWith(Refusal(Stock("\xff\xfe")), "key: not valid UTF-8"));
  EXPECT_TRUE(StartsWith(Refusal(Stock("")), "key: must not be empty"));
  auto p = Position();
  p.set_key("truck/1");
  p.mutable_position()->set_vehicle("truck/1");
  EXPECT_TRUE(StartsWith(Refusal(p), "key: must be letters"));
}

TEST(RecordRules, NegativeAndHugeQuantities) {
  auto r = Stock();
  r.mutable_stock()->set_on_hand(-5);
  EXPECT_TRUE(StartsWith(Refusal(r), "stock.on_hand: -5 out of range")) << Refusal(r);
  r = Stock();
  r.mutable_stock()->set_reserved(11);
  EXPECT_TRUE(StartsWith(Refusal(r), "stock.reserved: more than on_hand"));
  r = Stock();
  r.mutable_stock()->set_delta(-3);  // receive with a negative delta
  EXPECT_TRUE(StartsWith(Refusal(r), "stock.delta: must be positive for reason receive"));
  r = Stock();
  r.mutable_stock()->set_delta(kMaxAbsDelta + 1);
  EXPECT_TRUE(StartsWith(Refusal(r), "stock.delta: magnitude over 1e9"));
  r = Stock();
  r.mutable_stock()->set_on_hand(kMaxStockUnits + 1);
  EXPECT_NE(Refusal(r), "");
  v1::ChangeRecord o;
  o.set_entity(v1::ORDER);
  o.set_key("o-1");
  o.set_version(1);
  o.mutable_order()->set_order_id("o-1");
  o.mutable_order()->set_status("created");
  o.mutable_order()->add_lines()->set_sku("leek");
  o.mutable_order()->mutable_lines(0)->set_qty(-2);
  EXPECT_TRUE(StartsWith(Refusal(o), "order.lines[0].qty: must be 1..1000000"));
  EXPECT_EQ(RefusalField(Refusal(o)), "order.lines");
}

TEST(RecordRules, CoordinatesAndNumbers) {
  EXPECT_TRUE(StartsWith(Refusal(Position(2147000000)), "position.lat_e6: 2147000000 out of range -90000000..90000000"));
  EXPECT_EQ(Refusal(Position(90000000)), "");
  EXPECT_EQ(Refusal(Position(-90000000)), "");
  EXPECT_NE(Refusal(Position(90000001)), "");
  auto p = Position();
  p.mutable_position()->set_heading_deg(361);
  EXPECT_TRUE(StartsWith(Refusal(p), "position.heading_deg"));
  v1::ChangeRecord a;
  a.set_entity(v1::COLDCHAIN_ALERT);
  a.set_key("al-1");
  a.set_version(1);
  a.mutable_alert()->set_alert_id("al-1");
  a.mutable_alert()->set_state("open");
  a.mutable_alert()->set_min_c(std::numeric_limits<double>::quiet_NaN());
  EXPECT_TRUE(StartsWith(Refusal(a), "alert.min_c: must be a finite number"));
  // The edge's message check uses the very same range.
  EXPECT_FALSE(CheckRange("lat", 90.0000001, kLat).ok());
  EXPECT_TRUE(CheckRange("lat", -90, kLat).ok());
}

TEST(RecordRules, EntitiesStatusesAndBodies) {
  auto r = Stock();
  r.set_entity(static_cast<v1::Entity>(99));
  EXPECT_TRUE(StartsWith(Refusal(r), "entity: 99 is not a known entity"));
  r.set_entity(v1::ENTITY_UNSPECIFIED);
  EXPECT_TRUE(StartsWith(Refusal(r), "entity:"));
  // A STOCK record carrying an order body.
  r = Stock();
  r.mutable_order()->set_order_id("sku-1");
  r.mutable_order()->set_status("created");
  EXPECT_TRUE(StartsWith(Refusal(r), "body: a different one expected for entity STOCK")) << Refusal(r);
  r = Stock();
  r.clear_body();
  EXPECT_TRUE(StartsWith(Refusal(r), "body:"));
  v1::ChangeRecord o;
  o.set_entity(v1::ORDER);
  o.set_key("o-1");
  o.set_version(1);
  o.mutable_order()->set_order_id("o-1");
  o.mutable_order()->set_status("teleported");
  EXPECT_TRUE(StartsWith(Refusal(o), "order.status: must be one of"));
  o.mutable_order()->set_status("created");
  o.mutable_order()->set_order_id("o-2");  // body id differs from the key
  EXPECT_TRUE(StartsWith(Refusal(o), "order.order_id: must equal the record's key"));
  r = Stock();
  r.mutable_stock()->set_reason("stolen");
  EXPECT_TRUE(StartsWith(Refusal(r), "stock.reason:"));
}

v1::ChangeRecord DockScanRecord() {
  v1::ChangeRecord r;
  r.set_seq(3);
  r.set_entity(v1::DOCK_SCAN);
  r.set_key("sc-1");
  r.set_version(1);
  r.set_ts_ms(1764000000000);
  auto* d = r.mutable_dock_scan();
  d->set_scan_id("sc-1");
  d->set_door("door-3");
  d->set_pallet_id("P-77");
  d->set_sku("apple");
  d->set_lot("L1");
  d->set_qty(40);
  d->set_direction("in");
  return r;
}

TEST(RecordRules, DockScans) {
  EXPECT_EQ(Refusal(DockScanRecord()), "");
  EXPECT_EQ(BodyFor(v1::DOCK_SCAN), v1::ChangeRecord::kDockScan);
  auto r = DockScanRecord();
  r.mutable_dock_scan()->set_scan_id("sc-2");
  EXPECT_TRUE(StartsWith(Refusal(r), "dock_scan.scan_id: must equal the record's key")) << Refusal(r);
  r = DockScanRecord();
  r.mutable_dock_scan()->set_door("door 3");
  EXPECT_TRUE(StartsWith(Refusal(r), "dock_scan.door:")) << Refusal(r);
  r = DockScanRecord();
  r.mutable_dock_scan()->clear_pallet_id();
  EXPECT_TRUE(StartsWith(Refusal(r), "dock_scan.pallet_id:")) << Refusal(r);
  r = DockScanRecord();
  r.mutable_dock_scan()->set_qty(-4);
  EXPECT_TRUE(StartsWith(Refusal(r), "dock_scan.qty:")) << Refusal(r);
  r = DockScanRecord();
  r.mutable_dock_scan()->set_direction("up");
  EXPECT_EQ(Refusal(r), "dock_scan.direction: must be one of in, out");
  r = DockScanRecord();
  r.clear_body();
  EXPECT_TRUE(StartsWith(Refusal(r), "body: a different one expected for entity DOCK_SCAN")) << Refusal(r);
}

TEST(RecordRules, VersionIsCappedAtInt64Max) {
  auto r = Stock();
  r.set_version(std::numeric_limits<uint64_t>::max());
  EXPECT_TRUE(StartsWith(Refusal(r), "version: 18446744073709551615 out of range 1..2^63-1"));
  r.set_version(kMaxVersion + 1);
  EXPECT_NE(Refusal(r), "");
  r.set_version(kMaxVersion);
  EXPECT_EQ(Refusal(r), "");
  r.set_version(0);
  EXPECT_NE(Refusal(r), "");
  r.set_version(1);
  r.set_hlc(std::numeric_limits<uint64_t>::max());
  EXPECT_TRUE(StartsWith(Refusal(r), "hlc:"));
}

TEST(RecordRules, Timestamps) {
  auto r = Stock();
  r.set_ts_ms(0);  // absent in proto3
  EXPECT_EQ(Refusal(r), "");
  r.set_ts_ms(kMinTsMs - 1);
  EXPECT_TRUE(StartsWith(Refusal(r), "ts_ms: epoch milliseconds out of range"));
  r.set_ts_ms(kMaxTsMs);
  EXPECT_NE(Refusal(r), "");
  r.set_ts_ms(kMaxTsMs - 1);
  EXPECT_EQ(Refusal(r), "");
  r.set_hlc_from_ts(5);  // a format-2 field that must have been expanded away
  EXPECT_TRUE(StartsWith(Refusal(r), "hlc_from_ts:"));
}

TEST(RecordRules, RefusalFieldIsBounded) {
  EXPECT_EQ(RefusalField("key: longer than 128 bytes"), "key");
  EXPECT_EQ(RefusalField("order.lines[77].sku: must not be empty"), "order.lines");
  EXPECT_EQ(RefusalField("no field here"), "other");
  EXPECT_EQ(RefusalField(std::string(200, 'a') + ": x"), "other");
  EXPECT_EQ(RefusalField("K\xff: x"), "other");
}

TEST(RecordRules, MessageChecksShareTheEdgeWording) {
  EXPECT_EQ(CheckDelta("delta", 0, "adjust").message(), "delta: must not be zero");
  EXPECT_EQ(CheckDelta("delta", -1, "return").message(), "delta: must be positive for reason return");
  EXPECT_EQ(CheckDelta("delta", 1, "spoil").message(), "delta: must be negative for reason spoil");
  EXPECT_TRUE(CheckDelta("delta", -5, "transfer").ok());
  EXPECT_EQ(CheckLineQty("lines[0].qty", 1000001).message(), "lines[0].qty: must be 1..1000000");
  EXPECT_TRUE(IsDeviceId("cold-1.a:b_c"));
  EXPECT_FALSE(IsDeviceId(std::string(65, 'a')));
}

}  // namespace
}  // namespace freshsync::wire
