// Range and state digests for reconciliation (docs/sync-protocol.md, "Reconciliation").
//
// The edge (sync agent) and the hub must compute byte-identical digests, so both link this one
// implementation (target `freshsync_wire`; OpenSSL is a private dependency).
//
// Grammar of the bytes hashed for one bucket, for each held record in ascending seq:
//   record := seq:u64be entity:u32be version:u64be key_len:u32be key:bytes[key_len]
//   digest := SHA-256(record*)          -- an empty bucket is SHA-256("")
//
// Errors: nothing here throws. If OpenSSL cannot set up a SHA-256 context (allocation failure),
// the digester's status() is kInternal, Add is a no-op and the caller must not use the digest;
// callers check status() before Finish.
//
// Thread-safety: RangeDigester, StateDigester and BucketDigester are plain values used by one
// thread at a time; the free functions are pure.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace freshsync::digest {

constexpr uint64_t kMaxBuckets = 1024;
// Seq values above this are refused so that (to - from + 1) and bucket arithmetic never overflow.
constexpr uint64_t kMaxSeq = uint64_t{1} << 62;

struct Bucket {
  uint64_t from_seq = 0;
  uint64_t to_seq = 0;  // inclusive
};

// Splits [from, to] into buckets of width w = ceil((to - from + 1) / n):
// bucket i covers [from + i*w, min(to, from + (i+1)*w - 1)].
// Only buckets that start at or before `to` are returned, so there are ceil(len / w) <= n of
// them (e.g. from=1, to=10, n=6 gives w=2 and five buckets). Both sides use this function, so
// they agree on the count.
// Returns an empty vector when the arguments are invalid (see ValidateRange).
std::vector<Bucket> SplitRange(uint64_t from, uint64_t to, uint64_t n);

// "" when valid, otherwise the name of the bad parameter ("from", "to" or "buckets") followed
// by ": reason".
std::string ValidateRange(uint64_t from, uint64_t to, uint64_t n);

// Index of the bucket holding `seq` (which must lie in [from, to]) for a SplitRange(from, to, n).
uint64_t BucketIndex(uint64_t from, uint64_t to, uint64_t n, uint64_t seq);

// Incremental SHA-256 over the record grammar above.
class RangeDigester {
 public:
  RangeDigester();
  ~RangeDigester();
  RangeDigester(RangeDigester&&) noexcept;
  RangeDigester& operator=(RangeDigester&&) noexcept;
  RangeDigester(const RangeDigester&) = delete;
  RangeDigester& operator=(const RangeDigester&) = delete;

  // Ok, or kInternal when the SHA-256 context could not be set up (then the digest is unusable).
  Status status() const;

  // Records must be added in ascending seq order; the digest is order-sensitive by design.
  void Add(uint64_t seq, uint32_t entity, uint64_t version, std::string_view key);
  uint64_t count() const { return count_; }
  // The 32-byte digest. The digester is reset afterwards and can be reused.
  std::array<uint8_t, 32> Finish();
  std::string FinishAsString();

 private:
  friend class StateDigester;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint64_t count_ = 0;
};

// Current-state digest (docs/sync-protocol.md, "State digest"): the stock a site owns.
// Orders and vehicles are shared between sites by the conflict rules, so only stock is compared.
//
// Grammar of the bytes hashed, for each stock row in ascending sku order (bytewise, as
// SQLite's BINARY collation and std::string's operator< sort):
//   row    := sku_len:u32be sku:bytes[sku_len] on_hand:i64be reserved:i64be version:u64be
//   digest := SHA-256(row*)             -- no rows is SHA-256("")
// i64be is the two's-complement bit pattern, big-endian.
class StateDigester {
 public:
  StateDigester();
  ~StateDigester();
  StateDigester(StateDigester&&) noexcept;
  StateDigester& operator=(StateDigester&&) noexcept;
  StateDigester(const StateDigester&) = delete;
  StateDigester& operator=(const StateDigester&) = delete;

  // Ok, or kInternal when the SHA-256 context could not be set up (then the digest is unusable).
  Status status() const { return inner_->status(); }

  // Rows must be added in ascending sku order; the caller sorts (ORDER BY sku).
  void AddStock(std::string_view sku, int64_t on_hand, int64_t reserved, uint64_t version);
  uint64_t count() const { return count_; }
  // The 32-byte digest as a string; the digester is reset afterwards.
  std::string FinishAsString();

 private:
  std::unique_ptr<RangeDigester> inner_;  // reuses its SHA-256 context
  uint64_t count_ = 0;
};

// The per-bucket view the sync agent answers a reconciliation with: SplitRange's buckets, each
// with its record count and the RangeDigester digest of its records (an empty bucket has
// count 0 and SHA-256("")).
struct DigestBucket {
  uint64_t from_seq = 0;
  uint64_t to_seq = 0;  // inclusive
  uint64_t count = 0;
  std::array<uint8_t, 32> digest{};
};

// SplitRange(from, to, buckets) with zero counts and digests. Empty when the arguments are
// invalid (ValidateRange), e.g. from > to or buckets == 0.
std::vector<DigestBucket> DigestBuckets(uint64_t from, uint64_t to, uint32_t buckets);

// Feeds records in ascending seq into DigestBuckets(from, to, buckets); records outside
// [from, to] are ignored.
class BucketDigester {
 public:
  BucketDigester(uint64_t from, uint64_t to, uint32_t buckets);
  BucketDigester(const BucketDigester&) = delete;
  BucketDigester& operator=(const BucketDigester&) = delete;

  // Ok, or kInternal when the SHA-256 context could not be set up (then the digests are unusable).
  Status status() const { return d_.status(); }
  void Add(uint64_t seq, int32_t entity, uint64_t version, std::string_view key);
  // Closes every bucket. Call once.
  std::vector<DigestBucket> Finish();

 private:
  void CloseCurrent();
  std::vector<DigestBucket> buckets_;
  uint64_t width_ = 1;
  size_t current_ = 0;  // bucket whose hash context is open
  bool open_ = false;
  RangeDigester d_;
};

// Lower-case hex of any bytes (for logs and JSON).
std::string Hex(std::string_view bytes);

// Lower-case hex of SHA-256(data). Used for bearer tokens as well.
std::string Sha256Hex(std::string_view data);

// HMAC-SHA256(key, data), 32 raw bytes: customer stream tokens (hub/stream_token.h) and the
// webhook signature (hub/notify/webhook.h).
std::string HmacSha256(std::string_view key, std::string_view data);

}  // namespace freshsync::digest
