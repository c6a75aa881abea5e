#include "cloud-sync/digest.h"

#include <openssl/evp.h>
#include <openssl/sha.h>

#include <cstdlib>

namespace freshsync::sync {

struct RangeDigester::Ctx {
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  ~Ctx() { EVP_MD_CTX_free(md); }
};

std::vector<DigestBucket> DigestBuckets(uint64_t from, uint64_t to, uint32_t buckets) {
  std::vector<DigestBucket> out;
  if (from > to || buckets == 0) return out;
  const uint64_t span = to - from + 1;
  const uint64_t w = (span + buckets - 1) / buckets;
  for (uint64_t i = 0; i < buckets; ++i) {
    const uint64_t start = from + i * w;
    if (start > to) break;
    DigestBucket b;
    b.from_seq = start;
    b.to_seq = std::min(to, start + w - 1);
    out.push_back(b);
  }
  return out;
}

RangeDigester::RangeDigester(uint64_t from, uint64_t to, uint32_t buckets)
    : buckets_(DigestBuckets(from, to, buckets)), ctx_(std::make_unique<Ctx>()) {
  if (!buckets_.empty()) width_ = buckets_[0].to_seq - buckets_[0].from_seq + 1;
  if (ctx_->md == nullptr) std::abort();  // out of memory at start-up: nothing sensible to do
}

RangeDigester::~RangeDigester() = default;

void RangeDigester::CloseCurrent() {
  if (!open_) return;
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_->md, buckets_[current_].digest.data(), &len);
  open_ = false;
}

void RangeDigester::Add(uint64_t seq, int32_t entity, uint64_t version, std::string_view key) {
  if (buckets_.empty() || seq < buckets_.front().from_seq || seq > buckets_.back().to_seq) return;
  const size_t idx = static_cast<size_t>((seq - buckets_.front().from_seq) / width_);
  if (!open_ || idx != current_) {
    CloseCurrent();
    current_ = idx;
    EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr);
    open_ = true;
  }
  uint8_t buf[24];
  for (int i = 0; i < 8; ++i) buf[i] = static_cast<uint8_t>(seq >> (56 - 8 * i));
  const auto e = static_cast<uint32_t>(entity);
  for (int i = 0; i < 4; ++i) buf[8 + i] = static_cast<uint8_t>(e >> (24 - 8 * i));
  for (int i = 0; i < 8; ++i) buf[12 + i] = static_cast<uint8_t>(version >> (56 - 8 * i));
  const auto klen = static_cast<uint32_t>(key.size());
  for (int i = 0; i < 4; ++i) buf[20 + i] = static_cast<uint8_t>(klen >> (24 - 8 * i));
  EVP_DigestUpdate(ctx_->md, buf, sizeof(buf));
  EVP_DigestUpdate(ctx_->md, key.data(), key.size());
  buckets_[idx].count++;
}

std::vector<DigestBucket> RangeDigester::Finish() {
  CloseCurrent();
  // Buckets never opened are empty: SHA-256 of nothing.
  std::array<uint8_t, 32> empty{};
  SHA256(nullptr, 0, empty.data());
  for (auto& b : buckets_) {
    if (b.count == 0) b.digest = empty;
  }
  return std::move(buckets_);
}

}  // namespace freshsync::sync
