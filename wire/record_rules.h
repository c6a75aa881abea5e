// Field rules of the shared data, written once for both sides of the wire.
//
// The edge applies them to what it accepts at ingest (edge/decode.cc) and the hub applies them
// to every change record a site pushes (hub/record_check.cc), so a record the edge would never
// have written is refused at the hub with the same limits and the same words. Before this
// module the hub validated nothing: a valid site certificate could push 1 MB keys, negative
// stock, a latitude of 2,147 degrees or a STOCK record carrying an order body.
//
// Contract: every Check* returns Ok or kInvalidArgument whose message starts with the field
// name ("lat_e6: ...", "key: longer than 128 bytes"). Messages never quote the value of a text
// field (it may be personal data, or a megabyte long); numbers are quoted.
// Thread-safety: pure functions and constants.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "freshsync.pb.h"

namespace freshsync::wire {

// ---------- limits (one definition; edge/decode.h re-exports the ones it always had) ----------

// Identifiers (movement id, sku, order id, lot, actor, alert id, record key): bytes.
inline constexpr size_t kMaxIdBytes = 128;
// Device ids (vehicle, sensor): the topic segment rule, [A-Za-z0-9._:-]{1,64}.
inline constexpr size_t kMaxDeviceIdBytes = 64;
// Free text that is not an identifier (customer fields, fence names and kinds).
inline constexpr size_t kMaxFreeText = 256;
// Order lines per order.
inline constexpr size_t kMaxOrderLines = 1000;
// Device timestamps: a unit mix-up (seconds for ms) or an unset clock is outside this window.
inline constexpr int64_t kMinTsMs = 946684800000;   // 2000-01-01
inline constexpr int64_t kMaxTsMs = 4102444800000;  // 2100-01-01 (exclusive)
// One movement moves at most this many units either way.
inline constexpr int64_t kMaxAbsDelta = 1000000000;
// One order line asks for 1..kMaxLineQty units.
inline constexpr int64_t kMaxLineQty = 1000000;
// Stock on hand / reserved of one SKU. Far above any warehouse (1e15 units), far below the
// point where sums over lots could overflow int64.
inline constexpr int64_t kMaxStockUnits = 1000000000000000;
// Versions and HLCs are compared as SQLite INTEGER (signed 64-bit) at the hub, so a value
// above 2^63 - 1 would compare as negative and lose to version 3. They are refused instead:
// 2^63 - 1 versions is more than any entity will ever reach.
inline constexpr uint64_t kMaxVersion = 0x7fffffffffffffffULL;
inline constexpr uint64_t kMaxHlc = 0x7fffffffffffffffULL;
// Device counters (GPS / climate seq): stored signed as well.
inline constexpr uint64_t kMaxDeviceSeq = 0x7fffffffffffffffULL;
// Sealed customer blob: three fields of at most kMaxFreeText bytes plus the sealing overhead
// and framing, with room to spare.
inline constexpr size_t kMaxSealedBytes = 4096;

// Physical ranges, in the units of the inbound messages (docs/formats.md).
struct Range {
  double lo;
  double hi;
};
inline constexpr Range kLat{-90, 90};
inline constexpr Range kLon{-180, 180};
inline constexpr Range kSpeedKmh{0, 400};
inline constexpr Range kHeadingDeg{0, 360};
inline constexpr Range kHdop{0, 100};
inline constexpr Range kTempC{-80, 100};
inline constexpr Range kPercent{0, 100};  // rh, battery

// ---------- vocabularies ----------
bool IsKnownOrderStatus(std::string_view s);        // the seven inbound statuses
bool IsKnownRecordOrderStatus(std::string_view s);  // those, plus "refused" (edge stock refusal)
bool IsKnownMovementReason(std::string_view s);     // receive, pick, adjust, spoil, return, transfer
bool IsKnownStockReason(std::string_view s);        // a movement reason, "reserve", "release" or ""
bool IsKnownAlertState(std::string_view s);         // open, closed
bool IsKnownAlertKind(std::string_view s);          // excursion, offline, disk_quota ("" = absent)
bool IsKnownGeofenceEvent(std::string_view s);      // enter, exit
bool IsKnownScanDirection(std::string_view s);      // in, out (dock scans)
bool IsValidUtf8(std::string_view s);
// A control character other than tab, line feed and carriage return (CheckText's rule).
bool HasControlCharacterBesidesLineBreaks(std::string_view s);

// ---------- field checks (field = the name used in the message) ----------

// An identifier: 1..kMaxIdBytes bytes of valid UTF-8 without control characters.
Status CheckId(std::string_view field, std::string_view v);
// A device id: 1..64 bytes of [A-Za-z0-9._:-] (the MQTT topic segment rule).
Status CheckDeviceId(std::string_view field, std::string_view v);
bool IsDeviceId(std::string_view v);
// Free text (customer name, phone, address, fence names): at most `max` bytes of valid UTF-8
// without control characters other than tab, line feed and carriage return (an address is often
// written on several lines; free text is sealed or quoted, never written raw into a log line).
Status CheckText(std::string_view field, std::string_view v, size_t max);
// Epoch ms inside [kMinTsMs, kMaxTsMs).
Status CheckTs(std::string_view field, int64_t ts_ms);
// A finite number inside [r.lo, r.hi].
Status CheckRange(std::string_view field, double v, Range r);
// Movement delta: non-zero, |delta| <= kMaxAbsDelta, sign consistent with the reason
// (receive/return in, pick/spoil out; adjust and transfer go both ways).
Status CheckDelta(std::string_view field, int64_t delta, std::string_view reason);
// Order line and dock scan quantity: 1..kMaxLineQty.
Status CheckLineQty(std::string_view field, int64_t qty);

// ---------- change records (what travels from edge to hub) ----------

// Whether `entity` is a value this build knows (ENTITY_UNSPECIFIED is not).
bool IsKnownEntity(int entity);
// The body that `entity` must carry (BODY_NOT_SET for STOCK_MOVEMENT, which has none today).
v1::ChangeRecord::BodyCase BodyFor(v1::Entity entity);

// Every field rule of one stored-form change record (format 1; a format-2 batch is expanded
// first): a known entity, the matching body, the key (an identifier, a device id for vehicle
// and sensor keys, equal to the body's own id), version 1..2^63-1, hlc <= 2^63-1, and each
// body field in its range. proto3 cannot tell an absent scalar from zero, so zero timestamps,
// zero device counters and empty optional text are accepted as "absent"; any value present
// must be in range. The message names the field as "entity", "key", "version",
// "stock.on_hand", "position.lat_e6", ... so the hub's refusal reason can quote it.
Status CheckChangeRecord(const v1::ChangeRecord& record);

// The field a CheckChangeRecord message names (its text up to the first ':'), for counters
// with a bounded label set. "other" when the message has no field prefix.
std::string_view RefusalField(std::string_view message);

}  // namespace freshsync::wire
