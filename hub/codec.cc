#include "hub/codec.h"

#include "wire/digest.h"
#include "wire/scales.h"

#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <unordered_map>

#include <google/protobuf/descriptor.h>

namespace freshsync::hub {

Result<std::string> ZstdDecompressCapped(std::string_view input, const ZstdLimits& limits) {
  if (input.empty()) return Status::InvalidArgument("empty zstd body");
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> dctx(ZSTD_createDCtx(), &ZSTD_freeDCtx);
  if (!dctx) return Status::Internal("ZSTD_createDCtx failed");
  ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, limits.window_log_max);

  // A frame header may announce its size. Believe it only to refuse early, never to allocate.
  const unsigned long long declared = ZSTD_getFrameContentSize(input.data(), input.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) return Status::InvalidArgument("not a zstd frame");
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared > limits.max_output_bytes)
    return Status::Conflict("decompressed size " + std::to_string(declared) + " exceeds the limit of " +
                            std::to_string(limits.max_output_bytes) + " bytes");

  // The decoder's window: zstd allocates at most the frame's window, which is at most
  // 2^window_log_max and, for a single-segment frame, the content size; plus its own buffers.
  const uint64_t window_cap = uint64_t{1} << limits.window_log_max;
  const uint64_t window = (declared != ZSTD_CONTENTSIZE_UNKNOWN ? std::min<uint64_t>(declared, window_cap) : window_cap) +
                          ZSTD_DStreamInSize() + ZSTD_DStreamOutSize() + (64 << 10);
  auto budget_refused = [] { return Status::Unavailable("decompression budget of the hub is exhausted; retry later"); };
  // Admission is all or nothing: the request's worst case is reserved up front, so that under
  // contention some requests run to completion and the rest are refused at once. Growing the
  // reservation step by step let sixteen bombs each take a window and then all fail to grow.
  // Worst case: the declared size (the agent always declares it; a frame that then holds more
  // grows step by step below), else the output string's geometric growth up to the cap.
  const uint64_t worst_output =
      declared != ZSTD_CONTENTSIZE_UNKNOWN ? declared + 2 : 2 * (limits.max_output_bytes + 1) + 1;
  if (limits.reservation && !limits.reservation->GrowTo(window + worst_output)) return budget_refused();

  std::string out;
  // A first reserve of an empty string allocates exactly; without a declared size the string
  // grows geometrically, so the worst case is about twice the cap, never more.
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN) {
    if (limits.reservation && !limits.reservation->GrowTo(window + declared + 2)) return budget_refused();
    out.reserve(declared + 1);
  }
  // Grow in steps: the output buffer never exceeds the cap by more than one step's slack.
  const size_t step = ZSTD_DStreamOutSize() * 8;
  ZSTD_inBuffer in{input.data(), input.size(), 0};
  size_t last_ret = 1;
  while (true) {
    if (out.size() >= limits.max_output_bytes + 1) {
      return Status::Conflict("decompressed size exceeds the limit of " + std::to_string(limits.max_output_bytes) + " bytes");
    }
    const size_t old = out.size();
    // +1 so that output of exactly the cap is accepted while one byte more is detected.
    // A declared size (the agent's encoder always writes it) sizes the first step exactly:
    // resize() zero-fills, and zeroing a 1 MiB step for a 100 KB batch, in memory fresh from
    // mmap, was ~15 % of hubd's CPU under fan-in (docs/benchmarks.md). The +1 still detects a
    // frame that holds more than it declared. Capped at 4 steps, so that a frame merely
    // claiming a large size does not get that much memory touched before it delivers.
    const size_t want = declared != ZSTD_CONTENTSIZE_UNKNOWN && old == 0
                            ? static_cast<size_t>(std::min<unsigned long long>(declared + 1, 4 * step))
                            : step;
    const size_t room = std::min<uint64_t>(want, limits.max_output_bytes + 1 - old);
    if (limits.reservation && old + room > out.capacity()) {
      // libstdc++ grows to max(2 x capacity, the size asked for): reserve that before it happens.
      const uint64_t next_cap = std::max<uint64_t>(2 * uint64_t{out.capacity()}, old + room) + 1;
      if (!limits.reservation->GrowTo(window + next_cap)) return budget_refused();
    }
    out.resize(old + room);
    ZSTD_outBuffer ob{out.data() + old, room, 0};
    last_ret = ZSTD_decompressStream(dctx.get(), &ob, &in);
    out.resize(old + ob.pos);
    if (ZSTD_isError(last_ret)) {
      const auto code = ZSTD_getErrorCode(last_ret);
      if (code == ZSTD_error_frameParameter_windowTooLarge)
        return Status::Conflict("zstd window larger than 2^" + std::to_string(limits.window_log_max));
      return Status::InvalidArgument(std::string("zstd: ") + ZSTD_getErrorName(last_ret));
    }
    if (out.size() > limits.max_output_bytes)
      return Status::Conflict("decompressed size exceeds the limit of " + std::to_string(limits.max_output_bytes) + " bytes");
    // All input consumed and the frame complete, or no progress left to make (a truncated
    // frame). Not "output short of the room": zstd may return after one block with output
    // still to flush, which made a large, highly compressible frame look truncated.
    if (in.pos == in.size && (last_ret == 0 || ob.pos == 0)) break;
  }
  if (last_ret != 0) return Status::InvalidArgument("zstd: truncated frame");
  return out;
}

uint64_t DecompressWorstCase(uint64_t max_output_bytes, int window_log_max) {
  return (uint64_t{1} << window_log_max) + ZSTD_DStreamInSize() + ZSTD_DStreamOutSize() + (64 << 10) +
         2 * (max_output_bytes + 1) + 1;
}

std::string ZstdCompress(std::string_view input, int level) {
  std::string out(ZSTD_compressBound(input.size()), '\0');
  const size_t n = ZSTD_compress(out.data(), out.size(), input.data(), input.size(), level);
  if (ZSTD_isError(n)) return {};
  out.resize(n);
  return out;
}

std::string EntityName(int entity) {
  if (v1::Entity_IsValid(entity)) return v1::Entity_Name(static_cast<v1::Entity>(entity));
  return std::to_string(entity);
}

std::string Base64(std::string_view bytes) {
  static const char* tbl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    out.push_back(tbl[v >> 18]);
    out.push_back(tbl[(v >> 12) & 63]);
    out.push_back(tbl[(v >> 6) & 63]);
    out.push_back(tbl[v & 63]);
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = uint8_t(bytes[i]) << 16;
    out.push_back(tbl[v >> 18]);
    out.push_back(tbl[(v >> 12) & 63]);
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8);
    out.push_back(tbl[v >> 18]);
    out.push_back(tbl[(v >> 12) & 63]);
    out.push_back(tbl[(v >> 6) & 63]);
    out.push_back('=');
  }
  return out;
}

// ---------- the JSON form of the protobuf answers ----------
//
// Every JSON answer of the hub is its protobuf answer put through ToJson(), so the two forms
// cannot drift apart. A field appears under its own name with its value as is (integers stay
// JSON integers: the proto3 JSON mapping would turn 64-bit ones into strings, which HQ's
// clients do not expect), bytes as base64, an enum as its name, a message as an object. The
// table below lists only the fields whose JSON differs from that: the names and units the JSON
// API has always had (docs/api.md), which a new message therefore does not need.
namespace {

namespace pb = google::protobuf;

struct FieldRule {
  const char* message;               // full name of the message
  const char* field;                 // a field's name, or a oneof's: its set member under `json`
  const char* json = nullptr;        // JSON key when it is not the field's name
  double scale = 0;                  // fixed point served in its unit: value / scale, a double
  bool inline_fields = false;        // a message field whose fields go into the parent's object
  bool omit_default = false;         // left out when 0, "" or empty
  const char* only_with = nullptr;   // left out unless this sibling field is set
  bool hex = false;                  // bytes as lowercase hex (digests) instead of base64
  bool omit = false;                 // never in the JSON
};

constexpr FieldRule kRules[] = {
    // Change records: the feed's entries and their "fields" (docs/formats.md).
    {.message = "freshsync.v1.ChangeRecord", .field = "ts_ms", .json = "ts"},
    {.message = "freshsync.v1.ChangeRecord", .field = "hlc_from_ts", .omit = true},  // batch format 2 only
    {.message = "freshsync.v1.ChangeRecord", .field = "body", .json = "fields"},     // {} when no body
    // The cold-chain audit chain (docs/formats.md): only on chained records, hashes in hex.
    {.message = "freshsync.v1.ChangeRecord", .field = "chain_prev", .omit_default = true, .hex = true},
    {.message = "freshsync.v1.ChangeRecord", .field = "chain_hash", .omit_default = true, .hex = true},
    {.message = "freshsync.v1.ChangeRecord", .field = "chain_index", .omit_default = true},
    {.message = "freshsync.v1.ColdchainSeal", .field = "last_hash", .hex = true},
    {.message = "freshsync.v1.ColdchainSeal", .field = "public_key", .hex = true},
    {.message = "freshsync.v1.ColdchainSeal", .field = "signature", .hex = true},
    {.message = "freshsync.v1.ColdchainVerifyReply", .field = "from_ms", .json = "from"},
    {.message = "freshsync.v1.ColdchainVerifyReply", .field = "to_ms", .json = "to"},
    {.message = "freshsync.v1.ColdchainVerifyReply", .field = "first_bad", .omit_default = true},
    {.message = "freshsync.v1.ColdchainBadLink", .field = "seq", .omit_default = true},
    {.message = "freshsync.v1.FeedChange", .field = "record", .inline_fields = true},
    // A movement's fields only with its id; a reservation or release (order created,
    // cancelled, dispatched) has no movement but names its reason and order.
    {.message = "freshsync.v1.StockState", .field = "movement_id", .omit_default = true},
    {.message = "freshsync.v1.StockState", .field = "delta", .only_with = "movement_id"},
    {.message = "freshsync.v1.StockState", .field = "lot", .omit_default = true, .only_with = "movement_id"},
    // A received lot's expiry (since StockState field 9): only when the movement gave one.
    {.message = "freshsync.v1.StockState", .field = "expiry", .omit_default = true, .only_with = "movement_id"},
    {.message = "freshsync.v1.StockState", .field = "reason", .omit_default = true},
    {.message = "freshsync.v1.StockState", .field = "order_id", .omit_default = true},
    {.message = "freshsync.v1.OrderState", .field = "actor", .omit_default = true},
    {.message = "freshsync.v1.OrderState", .field = "lines", .omit_default = true},
    // Sealed customer data stays sealed; HQ gets the opaque blob, base64.
    {.message = "freshsync.v1.OrderState", .field = "customer_sealed", .omit_default = true},
    {.message = "freshsync.v1.VehiclePosition", .field = "lat_e6", .json = "lat", .scale = wire::kLatLonScale},
    {.message = "freshsync.v1.VehiclePosition", .field = "lon_e6", .json = "lon", .scale = wire::kLatLonScale},
    {.message = "freshsync.v1.VehiclePosition", .field = "speed_dkmh", .json = "speed_kmh", .scale = wire::kSpeedScale},
    {.message = "freshsync.v1.VehiclePosition", .field = "heading_deg", .json = "heading"},
    {.message = "freshsync.v1.VehiclePosition", .field = "hdop_d", .json = "hdop", .scale = wire::kHdopScale},
    {.message = "freshsync.v1.ClimateReading", .field = "temp_dc", .json = "temp_c", .scale = wire::kTempScale},
    {.message = "freshsync.v1.ClimateReading", .field = "rh_d", .json = "rh", .scale = wire::kHumidityScale},
    {.message = "freshsync.v1.ClimateReading", .field = "battery_d", .json = "battery", .scale = wire::kBatteryScale},
    {.message = "freshsync.v1.ColdchainAlert", .field = "started_ts_ms", .json = "started_ts"},
    {.message = "freshsync.v1.ColdchainAlert", .field = "ended_ts_ms", .json = "ended_ts", .omit_default = true},
    // HQ answers: `ts` is device time in ms; the item's nested record goes into the item.
    {.message = "freshsync.v1.StockItem", .field = "ts_ms", .json = "ts"},
    {.message = "freshsync.v1.OrderItem", .field = "ts_ms", .json = "ts"},
    {.message = "freshsync.v1.OrderItem", .field = "customer_sealed", .omit_default = true},
    {.message = "freshsync.v1.PositionItem", .field = "position", .inline_fields = true},
    {.message = "freshsync.v1.PositionItem", .field = "ts_ms", .json = "ts"},
    {.message = "freshsync.v1.AlertItem", .field = "alert", .inline_fields = true},
    {.message = "freshsync.v1.GeofenceItem", .field = "event", .inline_fields = true},
    {.message = "freshsync.v1.GeofenceItem", .field = "ts_ms", .json = "ts"},
    {.message = "freshsync.v1.DockScanItem", .field = "scan", .inline_fields = true},
    {.message = "freshsync.v1.DockScanItem", .field = "ts_ms", .json = "ts"},
    {.message = "freshsync.v1.ClimateItem", .field = "reading", .inline_fields = true},
    {.message = "freshsync.v1.ClimateItem", .field = "ts_ms", .json = "ts"},
    // Site routes.
    {.message = "freshsync.v1.RangeDigest", .field = "digest", .hex = true},
    {.message = "freshsync.v1.StateDigestReply", .field = "digest", .hex = true},
    // The JSON ack keeps the fields docs/api.md shows; the agent reads the protobuf.
    {.message = "freshsync.v1.BatchAck", .field = "error", .omit_default = true},
    {.message = "freshsync.v1.BatchAck", .field = "max_format", .omit = true},
    {.message = "freshsync.v1.BatchAck", .field = "refused", .omit = true},
};

struct Resolved {
  const FieldRule* rule;
  const pb::FieldDescriptor* only_with = nullptr;
};

// kRules by descriptor (field or oneof). A name in the table that the proto does not have is
// a bug in this file: it aborts at the first use, so every test of a JSON answer fails.
class Rules {
 public:
  static const Rules& Get() {
    static const Rules rules;
    return rules;
  }
  const Resolved* Find(const void* descriptor) const {
    auto it = by_descriptor_.find(descriptor);
    return it == by_descriptor_.end() ? nullptr : &it->second;
  }

 private:
  Rules() {
    const pb::DescriptorPool* pool = v1::ChangeRecord::descriptor()->file()->pool();
    for (const FieldRule& r : kRules) {
      const pb::Descriptor* m = pool->FindMessageTypeByName(r.message);
      if (m == nullptr) Die(r, "no such message");
      Resolved res{&r};
      if (r.only_with != nullptr && (res.only_with = m->FindFieldByName(r.only_with)) == nullptr)
        Die(r, "no such only_with field");
      if (const pb::FieldDescriptor* f = m->FindFieldByName(r.field)) {
        by_descriptor_[f] = res;
      } else if (const pb::OneofDescriptor* o = m->FindOneofByName(r.field)) {
        by_descriptor_[o] = res;
      } else {
        Die(r, "no such field or oneof");
      }
    }
  }
  [[noreturn]] static void Die(const FieldRule& r, const char* what) {
    std::fprintf(stderr, "hub/codec.cc kRules: %s: %s.%s\n", what, r.message, r.field);
    std::abort();
  }
  std::unordered_map<const void*, Resolved> by_descriptor_;
};

void AddFields(const pb::Message& m, nlohmann::json& out);

// One value of `f` (element `index` of a repeated field, -1 for a singular one).
nlohmann::json Value(const pb::Message& m, const pb::FieldDescriptor* f, int index, const FieldRule* rule) {
  const pb::Reflection& r = *m.GetReflection();
  const bool rep = index >= 0;
  auto scaled = [rule](auto v) -> nlohmann::json {
    if (rule != nullptr && rule->scale != 0) return v / rule->scale;
    return v;
  };
  // The singular or the repeated getter of Reflection, as `index` says.
  auto get = [&](auto one, auto many) { return rep ? (r.*many)(m, f, index) : (r.*one)(m, f); };
  using R = pb::Reflection;
  using F = pb::FieldDescriptor;
  switch (f->cpp_type()) {
    case F::CPPTYPE_INT32: return scaled(get(&R::GetInt32, &R::GetRepeatedInt32));
    case F::CPPTYPE_INT64: return scaled(get(&R::GetInt64, &R::GetRepeatedInt64));
    case F::CPPTYPE_UINT32: return scaled(get(&R::GetUInt32, &R::GetRepeatedUInt32));
    case F::CPPTYPE_UINT64: return scaled(get(&R::GetUInt64, &R::GetRepeatedUInt64));
    case F::CPPTYPE_DOUBLE: return scaled(get(&R::GetDouble, &R::GetRepeatedDouble));
    case F::CPPTYPE_FLOAT: return scaled(get(&R::GetFloat, &R::GetRepeatedFloat));
    case F::CPPTYPE_BOOL: return get(&R::GetBool, &R::GetRepeatedBool);
    case F::CPPTYPE_ENUM: {
      const int v = get(&R::GetEnumValue, &R::GetRepeatedEnumValue);
      const pb::EnumValueDescriptor* e = f->enum_type()->FindValueByNumber(v);
      return e != nullptr ? e->name() : std::to_string(v);
    }
    case F::CPPTYPE_STRING: {
      std::string s = get(&R::GetString, &R::GetRepeatedString);
      if (f->type() != F::TYPE_BYTES) return s;
      return rule != nullptr && rule->hex ? digest::Hex(s) : Base64(s);
    }
    case F::CPPTYPE_MESSAGE: {
      nlohmann::json j = nlohmann::json::object();
      AddFields(rep ? r.GetRepeatedMessage(m, f, index) : r.GetMessage(m, f), j);
      return j;
    }
  }
  return nullptr;
}

void AddFields(const pb::Message& m, nlohmann::json& out) {
  const Rules& rules = Rules::Get();
  const pb::Descriptor* d = m.GetDescriptor();
  const pb::Reflection& r = *m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    const Resolved* res = rules.Find(f);
    const FieldRule* rule = res ? res->rule : nullptr;
    std::string key = rule && rule->json ? rule->json : f->name();
    if (const pb::OneofDescriptor* o = f->real_containing_oneof()) {
      if (!r.HasField(m, f)) continue;  // not the member that is set
      if (const Resolved* orule = rules.Find(o); orule && orule->rule->json) key = orule->rule->json;
    }
    if (rule) {
      if (rule->omit) continue;
      if (res->only_with && !r.HasField(m, res->only_with)) continue;
      const bool empty = f->is_repeated() ? r.FieldSize(m, f) == 0 : !r.HasField(m, f);
      if (rule->omit_default && empty) continue;
      if (rule->inline_fields) {
        AddFields(r.GetMessage(m, f), out);
        continue;
      }
    }
    if (f->is_repeated()) {
      nlohmann::json arr = nlohmann::json::array();
      for (int k = 0; k < r.FieldSize(m, f); ++k) arr.push_back(Value(m, f, k, rule));
      out[key] = std::move(arr);
    } else {
      out[key] = Value(m, f, -1, rule);
    }
  }
  // A oneof with a JSON name is always there: an empty object when no member is set.
  for (int i = 0; i < d->real_oneof_decl_count(); ++i) {
    const pb::OneofDescriptor* o = d->oneof_decl(i);
    const Resolved* orule = rules.Find(o);
    if (orule && orule->rule->json && !out.contains(orule->rule->json)) out[orule->rule->json] = nlohmann::json::object();
  }
}

}  // namespace

nlohmann::json ToJson(const google::protobuf::Message& message) {
  nlohmann::json j = nlohmann::json::object();
  AddFields(message, j);
  return j;
}

nlohmann::json RecordFieldsToJson(const v1::ChangeRecord& record) {
  const pb::OneofDescriptor* body = v1::ChangeRecord::descriptor()->FindOneofByName("body");
  const pb::FieldDescriptor* set = record.GetReflection()->GetOneofFieldDescriptor(record, body);
  if (set == nullptr) return nlohmann::json::object();
  return ToJson(record.GetReflection()->GetMessage(record, set));
}

nlohmann::json ChangeToJson(uint64_t cursor, const std::string& site, const v1::ChangeRecord& record) {
  nlohmann::json j = ToJson(record);
  j["cursor"] = cursor;
  j["site"] = site;
  return j;
}

}  // namespace freshsync::hub
