// Decoding and validation of inbound site messages (the inbound MQTT topics of edge/message_types.h, docs/formats.md).
//
// Contract: Decode() turns (topic, payload) into one typed Message, or returns a non-ok Status
// whose message is a human-readable reason naming the field ("lat: must be a finite number in
// -90..90"). Reasons never quote customer personal data. Codes:
//   kInvalidArgument  malformed, missing or out-of-range input, unknown topic
// A payload is JSON when its first non-whitespace byte is '{', otherwise protobuf (the
// *Msg messages of proto/freshsync.proto). Formats: docs/formats.md.
// Thread-safety: pure functions, safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/status.h"
#include "wire/record_rules.h"

namespace freshsync::edge {

constexpr size_t kMaxPayloadBytes = 64 * 1024;
// The identifier rule is shared with the hub (wire/record_rules.h).
constexpr size_t kMaxIdBytes = wire::kMaxIdBytes;

struct StockMovement {
  std::string id;
  std::string sku;
  int64_t delta = 0;
  std::string reason;       // receive, pick, adjust, spoil, return, transfer
  std::string order_id;     // optional
  std::string lot;          // optional
  std::optional<int64_t> ts_ms;  // absent: the store uses its receive time
  std::string expiry;       // optional, YYYY-MM-DD: the lot's expiry (kept for incoming stock)
};

struct OrderLine {
  std::string sku;
  int64_t qty = 0;
};

// Personal data: never stored, logged or echoed in clear (see EdgeStore: sealed or dropped).
struct Customer {
  std::string name;
  std::string phone;
  std::string address;
};

struct OrderStatus {
  std::string order_id;
  std::string status;       // created, accepted, picking, packed, dispatched, delivered, cancelled (refused: store only)
  int64_t ts_ms = 0;
  std::string actor;        // optional
  std::vector<OrderLine> lines;       // only on "created"
  std::optional<Customer> customer;   // only on "created"
};

struct GpsFix {
  std::string vehicle;      // from the topic
  uint64_t seq = 0;
  double lat = 0;
  double lon = 0;
  int64_t ts_ms = 0;
  std::optional<double> speed_kmh;
  std::optional<double> heading;
  std::optional<double> hdop;
};

struct ClimateSample {
  std::string sensor;       // from the topic
  uint64_t seq = 0;
  int64_t ts_ms = 0;
  double temp_c = 0;
  std::optional<double> rh;
  std::optional<double> battery;
};

// A pallet scanned through a dock door. A record only: it does not change stock (a receipt or a
// pick is a stock movement of its own). Identity: scan_id, which the scanner makes unique.
struct DockScan {
  std::string door;         // from the topic
  std::string scan_id;
  std::string pallet_id;
  std::string sku;
  std::string lot;          // optional
  int64_t qty = 0;
  std::string direction;    // in, out
  int64_t ts_ms = 0;
};

using Message = std::variant<StockMovement, OrderStatus, GpsFix, ClimateSample, DockScan>;

// What a topic under the root is for.
enum class TopicKind {
  kStockMovements,   // {root}/stock/movements
  kOrderStatus,      // {root}/orders/status
  kGps,              // {root}/vehicles/{vehicle}/gps
  kClimate,          // {root}/sensors/{sensor}/climate
  kDockScans,        // {root}/docks/{door}/scans
  kOwnOutput,        // what edged itself publishes: deadletter, events/#, alerts/#, orders/{id}/state
  kUnknown,
};

struct TopicInfo {
  TopicKind kind = TopicKind::kUnknown;
  std::string device;  // vehicle, sensor or door id for kGps / kClimate / kDockScans
};
TopicInfo ClassifyTopic(std::string_view root, std::string_view topic);

Result<Message> Decode(std::string_view root, std::string_view topic, std::string_view payload);

// The device-clock check (config `max_clock_skew_s`): a message whose own timestamp is more
// than `max_skew_s` seconds AHEAD of the edge clock `now_ms` is refused (kInvalidArgument,
// the reason names the field and how far ahead). Timestamps behind are accepted: delayed
// delivery (a broker queue, a truck buffering offline) is legitimate and looks the same as a
// slow clock. max_skew_s <= 0 accepts everything; a movement without `ts` always passes.
Status CheckDeviceClock(const Message& message, int64_t now_ms, int max_skew_s);

// Helpers, exposed for tests and for the store.
bool IsValidUtf8(std::string_view s);
// RFC 3339 strings are parsed by wire::ParseRfc3339 (wire/rfc3339.h), the hub's parser too.
// Order lifecycle: may an order in `from` ("" = does not exist) move to `to`? "refused" (an
// order stock could not cover, local or HQ's) is terminal: nothing leaves it, and no message
// may ask for it (only the store sets it, edge/store.h).
bool IsLegalOrderTransition(std::string_view from, std::string_view to);
// The statuses a message may carry (not "refused": wire::IsKnownRecordOrderStatus has it).
bool IsKnownOrderStatus(std::string_view s);
bool IsKnownMovementReason(std::string_view s);
// A calendar date "YYYY-MM-DD" (year 2000..2199, real month lengths, leap years).
bool IsValidDate(std::string_view s);

// ---- Personal data, whatever the topic (docs/security.md, "Personal data") ----
// The only personal data in the contract is an order's `customer` block (name, phone,
// address). Redaction used to hang on the topic ({root}/orders/status exactly), so the same
// block sent on a wrong topic, or in a payload that does not parse, was kept in clear. These
// two functions decide on the payload's bytes instead, and every path that stores, logs or
// publishes a payload (the intake journal, dead_letters, notifications) goes through them.

// Deepest JSON nesting Decode accepts (objects and arrays). Deeper payloads are refused before
// nlohmann parses them: its dump() and our redaction recurse, and nothing legitimate nests so.
constexpr int kMaxJsonDepth = 32;

// Cheap, conservative: false only when `payload` cannot carry a customer block. JSON (first
// non-space byte '{'): no "customer" in any letter case and no backslash (an escape could spell
// the key), a byte scan without parsing, so a GPS fix costs two memchr/memmem passes. Anything
// else is protobuf or garbage: false only when it parses as the protobuf of its topic with no
// unknown fields and (orders) no customer; GpsMsg and ClimateMsg hold no text at all.
bool MayCarryPersonalData(TopicKind kind, std::string_view payload);

// `payload` with every customer block replaced, so that Decode() of the result gives the same
// outcome as Decode() of the original, the customer's contents aside: at the top level a
// customer object keeps its shape ("name"/"phone"/"address" become "<redacted>", or a
// placeholder of the same length when over the limit, a wrong type stays a wrong type), nested
// ones become "<redacted>"; protobuf loses its unknown fields and its customer's text the same
// way. std::nullopt when the payload cannot be parsed for its topic (the caller keeps none of
// it; Decode() refuses such a payload anyway).
std::optional<std::string> RedactPersonalData(TopicKind kind, std::string_view payload);

// True when the JSON text nests objects/arrays deeper than max_depth (strings skipped). O(n).
bool JsonDepthExceeds(std::string_view payload, int max_depth);

}  // namespace freshsync::edge
