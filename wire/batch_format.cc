#include "wire/batch_format.h"

#include <zstd.h>

#include <cstdio>
#include <cstdlib>

namespace freshsync::wire {
namespace {

void PutVarint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

// Protobuf writers emit fields in number order, so a record that carries its seq starts with it.
bool LeadingSeq(std::string_view rec, uint64_t* seq) {
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

bool ReadVarint(const uint8_t*& p, const uint8_t* end, uint64_t* v) {
  uint64_t out = 0;
  for (int shift = 0; p < end && shift < 64; shift += 7) {
    const uint8_t b = *p++;
    out |= static_cast<uint64_t>(b & 0x7F) << shift;
    if ((b & 0x80) == 0) {
      *v = out;
      return true;
    }
  }
  return false;
}

// One protobuf field: its number, wire type, whole encoding [begin, end), and for varints the
// value, for length-delimited fields the payload.
struct Field {
  uint32_t number = 0;
  uint32_t wire_type = 0;
  const uint8_t* begin = nullptr;
  const uint8_t* end = nullptr;
  uint64_t varint = 0;
  std::string_view payload;
};

// Reads the field at p; false on anything this walker does not handle (groups, truncation).
bool NextField(const uint8_t*& p, const uint8_t* end, Field* f) {
  f->begin = p;
  uint64_t tag = 0;
  if (!ReadVarint(p, end, &tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1FFFFFFF) return false;
  f->number = static_cast<uint32_t>(tag >> 3);
  f->wire_type = static_cast<uint32_t>(tag & 7);
  switch (f->wire_type) {
    case 0:
      if (!ReadVarint(p, end, &f->varint)) return false;
      break;
    case 1:
      if (end - p < 8) return false;
      p += 8;
      break;
    case 2: {
      uint64_t len = 0;
      if (!ReadVarint(p, end, &len) || len > static_cast<uint64_t>(end - p)) return false;
      f->payload = std::string_view(reinterpret_cast<const char*>(p), len);
      p += len;
      break;
    }
    case 5:
      if (end - p < 4) return false;
      p += 4;
      break;
    default:
      return false;
  }
  f->end = p;
  return true;
}

void Append(std::string& out, const Field& f) { out.append(reinterpret_cast<const char*>(f.begin), f.end - f.begin); }

// ChangeRecord field numbers (proto/freshsync.proto).
constexpr uint32_t kSeq = 1, kKey = 3, kHlc = 5, kTs = 6, kHlcFromTs = 7, kPosition = 12, kClimate = 13;

// Body (VehiclePosition, ClimateReading) without its subfield 1 when that equals `key`.
// Returns false when the body is kept as it is.
bool BodyWithoutKey(std::string_view body, std::string_view key, std::string& out) {
  const auto* p = reinterpret_cast<const uint8_t*>(body.data());
  const auto* end = p + body.size();
  Field f;
  bool dropped = false;
  out.clear();
  while (p < end) {
    if (!NextField(p, end, &f)) return false;
    if (f.number == 1 && f.wire_type == 2 && f.payload == key && !dropped) {
      dropped = true;
      continue;
    }
    Append(out, f);
  }
  return dropped;
}

// Format 2 form of one stored record (see batch_format.h). False if the record cannot be walked
// or already uses hlc_from_ts; the caller then sends it whole.
bool CompactRecord(std::string_view rec, uint64_t seq, bool omit_seq, std::string& out, std::string& body) {
  const auto* begin = reinterpret_cast<const uint8_t*>(rec.data());
  const auto* end = begin + rec.size();
  std::string_view key;
  uint64_t hlc = 0, ts = 0;
  bool have_hlc = false;
  Field f;
  for (const uint8_t* p = begin; p < end;) {
    if (!NextField(p, end, &f)) return false;
    if (f.number == kHlcFromTs) return false;
    if (f.number == kKey && f.wire_type == 2) key = f.payload;
    if (f.number == kHlc && f.wire_type == 0) {
      hlc = f.varint;
      have_hlc = true;
    }
    if (f.number == kTs && f.wire_type == 0) ts = f.varint;
  }
  out.clear();
  if (!omit_seq) {
    out.push_back(0x08);
    PutVarint(out, seq);
  }
  for (const uint8_t* p = begin; p < end;) {
    NextField(p, end, &f);  // walked above
    if (f.number == kSeq && f.wire_type == 0) continue;
    if (f.number == kHlc && f.wire_type == 0 && have_hlc) {
      // Two's complement difference, zigzag (sint64): wraps consistently for any ts_ms.
      const auto delta = static_cast<int64_t>(hlc - HlcBase(static_cast<int64_t>(ts)));
      out.push_back(static_cast<char>(kHlcFromTs << 3));
      PutVarint(out, (static_cast<uint64_t>(delta) << 1) ^ static_cast<uint64_t>(delta >> 63));
      continue;
    }
    if ((f.number == kPosition || f.number == kClimate) && f.wire_type == 2 && BodyWithoutKey(f.payload, key, body)) {
      out.push_back(static_cast<char>(f.number << 3 | 2));
      PutVarint(out, body.size());
      out += body;
      continue;
    }
    Append(out, f);
  }
  return true;
}

}  // namespace

BatchEncoder::BatchEncoder(int zstd_level) : level_(zstd_level), cctx_(ZSTD_createCCtx()) {
  if (cctx_ == nullptr) std::abort();  // out of memory at start-up
}

BatchEncoder::~BatchEncoder() { ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(cctx_)); }

void BatchEncoder::Begin(std::string_view site, int format) {
  format_ = format;
  prev_seq_ = 0;
  raw_.clear();
  raw_.push_back(0x0A);
  PutVarint(raw_, site.size());
  raw_ += site;
  if (format >= 2) {
    raw_.push_back(0x20);
    PutVarint(raw_, 2);
  }
}

void BatchEncoder::Add(uint64_t seq_of_row, std::string_view record) {
  const bool omit_seq = prev_seq_ != 0 && seq_of_row == prev_seq_ + 1;
  prev_seq_ = seq_of_row;
  if (format_ >= 2 && CompactRecord(record, seq_of_row, omit_seq, rec_, body_)) {
    raw_.push_back(0x12);
    PutVarint(raw_, rec_.size());
    raw_ += rec_;
    return;
  }
  char tail[11];
  uint64_t seq = 0;
  size_t tail_len = 0;
  if (!LeadingSeq(record, &seq) || seq != seq_of_row) {
    std::string t;
    t.push_back(0x08);
    PutVarint(t, seq_of_row);
    tail_len = t.size();
    t.copy(tail, tail_len);
  }
  raw_.push_back(0x12);
  PutVarint(raw_, record.size() + tail_len);
  raw_ += record;
  raw_.append(tail, tail_len);
}

std::string_view BatchEncoder::Finish(bool urgent) {
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

Status ExpandBatch(v1::Batch& batch) {
  if (batch.format() <= 1) return Status::Ok();
  if (batch.format() > kMaxBatchFormat)
    return Status::InvalidArgument("Batch.format " + std::to_string(batch.format()) + " is newer than this hub (" +
                                   std::to_string(kMaxBatchFormat) + ")");
  uint64_t prev_seq = 0;
  for (auto& r : *batch.mutable_records()) {
    // The first record always carries its seq; a 0 there stays 0 and is refused by the store.
    if (r.seq() == 0 && prev_seq != 0) r.set_seq(prev_seq + 1);
    prev_seq = r.seq();
    if (r.has_hlc_from_ts()) {
      // Unsigned wrap-around, the exact inverse of the encoder's hlc - HlcBase(ts_ms).
      r.set_hlc(HlcBase(r.ts_ms()) + static_cast<uint64_t>(r.hlc_from_ts()));
      r.clear_hlc_from_ts();
    }
    if (r.has_position() && r.position().vehicle().empty()) r.mutable_position()->set_vehicle(r.key());
    if (r.has_climate() && r.climate().sensor().empty()) r.mutable_climate()->set_sensor(r.key());
  }
  batch.set_format(0);  // the records are format 1 now
  return Status::Ok();
}

}  // namespace freshsync::wire
