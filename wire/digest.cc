#include "wire/digest.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>


namespace freshsync::digest {

// `ok` is false when OpenSSL could not allocate or initialise the context; every use of `ctx`
// is then skipped and status() reports it (no exceptions: common/status.h).
struct RangeDigester::Impl {
  EVP_MD_CTX* ctx = nullptr;
  bool ok = false;
  Impl() : ctx(EVP_MD_CTX_new()) { ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1; }
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

namespace {
void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v & 0xFF);
    v >>= 8;
  }
}
void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v & 0xFF);
    v >>= 8;
  }
}
}  // namespace

std::string ValidateRange(uint64_t from, uint64_t to, uint64_t n) {
  if (from > kMaxSeq) return "from: must be at most 2^62";
  if (to > kMaxSeq) return "to: must be at most 2^62";
  if (to < from) return "to: must be >= from";
  if (n < 1 || n > kMaxBuckets) return "buckets: must be 1..1024";
  return "";
}

std::vector<Bucket> SplitRange(uint64_t from, uint64_t to, uint64_t n) {
  std::vector<Bucket> out;
  if (!ValidateRange(from, to, n).empty()) return out;
  const uint64_t len = to - from + 1;
  const uint64_t w = (len + n - 1) / n;
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t start = from + i * w;
    if (start > to) break;
    out.push_back({start, std::min(to, start + w - 1)});
  }
  return out;
}

uint64_t BucketIndex(uint64_t from, uint64_t to, uint64_t n, uint64_t seq) {
  const uint64_t len = to - from + 1;
  const uint64_t w = (len + n - 1) / n;
  return (seq - from) / w;
}

RangeDigester::RangeDigester() : impl_(std::make_unique<Impl>()) {}
RangeDigester::~RangeDigester() = default;
RangeDigester::RangeDigester(RangeDigester&&) noexcept = default;
RangeDigester& RangeDigester::operator=(RangeDigester&&) noexcept = default;

Status RangeDigester::status() const {
  if (impl_ == nullptr || !impl_->ok) return Status::Internal("digest: SHA-256 context could not be set up");
  return Status::Ok();
}

void RangeDigester::Add(uint64_t seq, uint32_t entity, uint64_t version, std::string_view key) {
  if (!impl_->ok) return;
  uint8_t head[24];
  PutU64(head, seq);
  PutU32(head + 8, entity);
  PutU64(head + 12, version);
  PutU32(head + 20, static_cast<uint32_t>(key.size()));
  EVP_DigestUpdate(impl_->ctx, head, sizeof(head));
  if (!key.empty()) EVP_DigestUpdate(impl_->ctx, key.data(), key.size());
  ++count_;
}

std::array<uint8_t, 32> RangeDigester::Finish() {
  std::array<uint8_t, 32> out{};
  if (!impl_->ok) return out;
  unsigned int len = 0;
  EVP_DigestFinal_ex(impl_->ctx, out.data(), &len);
  impl_->ok = EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) == 1;
  count_ = 0;
  return out;
}

std::string RangeDigester::FinishAsString() {
  const auto d = Finish();
  return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

StateDigester::StateDigester() : inner_(std::make_unique<RangeDigester>()) {}
StateDigester::~StateDigester() = default;
StateDigester::StateDigester(StateDigester&&) noexcept = default;
StateDigester& StateDigester::operator=(StateDigester&&) noexcept = default;

// row := sku_len:u32be sku on_hand:i64be reserved:i64be version:u64be (see digest.h)
void StateDigester::AddStock(std::string_view sku, int64_t on_hand, int64_t reserved, uint64_t version) {
  uint8_t len[4];
  PutU32(len, static_cast<uint32_t>(sku.size()));
  uint8_t tail[24];
  PutU64(tail, static_cast<uint64_t>(on_hand));
  PutU64(tail + 8, static_cast<uint64_t>(reserved));
  PutU64(tail + 16, version);
  if (!inner_->impl_->ok) return;
  EVP_MD_CTX* c = inner_->impl_->ctx;
  EVP_DigestUpdate(c, len, sizeof(len));
  if (!sku.empty()) EVP_DigestUpdate(c, sku.data(), sku.size());
  EVP_DigestUpdate(c, tail, sizeof(tail));
  ++count_;
}

std::string StateDigester::FinishAsString() {
  count_ = 0;
  return inner_->FinishAsString();
}

std::vector<DigestBucket> DigestBuckets(uint64_t from, uint64_t to, uint32_t buckets) {
  std::vector<DigestBucket> out;
  for (const auto& b : SplitRange(from, to, buckets)) {
    DigestBucket d;
    d.from_seq = b.from_seq;
    d.to_seq = b.to_seq;
    out.push_back(d);
  }
  return out;
}

BucketDigester::BucketDigester(uint64_t from, uint64_t to, uint32_t buckets) : buckets_(DigestBuckets(from, to, buckets)) {
  if (!buckets_.empty()) width_ = buckets_[0].to_seq - buckets_[0].from_seq + 1;
}

void BucketDigester::CloseCurrent() {
  if (!open_) return;
  buckets_[current_].digest = d_.Finish();
  open_ = false;
}

void BucketDigester::Add(uint64_t seq, int32_t entity, uint64_t version, std::string_view key) {
  if (buckets_.empty() || seq < buckets_.front().from_seq || seq > buckets_.back().to_seq) return;
  const size_t idx = static_cast<size_t>((seq - buckets_.front().from_seq) / width_);
  if (!open_ || idx != current_) {
    CloseCurrent();
    current_ = idx;
    open_ = true;
  }
  d_.Add(seq, static_cast<uint32_t>(entity), version, key);
  buckets_[idx].count++;
}

std::vector<DigestBucket> BucketDigester::Finish() {
  CloseCurrent();
  // Buckets never opened are empty: the digest of no records.
  const auto empty = d_.Finish();
  for (auto& b : buckets_) {
    if (b.count == 0) b.digest = empty;
  }
  return std::move(buckets_);
}

std::string Hex(std::string_view bytes) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 0xF]);
  }
  return out;
}

std::string Sha256Hex(std::string_view data) {
  uint8_t md[32];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(64);
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(hex[md[i] >> 4]);
    out.push_back(hex[md[i] & 0xF]);
  }
  return out;
}

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

}  // namespace freshsync::digest
