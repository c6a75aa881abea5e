// libFuzzer target: edge/decode.h, the decoder of the inbound MQTT topics, in both the JSON
// and the protobuf form (Decode picks by the payload's first non-space byte), plus the
// personal-data pair that ingest runs on every payload before it reaches the journal, the
// dead letters or a notification: MayCarryPersonalData and RedactPersonalData.
//
// Input: byte 0 picks the topic (its low 7 bits modulo the number of message types pick a row of
// edge/message_types.h, in its order: movements, orders, gps, climate, dock scans; with 0x80 set
// the topic is taken from the input up to the first '\n', to fuzz ClassifyTopic too), the rest
// is the payload. Beyond "no crash, no sanitizer report" it checks the decoder's contract:
// accepted values are in range, reasons are valid UTF-8 (they go into JSON dead letters); a
// payload MayCarryPersonalData calls clean holds no customer (Decode yields none, no JSON
// "customer" key); RedactPersonalData leaves no customer value and decodes to the same verdict
// and reason as the original (so journaling the redacted form, without a key, gives the outcome
// that sealing it, with a key, gives); the plain GPS fix's fast path decides as the general
// decoder does.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz/fuzz_check.h"
#include "edge/decode.h"
#include "edge/message_types.h"

#include "freshsync.pb.h"

namespace {

using freshsync::edge::ClimateSample;
using freshsync::edge::GpsFix;
using freshsync::edge::OrderStatus;
using freshsync::edge::StockMovement;

using freshsync::fuzz::Check;

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
  } else if (const auto* d = std::get_if<freshsync::edge::DockScan>(&m)) {
    Check(!d->scan_id.empty() && !d->pallet_id.empty() && !d->sku.empty() && !d->door.empty(), "dock scan ids present");
    Check(d->qty >= 1 && d->qty <= freshsync::wire::kMaxLineQty, "dock scan qty in range");
    Check(d->direction == "in" || d->direction == "out", "dock scan direction known");
    Check(IsValidUtf8(d->scan_id) && IsValidUtf8(d->pallet_id) && IsValidUtf8(d->sku) && IsValidUtf8(d->lot), "dock scan text UTF-8");
  }
}

bool IsCustomerKey(std::string_view key) {
  static constexpr char kKey[] = "customer";
  if (key.size() != 8) return false;
  for (size_t k = 0; k < 8; ++k)
    if ((key[k] | 0x20) != kKey[k]) return false;
  return true;
}

bool StartsAsJson(std::string_view p) {
  size_t i = 0;
  while (i < p.size() && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')) ++i;
  return i < p.size() && p[i] == '{';
}

// Every string (keys too) of a JSON tree; `in_customer` collects those under a "customer" key
// (any letter case, any depth: the personal data), `outside` all the others.
void CollectJsonStrings(const nlohmann::json& j, bool under_customer, std::vector<std::string>* in_customer,
                        std::vector<std::string>* outside) {
  if (j.is_string()) {
    (under_customer ? in_customer : outside)->push_back(j.get<std::string>());
  } else if (j.is_array()) {
    for (const auto& v : j) CollectJsonStrings(v, under_customer, in_customer, outside);
  } else if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      (under_customer ? in_customer : outside)->push_back(it.key());
      CollectJsonStrings(it.value(), under_customer || IsCustomerKey(it.key()), in_customer, outside);
    }
  }
}

bool IsPlaceholder(std::string_view v) {
  return v.empty() || v == "<redacted>" || v == "<redacted>\x7f" || v.find_first_not_of('#') == std::string_view::npos;
}

bool AnyContains(const std::vector<std::string>& haystacks, std::string_view needle) {
  for (const auto& h : haystacks)
    if (h.find(needle) != std::string::npos) return true;
  return false;
}

// MayCarryPersonalData false  =>  the payload holds no customer: Decode yields none, and a JSON
// payload has no "customer" key anywhere (ingest journals and dead-letters it in clear).
void CheckNoPersonalData(std::string_view payload, const freshsync::Result<freshsync::edge::Message>& decoded) {
  if (decoded.ok()) {
    if (const auto* o = std::get_if<OrderStatus>(&*decoded))
      Check(!o->customer.has_value(), "MayCarryPersonalData false but Decode yields a customer");
  }
  if (StartsAsJson(payload)) {
    auto j = nlohmann::json::parse(payload, nullptr, false);
    if (j.is_discarded()) return;
    std::vector<std::string> in_customer, outside;
    CollectJsonStrings(j, false, &in_customer, &outside);
    for (const auto& k : outside) Check(!IsCustomerKey(k), "MayCarryPersonalData false but the JSON has a customer key");
  }
}

// RedactPersonalData: no customer value of the input is left in the output (unless the same
// text is also somewhere outside the customer block), the output decodes to the same verdict
// and reason as the input, and a customer it still decodes to holds only placeholders.
void CheckRedacted(std::string_view topic, freshsync::edge::TopicKind kind, std::string_view payload,
                   const freshsync::Result<freshsync::edge::Message>& decoded) {
  auto redacted = freshsync::edge::RedactPersonalData(kind, payload);
  if (!redacted) return;
  auto again = freshsync::edge::Decode("fs", topic, *redacted);
  Check(again.ok() == decoded.ok(), "Decode accepts/refuses the redacted payload unlike the original");
  if (!decoded.ok()) {
    Check(again.status().message() == decoded.status().message(), "the redacted payload is refused for another reason");
  } else if (const auto* o = std::get_if<OrderStatus>(&*again)) {
    const auto* orig = std::get_if<OrderStatus>(&*decoded);
    Check(orig != nullptr && orig->customer.has_value() == o->customer.has_value(), "redaction adds or drops the customer block");
    if (o->customer)
      Check(IsPlaceholder(o->customer->name) && IsPlaceholder(o->customer->phone) && IsPlaceholder(o->customer->address),
            "the redacted payload decodes to a customer value");
  }
  if (StartsAsJson(payload)) {
    auto j = nlohmann::json::parse(payload, nullptr, false);
    Check(!j.is_discarded(), "RedactPersonalData redacted JSON that does not parse");
    auto r = nlohmann::json::parse(*redacted, nullptr, false);
    Check(!r.is_discarded(), "redacted JSON parses");
    std::vector<std::string> secrets, outside, r_customer, r_outside;
    CollectJsonStrings(j, false, &secrets, &outside);
    CollectJsonStrings(r, false, &r_customer, &r_outside);
    for (const auto& s : r_customer) Check(IsPlaceholder(s) || IsCustomerKey(s) || s == "name" || s == "phone" || s == "address",
                                           "a redacted customer block holds text");
    for (const auto& v : secrets) {
      if (v.size() < 3 || IsPlaceholder(v) || std::string_view("<redacted>").find(v) != std::string_view::npos) continue;
      if (AnyContains(r_outside, v)) Check(AnyContains(outside, v), "a customer value is left in the redacted JSON");
    }
  } else {
    // Protobuf: the redacted form is the message of its topic, with no unknown field.
    freshsync::v1::OrderStatusMsg in, out;
    if (kind != freshsync::edge::TopicKind::kOrderStatus || !in.ParseFromString(std::string(payload))) return;
    Check(out.ParseFromString(*redacted), "redacted protobuf parses");
    Check(out.GetReflection()->GetUnknownFields(out).field_count() == 0, "redacted protobuf has no unknown field");
    const auto& c = out.customer();
    Check(IsPlaceholder(c.name()) && IsPlaceholder(c.phone()) && IsPlaceholder(c.address()), "redacted protobuf customer holds text");
    // Compared field by field, not in the raw bytes: a value such as "\x07created\x18" is found
    // in any serialization whose status is "created" (length byte, text, next tag), and
    // framing is no leak. Every string the redacted message holds is one of these.
    auto strings_outside_customer = [](const freshsync::v1::OrderStatusMsg& m) {
      std::vector<std::string> s{m.order_id(), m.status(), m.actor()};
      for (const auto& l : m.lines()) s.push_back(l.sku());
      return s;
    };
    const auto in_outside = strings_outside_customer(in);
    const auto out_outside = strings_outside_customer(out);
    for (const std::string* v : {&in.customer().name(), &in.customer().phone(), &in.customer().address()}) {
      if (v->size() < 3 || IsPlaceholder(*v)) continue;
      if (AnyContains(out_outside, *v)) Check(AnyContains(in_outside, *v), "a customer value is left in the redacted protobuf");
    }
  }
}

// The plain GPS fix's fast path (edge/json_fast.h) against the general decoder: a key the
// decoder does not know, put first, makes the fast path decline and changes nothing else, so
// both must give the same verdict and, when accepted, the same fix bit for bit.
void CheckGpsFastPath(std::string_view topic, freshsync::edge::TopicKind kind, std::string_view payload,
                      const freshsync::Result<freshsync::edge::Message>& decoded) {
  // With the extra key the payload must still be within the decoder's size limit.
  if (kind != freshsync::edge::TopicKind::kGps || payload.size() + 16 > freshsync::edge::kMaxPayloadBytes) return;
  size_t i = 0;
  while (i < payload.size() && (payload[i] == ' ' || payload[i] == '\t' || payload[i] == '\r' || payload[i] == '\n')) ++i;
  if (i >= payload.size() || payload[i] != '{') return;
  size_t j = i + 1;
  while (j < payload.size() && (payload[j] == ' ' || payload[j] == '\t' || payload[j] == '\r' || payload[j] == '\n')) ++j;
  if (j < payload.size() && payload[j] == '}') return;  // empty object: the extra key would be all there is
  const std::string general = std::string(payload.substr(0, i + 1)) + "\"zz_unknown\":0," + std::string(payload.substr(i + 1));
  auto b = freshsync::edge::Decode("fs", topic, general);
  Check(decoded.ok() == b.ok(), "the GPS fast path and the general decoder disagree on accepting");
  if (!decoded.ok()) return;
  const auto& x = std::get<GpsFix>(*decoded);
  const auto& y = std::get<GpsFix>(*b);
  auto same = [](double u, double v) { return std::memcmp(&u, &v, sizeof u) == 0; };
  auto same_opt = [&](const std::optional<double>& u, const std::optional<double>& v) {
    return u.has_value() == v.has_value() && (!u || same(*u, *v));
  };
  Check(x.seq == y.seq && x.ts_ms == y.ts_ms && same(x.lat, y.lat) && same(x.lon, y.lon) && same_opt(x.speed_kmh, y.speed_kmh) &&
            same_opt(x.heading, y.heading) && same_opt(x.hdop, y.hdop),
        "the GPS fast path decodes another fix than the general decoder");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  using freshsync::edge::kMessageTypeCount;
  // One topic per message type, its device segment filled in. With four types the choice was
  // the former `data[0] & 3`; the seeds' first bytes (0..4, 0x2a) pick the same topic with five.
  static const std::vector<std::string> kTopics = [] {
    std::vector<std::string> topics;
    for (const auto& type : freshsync::edge::kMessageTypes) topics.push_back(freshsync::edge::InboundTopic(type.kind, "fs", "dev-1"));
    return topics;
  }();
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string_view topic = kTopics[(data[0] & 0x7f) % kMessageTypeCount];
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
  const auto kind = freshsync::edge::ClassifyTopic("fs", topic).kind;
  if (!freshsync::edge::MayCarryPersonalData(kind, rest)) CheckNoPersonalData(rest, r);
  CheckRedacted(topic, kind, rest, r);
  CheckGpsFastPath(topic, kind, rest, r);
  return 0;
}
