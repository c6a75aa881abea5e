#include "hub/query.h"

#include <algorithm>

#include "wire/digest.h"
#include "wire/rfc3339.h"
#include "wire/site_id.h"
#include "wire/routes.h"

namespace freshsync::hub {
namespace {

const std::string* First(const QueryParams& params, const char* name) {
  auto it = params.lower_bound(name);
  if (it == params.end() || it->first != name) return nullptr;
  return &it->second;
}

// Reads an optional (or required) unsigned parameter within [min, max].
std::optional<QueryError> UParam(const QueryParams& params, const char* name, uint64_t min, uint64_t max, bool required,
                                 uint64_t* out) {
  const std::string* value = First(params, name);
  if (value == nullptr) {
    if (!required) return std::nullopt;
    return QueryError{name, std::string(name) + ": required query parameter is missing"};
  }
  auto v = ParseU64(*value);
  if (!v || *v < min || *v > max)
    return QueryError{name, std::string(name) + ": must be an integer in " + std::to_string(min) + ".." + std::to_string(max)};
  *out = *v;
  return std::nullopt;
}

std::optional<QueryError> TsParam(const QueryParams& params, const char* name, int64_t* out) {
  const std::string* value = First(params, name);
  if (value == nullptr) return std::nullopt;
  auto v = ParseTimestampMs(*value);
  if (!v) return QueryError{name, std::string(name) + ": must be epoch milliseconds or an RFC 3339 timestamp"};
  *out = *v;
  return std::nullopt;
}

}  // namespace

std::optional<uint64_t> ParseU64(std::string_view s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

std::optional<int64_t> ParseTimestampMs(std::string_view s) {
  if (auto v = ParseU64(s)) {
    if (*v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(*v);
  }
  // The shared strict parser (wire/rfc3339.h); query bounds before the epoch are refused.
  auto ms = wire::ParseRfc3339(s);
  if (!ms.ok() || *ms < 0) return std::nullopt;
  return *ms;
}

std::optional<QueryError> ParseFeedQuery(const QueryParams& params, FeedQuery* out) {
  FeedQuery q;
  if (auto e = UParam(params, "after", 0, static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), false, &q.after)) return e;
  if (auto e = UParam(params, "limit", 1, 10000, false, &q.limit)) return e;
  *out = q;
  return std::nullopt;
}

std::optional<QueryError> ParseRangeQuery(const QueryParams& params, const RangeLimits& limits, RangeQuery* out) {
  RangeQuery q;
  q.limit = limits.default_limit;
  if (auto e = TsParam(params, "from", &q.from)) return e;
  if (auto e = TsParam(params, "to", &q.to)) return e;
  if (auto e = UParam(params, "limit", 1, limits.max_limit, false, &q.limit)) return e;
  if (limits.require_ordered && q.to < q.from) return QueryError{"to", "to: must be >= from"};
  *out = q;
  return std::nullopt;
}

std::optional<QueryError> ParseDigestQuery(const QueryParams& params, DigestQuery* out) {
  DigestQuery q;
  if (auto e = UParam(params, "from", 0, digest::kMaxSeq, true, &q.from)) return e;
  if (auto e = UParam(params, "to", 0, digest::kMaxSeq, true, &q.to)) return e;
  if (auto e = UParam(params, "buckets", 1, digest::kMaxBuckets, true, &q.buckets)) return e;
  if (q.to < q.from) return QueryError{"to", "to: must be >= from"};
  *out = q;
  return std::nullopt;
}

std::optional<QueryError> ParseStreamQuery(const QueryParams& params, std::string_view last_event_id, StreamQuery* out) {
  constexpr uint64_t kMaxCursor = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  StreamQuery q;
  if (auto e = UParam(params, "after", 0, kMaxCursor, false, &q.after)) return e;
  if (!last_event_id.empty()) {
    auto id = ParseU64(last_event_id);
    if (!id || *id > kMaxCursor)
      return QueryError{"Last-Event-ID", "Last-Event-ID: must be an integer in 0.." + std::to_string(kMaxCursor)};
    q.after = *id;
  }
  if (const std::string* site = First(params, "site")) {
    if (!wire::IsSiteId(*site)) return QueryError{"site", std::string("site: ") + wire::kSiteIdRule};
    q.site = *site;
  }
  if (const std::string* entity = First(params, "entity")) {
    bool ok = !entity->empty() && entity->size() <= 32;
    for (char c : *entity) ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_');
    if (!ok) return QueryError{"entity", "entity: must be an entity name, e.g. stock or order"};
    for (char c : *entity) q.entity += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  }
  *out = q;
  return std::nullopt;
}

namespace {

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool EqualsNoCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths; 1000 if malformed.
int ParseQ(std::string_view v) {
  if (v.empty() || (v[0] != '0' && v[0] != '1')) return 1000;
  int q = (v[0] - '0') * 1000;
  if (v.size() == 1) return q;
  if (v[1] != '.' || v.size() > 5) return 1000;
  int scale = 100;
  for (size_t i = 2; i < v.size(); ++i, scale /= 10) {
    if (v[i] < '0' || v[i] > '9') return 1000;
    q += (v[i] - '0') * scale;
  }
  return q > 1000 ? 1000 : q;
}

}  // namespace

bool EtagMatches(std::string_view if_none_match, std::string_view etag) {
  while (!if_none_match.empty()) {
    const size_t comma = if_none_match.find(',');
    std::string_view tag = if_none_match.substr(0, comma);
    if_none_match = comma == std::string_view::npos ? std::string_view() : if_none_match.substr(comma + 1);
    while (!tag.empty() && (tag.front() == ' ' || tag.front() == '\t')) tag.remove_prefix(1);
    while (!tag.empty() && (tag.back() == ' ' || tag.back() == '\t')) tag.remove_suffix(1);
    if (tag.substr(0, 2) == "W/") tag.remove_prefix(2);
    if (tag == "*" || (!etag.empty() && tag == etag)) return true;
  }
  return false;
}

bool PrefersProtobuf(std::string_view accept) {
  int q_proto = -1, q_json = -1;
  while (!accept.empty()) {
    const size_t comma = accept.find(',');
    std::string_view item = accept.substr(0, comma);
    accept = comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
    const size_t semi = item.find(';');
    const std::string_view type = TrimOws(item.substr(0, semi));
    int q = 1000;
    std::string_view params = semi == std::string_view::npos ? std::string_view() : item.substr(semi + 1);
    while (!params.empty()) {
      const size_t next = params.find(';');
      const std::string_view p = TrimOws(params.substr(0, next));
      params = next == std::string_view::npos ? std::string_view() : params.substr(next + 1);
      if (p.size() >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') q = ParseQ(TrimOws(p.substr(2)));
    }
    if (EqualsNoCase(type, wire::kContentTypeProtobuf)) q_proto = std::max(q_proto, q);
    else if (EqualsNoCase(type, wire::kContentTypeJson)) q_json = std::max(q_json, q);
  }
  return q_proto > 0 && q_proto >= q_json;
}

}  // namespace freshsync::hub
