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

  std::string_view Encode(const std::string& site, const std::vector<OutboxRow>& rows, bool urgent);
  size_t raw_size() const { return raw_.size(); }  // protobuf bytes before compression, last Encode

 private:
  int level_;
  void* cctx_;  // ZSTD_CCtx*
  std::string raw_;
  std::string out_;
};

}  // namespace freshsync::sync
