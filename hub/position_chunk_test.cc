#include "hub/position_chunk.h"

#include <gtest/gtest.h>

#include <limits>

namespace freshsync::hub {
namespace {

bool Same(const ChunkFix& a, const ChunkFix& b) {
  return a.ts_ms == b.ts_ms && a.seq == b.seq && a.device_seq == b.device_seq && a.lat_e6 == b.lat_e6 &&
         a.lon_e6 == b.lon_e6 && a.speed_dkmh == b.speed_dkmh && a.heading_deg == b.heading_deg &&
         a.hdop_d == b.hdop_d && a.hlc == b.hlc;
}

TEST(PositionChunkTest, RoundTripsTypicalAndExtremeValues) {
  std::vector<ChunkFix> in;
  ChunkFix f{1764000000000, 17, 5, 31230000, 121470000, 420, 359, 9, (uint64_t{1764000000040} << 16) | 3};
  in.push_back(f);
  f.ts_ms += 1000;
  f.seq += 50;
  f.lat_e6 -= 13;
  f.hlc = (uint64_t{1764000001090} << 16);  // hlc behind and ahead of ts: both signs of the offset
  in.push_back(f);
  constexpr auto i64 = std::numeric_limits<int64_t>::max();
  constexpr auto u64 = std::numeric_limits<uint64_t>::max();
  constexpr auto u32 = std::numeric_limits<uint32_t>::max();
  in.push_back({-i64 - 1, 1, u64, std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max(), 0, 0, 0, 0});
  in.push_back({i64, u64, 0, std::numeric_limits<int32_t>::max(), std::numeric_limits<int32_t>::min(), u32, u32, u32, u64});
  std::string blob;
  EncodeChunk(in.data(), in.size(), &blob);
  std::vector<ChunkFix> out;
  ASSERT_TRUE(DecodeChunk(blob, in.size(), &out));
  ASSERT_EQ(out.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) EXPECT_TRUE(Same(in[i], out[i])) << i;
  // A steady GPS fix costs a few bytes beyond its first: deltas, not absolute values.
  std::string two;
  EncodeChunk(in.data(), 2, &two);
  std::string one;
  EncodeChunk(in.data(), 1, &one);
  EXPECT_LE(two.size() - one.size(), 16u);
}

TEST(PositionChunkTest, RefusesDamagedBlobs) {
  std::vector<ChunkFix> in(3, ChunkFix{1000, 1, 1, 1, 1, 1, 1, 1, uint64_t{1000} << 16});
  std::string blob;
  EncodeChunk(in.data(), in.size(), &blob);
  std::vector<ChunkFix> out;
  EXPECT_FALSE(DecodeChunk(blob.substr(0, blob.size() - 1), 3, &out));  // truncated
  out.clear();
  EXPECT_FALSE(DecodeChunk(blob + "x", 3, &out));  // bytes left over
  out.clear();
  EXPECT_FALSE(DecodeChunk(blob, 4, &out));  // count larger than the blob
  out.clear();
  EXPECT_FALSE(DecodeChunk(std::string(12, '\xff'), 1, &out));  // a varint that never ends
  // lat_e6 beyond int32: zigzag(2^31) = 2^32.
  std::string bad;
  for (int i = 0; i < 3; ++i) bad.push_back('\0');
  bad += std::string("\x80\x80\x80\x80\x10", 5);
  for (int i = 0; i < 5; ++i) bad.push_back('\0');
  out.clear();
  EXPECT_FALSE(DecodeChunk(bad, 1, &out));
  out.clear();
  EXPECT_TRUE(DecodeChunk(blob, 3, &out));
  EXPECT_EQ(out.size(), 3u);
}

}  // namespace
}  // namespace freshsync::hub
