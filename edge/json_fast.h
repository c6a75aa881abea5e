// A fast path for the JSON payloads that make most of a site's traffic: flat objects of
// numbers, the form a GPS receiver sends (docs/benchmarks.md, "Ingest drain": parsing each fix
// into an nlohmann DOM was the largest share of edged's CPU per GPS message).
//
// It only ever accepts: anything it does not recognise as the plain, canonical case (a key
// with an escape or outside the expected set, a key twice, a string value, nesting, non-ASCII
// bytes, a number nlohmann would read differently), it declines and the caller runs the
// general decoder, which then accepts or refuses exactly as before. So the general decoder
// stays the one definition of what is valid; this only skips building the DOM when the answer
// cannot differ. The decode tests and the fuzz target (fuzz/edge_decode) compare both paths.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace freshsync::edge {

// One value of a flat JSON object, as the general decoder would see it.
struct FlatNumber {
  enum class Kind : uint8_t { kAbsent, kNull, kInteger, kFloat };
  Kind kind = Kind::kAbsent;
  int64_t integer = 0;  // kInteger: the value (the token has at most 18 digits)
  double number = 0;    // kInteger and kFloat: the value as the general decoder's get<double>()
};

// Scans `payload` as one JSON object whose keys are all among `keys` (at most 8, each at most
// once) and whose values are numbers or null. On success fills values[i] for keys[i] and
// returns true; false means "not the plain case: use the general decoder".
bool ScanFlatNumbers(std::string_view payload, const std::string_view* keys, size_t key_count, FlatNumber* values);

}  // namespace freshsync::edge
