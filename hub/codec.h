// Wire codecs of the hub: bounded zstd decompression and the JSON form of its protobuf answers.
//
// Thread-safety: free functions, no shared state.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <google/protobuf/message.h>
#include <nlohmann/json.hpp>

#include "common/status.h"
#include "hub/decompress_budget.h"
#include "freshsync.pb.h"

namespace freshsync::hub {

struct ZstdLimits {
  // Output cap: decompression stops as soon as the output would exceed it.
  uint64_t max_output_bytes = 64 << 20;
  // Cap on the decoder's window (2^N bytes). A frame that asks for more is refused instead of
  // letting its header make us allocate up to 2^31 bytes of window.
  int window_log_max = 24;
  // Optional process-wide budget (hub/decompress_budget.h): the decoder window plus the
  // output's worst case (the declared size, else about 2 x max_output_bytes for the string's
  // geometric growth) are reserved before anything is allocated, and any growth beyond that
  // before it happens. DecompressWorstCase() is that amount for an undeclared frame. Not owned; outlives the call and holds
  // the bytes until the caller drops it (after it has freed the output).
  DecompressReservation* reservation = nullptr;
};

// Streaming decompression of one or more zstd frames with a hard output cap.
// Memory used is bounded by max_output_bytes plus the decoder window, whatever the input
// claims in its frame header, so a zstd bomb costs at most the cap.
// Returns:
//   kInvalidArgument  not zstd, corrupt or truncated input
//   kConflict         the output would exceed max_output_bytes, or the window is too large
//                     (the server answers 413 for this code)
//   kUnavailable      limits.reservation's budget cannot cover the memory (503 + Retry-After)
Result<std::string> ZstdDecompressCapped(std::string_view input, const ZstdLimits& limits);

// Bytes a reservation needs for one frame without a declared size at these limits: the
// smallest process budget that still admits every valid request (config validation).
uint64_t DecompressWorstCase(uint64_t max_output_bytes, int window_log_max = 24);

// Batch format 2 expansion (ExpandBatch) and kMaxBatchFormat live in wire/batch_format.h,
// beside the encoder.

// Plain zstd compression (tests, tools).
std::string ZstdCompress(std::string_view input, int level = 1);

// "STOCK", "ORDER", ... ; the number as a string for values this build does not know.
std::string EntityName(int entity);

// The JSON form of a protobuf answer (or record), the one mapping behind every JSON the hub
// serves: plain numbers (not the proto3 JSON mapping, which turns 64-bit integers into strings),
// bytes base64 (digests hex), enums by name, and the names and units of docs/api.md where they
// differ from the protobuf's (`ts` for `ts_ms`, degrees for microdegrees, nested records
// flattened into their item). The exceptions are a table in codec.cc; a field not in it keeps
// its protobuf name and value.
nlohmann::json ToJson(const google::protobuf::Message& message);

// The record's body as a JSON object: ToJson of the body that is set, {} when none is.
nlohmann::json RecordFieldsToJson(const v1::ChangeRecord& record);

// One feed entry: cursor, site, seq, entity, key, version, hlc, ts (ms), fields; ToJson of the
// FeedChange that holds the record.
nlohmann::json ChangeToJson(uint64_t cursor, const std::string& site, const v1::ChangeRecord& record);

std::string Base64(std::string_view bytes);

}  // namespace freshsync::hub
