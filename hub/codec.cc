#include "hub/codec.h"

#include "wire/scales.h"

#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <memory>

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

nlohmann::json RecordFieldsToJson(const v1::ChangeRecord& r) {
  using nlohmann::json;
  json j = json::object();
  switch (r.body_case()) {
    case v1::ChangeRecord::kStock: {
      const auto& s = r.stock();
      j = {{"sku", s.sku()}, {"on_hand", s.on_hand()}, {"reserved", s.reserved()}};
      if (!s.movement_id().empty()) {
        j["movement_id"] = s.movement_id();
        j["delta"] = s.delta();
        if (!s.lot().empty()) j["lot"] = s.lot();
      }
      // A reservation or release (order created, cancelled, dispatched) has no movement but
      // names its reason and order (docs/formats.md).
      if (!s.reason().empty()) j["reason"] = s.reason();
      if (!s.order_id().empty()) j["order_id"] = s.order_id();
      break;
    }
    case v1::ChangeRecord::kOrder: {
      const auto& o = r.order();
      j = {{"order_id", o.order_id()}, {"status", o.status()}};
      if (!o.actor().empty()) j["actor"] = o.actor();
      if (o.lines_size() > 0) {
        json lines = json::array();
        for (const auto& l : o.lines()) lines.push_back({{"sku", l.sku()}, {"qty", l.qty()}});
        j["lines"] = std::move(lines);
      }
      // Sealed customer data stays sealed; HQ gets the opaque blob, base64.
      if (!o.customer_sealed().empty()) j["customer_sealed"] = Base64(o.customer_sealed());
      break;
    }
    case v1::ChangeRecord::kPosition: {
      const auto& p = r.position();
      j = {{"vehicle", p.vehicle()},
           {"device_seq", p.device_seq()},
           {"lat", p.lat_e6() / wire::kLatLonScale},
           {"lon", p.lon_e6() / wire::kLatLonScale},
           {"speed_kmh", p.speed_dkmh() / wire::kSpeedScale},
           {"heading", p.heading_deg()},
           {"hdop", p.hdop_d() / wire::kHdopScale}};
      break;
    }
    case v1::ChangeRecord::kClimate: {
      const auto& c = r.climate();
      j = {{"sensor", c.sensor()},
           {"device_seq", c.device_seq()},
           {"temp_c", c.temp_dc() / wire::kTempScale},
           {"rh", c.rh_d() / wire::kHumidityScale},
           {"battery", c.battery_d() / wire::kBatteryScale}};
      break;
    }
    case v1::ChangeRecord::kGeofence: {
      const auto& g = r.geofence();
      j = {{"vehicle", g.vehicle()}, {"fence", g.fence()}, {"kind", g.kind()}, {"event", g.event()}};
      break;
    }
    case v1::ChangeRecord::kAlert: {
      const auto& a = r.alert();
      j = {{"alert_id", a.alert_id()},   {"sensor", a.sensor()},
           {"state", a.state()},         {"min_c", a.min_c()},
           {"max_c", a.max_c()},         {"started_ts", a.started_ts_ms()},
           {"kind", a.kind()}};
      if (a.ended_ts_ms() != 0) j["ended_ts"] = a.ended_ts_ms();
      break;
    }
    case v1::ChangeRecord::BODY_NOT_SET:
      break;
  }
  return j;
}

nlohmann::json ChangeToJson(uint64_t cursor, const std::string& site, const v1::ChangeRecord& r) {
  return {{"cursor", cursor},   {"site", site},      {"seq", r.seq()},
          {"entity", EntityName(r.entity())},         {"key", r.key()},
          {"version", r.version()}, {"hlc", r.hlc()}, {"ts", r.ts_ms()},
          {"fields", RecordFieldsToJson(r)}};
}

}  // namespace freshsync::hub
