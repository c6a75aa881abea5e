// Range digests for reconciliation (docs/sync-protocol.md, "Reconciliation"): the edge's
// per-bucket view over the hub's freshsync_digest library (hub/digest.h), which owns the byte
// layout and the bucket split, so both sides compute them with the same code.
//
// Grammar of one bucket's digest: SHA-256 over, for each record held in the bucket in
// ascending seq order,
//   seq      8 bytes big-endian
//   entity   4 bytes big-endian (proto Entity enum value)
//   version  8 bytes big-endian
//   len(key) 4 bytes big-endian
//   key      len(key) bytes
// An empty bucket has count 0 and SHA-256 of the empty string.
// Bucket i of [A, B] with N buckets covers [A + i*w, min(B, A + (i+1)*w - 1)], w = ceil((B-A+1)/N);
// buckets whose start would lie beyond B are not produced.
//
// Thread-safety: RangeDigester is a value used by one thread at a time.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

namespace freshsync::sync {

struct DigestBucket {
  uint64_t from_seq = 0;
  uint64_t to_seq = 0;
  uint64_t count = 0;
  std::array<uint8_t, 32> digest{};
};

// Bucket bounds for [from, to] in `buckets` buckets. Empty when from > to or buckets == 0.
std::vector<DigestBucket> DigestBuckets(uint64_t from, uint64_t to, uint32_t buckets);

// Feeds records in ascending seq; records outside [from, to] are ignored.
class RangeDigester {
 public:
  RangeDigester(uint64_t from, uint64_t to, uint32_t buckets);
  ~RangeDigester();
  RangeDigester(const RangeDigester&) = delete;
  RangeDigester& operator=(const RangeDigester&) = delete;

  void Add(uint64_t seq, int32_t entity, uint64_t version, std::string_view key);
  // Closes every bucket. Call once.
  std::vector<DigestBucket> Finish();

 private:
  void CloseCurrent();
  std::vector<DigestBucket> buckets_;
  uint64_t width_ = 1;
  size_t current_ = 0;     // bucket whose hash context is open
  bool open_ = false;
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

}  // namespace freshsync::sync
