// Encodes outbox rows into the request body of POST /v1/sites/{site}/batches:
// zstd(protobuf Batch), without parsing the stored records.
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
//
// Ownership: owns a zstd context and its buffers; the returned view is valid until the next
// Encode(). Thread-safety: one thread at a time.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "cloud-sync/sync_store.h"

namespace freshsync::sync {

class BatchEncoder {
 public:
  explicit BatchEncoder(int zstd_level);
  ~BatchEncoder();
  BatchEncoder(const BatchEncoder&) = delete;
  BatchEncoder& operator=(const BatchEncoder&) = delete;

  static constexpr int kMaxFormat = 2;

  // `format` is 1 or 2 (see above).
  std::string_view Encode(const std::string& site, const std::vector<OutboxRow>& rows, bool urgent, int format = 1);
  size_t raw_size() const { return raw_.size(); }  // protobuf bytes before compression, last Encode

 private:
  int level_;
  void* cctx_;  // ZSTD_CCtx*
  std::string raw_;
  std::string rec_;  // one rewritten record (format 2)
  std::string out_;
};

}  // namespace freshsync::sync
