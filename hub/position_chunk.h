// Position history in chunks: the hub stores a vehicle's fixes from one batch as one row of
// `position_chunks` (docs/architecture-hub.md) instead of one row per fix, because a B-tree
// insert per GPS record was half of the hub's apply cost (docs/benchmarks.md, "Hub apply
// rate"). This header is the blob format of that row and the rules of cutting a vehicle's
// fixes into chunks; pure functions, no database.
//
// Grammar (all integers LEB128 varints; zz() is zigzag of a 64-bit two's-complement
// difference, computed in unsigned wrap-around arithmetic, so any values round-trip):
//
//   CHUNK = FIX*                       fixes in ascending (ts_ms, seq); the row holds the count
//   FIX   = zz(ts_ms - prev.ts_ms) zz(seq - prev.seq) device_seq
//           zz(lat_e6 - prev.lat_e6) zz(lon_e6 - prev.lon_e6) speed_dkmh heading_deg hdop_d
//           zz(hlc - (ts_ms << 16))
//   prev  = the previous fix of the chunk; all zero before the first.
//
// A GPS fix costs 12-16 bytes this way (about 50 as a row with its key).
//
// Thread-safety: none needed (stateless).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "freshsync.pb.h"

namespace freshsync::hub {

struct ChunkFix {
  int64_t ts_ms = 0;
  uint64_t seq = 0;
  uint64_t device_seq = 0;
  int32_t lat_e6 = 0;
  int32_t lon_e6 = 0;
  uint32_t speed_dkmh = 0;
  uint32_t heading_deg = 0;
  uint32_t hdop_d = 0;
  uint64_t hlc = 0;
};

// A chunk never spans more device time than this, so a time-range query needs to look at
// chunks starting at most this long before its `from` (hub/sqlite_store.cc, Track).
inline constexpr int64_t kChunkMaxSpanMs = 3'600'000;
// Fixes per chunk at most: bounds what a track query decodes beyond its range.
inline constexpr size_t kChunkMaxFixes = 1024;

// Appends the encoding of `fixes` (already in ascending (ts_ms, seq)) to `out`.
void EncodeChunk(const ChunkFix* fixes, size_t count, std::string* out);

// Decodes exactly `count` fixes and appends them to `out`. False if the blob is truncated,
// holds a value out of its field's range, or has bytes left over (a damaged row).
bool DecodeChunk(std::string_view blob, uint64_t count, std::vector<ChunkFix>* out);

// What every store that keeps chunks shares (SqliteHubStore, PgHubStore):
// The order of fixes in a chunk and in a track: (ts_ms, seq).
bool FixBefore(const ChunkFix& a, const ChunkFix& b);
// The end (exclusive) of the chunk that starts at fixes[begin] of a sorted run: a new chunk
// starts when the current one holds kChunkMaxFixes or would span more than kChunkMaxSpanMs.
size_t ChunkEnd(const std::vector<ChunkFix>& fixes, size_t begin);
// The fix of a VEHICLE_POSITION record that has its position.
ChunkFix FixFromRecord(const v1::ChangeRecord& rec);
// A track's item (v1::PositionItem, as the route answers it) from a decoded fix.
v1::PositionItem ItemFromFix(const std::string& vehicle, const std::string& site, const ChunkFix& f);

}  // namespace freshsync::hub
