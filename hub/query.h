// Query-parameter parsing of the HQ and site GET endpoints, as pure functions (no httplib), so
// that it can be unit-tested and fuzzed on its own (fuzz/hub_query_fuzz.cc).
//
// Contract: each Parse*Query reads only the parameters it names, takes the first occurrence of
// a repeated parameter (as httplib's get_param_value does), and either fills *out and returns
// std::nullopt, or returns the error to answer with 400: the parameter's name and a message
// that starts with it ("limit: must be an integer in 1..10000"). Values are strict:
// unsigned decimals without sign, spaces or leading '+'; timestamps are epoch milliseconds or
// RFC 3339 with fixed-width fields. Parameters a route does not know are ignored.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace freshsync::hub {

// Same shape as httplib::Params (name -> value, repeated names allowed, already %-decoded).
using QueryParams = std::multimap<std::string, std::string>;

struct QueryError {
  std::string parameter;
  std::string message;
};

// GET /v1/changes and /v1/audit: ?after=CURSOR&limit=N.
struct FeedQuery {
  uint64_t after = 0;     // 0..INT64_MAX
  uint64_t limit = 1000;  // 1..10000
};
std::optional<QueryError> ParseFeedQuery(const QueryParams& params, FeedQuery* out);

// GET .../geofence and .../vehicles/{v}/track: ?from=TS&to=TS&limit=N.
struct RangeQuery {
  int64_t from = 0;
  int64_t to = std::numeric_limits<int64_t>::max();
  uint64_t limit = 0;
};
struct RangeLimits {
  uint64_t default_limit = 1000;
  uint64_t max_limit = 10000;
  bool require_ordered = false;  // refuse to < from (named "to")
};
std::optional<QueryError> ParseRangeQuery(const QueryParams& params, const RangeLimits& limits, RangeQuery* out);

// GET /v1/sites/{site}/digest: ?from=SEQ&to=SEQ&buckets=N, all required, to >= from.
struct DigestQuery {
  uint64_t from = 0;
  uint64_t to = 0;
  uint64_t buckets = 0;
};
std::optional<QueryError> ParseDigestQuery(const QueryParams& params, DigestQuery* out);

// GET /v1/stream: ?after=CURSOR&site=SITE&entity=NAME, and the Last-Event-ID header (the
// cursor of the last event the client has, sent by a reconnecting EventSource), which wins over
// `after` because a browser reconnects with the URL it first opened. Both 0..INT64_MAX; the
// stream starts after that cursor (0: the start of the feed, as /v1/changes). `site` keeps the
// site-id rule (wire/site_id.h); `entity` is 1..32 letters, digits or '_', answered lower case
// as the feed's relay names it ("stock", "order"): matching is by that lower-case name.
struct StreamQuery {
  uint64_t after = 0;
  std::string site;    // "" = every site
  std::string entity;  // "" = every entity; lower case
};
std::optional<QueryError> ParseStreamQuery(const QueryParams& params, std::string_view last_event_id, StreamQuery* out);

// Strict unsigned decimal: 1-20 digits, no sign, no overflow.
std::optional<uint64_t> ParseU64(std::string_view s);
// Epoch milliseconds (0..INT64_MAX), or an RFC 3339 timestamp as wire::ParseRfc3339 reads it
// (wire/rfc3339.h: "YYYY-MM-DDThh:mm:ss[.fff...](Z|+hh:mm|-hh:mm)", real calendar dates) that
// is not before the epoch.
std::optional<int64_t> ParseTimestampMs(std::string_view s);

// Content negotiation of the HQ GET routes, which answer JSON by default: true when the
// request's Accept header asks for protobuf, i.e. names "application/x-protobuf" (media types
// are case-insensitive, parameters other than q are ignored) with a q above 0 and not below the
// q of "application/json". Wildcards ("*/*", "application/*") do not ask for protobuf. A q
// that does not parse counts as 1 (RFC 9110 leaves it to the server; being lenient keeps a
// sloppy protobuf client working). Never fails.
bool PrefersProtobuf(std::string_view accept);

// Whether an If-None-Match header names `etag` (a quoted entity tag): "*", or one of its
// comma-separated tags equal to it, weak ("W/") ones included (RFC 9110's weak comparison,
// which If-None-Match uses). Never fails.
bool EtagMatches(std::string_view if_none_match, std::string_view etag);

}  // namespace freshsync::hub
