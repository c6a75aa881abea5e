#include "edge/decode.h"
#include "edge/json_fast.h"
#include "edge/message_types.h"

#include <cmath>
#include <cstring>
#include <type_traits>
#include <limits>

#include <nlohmann/json.hpp>

#include "freshsync.pb.h"
#include "wire/rfc3339.h"
#include "wire/routes.h"

namespace freshsync::edge {
namespace {

using json = nlohmann::json;

// The field rules (identifiers, timestamps, ranges, vocabularies) are shared with the hub, which
// applies them to every change record a site pushes: wire/record_rules.h. Only what is about
// the inbound message format stays here.
constexpr size_t kMaxLines = wire::kMaxOrderLines;
constexpr size_t kMaxFreeText = wire::kMaxFreeText;

Status Bad(std::string m) { return Status::InvalidArgument(std::move(m)); }

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

using wire::CheckId;
using wire::CheckText;
using wire::CheckTs;

// Any control character: a protobuf string holding one may be a message smuggled in
// (PlainText). Free text itself follows wire::CheckText.
bool HasControlCharacter(std::string_view v) {
  for (unsigned char c : v)
    if (c < 0x20 || c == 0x7f) return true;
  return false;
}

using wire::CheckRange;

// What decode.cc knows per message type, one row per kMessageTypes row (edge/message_types.h):
// the two payload forms and the personal-data pair for the protobuf form (the JSON form is
// handled the same way for every type). Defined at the end of the file, where every function
// it names is declared; its size is checked against edge::Message there.
struct Codec {
  Result<Message> (*from_json)(const TopicInfo& topic, const json& object);
  Result<Message> (*from_proto)(const TopicInfo& topic, std::string_view payload);
  // False only when the protobuf payload cannot carry personal data (MayCarryPersonalData).
  bool (*proto_may_carry_personal_data)(std::string_view payload);
  std::optional<std::string> (*proto_redacted)(std::string_view payload);
};
const Codec& CodecOf(TopicKind kind);

// ---- JSON field access: each getter names the field in its error ----

class JsonObject {
 public:
  explicit JsonObject(const json& j, std::string prefix = "") : j_(j), prefix_(std::move(prefix)) {}

  std::string Name(std::string_view f) const { return prefix_ + std::string(f); }

  Status String(std::string_view f, std::string& out, bool required) const {
    auto it = j_.find(f);
    if (it == j_.end() || it->is_null()) return required ? Bad(Name(f) + ": missing") : Status::Ok();
    if (!it->is_string()) return Bad(Name(f) + ": must be a string");
    out = it->get<std::string>();
    return Status::Ok();
  }
  Status Int(std::string_view f, int64_t& out, bool required, bool* present = nullptr) const {
    auto it = j_.find(f);
    if (present) *present = false;
    if (it == j_.end() || it->is_null()) return required ? Bad(Name(f) + ": missing") : Status::Ok();
    if (it->is_number_integer()) {
      if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return Bad(Name(f) + ": integer too large");
      out = it->get<int64_t>();
    } else if (it->is_number_float()) {
      return Bad(Name(f) + ": must be an integer, not a fraction");
    } else {
      return Bad(Name(f) + ": must be an integer");
    }
    if (present) *present = true;
    return Status::Ok();
  }
  Status Double(std::string_view f, double& out, bool required, bool* present = nullptr) const {
    auto it = j_.find(f);
    if (present) *present = false;
    if (it == j_.end() || it->is_null()) return required ? Bad(Name(f) + ": missing") : Status::Ok();
    if (!it->is_number()) return Bad(Name(f) + ": must be a number");
    out = it->get<double>();
    if (!std::isfinite(out)) return Bad(Name(f) + ": must be a finite number");
    if (present) *present = true;
    return Status::Ok();
  }
  Status OptDouble(std::string_view f, std::optional<double>& out) const {
    double v = 0;
    bool present = false;
    Status s = Double(f, v, false, &present);
    if (!s.ok()) return s;
    if (present) out = v;
    return Status::Ok();
  }
  // `ts`: RFC 3339 string or epoch ms integer.
  Status Ts(std::string_view f, std::optional<int64_t>& out, bool required) const {
    auto it = j_.find(f);
    if (it == j_.end() || it->is_null()) return required ? Bad(Name(f) + ": missing") : Status::Ok();
    if (it->is_string()) {
      auto r = wire::ParseRfc3339(it->get_ref<const std::string&>());
      if (!r.ok()) return Bad(Name(f) + ": " + r.status().message());
      out = *r;
    } else if (it->is_number_integer()) {
      if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return Bad(Name(f) + ": epoch milliseconds out of range (years 2000..2099)");
      out = it->get<int64_t>();
    } else {
      return Bad(Name(f) + ": must be an RFC 3339 string or epoch milliseconds");
    }
    return CheckTs(Name(f), *out);
  }
  // A `ts` the message must have (all but the movement's, which defaults to the receive time).
  Status RequiredTs(std::string_view f, int64_t& out) const {
    std::optional<int64_t> ts;
    Status s = Ts(f, ts, true);
    if (s.ok()) out = *ts;
    return s;
  }
  Status Seq(std::string_view f, uint64_t& out) const {
    auto it = j_.find(f);
    if (it == j_.end() || it->is_null()) return Bad(Name(f) + ": missing");
    if (!it->is_number_integer()) return Bad(Name(f) + ": must be an integer");
    if (!it->is_number_unsigned() && it->get<int64_t>() < 0) return Bad(Name(f) + ": must be >= 1");
    out = it->get<uint64_t>();
    return Status::Ok();
  }

 private:
  const json& j_;
  std::string prefix_;
};

#define RETURN_IF_ERROR(expr)      \
  do {                             \
    ::freshsync::Status _s = (expr); \
    if (!_s.ok()) return _s;       \
  } while (0)

// ---- Validation shared by both forms ----

Status ValidateMovement(const StockMovement& m) {
  RETURN_IF_ERROR(CheckId("id", m.id));
  RETURN_IF_ERROR(CheckId("sku", m.sku));
  if (!IsKnownMovementReason(m.reason))
    return Bad("reason: must be one of receive, pick, adjust, spoil, return, transfer");
  // Non-zero, at most 1e9 units, and the sign follows from the reason for the one-directional
  // ones; adjust and transfer go both ways.
  RETURN_IF_ERROR(wire::CheckDelta("delta", m.delta, m.reason));
  if (!m.order_id.empty()) RETURN_IF_ERROR(CheckId("order_id", m.order_id));
  if (!m.lot.empty()) RETURN_IF_ERROR(CheckId("lot", m.lot));
  if (!m.expiry.empty() && !IsValidDate(m.expiry)) return Bad("expiry: must be a date YYYY-MM-DD");
  if (m.ts_ms) RETURN_IF_ERROR(CheckTs("ts", *m.ts_ms));
  return Status::Ok();
}

Status ValidateOrder(const OrderStatus& o) {
  RETURN_IF_ERROR(CheckId("order_id", o.order_id));
  if (!IsKnownOrderStatus(o.status))
    return Bad("status: must be one of created, accepted, picking, packed, dispatched, delivered, cancelled");
  RETURN_IF_ERROR(CheckTs("ts", o.ts_ms));
  if (!o.actor.empty()) RETURN_IF_ERROR(CheckId("actor", o.actor));
  if (o.status == "created") {
    if (o.lines.empty()) return Bad("lines: an order is created with at least one line");
    if (o.lines.size() > kMaxLines) return Bad("lines: more than " + std::to_string(kMaxLines) + " lines");
    for (size_t i = 0; i < o.lines.size(); ++i) {
      const std::string p = "lines[" + std::to_string(i) + "]";
      RETURN_IF_ERROR(CheckId(p + ".sku", o.lines[i].sku));
      RETURN_IF_ERROR(wire::CheckLineQty(p + ".qty", o.lines[i].qty));
    }
  } else if (!o.lines.empty() || o.customer) {
    return Bad("lines: lines and customer are only accepted with status created");
  }
  if (o.customer) {
    // Only sizes and encoding are checked: the values themselves are never echoed.
    RETURN_IF_ERROR(CheckText("customer.name", o.customer->name, kMaxFreeText));
    RETURN_IF_ERROR(CheckText("customer.phone", o.customer->phone, kMaxFreeText));
    RETURN_IF_ERROR(CheckText("customer.address", o.customer->address, kMaxFreeText));
  }
  return Status::Ok();
}

Status ValidateGps(const GpsFix& g) {
  if (g.seq < 1 || g.seq > wire::kMaxDeviceSeq) return Bad("seq: must be 1..2^63-1");
  RETURN_IF_ERROR(CheckRange("lat", g.lat, wire::kLat));
  RETURN_IF_ERROR(CheckRange("lon", g.lon, wire::kLon));
  RETURN_IF_ERROR(CheckTs("ts", g.ts_ms));
  if (g.speed_kmh) RETURN_IF_ERROR(CheckRange("speed_kmh", *g.speed_kmh, wire::kSpeedKmh));
  if (g.heading) RETURN_IF_ERROR(CheckRange("heading", *g.heading, wire::kHeadingDeg));
  if (g.hdop) RETURN_IF_ERROR(CheckRange("hdop", *g.hdop, wire::kHdop));
  return Status::Ok();
}

Status ValidateClimate(const ClimateSample& c) {
  if (c.seq < 1 || c.seq > wire::kMaxDeviceSeq) return Bad("seq: must be 1..2^63-1");
  RETURN_IF_ERROR(CheckTs("ts", c.ts_ms));
  RETURN_IF_ERROR(CheckRange("temp_c", c.temp_c, wire::kTempC));
  if (c.rh) RETURN_IF_ERROR(CheckRange("rh", *c.rh, wire::kPercent));
  if (c.battery) RETURN_IF_ERROR(CheckRange("battery", *c.battery, wire::kPercent));
  return Status::Ok();
}

Status ValidateDockScan(const DockScan& d) {
  RETURN_IF_ERROR(CheckId("scan_id", d.scan_id));
  RETURN_IF_ERROR(CheckId("pallet_id", d.pallet_id));
  RETURN_IF_ERROR(CheckId("sku", d.sku));
  if (!d.lot.empty()) RETURN_IF_ERROR(CheckId("lot", d.lot));
  RETURN_IF_ERROR(wire::CheckLineQty("qty", d.qty));
  if (!wire::IsKnownScanDirection(d.direction)) return Bad("direction: must be one of in, out");
  RETURN_IF_ERROR(CheckTs("ts", d.ts_ms));
  return Status::Ok();
}

// ---- JSON form: one function per message type, the object already parsed ----

Result<Message> MovementFromJson(const TopicInfo&, const json& j) {
  JsonObject o(j);
  StockMovement m;
  RETURN_IF_ERROR(o.String("id", m.id, true));
  RETURN_IF_ERROR(o.String("sku", m.sku, true));
  RETURN_IF_ERROR(o.Int("delta", m.delta, true));
  RETURN_IF_ERROR(o.String("reason", m.reason, true));
  RETURN_IF_ERROR(o.String("order_id", m.order_id, false));
  RETURN_IF_ERROR(o.String("lot", m.lot, false));
  RETURN_IF_ERROR(o.String("expiry", m.expiry, false));
  RETURN_IF_ERROR(o.Ts("ts", m.ts_ms, false));
  RETURN_IF_ERROR(ValidateMovement(m));
  return Message(std::move(m));
}

Result<Message> OrderFromJson(const TopicInfo&, const json& j) {
  JsonObject o(j);
  OrderStatus s;
  RETURN_IF_ERROR(o.String("order_id", s.order_id, true));
  RETURN_IF_ERROR(o.String("status", s.status, true));
  RETURN_IF_ERROR(o.RequiredTs("ts", s.ts_ms));
  RETURN_IF_ERROR(o.String("actor", s.actor, false));
  if (auto it = j.find("lines"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) return Bad("lines: must be an array");
    if (it->size() > kMaxLines) return Bad("lines: more than " + std::to_string(kMaxLines) + " lines");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& lj = (*it)[i];
      const std::string p = "lines[" + std::to_string(i) + "].";
      if (!lj.is_object()) return Bad("lines[" + std::to_string(i) + "]: must be an object");
      JsonObject lo(lj, p);
      OrderLine line;
      RETURN_IF_ERROR(lo.String("sku", line.sku, true));
      RETURN_IF_ERROR(lo.Int("qty", line.qty, true));
      s.lines.push_back(std::move(line));
    }
  }
  if (auto it = j.find("customer"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) return Bad("customer: must be an object");
    JsonObject co(*it, "customer.");
    Customer c;
    RETURN_IF_ERROR(co.String("name", c.name, false));
    RETURN_IF_ERROR(co.String("phone", c.phone, false));
    RETURN_IF_ERROR(co.String("address", c.address, false));
    s.customer = std::move(c);
  }
  RETURN_IF_ERROR(ValidateOrder(s));
  return Message(std::move(s));
}

Result<Message> GpsFromJson(const TopicInfo& topic, const json& j) {
  JsonObject o(j);
  GpsFix g;
  g.vehicle = topic.device;
  RETURN_IF_ERROR(o.Seq("seq", g.seq));
  RETURN_IF_ERROR(o.Double("lat", g.lat, true));
  RETURN_IF_ERROR(o.Double("lon", g.lon, true));
  RETURN_IF_ERROR(o.RequiredTs("ts", g.ts_ms));
  RETURN_IF_ERROR(o.OptDouble("speed_kmh", g.speed_kmh));
  RETURN_IF_ERROR(o.OptDouble("heading", g.heading));
  RETURN_IF_ERROR(o.OptDouble("hdop", g.hdop));
  RETURN_IF_ERROR(ValidateGps(g));
  return Message(std::move(g));
}

// GpsFromJson's result without the DOM, for the plain fix (edge/json_fast.h); nullopt: not
// the plain case, or not valid, and GpsFromJson decides (and words any refusal).
std::optional<GpsFix> PlainGpsFix(const TopicInfo& topic, std::string_view payload) {
  static constexpr std::string_view kKeys[] = {"seq", "lat", "lon", "ts", "speed_kmh", "heading", "hdop"};
  FlatNumber v[std::size(kKeys)];
  if (!ScanFlatNumbers(payload, kKeys, std::size(kKeys), v)) return std::nullopt;
  using K = FlatNumber::Kind;
  auto number = [](const FlatNumber& f) { return f.kind == K::kInteger || f.kind == K::kFloat; };
  // seq and ts: integers (o.Seq, o.Ts); lat and lon: numbers; the rest numbers, null or absent.
  if (v[0].kind != K::kInteger || v[0].integer < 0 || !number(v[1]) || !number(v[2]) || v[3].kind != K::kInteger) return std::nullopt;
  GpsFix g;
  g.vehicle = topic.device;
  g.seq = static_cast<uint64_t>(v[0].integer);
  g.lat = v[1].number;
  g.lon = v[2].number;
  g.ts_ms = v[3].integer;
  std::optional<double>* optional[] = {&g.speed_kmh, &g.heading, &g.hdop};
  for (size_t k = 0; k < 3; ++k) {
    if (number(v[4 + k])) *optional[k] = v[4 + k].number;
    else if (v[4 + k].kind != K::kAbsent && v[4 + k].kind != K::kNull) return std::nullopt;
  }
  if (!ValidateGps(g).ok()) return std::nullopt;
  return g;
}

Result<Message> ClimateFromJson(const TopicInfo& topic, const json& j) {
  JsonObject o(j);
  ClimateSample c;
  c.sensor = topic.device;
  RETURN_IF_ERROR(o.Seq("seq", c.seq));
  RETURN_IF_ERROR(o.RequiredTs("ts", c.ts_ms));
  RETURN_IF_ERROR(o.Double("temp_c", c.temp_c, true));
  RETURN_IF_ERROR(o.OptDouble("rh", c.rh));
  RETURN_IF_ERROR(o.OptDouble("battery", c.battery));
  RETURN_IF_ERROR(ValidateClimate(c));
  return Message(std::move(c));
}

Result<Message> DockScanFromJson(const TopicInfo& topic, const json& j) {
  JsonObject o(j);
  DockScan d;
  d.door = topic.device;
  RETURN_IF_ERROR(o.String("scan_id", d.scan_id, true));
  RETURN_IF_ERROR(o.String("pallet_id", d.pallet_id, true));
  RETURN_IF_ERROR(o.String("sku", d.sku, true));
  RETURN_IF_ERROR(o.String("lot", d.lot, false));
  RETURN_IF_ERROR(o.Int("qty", d.qty, true));
  RETURN_IF_ERROR(o.String("direction", d.direction, true));
  RETURN_IF_ERROR(o.RequiredTs("ts", d.ts_ms));
  RETURN_IF_ERROR(ValidateDockScan(d));
  return Message(std::move(d));
}

Result<Message> DecodeJson(const TopicInfo& topic, std::string_view payload) {
  // The plain fix first: what it accepts is ASCII and one level deep, so the two scans below
  // could not refuse it, and the GPS hot path reads its payload once.
  if (topic.kind == TopicKind::kGps)
    if (std::optional<GpsFix> g = PlainGpsFix(topic, payload)) return Message(std::move(*g));
  if (!IsValidUtf8(payload)) return Bad("payload is not valid UTF-8");
  if (JsonDepthExceeds(payload, kMaxJsonDepth)) return Bad("JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  json j;
  try {
    j = json::parse(payload.begin(), payload.end());
  } catch (const json::parse_error& e) {
    // Only the position: nlohmann's message quotes the input, which may be personal data.
    return Bad("malformed JSON at byte " + std::to_string(e.byte));
  } catch (const json::out_of_range&) {
    return Bad("malformed JSON: number out of range (Inf is not a number)");
  } catch (const json::exception&) {
    return Bad("malformed JSON");
  }
  if (!j.is_object()) return Bad("JSON payload must be an object");
  return CodecOf(topic.kind).from_json(topic, j);
}

// ---- Protobuf form: proto3 cannot tell a missing scalar from zero, so zero means missing ----

Status ParseProto(std::string_view payload, const char* message_name, google::protobuf::MessageLite& out) {
  if (!out.ParseFromArray(payload.data(), static_cast<int>(payload.size())))
    return Bad(std::string("not JSON and not a valid protobuf ") + message_name);
  return Status::Ok();
}

Result<Message> MovementFromProto(const TopicInfo&, std::string_view payload) {
  v1::StockMovementMsg p;
  RETURN_IF_ERROR(ParseProto(payload, "StockMovementMsg", p));
  StockMovement m{p.id(), p.sku(), p.delta(), p.reason(), p.order_id(), p.lot(), std::nullopt, p.expiry()};
  if (m.id.empty()) return Bad("id: missing");
  if (m.sku.empty()) return Bad("sku: missing");
  if (p.ts_ms() != 0) m.ts_ms = p.ts_ms();
  RETURN_IF_ERROR(ValidateMovement(m));
  return Message(std::move(m));
}

Result<Message> OrderFromProto(const TopicInfo&, std::string_view payload) {
  v1::OrderStatusMsg p;
  RETURN_IF_ERROR(ParseProto(payload, "OrderStatusMsg", p));
  OrderStatus s;
  s.order_id = p.order_id();
  s.status = p.status();
  s.ts_ms = p.ts_ms();
  s.actor = p.actor();
  if (s.order_id.empty()) return Bad("order_id: missing");
  if (s.status.empty()) return Bad("status: missing");
  if (s.ts_ms == 0) return Bad("ts: missing");
  for (const auto& l : p.lines()) s.lines.push_back({l.sku(), l.qty()});
  if (p.has_customer()) s.customer = Customer{p.customer().name(), p.customer().phone(), p.customer().address()};
  RETURN_IF_ERROR(ValidateOrder(s));
  return Message(std::move(s));
}

// GPS fixes and climate samples, readings of a device: its id from the topic, its counter and
// its own time required, then `fill` copies the rest and `validate` checks the whole.
template <class Msg, class Reading, class Fill>
Result<Message> DeviceReadingFromProto(const TopicInfo& topic, std::string_view payload, const char* message_name,
                                       std::string Reading::*device, Fill fill, Status (*validate)(const Reading&)) {
  Msg p;
  RETURN_IF_ERROR(ParseProto(payload, message_name, p));
  Reading r;
  r.*device = topic.device;
  r.seq = p.seq();
  r.ts_ms = p.ts_ms();
  if (r.seq == 0) return Bad("seq: missing");
  if (r.ts_ms == 0) return Bad("ts: missing");
  fill(p, r);
  RETURN_IF_ERROR(validate(r));
  return Message(std::move(r));
}

Result<Message> GpsFromProto(const TopicInfo& topic, std::string_view payload) {
  return DeviceReadingFromProto<v1::GpsMsg>(topic, payload, "GpsMsg", &GpsFix::vehicle, [](const v1::GpsMsg& p, GpsFix& g) {
    g.lat = p.lat();
    g.lon = p.lon();
    if (p.has_speed_kmh()) g.speed_kmh = p.speed_kmh();
    if (p.has_heading()) g.heading = p.heading();
    if (p.has_hdop()) g.hdop = p.hdop();
  }, ValidateGps);
}

Result<Message> ClimateFromProto(const TopicInfo& topic, std::string_view payload) {
  return DeviceReadingFromProto<v1::ClimateMsg>(topic, payload, "ClimateMsg", &ClimateSample::sensor,
                                                [](const v1::ClimateMsg& p, ClimateSample& c) {
                                                  c.temp_c = p.temp_c();
                                                  if (p.has_rh()) c.rh = p.rh();
                                                  if (p.has_battery()) c.battery = p.battery();
                                                }, ValidateClimate);
}

Result<Message> DockScanFromProto(const TopicInfo& topic, std::string_view payload) {
  v1::DockScanMsg p;
  RETURN_IF_ERROR(ParseProto(payload, "DockScanMsg", p));
  DockScan d{topic.device, p.scan_id(), p.pallet_id(), p.sku(), p.lot(), p.qty(), p.direction(), p.ts_ms()};
  if (d.scan_id.empty()) return Bad("scan_id: missing");
  if (d.pallet_id.empty()) return Bad("pallet_id: missing");
  if (d.sku.empty()) return Bad("sku: missing");
  if (d.qty == 0) return Bad("qty: missing");
  if (d.direction.empty()) return Bad("direction: missing");
  if (d.ts_ms == 0) return Bad("ts: missing");
  RETURN_IF_ERROR(ValidateDockScan(d));
  return Message(std::move(d));
}

using wire::IsDeviceId;

// "unknown topic (expected stock/movements, orders/status, vehicles/{id}/gps, sensors/{id}/climate or
// docks/{door}/scans)"
const std::string& UnknownTopicReason() {
  static const std::string reason = [] {
    std::string r = "unknown topic (expected ";
    for (size_t i = 0; i < kMessageTypeCount; ++i) {
      if (i > 0) r += i + 1 == kMessageTypeCount ? " or " : ", ";
      r += kMessageTypes[i].topic_doc;
    }
    return r + ")";
  }();
  return reason;
}

}  // namespace

Status CheckDeviceClock(const Message& message, int64_t now_ms, int max_skew_s) {
  if (max_skew_s <= 0) return Status::Ok();
  std::optional<int64_t> ts;
  std::visit([&](const auto& m) { ts = m.ts_ms; }, message);  // optional only for movements
  if (!ts) return Status::Ok();
  const int64_t ahead_ms = *ts - now_ms;
  if (ahead_ms <= static_cast<int64_t>(max_skew_s) * 1000) return Status::Ok();
  char buf[160];
  snprintf(buf, sizeof buf, "ts: %.1f s ahead of the edge clock (max_clock_skew_s = %d); device clock wrong?",
           static_cast<double>(ahead_ms) / 1000.0, max_skew_s);
  return Bad(buf);
}

bool IsValidUtf8(std::string_view s) { return wire::IsValidUtf8(s); }

bool IsKnownOrderStatus(std::string_view s) { return wire::IsKnownOrderStatus(s); }

bool IsKnownMovementReason(std::string_view s) { return wire::IsKnownMovementReason(s); }

bool IsValidDate(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return false;
  for (size_t i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (s[i] < '0' || s[i] > '9') return false;
  auto num = [&](size_t at, size_t n) {
    int v = 0;
    for (size_t i = at; i < at + n; ++i) v = v * 10 + (s[i] - '0');
    return v;
  };
  const int y = num(0, 4), m = num(5, 2), d = num(8, 2);
  if (y < 2000 || y > 2199 || m < 1 || m > 12 || d < 1) return false;
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return d <= kDays[m - 1] + (m == 2 && leap ? 1 : 0);
}

bool IsLegalOrderTransition(std::string_view from, std::string_view to) {
  // created -> accepted -> picking -> packed -> dispatched -> delivered; cancelled from any
  // state before dispatch. Each step is taken once and in order. refused (set by the store
  // for an order stock cannot cover) is in no flow: terminal.
  static constexpr std::string_view kFlow[] = {"created", "accepted", "picking", "packed", "dispatched", "delivered"};
  if (from.empty()) return to == "created";
  if (to == "cancelled") return from == "created" || from == "accepted" || from == "picking" || from == "packed";
  for (size_t i = 0; i + 1 < std::size(kFlow); ++i)
    if (from == kFlow[i]) return to == kFlow[i + 1];
  return false;
}

namespace {
// `rest` (the topic below the root) against a row's segments, one segment at a time and without
// copying (this runs on every message); a "+" segment takes a device id, returned in `device`.
bool MatchesRow(const MessageType& type, std::string_view rest, std::string_view& device) {
  for (size_t k = 0; k < type.topic.size() && !type.topic[k].empty(); ++k) {
    if (k > 0) {
      if (rest.empty() || rest.front() != '/') return false;  // the topic has fewer segments
      rest.remove_prefix(1);
    }
    const std::string_view part = rest.substr(0, rest.find('/'));
    if (type.topic[k] == "+") {
      if (!IsDeviceId(part)) return false;
      device = part;
    } else if (part != type.topic[k]) {
      return false;
    }
    rest.remove_prefix(part.size());
  }
  return rest.empty();  // not: the topic has more segments
}

// What edged itself publishes (edge/publications.h): {root}/deadletter, {root}/events/...,
// {root}/alerts/..., {root}/orders/{id}/state.
bool IsOwnOutput(std::string_view rest) {
  using namespace wire;  // the topic segments (wire/routes.h)
  const size_t first_end = rest.find('/');
  const std::string_view first = rest.substr(0, first_end);
  if (first == kTopicEvents || first == kTopicAlerts) return true;
  if (first_end == std::string_view::npos) return first == kTopicDeadletter;
  if (first != kTopicOrders) return false;
  const size_t second_end = rest.find('/', first_end + 1);
  if (second_end == std::string_view::npos) return false;
  const std::string_view third = rest.substr(second_end + 1);
  return third.find('/') == std::string_view::npos && third == kTopicState;
}
}  // namespace

TopicInfo ClassifyTopic(std::string_view root, std::string_view topic) {
  TopicInfo info;
  if (topic.size() <= root.size() || topic.substr(0, root.size()) != root || topic[root.size()] != '/') return info;
  const std::string_view rest = topic.substr(root.size() + 1);
  for (const MessageType& type : kMessageTypes) {
    std::string_view device;
    if (MatchesRow(type, rest, device)) {
      info.kind = type.kind;
      info.device = device;
      return info;
    }
  }
  if (IsOwnOutput(rest)) info.kind = TopicKind::kOwnOutput;
  return info;
}

Result<Message> Decode(std::string_view root, std::string_view topic, std::string_view payload) {
  const TopicInfo info = ClassifyTopic(root, topic);
  if (info.kind == TopicKind::kUnknown || info.kind == TopicKind::kOwnOutput)
    return Bad(UnknownTopicReason());
  if (payload.size() > kMaxPayloadBytes)
    return Bad("payload too large: " + std::to_string(payload.size()) + " bytes (max " + std::to_string(kMaxPayloadBytes) + ")");
  size_t i = 0;
  while (i < payload.size() && IsSpace(payload[i])) ++i;
  if (i == payload.size()) return Bad("empty payload");
  if (payload[i] == '{') return DecodeJson(info, payload);
  return CodecOf(info.kind).from_proto(info, payload);
}

}  // namespace freshsync::edge

namespace freshsync::edge {
namespace {

bool StartsAsJson(std::string_view payload) {
  size_t i = 0;
  while (i < payload.size() && IsSpace(payload[i])) ++i;
  return i < payload.size() && payload[i] == '{';
}

// "customer" in any letter case, without lowering a copy (this runs on every message): one
// compare per byte until a 'c'/'C' matches.
bool ContainsCustomerKey(std::string_view p) {
  static constexpr char kKey[] = "customer";
  constexpr size_t n = sizeof kKey - 1;
  if (p.size() < n) return false;
  for (size_t i = 0; i + n <= p.size(); ++i) {
    if ((p[i] | 0x20) != 'c') continue;
    size_t k = 1;
    while (k < n && (p[i + k] | 0x20) == kKey[k]) ++k;
    if (k == n) return true;
  }
  return false;
}

bool IsCustomerKey(const std::string& key) {
  if (key.size() != 8) return false;
  for (size_t k = 0; k < 8; ++k)
    if ((key[k] | 0x20) != "customer"[k]) return false;
  return true;
}

// A stand-in for one customer text that Decode judges exactly as it judged the original
// (CheckText: length, then UTF-8, then control characters).
std::string RedactedText(const std::string& original) {
  if (original.size() > kMaxFreeText) return std::string(original.size(), '#');  // still "longer than"
  if (wire::HasControlCharacterBesidesLineBreaks(original)) return "<redacted>\x7f";  // still "contains control characters"
  return "<redacted>";
}

// Top level: keeps the block's shape for Decode (see decode.h). Deeper: the whole value goes.
void RedactJson(json& j, int depth) {
  if (depth > kMaxJsonDepth) return;  // not reached: the caller refused deeper input
  if (j.is_array()) {
    for (auto& v : j) RedactJson(v, depth + 1);
    return;
  }
  if (!j.is_object()) return;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!IsCustomerKey(it.key())) {
      RedactJson(it.value(), depth + 1);
      continue;
    }
    json& c = it.value();
    if (depth > 0 || it.key() != "customer") {
      c = "<redacted>";  // Decode never reads it
    } else if (c.is_null()) {
      // nothing in it
    } else if (!c.is_object()) {
      c = 0;  // Decode: "customer: must be an object", as before
    } else {
      json kept = json::object();
      for (const char* f : {"name", "phone", "address"}) {
        auto fv = c.find(f);
        if (fv == c.end()) continue;
        if (fv->is_null()) kept[f] = nullptr;
        else if (fv->is_string()) kept[f] = RedactedText(fv->get_ref<const std::string&>());
        else kept[f] = 0;  // "must be a string", as before
      }
      c = std::move(kept);
    }
  }
}

// A protobuf string that holds a control character is not an identifier or a status: it may
// be a whole message (a customer block) smuggled into a string field of another message.
bool PlainText(const std::string& s) { return !HasControlCharacter(s); }
bool PlainStrings(const v1::GpsMsg&) { return true; }
bool PlainStrings(const v1::ClimateMsg&) { return true; }
bool PlainStrings(const v1::StockMovementMsg& m) {
  return PlainText(m.id()) && PlainText(m.sku()) && PlainText(m.reason()) && PlainText(m.order_id()) && PlainText(m.lot()) &&
         PlainText(m.expiry());
}
bool PlainStrings(const v1::DockScanMsg& m) {
  return PlainText(m.scan_id()) && PlainText(m.pallet_id()) && PlainText(m.sku()) && PlainText(m.lot()) &&
         PlainText(m.direction());
}
bool PlainStrings(const v1::OrderStatusMsg& m) {
  if (!PlainText(m.order_id()) || !PlainText(m.status()) || !PlainText(m.actor())) return false;
  for (const auto& l : m.lines())
    if (!PlainText(l.sku())) return false;
  return true;
}

template <typename Msg>
bool ParsesCleanly(std::string_view payload, Msg* m) {
  // No unknown field (a field of the wrong wire type lands there too), the same size once
  // re-serialized (no field repeated: the parser keeps the last copy of a string, an earlier
  // one could hold anything), and no string that could be a message in disguise.
  return m->ParseFromArray(payload.data(), static_cast<int>(payload.size())) &&
         m->GetReflection()->GetUnknownFields(*m).field_count() == 0 && m->ByteSizeLong() == payload.size() && PlainStrings(*m);
}

void RedactCustomer(v1::Customer* c) {
  if (!c->name().empty()) c->set_name(RedactedText(c->name()));
  if (!c->phone().empty()) c->set_phone(RedactedText(c->phone()));
  if (!c->address().empty()) c->set_address(RedactedText(c->address()));
}

template <typename Msg>
std::optional<std::string> Reserialized(std::string_view payload) {
  Msg m;
  if (!m.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) return std::nullopt;
  m.DiscardUnknownFields();  // where a wrong-type or unknown field could hide text
  if constexpr (std::is_same_v<Msg, v1::OrderStatusMsg>) {
    if (m.has_customer()) RedactCustomer(m.mutable_customer());
  }
  // A string that may be a smuggled message cannot be redacted field by field; Decode refuses
  // such a message anyway (identifiers hold no control characters).
  if (!PlainStrings(m)) return std::nullopt;
  std::string out = m.SerializeAsString();
  // Decode picks the form by the first non-whitespace byte. A re-serialized message may no
  // longer look like protobuf to it: nothing known left, or only whitespace (tags 0x09, 0x0a,
  // 0x0d, 0x20 are whitespace: "empty payload"), or "\n{" (field 1, 123 bytes long, moved
  // first: read as JSON). Then there is no redacted form; the caller keeps the reason only.
  size_t i = 0;
  while (i < out.size() && IsSpace(out[i])) ++i;
  if (i == out.size() || out[i] == '{') return std::nullopt;
  return out;
}

// Protobuf payloads that parse cleanly as their type's message hold no personal data, except an
// order's customer block.
template <typename Msg>
bool ProtoMayCarry(std::string_view payload) {
  Msg m;
  return !ParsesCleanly(payload, &m);
}
bool OrderProtoMayCarry(std::string_view payload) {
  v1::OrderStatusMsg m;
  return !ParsesCleanly(payload, &m) || m.has_customer();
}

// Row i is the codec of kMessageTypes[i], that is of the i-th edge::Message alternative.
constexpr Codec kCodecs[] = {
    {MovementFromJson, MovementFromProto, ProtoMayCarry<v1::StockMovementMsg>, Reserialized<v1::StockMovementMsg>},
    {OrderFromJson, OrderFromProto, OrderProtoMayCarry, Reserialized<v1::OrderStatusMsg>},
    {GpsFromJson, GpsFromProto, ProtoMayCarry<v1::GpsMsg>, Reserialized<v1::GpsMsg>},
    {ClimateFromJson, ClimateFromProto, ProtoMayCarry<v1::ClimateMsg>, Reserialized<v1::ClimateMsg>},
    {DockScanFromJson, DockScanFromProto, ProtoMayCarry<v1::DockScanMsg>, Reserialized<v1::DockScanMsg>},
};
static_assert(std::size(kCodecs) == kMessageTypeCount, "one codec per kMessageTypes row");
// A row that leaves a function out does not build either: -Wextra's -Wmissing-field-initializers
// is an error here (freshsync_warnings). A static_assert that the four pointers are non-null
// would say it more plainly, but GCC 12 with -fsanitize=undefined does not take the address of
// a function template instance as a constant, and the ASan/UBSan build must build.

// Callers pass a kind of kMessageTypes only (ClassifyTopic's other kinds are refused before).
const Codec& CodecOf(TopicKind kind) { return kCodecs[static_cast<size_t>(kind)]; }

}  // namespace

bool JsonDepthExceeds(std::string_view p, int max_depth) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) return true;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return false;
}

bool MayCarryPersonalData(TopicKind kind, std::string_view payload) {
  if (payload.empty()) return false;
  if (StartsAsJson(payload)) return ContainsCustomerKey(payload) || std::memchr(payload.data(), '\\', payload.size()) != nullptr;
  // Binary on a topic we do not decode: we cannot tell what it holds.
  if (static_cast<size_t>(kind) >= kMessageTypeCount) return true;
  return CodecOf(kind).proto_may_carry_personal_data(payload);
}

std::optional<std::string> RedactPersonalData(TopicKind kind, std::string_view payload) {
  // Decode refuses it for its size; a redacted (compacted JSON, re-serialized protobuf) copy
  // could be small enough to be accepted, so there is none.
  if (payload.size() > kMaxPayloadBytes) return std::nullopt;
  if (StartsAsJson(payload)) {
    // What DecodeJson refuses before parsing is not redacted either: the redacted text would be
    // clean UTF-8 and be refused for a later reason, or accepted.
    if (!IsValidUtf8(payload) || JsonDepthExceeds(payload, kMaxJsonDepth)) return std::nullopt;
    json j = json::parse(payload.begin(), payload.end(), nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    RedactJson(j, 0);
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
  }
  if (static_cast<size_t>(kind) >= kMessageTypeCount) return std::nullopt;
  return CodecOf(kind).proto_redacted(payload);
}

}  // namespace freshsync::edge
