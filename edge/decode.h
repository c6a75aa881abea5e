// Decoding and validation of inbound site messages (the four MQTT topics of design.md).
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
  std::string status;       // created, accepted, picking, packed, dispatched, delivered, cancelled
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

using Message = std::variant<StockMovement, OrderStatus, GpsFix, ClimateSample>;

// What a topic under the root is for.
enum class TopicKind {
  kStockMovements,   // {root}/stock/movements
  kOrderStatus,      // {root}/orders/status
  kGps,              // {root}/vehicles/{vehicle}/gps
  kClimate,          // {root}/sensors/{sensor}/climate
  kOwnOutput,        // what edged itself publishes: deadletter, events/#, alerts/#, orders/{id}/state
  kUnknown,
};

struct TopicInfo {
  TopicKind kind = TopicKind::kUnknown;
  std::string device;  // vehicle or sensor id for kGps / kClimate
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
// RFC 3339 ("2026-11-25T00:27:00Z", fractional seconds and offsets allowed) -> epoch ms.
Result<int64_t> ParseRfc3339(std::string_view s);
// Order lifecycle: may an order in `from` ("" = does not exist) move to `to`?
bool IsLegalOrderTransition(std::string_view from, std::string_view to);
bool IsKnownOrderStatus(std::string_view s);
bool IsKnownMovementReason(std::string_view s);
// A calendar date "YYYY-MM-DD" (year 2000..2199, real month lengths, leap years).
bool IsValidDate(std::string_view s);

// A copy of an order payload with customer data removed, safe to keep in dead_letters.
// Returns std::nullopt when the payload cannot be parsed well enough to redact it (the
// caller then keeps no payload at all).
std::optional<std::string> RedactOrderPayload(std::string_view payload);

}  // namespace freshsync::edge
