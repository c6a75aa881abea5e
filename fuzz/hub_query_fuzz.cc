// libFuzzer target: the HQ API's query parsing (hub/query.h): /v1/changes and /v1/audit
// (?after=&limit=), the live stream (?after=&site=&entity= and Last-Event-ID), the geofence and track ranges (?from=&to=&limit=) and the digest query.
// The same input also goes through PrefersProtobuf as an Accept header.
// The input is a query string "a=1&b=2" (httplib has already %-decoded values when the
// server calls these). Checks: whatever is accepted is within the documented bounds, and an
// RFC 3339 time in UTC agrees with timegm(3).
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <limits>
#include <string>
#include <string_view>

#include "fuzz/fuzz_check.h"
#include "hub/query.h"

namespace {

using namespace freshsync::hub;

using freshsync::fuzz::Check;

QueryParams Split(std::string_view q) {
  QueryParams p;
  while (!q.empty()) {
    const size_t amp = q.find('&');
    std::string_view pair = q.substr(0, amp);
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos) p.emplace(std::string(pair), "");
    else p.emplace(std::string(pair.substr(0, eq)), std::string(pair.substr(eq + 1)));
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return p;
}

void CheckTimestamp(const std::string& v) {
  auto ms = ParseTimestampMs(v);
  if (!ms) return;
  Check(*ms >= 0, "timestamps are not before the epoch");
  // "YYYY-MM-DDThh:mm:ssZ": compare with the C library (leap seconds aside).
  if (v.size() == 20 && v[19] == 'Z' && v[10] == 'T' && v.compare(17, 2, "60") != 0) {
    std::tm tm{};
    tm.tm_year = std::stoi(v.substr(0, 4)) - 1900;
    tm.tm_mon = std::stoi(v.substr(5, 2)) - 1;
    tm.tm_mday = std::stoi(v.substr(8, 2));
    tm.tm_hour = std::stoi(v.substr(11, 2));
    tm.tm_min = std::stoi(v.substr(14, 2));
    tm.tm_sec = std::stoi(v.substr(17, 2));
    Check(static_cast<int64_t>(timegm(&tm)) * 1000 == *ms, "RFC 3339 UTC time agrees with timegm");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The same bytes as an Accept header (content negotiation of the HQ reads): never fails, and
  // protobuf is never chosen unless named.
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  if (PrefersProtobuf(raw)) {
    std::string lower(raw);
    for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    Check(lower.find("application/x-protobuf") != std::string::npos, "protobuf only when named");
  }
  const QueryParams params = Split(std::string_view(reinterpret_cast<const char*>(data), size));
  FeedQuery f;
  if (auto e = ParseFeedQuery(params, &f)) {
    Check(e->message.rfind(e->parameter + ":", 0) == 0, "feed error names its parameter");
  } else {
    Check(f.after <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), "after <= INT64_MAX");
    Check(f.limit >= 1 && f.limit <= 10000, "limit in 1..10000");
  }
  RangeQuery r;
  if (!ParseRangeQuery(params, {10000, 100000, true}, &r)) {
    Check(r.from >= 0 && r.from <= r.to, "track range ordered");
    Check(r.limit >= 1 && r.limit <= 100000, "track limit in range");
  }
  DigestQuery d;
  if (!ParseDigestQuery(params, &d)) {
    Check(d.from <= d.to && d.buckets >= 1 && d.buckets <= 1024, "digest query in range");
  }
  // The stream's query, with the input's first line as a Last-Event-ID header too.
  StreamQuery sq;
  const std::string_view first_line = raw.substr(0, raw.find('\n'));
  for (std::string_view last_id : {std::string_view(), first_line}) {
    if (auto e = ParseStreamQuery(params, last_id, &sq)) {
      Check(e->message.rfind(e->parameter + ":", 0) == 0, "stream error names its parameter");
    } else {
      Check(sq.after <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), "stream after <= INT64_MAX");
      for (char ch : sq.entity) Check(!(ch >= 'A' && ch <= 'Z'), "stream entity is lower case");
      Check(sq.site.size() <= 63, "stream site within the site-id rule");
    }
  }
  for (const auto& [k, v] : params) CheckTimestamp(v);
  return 0;
}
