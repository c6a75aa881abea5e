#include "wire/record_rules.h"

#include "wire/scales.h"

#include <cmath>
#include <cstdio>
#include <utility>

namespace freshsync::wire {
namespace {

Status Bad(std::string m) { return Status::InvalidArgument(std::move(m)); }

std::string F(std::string_view field) { return std::string(field); }

#define WIRE_RETURN_IF_ERROR(expr)   \
  do {                               \
    ::freshsync::Status _s = (expr); \
    if (!_s.ok()) return _s;         \
  } while (0)

// Fixed-point fields of the records are checked in their own units against the message range
// scaled the same way the edge scales them (docs/formats.md), so both sides accept the same set.
Status CheckFixed(std::string_view field, int64_t v, Range r, double scale) {
  const double lo = std::ceil(r.lo * scale), hi = std::floor(r.hi * scale);
  if (static_cast<double>(v) < lo || static_cast<double>(v) > hi) {
    char buf[160];
    snprintf(buf, sizeof buf, "%.*s: %lld out of range %.0f..%.0f", static_cast<int>(field.size()), field.data(),
             static_cast<long long>(v), lo, hi);
    return Bad(buf);
  }
  return Status::Ok();
}

// Zero is "absent" in proto3; a present timestamp must be in range.
Status CheckOptionalTs(std::string_view field, int64_t ts) { return ts == 0 ? Status::Ok() : CheckTs(field, ts); }

Status CheckKeyMatches(std::string_view field, std::string_view body_id, std::string_view key) {
  if (body_id != key) return Bad(F(field) + ": must equal the record's key");
  return Status::Ok();
}

Status CheckStock(const v1::ChangeRecord& r) {
  const auto& s = r.stock();
  WIRE_RETURN_IF_ERROR(CheckId("stock.sku", s.sku()));
  WIRE_RETURN_IF_ERROR(CheckKeyMatches("stock.sku", s.sku(), r.key()));
  if (s.on_hand() < 0 || s.on_hand() > kMaxStockUnits)
    return Bad("stock.on_hand: " + std::to_string(s.on_hand()) + " out of range 0..1e15");
  if (s.reserved() < 0 || s.reserved() > kMaxStockUnits)
    return Bad("stock.reserved: " + std::to_string(s.reserved()) + " out of range 0..1e15");
  // The edge's CHECK (reserved <= on_hand) holds for every row it ever writes.
  if (s.reserved() > s.on_hand()) return Bad("stock.reserved: more than on_hand");
  if (!IsKnownStockReason(s.reason()))
    return Bad("stock.reason: must be one of receive, pick, adjust, spoil, return, transfer, reserve, release");
  if (!s.movement_id().empty()) {
    WIRE_RETURN_IF_ERROR(CheckId("stock.movement_id", s.movement_id()));
    // A movement record names the movement's own reason, so the sign rule applies.
    WIRE_RETURN_IF_ERROR(CheckDelta("stock.delta", s.delta(), s.reason()));
  } else if (s.delta() != 0) {
    return Bad("stock.delta: only a movement (movement_id set) carries a delta");
  }
  if (!s.lot().empty()) WIRE_RETURN_IF_ERROR(CheckId("stock.lot", s.lot()));
  if (!s.order_id().empty()) WIRE_RETURN_IF_ERROR(CheckId("stock.order_id", s.order_id()));
  return Status::Ok();
}

Status CheckOrder(const v1::ChangeRecord& r) {
  const auto& o = r.order();
  WIRE_RETURN_IF_ERROR(CheckId("order.order_id", o.order_id()));
  WIRE_RETURN_IF_ERROR(CheckKeyMatches("order.order_id", o.order_id(), r.key()));
  if (!IsKnownRecordOrderStatus(o.status()))
    return Bad("order.status: must be one of created, accepted, picking, packed, dispatched, delivered, cancelled, refused");
  if (!o.actor().empty()) WIRE_RETURN_IF_ERROR(CheckId("order.actor", o.actor()));
  if (static_cast<size_t>(o.lines_size()) > kMaxOrderLines)
    return Bad("order.lines: more than " + std::to_string(kMaxOrderLines) + " lines");
  for (int i = 0; i < o.lines_size(); ++i) {
    const std::string p = "order.lines[" + std::to_string(i) + "]";
    WIRE_RETURN_IF_ERROR(CheckId(p + ".sku", o.lines(i).sku()));
    WIRE_RETURN_IF_ERROR(CheckLineQty(p + ".qty", o.lines(i).qty()));
  }
  if (o.customer_sealed().size() > kMaxSealedBytes)
    return Bad("order.customer_sealed: longer than " + std::to_string(kMaxSealedBytes) + " bytes");
  return Status::Ok();
}

Status CheckPosition(const v1::ChangeRecord& r) {
  const auto& p = r.position();
  WIRE_RETURN_IF_ERROR(CheckDeviceId("position.vehicle", p.vehicle()));
  WIRE_RETURN_IF_ERROR(CheckKeyMatches("position.vehicle", p.vehicle(), r.key()));
  if (p.device_seq() > kMaxDeviceSeq) return Bad("position.device_seq: must be 1..2^63-1");
  WIRE_RETURN_IF_ERROR(CheckFixed("position.lat_e6", p.lat_e6(), kLat, kLatLonScale));
  WIRE_RETURN_IF_ERROR(CheckFixed("position.lon_e6", p.lon_e6(), kLon, kLatLonScale));
  WIRE_RETURN_IF_ERROR(CheckFixed("position.speed_dkmh", p.speed_dkmh(), kSpeedKmh, kSpeedScale));
  WIRE_RETURN_IF_ERROR(CheckFixed("position.heading_deg", p.heading_deg(), kHeadingDeg, 1));
  WIRE_RETURN_IF_ERROR(CheckFixed("position.hdop_d", p.hdop_d(), kHdop, kHdopScale));
  return Status::Ok();
}

Status CheckClimate(const v1::ChangeRecord& r) {
  const auto& c = r.climate();
  WIRE_RETURN_IF_ERROR(CheckDeviceId("climate.sensor", c.sensor()));
  WIRE_RETURN_IF_ERROR(CheckKeyMatches("climate.sensor", c.sensor(), r.key()));
  if (c.device_seq() > kMaxDeviceSeq) return Bad("climate.device_seq: must be 1..2^63-1");
  WIRE_RETURN_IF_ERROR(CheckFixed("climate.temp_dc", c.temp_dc(), kTempC, kTempScale));
  WIRE_RETURN_IF_ERROR(CheckFixed("climate.rh_d", c.rh_d(), kPercent, kHumidityScale));
  WIRE_RETURN_IF_ERROR(CheckFixed("climate.battery_d", c.battery_d(), kPercent, kBatteryScale));
  return Status::Ok();
}

Status CheckGeofence(const v1::ChangeRecord& r) {
  const auto& g = r.geofence();
  WIRE_RETURN_IF_ERROR(CheckDeviceId("geofence.vehicle", g.vehicle()));
  WIRE_RETURN_IF_ERROR(CheckKeyMatches("geofence.vehicle", g.vehicle(), r.key()));
  WIRE_RETURN_IF_ERROR(CheckText("geofence.fence", g.fence(), kMaxFreeText));
  WIRE_RETURN_IF_ERROR(CheckText("geofence.kind", g.kind(), kMaxFreeText));
  if (!IsKnownGeofenceEvent(g.event())) return Bad("geofence.event: must be one of enter, exit");
  return Status::Ok();
}

Status CheckDockScan(const v1::ChangeRecord& r) {
  const auto& d = r.dock_scan();
  WIRE_RETURN_IF_ERROR(CheckId("dock_scan.scan_id", d.scan_id()));
  WIRE_RETURN_IF_ERROR(CheckKeyMatches("dock_scan.scan_id", d.scan_id(), r.key()));
  WIRE_RETURN_IF_ERROR(CheckDeviceId("dock_scan.door", d.door()));
  WIRE_RETURN_IF_ERROR(CheckId("dock_scan.pallet_id", d.pallet_id()));
  WIRE_RETURN_IF_ERROR(CheckId("dock_scan.sku", d.sku()));
  if (!d.lot().empty()) WIRE_RETURN_IF_ERROR(CheckId("dock_scan.lot", d.lot()));
  WIRE_RETURN_IF_ERROR(CheckLineQty("dock_scan.qty", d.qty()));
  if (!IsKnownScanDirection(d.direction())) return Bad("dock_scan.direction: must be one of in, out");
  return Status::Ok();
}

// The counters are monotone totals (docs/escrow.md); what the site holds can never exceed what
// it granted less what it has given back and used.
Status CheckEscrow(const v1::ChangeRecord& r) {
  const auto& e = r.escrow();
  WIRE_RETURN_IF_ERROR(CheckId("escrow.sku", e.sku()));
  WIRE_RETURN_IF_ERROR(CheckKeyMatches("escrow.sku", e.sku(), r.key()));
  for (auto [field, v] : {std::pair<const char*, int64_t>{"escrow.given", e.given()},
                          {"escrow.returned_applied", e.returned_applied()},
                          {"escrow.consumed_applied", e.consumed_applied()},
                          {"escrow.held", e.held()},
                          {"escrow.target", e.target()}}) {
    if (v < 0 || v > kMaxStockUnits) return Bad(std::string(field) + ": must be 0..1e15");
  }
  if (e.returned_applied() + e.consumed_applied() > e.given())
    return Bad("escrow.given: below returned_applied + consumed_applied");
  if (e.held() > e.given() - e.returned_applied() - e.consumed_applied())
    return Bad("escrow.held: above given - returned_applied - consumed_applied");
  return Status::Ok();
}

Status CheckAlert(const v1::ChangeRecord& r) {
  const auto& a = r.alert();
  WIRE_RETURN_IF_ERROR(CheckId("alert.alert_id", a.alert_id()));
  WIRE_RETURN_IF_ERROR(CheckKeyMatches("alert.alert_id", a.alert_id(), r.key()));
  // The disk-quota alert has no sensor (docs/formats.md).
  if (!a.sensor().empty()) WIRE_RETURN_IF_ERROR(CheckDeviceId("alert.sensor", a.sensor()));
  if (!IsKnownAlertState(a.state())) return Bad("alert.state: must be one of open, closed");
  if (!IsKnownAlertKind(a.kind())) return Bad("alert.kind: must be one of excursion, offline, disk_quota");
  // min_c / max_c are the readings seen during the excursion: sensor range, finite.
  WIRE_RETURN_IF_ERROR(CheckRange("alert.min_c", a.min_c(), kTempC));
  WIRE_RETURN_IF_ERROR(CheckRange("alert.max_c", a.max_c(), kTempC));
  WIRE_RETURN_IF_ERROR(CheckOptionalTs("alert.started_ts_ms", a.started_ts_ms()));
  WIRE_RETURN_IF_ERROR(CheckOptionalTs("alert.ended_ts_ms", a.ended_ts_ms()));
  return Status::Ok();
}

// A seal of the cold-chain audit chain (docs/formats.md): fixed sizes, so a hostile site cannot
// make the hub store large blobs under it; the signature itself is checked at verification.
Status CheckSeal(const v1::ChangeRecord& r) {
  const auto& s = r.seal();
  WIRE_RETURN_IF_ERROR(CheckDeviceId("seal.sensor", s.sensor()));
  WIRE_RETURN_IF_ERROR(CheckKeyMatches("seal.sensor", s.sensor(), r.key()));
  if (s.first_index() == 0 || s.last_index() < s.first_index() || s.count() != s.last_index() - s.first_index() + 1)
    return Bad("seal.count: must be last_index - first_index + 1, first_index >= 1");
  if (s.last_hash().size() != 32) return Bad("seal.last_hash: must be 32 bytes");
  if (s.public_key().size() != 32) return Bad("seal.public_key: must be 32 bytes");
  if (s.signature().size() != 64) return Bad("seal.signature: must be 64 bytes");
  WIRE_RETURN_IF_ERROR(CheckOptionalTs("seal.first_ts_ms", s.first_ts_ms()));
  WIRE_RETURN_IF_ERROR(CheckOptionalTs("seal.last_ts_ms", s.last_ts_ms()));
  return Status::Ok();
}

}  // namespace

bool IsKnownOrderStatus(std::string_view s) {
  return s == "created" || s == "accepted" || s == "picking" || s == "packed" || s == "dispatched" || s == "delivered" ||
         s == "cancelled";
}
bool IsKnownRecordOrderStatus(std::string_view s) { return IsKnownOrderStatus(s) || s == "refused"; }
bool IsKnownMovementReason(std::string_view s) {
  return s == "receive" || s == "pick" || s == "adjust" || s == "spoil" || s == "return" || s == "transfer";
}
bool IsKnownStockReason(std::string_view s) {
  return s.empty() || IsKnownMovementReason(s) || s == "reserve" || s == "release";
}
bool IsKnownAlertState(std::string_view s) { return s == "open" || s == "closed"; }
bool IsKnownAlertKind(std::string_view s) {
  return s.empty() || s == "excursion" || s == "offline" || s == "disk_quota";
}
bool IsKnownGeofenceEvent(std::string_view s) { return s == "enter" || s == "exit"; }
bool IsKnownScanDirection(std::string_view s) { return s == "in" || s == "out"; }

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07;
    else return false;
    if (i + len > n) return false;
    for (int k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

Status CheckId(std::string_view field, std::string_view v) {
  if (v.empty()) return Bad(F(field) + ": must not be empty");
  if (v.size() > kMaxIdBytes) return Bad(F(field) + ": longer than " + std::to_string(kMaxIdBytes) + " bytes");
  if (!IsValidUtf8(v)) return Bad(F(field) + ": not valid UTF-8");
  for (unsigned char c : v)
    if (c < 0x20 || c == 0x7f) return Bad(F(field) + ": contains control characters");
  return Status::Ok();
}

bool IsDeviceId(std::string_view s) {
  if (s.empty() || s.size() > kMaxDeviceIdBytes) return false;
  for (char c : s) {
    const unsigned char u = static_cast<unsigned char>(c);
    const bool alnum = (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z');
    if (!(alnum || c == '-' || c == '_' || c == '.' || c == ':')) return false;
  }
  return true;
}

Status CheckDeviceId(std::string_view field, std::string_view v) {
  if (v.empty()) return Bad(F(field) + ": must not be empty");
  if (v.size() > kMaxDeviceIdBytes) return Bad(F(field) + ": longer than " + std::to_string(kMaxDeviceIdBytes) + " bytes");
  if (!IsDeviceId(v)) return Bad(F(field) + ": must be letters, digits and . _ : - only");
  return Status::Ok();
}

bool HasControlCharacterBesidesLineBreaks(std::string_view v) {
  for (unsigned char c : v)
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) return true;
  return false;
}

Status CheckText(std::string_view field, std::string_view v, size_t max) {
  if (v.size() > max) return Bad(F(field) + ": longer than " + std::to_string(max) + " bytes");
  if (!IsValidUtf8(v)) return Bad(F(field) + ": not valid UTF-8");
  if (HasControlCharacterBesidesLineBreaks(v)) return Bad(F(field) + ": contains control characters");
  return Status::Ok();
}

Status CheckTs(std::string_view field, int64_t ts) {
  if (ts < kMinTsMs || ts >= kMaxTsMs) return Bad(F(field) + ": epoch milliseconds out of range (years 2000..2099)");
  return Status::Ok();
}

Status CheckRange(std::string_view field, double v, Range r) {
  if (!std::isfinite(v)) return Bad(F(field) + ": must be a finite number");
  if (v < r.lo || v > r.hi) {
    char buf[160];
    snprintf(buf, sizeof buf, "%.*s: %g out of range %g..%g", static_cast<int>(field.size()), field.data(), v, r.lo, r.hi);
    return Bad(buf);
  }
  return Status::Ok();
}

Status CheckDelta(std::string_view field, int64_t delta, std::string_view reason) {
  if (delta == 0) return Bad(F(field) + ": must not be zero");
  if (delta > kMaxAbsDelta || delta < -kMaxAbsDelta) return Bad(F(field) + ": magnitude over 1e9 units");
  if ((reason == "receive" || reason == "return") && delta < 0)
    return Bad(F(field) + ": must be positive for reason " + std::string(reason));
  if ((reason == "pick" || reason == "spoil") && delta > 0)
    return Bad(F(field) + ": must be negative for reason " + std::string(reason));
  return Status::Ok();
}

Status CheckLineQty(std::string_view field, int64_t qty) {
  if (qty <= 0 || qty > kMaxLineQty) return Bad(F(field) + ": must be 1..1000000");
  return Status::Ok();
}

bool IsKnownEntity(int entity) { return entity != v1::ENTITY_UNSPECIFIED && v1::Entity_IsValid(entity); }

v1::ChangeRecord::BodyCase BodyFor(v1::Entity entity) {
  switch (entity) {
    case v1::STOCK: return v1::ChangeRecord::kStock;
    case v1::ORDER: return v1::ChangeRecord::kOrder;
    case v1::VEHICLE_POSITION: return v1::ChangeRecord::kPosition;
    case v1::CLIMATE: return v1::ChangeRecord::kClimate;
    case v1::GEOFENCE_EVENT: return v1::ChangeRecord::kGeofence;
    case v1::COLDCHAIN_ALERT: return v1::ChangeRecord::kAlert;
    case v1::DOCK_SCAN: return v1::ChangeRecord::kDockScan;
    case v1::ESCROW: return v1::ChangeRecord::kEscrow;
    case v1::COLDCHAIN_SEAL: return v1::ChangeRecord::kSeal;
    default: return v1::ChangeRecord::BODY_NOT_SET;
  }
}

Status CheckChangeRecord(const v1::ChangeRecord& r) {
  if (!IsKnownEntity(r.entity())) return Bad("entity: " + std::to_string(r.entity()) + " is not a known entity");
  // The key first: it is what the hub stores and indexes, and the 1 MB-key attack.
  if (r.entity() == v1::VEHICLE_POSITION || r.entity() == v1::CLIMATE || r.entity() == v1::GEOFENCE_EVENT ||
      r.entity() == v1::COLDCHAIN_SEAL)
    WIRE_RETURN_IF_ERROR(CheckDeviceId("key", r.key()));
  else
    WIRE_RETURN_IF_ERROR(CheckId("key", r.key()));
  if (r.version() == 0 || r.version() > kMaxVersion)
    return Bad("version: " + std::to_string(r.version()) + " out of range 1..2^63-1");
  if (r.hlc() > kMaxHlc) return Bad("hlc: " + std::to_string(r.hlc()) + " above 2^63-1");
  WIRE_RETURN_IF_ERROR(CheckOptionalTs("ts_ms", r.ts_ms()));
  if (r.has_hlc_from_ts()) return Bad("hlc_from_ts: only allowed in a format-2 batch, never stored");
  // Cold-chain audit chain fields: all or none, hashes of 32 bytes (docs/formats.md).
  if (!r.chain_hash().empty() || !r.chain_prev().empty() || r.chain_index() != 0) {
    if (r.chain_hash().size() != 32 || r.chain_prev().size() != 32 || r.chain_index() == 0)
      return Bad("chain_hash: chain_prev and chain_hash must be 32 bytes with chain_index >= 1");
  }
  const auto want = BodyFor(static_cast<v1::Entity>(r.entity()));
  if (r.body_case() != want)
    return Bad("body: " + std::string(want == v1::ChangeRecord::BODY_NOT_SET ? "none" : "a different one") +
               " expected for entity " + v1::Entity_Name(static_cast<v1::Entity>(r.entity())));
  switch (r.body_case()) {
    case v1::ChangeRecord::kStock: return CheckStock(r);
    case v1::ChangeRecord::kOrder: return CheckOrder(r);
    case v1::ChangeRecord::kPosition: return CheckPosition(r);
    case v1::ChangeRecord::kClimate: return CheckClimate(r);
    case v1::ChangeRecord::kGeofence: return CheckGeofence(r);
    case v1::ChangeRecord::kAlert: return CheckAlert(r);
    case v1::ChangeRecord::kDockScan: return CheckDockScan(r);
    case v1::ChangeRecord::kEscrow: return CheckEscrow(r);
    case v1::ChangeRecord::kSeal: return CheckSeal(r);
    case v1::ChangeRecord::BODY_NOT_SET: return Status::Ok();
  }
  return Status::Ok();
}

std::string_view RefusalField(std::string_view message) {
  const size_t colon = message.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon > 48) return "other";
  std::string_view f = message.substr(0, colon);
  // "order.lines[12].sku" -> "order.lines": the index would make the label set unbounded.
  if (const size_t br = f.find('['); br != std::string_view::npos) f = f.substr(0, br);
  for (char c : f)
    if (!((c >= 'a' && c <= 'z') || c == '_' || c == '.' || (c >= '0' && c <= '9'))) return "other";
  return f;
}

}  // namespace freshsync::wire
