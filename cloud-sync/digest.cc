#include "cloud-sync/digest.h"

#include "hub/digest.h"

namespace freshsync::sync {

// The byte layout and the bucket split come from the hub's freshsync_digest library: one
// implementation on both sides, so they cannot disagree.
struct RangeDigester::Ctx {
  digest::RangeDigester d;
};

std::vector<DigestBucket> DigestBuckets(uint64_t from, uint64_t to, uint32_t buckets) {
  std::vector<DigestBucket> out;
  if (from > to || buckets == 0) return out;
  for (const auto& b : digest::SplitRange(from, to, buckets)) {
    DigestBucket d;
    d.from_seq = b.from_seq;
    d.to_seq = b.to_seq;
    out.push_back(d);
  }
  return out;
}

RangeDigester::RangeDigester(uint64_t from, uint64_t to, uint32_t buckets)
    : buckets_(DigestBuckets(from, to, buckets)), ctx_(std::make_unique<Ctx>()) {
  if (!buckets_.empty()) width_ = buckets_[0].to_seq - buckets_[0].from_seq + 1;
}

RangeDigester::~RangeDigester() = default;

void RangeDigester::CloseCurrent() {
  if (!open_) return;
  buckets_[current_].digest = ctx_->d.Finish();
  open_ = false;
}

void RangeDigester::Add(uint64_t seq, int32_t entity, uint64_t version, std::string_view key) {
  if (buckets_.empty() || seq < buckets_.front().from_seq || seq > buckets_.back().to_seq) return;
  const size_t idx = static_cast<size_t>((seq - buckets_.front().from_seq) / width_);
  if (!open_ || idx != current_) {
    CloseCurrent();
    current_ = idx;
    open_ = true;
  }
  ctx_->d.Add(seq, static_cast<uint32_t>(entity), version, key);
  buckets_[idx].count++;
}

std::vector<DigestBucket> RangeDigester::Finish() {
  CloseCurrent();
  // Buckets never opened are empty: the digest of no records.
  const auto empty = digest::RangeDigester().Finish();
  for (auto& b : buckets_) {
    if (b.count == 0) b.digest = empty;
  }
  return std::move(buckets_);
}

}  // namespace freshsync::sync
