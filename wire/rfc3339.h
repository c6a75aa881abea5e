// One strict RFC 3339 timestamp parser for both sides of the wire: the edge reads device `ts`
// strings with it (edge/decode.cc) and the hub the from/to query parameters of its GET routes
// (hub/query.cc).
//
// Grammar accepted (RFC 3339 section 5.6, nothing looser):
//   date-time   = full-date ("T" / "t") full-time
//   full-date   = 4DIGIT "-" 2DIGIT "-" 2DIGIT        a real Gregorian date (2023-02-29 is refused)
//   full-time   = 2DIGIT ":" 2DIGIT ":" 2DIGIT ["." 1*DIGIT] time-offset
//                 hour 00-23, minute 00-59, second 00-60
//   time-offset = "Z" / "z" / ("+" / "-") 2DIGIT ":" 2DIGIT     hour 00-23, minute 00-59
// Digits are fixed width: no signs, no spaces, no missing leading zeros. The fraction is cut
// to milliseconds (not rounded). A leap second (:60) counts as :59 of the same minute, so the
// order within the second is kept by the fraction. A space in place of "T" is refused.
//
// Thread-safety: pure function.
#pragma once

#include <cstdint>
#include <string_view>

#include "common/status.h"

namespace freshsync::wire {

// Epoch milliseconds (negative before 1970), or kInvalidArgument "not an RFC 3339 timestamp
// (e.g. 2026-11-25T08:00:00Z)".
Result<int64_t> ParseRfc3339(std::string_view s);

}  // namespace freshsync::wire
