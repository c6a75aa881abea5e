#include "hub/stream_token.h"

#include <openssl/crypto.h>

#include <optional>

#include "hub/query.h"
#include "wire/digest.h"

namespace freshsync::hub {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::optional<std::string> Base64UrlDecode(std::string_view s) {
  if (s.size() % 4 == 1) return std::nullopt;
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    int v;
    if (c >= 'A' && c <= 'Z') v = c - 'A';
    else if (c >= 'a' && c <= 'z') v = c - 'a' + 26;
    else if (c >= '0' && c <= '9') v = c - '0' + 52;
    else if (c == '-') v = 62;
    else if (c == '_') v = 63;
    else return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // Leftover bits must be zero, so that each token has exactly one spelling.
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string Mac(std::string_view key, std::string_view data) { return digest::HmacSha256(key, data); }

}  // namespace

std::string Base64UrlEncode(std::string_view bytes) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 0x3f]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3f]);
  return out;
}

std::string MintStreamToken(std::string_view key, std::string_view order_id, int64_t expires_ms) {
  const std::string payload = Base64UrlEncode(std::string(order_id) + "\n" + std::to_string(expires_ms));
  return payload + "." + Base64UrlEncode(Mac(key, payload));
}

StreamTokenCheck CheckStreamToken(std::string_view key, std::string_view token, std::string_view order_id,
                                  int64_t now_ms) {
  const size_t dot = token.find('.');
  if (dot == std::string_view::npos || token.size() > 4096) return StreamTokenCheck::kMalformed;
  const std::string_view payload_b64 = token.substr(0, dot);
  auto mac = Base64UrlDecode(token.substr(dot + 1));
  auto payload = Base64UrlDecode(payload_b64);
  if (!mac || !payload) return StreamTokenCheck::kMalformed;
  // The MAC first: nothing of an unsigned payload is believed, not even its order.
  const std::string want = Mac(key, payload_b64);
  if (mac->size() != want.size() || CRYPTO_memcmp(mac->data(), want.data(), want.size()) != 0)
    return StreamTokenCheck::kBadSignature;
  const size_t nl = payload->rfind('\n');
  if (nl == std::string::npos) return StreamTokenCheck::kMalformed;
  auto expires = ParseU64(std::string_view(*payload).substr(nl + 1));
  if (!expires) return StreamTokenCheck::kMalformed;
  if (static_cast<int64_t>(*expires) <= now_ms) return StreamTokenCheck::kExpired;
  if (std::string_view(*payload).substr(0, nl) != order_id) return StreamTokenCheck::kWrongOrder;
  return StreamTokenCheck::kOk;
}

}  // namespace freshsync::hub
