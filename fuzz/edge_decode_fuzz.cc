// libFuzzer target: edge/decode.h, the decoder of the four inbound MQTT topics, in both the JSON
// and the protobuf form (Decode picks by the payload's first non-space byte), plus
// RedactOrderPayload, which keeps refused order payloads in dead_letters.
//
// Input: byte 0 picks the topic (low 2 bits: movements, orders, gps, climate; with 0x80 set
// the topic is taken from the input up to the first '\n', to fuzz ClassifyTopic too), the rest
// is the payload. Beyond "no crash, no sanitizer report" it checks the decoder's contract:
// accepted values are in range, reasons are valid UTF-8 (they go into JSON dead letters), and
// a redacted order payload has no customer left in it.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "edge/decode.h"
#include <google/protobuf/stubs/logging.h>

#include "freshsync.pb.h"

namespace {

using freshsync::edge::ClimateSample;
using freshsync::edge::GpsFix;
using freshsync::edge::OrderStatus;
using freshsync::edge::StockMovement;

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "contract violated: %s\n", what);
    std::abort();
  }
}

bool InRange(double v, double lo, double hi) { return std::isfinite(v) && v >= lo && v <= hi; }

void CheckMessage(const freshsync::edge::Message& m) {
  using freshsync::edge::IsValidUtf8;
  if (const auto* s = std::get_if<StockMovement>(&m)) {
    Check(!s->id.empty() && !s->sku.empty(), "movement id and sku present");
    Check(freshsync::edge::IsKnownMovementReason(s->reason), "movement reason known");
    Check(IsValidUtf8(s->id) && IsValidUtf8(s->sku) && IsValidUtf8(s->order_id) && IsValidUtf8(s->lot), "movement text UTF-8");
  } else if (const auto* o = std::get_if<OrderStatus>(&m)) {
    Check(!o->order_id.empty(), "order id present");
    Check(freshsync::edge::IsKnownOrderStatus(o->status), "order status known");
    for (const auto& l : o->lines) Check(IsValidUtf8(l.sku), "line sku UTF-8");
  } else if (const auto* g = std::get_if<GpsFix>(&m)) {
    Check(g->seq >= 1, "gps seq >= 1");
    Check(InRange(g->lat, -90, 90) && InRange(g->lon, -180, 180), "gps lat/lon finite and in range");
    if (g->speed_kmh) Check(InRange(*g->speed_kmh, 0, 400), "gps speed in range");
    if (g->heading) Check(InRange(*g->heading, 0, 360), "gps heading in range");
    if (g->hdop) Check(InRange(*g->hdop, 0, 100), "gps hdop in range");
  } else if (const auto* c = std::get_if<ClimateSample>(&m)) {
    Check(c->seq >= 1, "climate seq >= 1");
    Check(InRange(c->temp_c, -80, 100), "climate temp_c finite and in range");
    if (c->rh) Check(InRange(*c->rh, 0, 100), "climate rh in range");
    if (c->battery) Check(InRange(*c->battery, 0, 100), "climate battery in range");
  }
}

void CheckRedacted(std::string_view payload) {
  auto redacted = freshsync::edge::RedactOrderPayload(payload);
  if (!redacted) return;
  size_t i = 0;
  while (i < payload.size() && (payload[i] == ' ' || payload[i] == '\t' || payload[i] == '\r' || payload[i] == '\n')) ++i;
  if (i < payload.size() && payload[i] == '{') {
    auto j = nlohmann::json::parse(*redacted, nullptr, false);
    Check(j.is_object(), "redacted JSON payload is an object");
    Check(!j.contains("customer") || j["customer"] == "<redacted>", "redacted JSON payload has no customer");
  } else {
    freshsync::v1::OrderStatusMsg p;
    Check(p.ParseFromString(*redacted), "redacted protobuf payload parses");
    Check(!p.has_customer(), "redacted protobuf payload has no customer");
  }
}

}  // namespace

// libprotobuf logs every string field with invalid UTF-8 at ERROR level; the fuzzer makes
// thousands a second, and the log would be all the run prints (and most of its time).
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const char* const kTopics[] = {"fs/stock/movements", "fs/orders/status", "fs/vehicles/truck-1/gps",
                                        "fs/sensors/cold-1/climate"};
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string_view topic = kTopics[data[0] & 3];
  if (data[0] & 0x80) {
    const size_t nl = rest.find('\n');
    if (nl == std::string_view::npos) return 0;
    topic = rest.substr(0, nl);
    rest.remove_prefix(nl + 1);
  }
  auto r = freshsync::edge::Decode("fs", topic, rest);
  if (r.ok()) {
    CheckMessage(*r);
  } else {
    Check(freshsync::edge::IsValidUtf8(r.status().message()), "refusal reason is valid UTF-8");
    (void)nlohmann::json({{"reason", r.status().message()}}).dump();  // throws (and aborts) on bad UTF-8
  }
  if (freshsync::edge::ClassifyTopic("fs", topic).kind == freshsync::edge::TopicKind::kOrderStatus) CheckRedacted(rest);
  return 0;
}
