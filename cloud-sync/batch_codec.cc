#include "cloud-sync/batch_codec.h"

#include <zstd.h>

#include <cstdio>
#include <cstdlib>

namespace freshsync::sync {
namespace {

void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

// Protobuf writers emit fields in number order, so a record that carries its seq starts with it.
bool LeadingSeq(const std::string& rec, uint64_t* seq) {
  if (rec.empty() || static_cast<uint8_t>(rec[0]) != 0x08) return false;
  uint64_t v = 0;
  for (size_t i = 1, shift = 0; i < rec.size() && shift < 64; ++i, shift += 7) {
    const auto b = static_cast<uint8_t>(rec[i]);
    v |= static_cast<uint64_t>(b & 0x7F) << shift;
    if ((b & 0x80) == 0) {
      *seq = v;
      return true;
    }
  }
  return false;
}

}  // namespace

BatchEncoder::BatchEncoder(int zstd_level) : level_(zstd_level), cctx_(ZSTD_createCCtx()) {
  if (cctx_ == nullptr) std::abort();  // out of memory at start-up
}

BatchEncoder::~BatchEncoder() { ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(cctx_)); }

std::string_view BatchEncoder::Encode(const std::string& site, const std::vector<OutboxRow>& rows, bool urgent) {
  raw_.clear();
  raw_.push_back(0x0A);
  PutVarint(raw_, site.size());
  raw_ += site;
  char tail[11];
  for (const auto& row : rows) {
    uint64_t seq = 0;
    size_t tail_len = 0;
    if (!LeadingSeq(row.record, &seq) || seq != row.seq) {
      std::string t;
      t.push_back(0x08);
      PutVarint(t, row.seq);
      tail_len = t.size();
      t.copy(tail, tail_len);
    }
    raw_.push_back(0x12);
    PutVarint(raw_, row.record.size() + tail_len);
    raw_ += row.record;
    raw_.append(tail, tail_len);
  }
  if (urgent) {
    raw_.push_back(0x18);
    raw_.push_back(0x01);
  }
  out_.resize(ZSTD_compressBound(raw_.size()));
  const size_t n = ZSTD_compressCCtx(static_cast<ZSTD_CCtx*>(cctx_), out_.data(), out_.size(), raw_.data(), raw_.size(),
                                     level_);
  if (ZSTD_isError(n)) {
    // Cannot happen with a ZSTD_compressBound-sized buffer; a broken invariant is a crash.
    std::fprintf(stderr, "zstd: %s\n", ZSTD_getErrorName(n));
    std::abort();
  }
  out_.resize(n);
  return out_;
}

}  // namespace freshsync::sync
