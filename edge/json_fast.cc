#include "edge/json_fast.h"

#include <charconv>
#include <cmath>

namespace freshsync::edge {
namespace {

bool IsWs(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// A JSON number token (RFC 8259 grammar, as nlohmann's lexer takes it) at p[i..]; on success
// sets `end` and whether it has a fraction or an exponent.
bool NumberToken(std::string_view p, size_t i, size_t* end, bool* is_float, size_t* int_digits) {
  const size_t start = i;
  if (i < p.size() && p[i] == '-') ++i;
  if (i >= p.size() || !IsDigit(p[i])) return false;
  const size_t digits_start = i;
  if (p[i] == '0') {
    ++i;
  } else {
    while (i < p.size() && IsDigit(p[i])) ++i;
  }
  *int_digits = i - digits_start;
  *is_float = false;
  if (i < p.size() && p[i] == '.') {
    ++i;
    if (i >= p.size() || !IsDigit(p[i])) return false;
    while (i < p.size() && IsDigit(p[i])) ++i;
    *is_float = true;
  }
  if (i < p.size() && (p[i] == 'e' || p[i] == 'E')) {
    ++i;
    if (i < p.size() && (p[i] == '+' || p[i] == '-')) ++i;
    if (i >= p.size() || !IsDigit(p[i])) return false;
    while (i < p.size() && IsDigit(p[i])) ++i;
    *is_float = true;
  }
  *end = i;
  return i > start;
}

}  // namespace

bool ScanFlatNumbers(std::string_view p, const std::string_view* keys, size_t key_count, FlatNumber* values) {
  if (key_count > 8) return false;
  for (size_t k = 0; k < key_count; ++k) values[k] = FlatNumber{};
  size_t i = 0;
  auto skip_ws = [&] {
    while (i < p.size() && IsWs(p[i])) ++i;
  };
  skip_ws();
  if (i >= p.size() || p[i] != '{') return false;
  ++i;
  skip_ws();
  if (i < p.size() && p[i] == '}') return false;  // empty: the general decoder says what is missing
  while (true) {
    // Key: plain printable ASCII without escapes, one of `keys`, not seen before.
    if (i >= p.size() || p[i] != '"') return false;
    const size_t key_start = ++i;
    while (i < p.size() && p[i] != '"') {
      const auto c = static_cast<unsigned char>(p[i]);
      if (c == '\\' || c < 0x20 || c >= 0x7f) return false;
      ++i;
    }
    if (i >= p.size()) return false;
    const std::string_view key = p.substr(key_start, i - key_start);
    ++i;
    size_t slot = key_count;
    for (size_t k = 0; k < key_count; ++k)
      if (keys[k] == key) slot = k;
    if (slot == key_count || values[slot].kind != FlatNumber::Kind::kAbsent) return false;
    skip_ws();
    if (i >= p.size() || p[i] != ':') return false;
    ++i;
    skip_ws();
    // Value: null or a number.
    FlatNumber& v = values[slot];
    if (p.substr(i, 4) == "null") {
      v.kind = FlatNumber::Kind::kNull;
      i += 4;
    } else {
      size_t end = 0, int_digits = 0;
      bool is_float = false;
      if (!NumberToken(p, i, &end, &is_float, &int_digits)) return false;
      const char* first = p.data() + i;
      const char* last = p.data() + end;
      if (!is_float) {
        // nlohmann keeps integers as int64/uint64; up to 18 digits both agree on the value, and
        // "-0" is integer 0 there (a double -0.0 here): leave those to it.
        if (int_digits > 18 || (last - first == 2 && first[0] == '-')) return false;
        auto r = std::from_chars(first, last, v.integer);
        if (r.ec != std::errc() || r.ptr != last) return false;
        v.kind = FlatNumber::Kind::kInteger;
        v.number = static_cast<double>(v.integer);
      } else {
        // Correctly rounded, as glibc's strtod that nlohmann calls; out of range (overflow to
        // Inf, underflow) is left to the general decoder and its own answer.
        auto r = std::from_chars(first, last, v.number);
        if (r.ec != std::errc() || r.ptr != last || !std::isfinite(v.number)) return false;
        v.kind = FlatNumber::Kind::kFloat;
      }
      i = end;
    }
    skip_ws();
    if (i >= p.size()) return false;
    if (p[i] == ',') {
      ++i;
      skip_ws();
      continue;
    }
    if (p[i] != '}') return false;
    ++i;
    skip_ws();
    return i == p.size();  // anything after the object: the general decoder's error
  }
}

}  // namespace freshsync::edge
