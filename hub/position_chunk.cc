#include "hub/position_chunk.h"

#include "wire/batch_format.h"

namespace freshsync::hub {
namespace {

void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// Zigzag of the difference a - b of two 64-bit values, in unsigned arithmetic (no overflow UB).
uint64_t ZigzagDiff(uint64_t a, uint64_t b) {
  const uint64_t d = a - b;
  return (d << 1) ^ (0 - (d >> 63));
}
uint64_t Unzigzag(uint64_t z) { return (z >> 1) ^ (0 - (z & 1)); }

bool GetVarint(std::string_view in, size_t* pos, uint64_t* v) {
  uint64_t result = 0;
  for (int shift = 0; shift < 64 && *pos < in.size(); shift += 7) {
    const auto byte = static_cast<uint8_t>(in[(*pos)++]);
    result |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

}  // namespace

void EncodeChunk(const ChunkFix* fixes, size_t count, std::string* out) {
  ChunkFix prev;
  for (size_t i = 0; i < count; ++i) {
    const ChunkFix& f = fixes[i];
    PutVarint(ZigzagDiff(static_cast<uint64_t>(f.ts_ms), static_cast<uint64_t>(prev.ts_ms)), out);
    PutVarint(ZigzagDiff(f.seq, prev.seq), out);
    PutVarint(f.device_seq, out);
    PutVarint(ZigzagDiff(static_cast<uint64_t>(int64_t{f.lat_e6}), static_cast<uint64_t>(int64_t{prev.lat_e6})), out);
    PutVarint(ZigzagDiff(static_cast<uint64_t>(int64_t{f.lon_e6}), static_cast<uint64_t>(int64_t{prev.lon_e6})), out);
    PutVarint(f.speed_dkmh, out);
    PutVarint(f.heading_deg, out);
    PutVarint(f.hdop_d, out);
    PutVarint(ZigzagDiff(f.hlc, wire::HlcBase(f.ts_ms)), out);
    prev = f;
  }
}

bool DecodeChunk(std::string_view blob, uint64_t count, std::vector<ChunkFix>* out) {
  size_t pos = 0;
  ChunkFix prev;
  uint64_t v[9];
  for (uint64_t i = 0; i < count; ++i) {
    for (uint64_t& x : v) {
      if (!GetVarint(blob, &pos, &x)) return false;
    }
    ChunkFix f;
    f.ts_ms = static_cast<int64_t>(static_cast<uint64_t>(prev.ts_ms) + Unzigzag(v[0]));
    f.seq = prev.seq + Unzigzag(v[1]);
    f.device_seq = v[2];
    const auto lat = static_cast<int64_t>(static_cast<uint64_t>(int64_t{prev.lat_e6}) + Unzigzag(v[3]));
    const auto lon = static_cast<int64_t>(static_cast<uint64_t>(int64_t{prev.lon_e6}) + Unzigzag(v[4]));
    if (lat < INT32_MIN || lat > INT32_MAX || lon < INT32_MIN || lon > INT32_MAX) return false;
    if (v[5] > UINT32_MAX || v[6] > UINT32_MAX || v[7] > UINT32_MAX) return false;
    f.lat_e6 = static_cast<int32_t>(lat);
    f.lon_e6 = static_cast<int32_t>(lon);
    f.speed_dkmh = static_cast<uint32_t>(v[5]);
    f.heading_deg = static_cast<uint32_t>(v[6]);
    f.hdop_d = static_cast<uint32_t>(v[7]);
    f.hlc = wire::HlcBase(f.ts_ms) + Unzigzag(v[8]);
    out->push_back(f);
    prev = f;
  }
  return pos == blob.size();
}

bool FixBefore(const ChunkFix& a, const ChunkFix& b) {
  return a.ts_ms != b.ts_ms ? a.ts_ms < b.ts_ms : a.seq < b.seq;
}

size_t ChunkEnd(const std::vector<ChunkFix>& fixes, size_t begin) {
  size_t end = begin + 1;
  // Unsigned difference: sorted, so it is the true distance even for extreme timestamps.
  while (end < fixes.size() && end - begin < kChunkMaxFixes &&
         static_cast<uint64_t>(fixes[end].ts_ms) - static_cast<uint64_t>(fixes[begin].ts_ms) <=
             static_cast<uint64_t>(kChunkMaxSpanMs)) {
    ++end;
  }
  return end;
}

ChunkFix FixFromRecord(const v1::ChangeRecord& rec) {
  const auto& p = rec.position();
  ChunkFix f;
  f.ts_ms = rec.ts_ms();
  f.seq = rec.seq();
  f.device_seq = p.device_seq();
  f.lat_e6 = p.lat_e6();
  f.lon_e6 = p.lon_e6();
  f.speed_dkmh = p.speed_dkmh();
  f.heading_deg = p.heading_deg();
  f.hdop_d = p.hdop_d();
  f.hlc = rec.hlc();
  return f;
}

v1::PositionItem ItemFromFix(const std::string& vehicle, const std::string& site, const ChunkFix& f) {
  v1::PositionItem item;
  item.set_site(site);
  auto* p = item.mutable_position();
  p->set_vehicle(vehicle);
  p->set_device_seq(f.device_seq);
  p->set_lat_e6(f.lat_e6);
  p->set_lon_e6(f.lon_e6);
  p->set_speed_dkmh(f.speed_dkmh);
  p->set_heading_deg(f.heading_deg);
  p->set_hdop_d(f.hdop_d);
  item.set_ts_ms(f.ts_ms);
  item.set_hlc(f.hlc);
  item.set_seq(f.seq);
  return item;
}

}  // namespace freshsync::hub
