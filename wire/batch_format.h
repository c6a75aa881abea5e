// Batch formats 1 and 2 of POST /v1/sites/{site}/batches, both directions in one place: the
// sync agent encodes outbox rows with BatchEncoder, the hub turns a received format 2 batch back
// into the stored records with ExpandBatch (docs/sync-protocol.md, "Batch format 2").
//
// BatchEncoder writes zstd(protobuf Batch) without parsing the stored records.
//
// Batch grammar (freshsync.v1.Batch in protobuf wire format, written by hand):
//   0x0A varint(len) site
//   ( 0x12 varint(len) ChangeRecord-bytes [0x08 varint(seq)] )*
//   [ 0x18 0x01 ]                                  -- urgent
// A stored record that does not start with its own seq (field 1) gets `0x08 varint(seq)`
// appended: for a scalar field the last occurrence wins, so the hub always sees the row's seq.
//
// Format 2 (docs/sync-protocol.md, "Batch format 2"; only for a hub that announced it) rewrites
// each record at the field level, still without a protobuf parse: seq is dropped when it is the
// previous record's + 1, hlc (field 5) becomes hlc_from_ts (field 7), and the body's subfield 1
// (VehiclePosition.vehicle, ClimateReading.sensor) is dropped when it equals the key. Fields it
// does not know are copied as they are; a record it cannot walk is sent whole, with its seq.
// `0x20 0x02` (Batch.format = 2) follows the site.
// HLC: hlc_from_ts = zigzag(hlc - HlcBase(ts_ms)), HlcBase(ts) = ts << HybridLogicalClock::
// kLogicalBits (common/clock.h, the one home of the HLC packing); ExpandBatch inverts it.
//
// Ownership: BatchEncoder owns a zstd context and its buffers; the returned view is valid until
// the next Encode(). Thread-safety: a BatchEncoder is used by one thread at a time; ExpandBatch
// is a pure function.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/status.h"
#include "freshsync.pb.h"

namespace freshsync::wire {

// Highest Batch.format this code encodes and decodes (the hub announces it in
// BatchAck.max_format; the agent sends min(announced, this)).
inline constexpr uint32_t kMaxBatchFormat = 2;

// The HLC a record would have if its logical part were 0 at its own ts_ms: the base that format
// 2's hlc_from_ts (and the hub's position chunks) are relative to. Unsigned, wraps for any ts.
inline uint64_t HlcBase(int64_t ts_ms) { return static_cast<uint64_t>(ts_ms) << HybridLogicalClock::kLogicalBits; }

// Turns a received Batch of format 2 back into the records the edge stored: implied seqs filled
// in (previous + 1), hlc restored from hlc_from_ts, an empty VehiclePosition.vehicle /
// ClimateReading.sensor set to the key. A format 0/1 batch is left as it is. kInvalidArgument
// for a format newer than kMaxBatchFormat.
Status ExpandBatch(v1::Batch& batch);

class BatchEncoder {
 public:
  explicit BatchEncoder(int zstd_level);
  ~BatchEncoder();
  BatchEncoder(const BatchEncoder&) = delete;
  BatchEncoder& operator=(const BatchEncoder&) = delete;

  static constexpr int kMaxFormat = static_cast<int>(kMaxBatchFormat);

  // `format` is 1 or 2 (see above). `rows` is any range of rows in ascending seq with members
  // `seq` (uint64_t) and `record` (the serialized ChangeRecord as stored), e.g. the agent's
  // OutboxRow (cloud-sync/sync_store.h).
  template <class Rows>
  std::string_view Encode(std::string_view site, const Rows& rows, bool urgent, int format = 1) {
    Begin(site, format);
    for (const auto& row : rows) Add(row.seq, row.record);
    return Finish(urgent);
  }
  size_t raw_size() const { return raw_.size(); }  // protobuf bytes before compression, last Encode

  // Encode in steps, for callers without a range: Begin, Add per row, Finish.
  void Begin(std::string_view site, int format);
  void Add(uint64_t seq, std::string_view record);
  std::string_view Finish(bool urgent);

 private:
  int level_;
  int format_ = 1;
  uint64_t prev_seq_ = 0;
  std::string body_;  // scratch for one rewritten body (format 2)
  void* cctx_;  // ZSTD_CCtx*
  std::string raw_;
  std::string rec_;  // one rewritten record (format 2)
  std::string out_;
};

}  // namespace freshsync::wire
