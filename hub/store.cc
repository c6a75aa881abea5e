// What every HubStore shares of the contract (hub/store.h): the batch's structural rules, the
// byte cost of rows for the daily quota, the digest buckets and rebuild-state's count.
#include "hub/store.h"

#include <utility>

namespace freshsync::hub {

Status ValidateBatch(const v1::Batch& batch) {
  uint64_t prev = 0;
  for (const auto& r : batch.records()) {
    if (r.seq() == 0) return Status::InvalidArgument("record seq must be >= 1");
    if (r.seq() > digest::kMaxSeq) return Status::InvalidArgument("record seq above 2^62");
    if (prev != 0) {
      if (!batch.urgent() && r.seq() != prev + 1)
        return Status::InvalidArgument("normal batch records must have consecutive seqs (" + std::to_string(prev) +
                                       " then " + std::to_string(r.seq()) + ")");
      if (batch.urgent() && r.seq() <= prev) return Status::InvalidArgument("urgent batch records must have increasing seqs");
    }
    prev = r.seq();
  }
  return Status::Ok();
}

uint64_t RowBytes(const v1::ChangeRecord& r, size_t blob_bytes) { return blob_bytes + 2 * r.key().size() + 64; }

uint64_t RefusedRowBytes(const v1::ChangeRecord& r, bool key_kept, const std::string& reason,
                         const std::string& field) {
  return 64 + (key_kept ? r.key().size() : 0) + reason.size() + field.size();
}

Result<DigestBuckets> DigestBuckets::Make(uint64_t from, uint64_t to, uint64_t buckets) {
  const std::string bad = digest::ValidateRange(from, to, buckets);
  if (!bad.empty()) return Status::InvalidArgument(bad);
  DigestBuckets d;
  d.from_ = from;
  d.to_ = to;
  d.buckets_ = buckets;
  d.ranges_ = digest::SplitRange(from, to, buckets);
  d.digesters_ = std::vector<digest::RangeDigester>(d.ranges_.size());
  for (const auto& g : d.digesters_) {
    if (Status st = g.status(); !st.ok()) return st;
  }
  return d;
}

void DigestBuckets::Add(uint64_t seq, uint32_t entity, uint64_t version, std::string_view key) {
  digesters_[digest::BucketIndex(from_, to_, buckets_, seq)].Add(seq, entity, version, key);
}

DigestResult DigestBuckets::Finish(uint64_t contiguous_seq) {
  DigestResult out;
  out.contiguous_seq = contiguous_seq;
  for (size_t i = 0; i < ranges_.size(); ++i) {
    DigestResult::Range range;
    range.from_seq = ranges_[i].from_seq;
    range.to_seq = ranges_[i].to_seq;
    range.count = digesters_[i].count();
    range.digest = digesters_[i].FinishAsString();
    out.ranges.push_back(std::move(range));
  }
  return out;
}

void RebuildCount::Before(std::string sku, int64_t on_hand, int64_t reserved, uint64_t version) {
  before_[std::move(sku)] = Row{on_hand, reserved, version};
  res_.skus_before = before_.size();
}

void RebuildCount::Rebuild(const std::string& sku, const v1::ChangeRecord& rec) {
  ++res_.skus_after;
  have_last_ = true;
  last_ = sku;
  auto it = before_.find(sku);
  if (it == before_.end() || it->second.on_hand != rec.stock().on_hand() ||
      it->second.reserved != rec.stock().reserved() || it->second.version != rec.version()) {
    ++res_.changed;
  }
  if (it != before_.end()) before_.erase(it);
}

RebuildResult RebuildCount::Finish() const {
  RebuildResult r = res_;
  r.changed += before_.size();
  return r;
}

}  // namespace freshsync::hub
