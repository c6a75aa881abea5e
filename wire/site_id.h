// The site-id rule, written once: the edge's config refuses a `site` that breaks it
// (common/config.cc) and the hub's site routes only match ids that keep it (hub/server.cc),
// so a site the edge would start with is always a site the hub routes.
//
//   site-id = [a-z0-9] [a-z0-9-]{0,62}        1..63 bytes, lower-case letters, digits, '-'
//
// Header-only (constants and an inline function), so that common/ can apply it without
// linking freshsync_wire. Thread-safety: pure.
#pragma once

#include <cstddef>
#include <string_view>

namespace freshsync::wire {

inline constexpr size_t kSiteIdMaxBytes = 63;
// The rule as a regular expression group, for route patterns.
inline constexpr char kSiteIdPattern[] = "([a-z0-9][a-z0-9-]{0,62})";
// The rule in words, for error messages.
inline constexpr char kSiteIdRule[] = "must be 1-63 chars of a-z, 0-9 and '-', starting with a letter or digit";

// ^[a-z0-9][a-z0-9-]{0,62}$ by hand (std::regex trips GCC 12's -Wmaybe-uninitialized under ASan).
inline bool IsSiteId(std::string_view s) {
  if (s.empty() || s.size() > kSiteIdMaxBytes || s[0] == '-') return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

}  // namespace freshsync::wire
