// Customer stream tokens: a short-lived capability for one order's live status stream
// (GET /v1/orders/{order_id}/stream, docs/api.md "Per-order customer stream").
//
//   token   = base64url(payload) "." base64url(HMAC-SHA256(key, base64url(payload)))
//   payload = order_id "\n" expires_ms (decimal)
//
// The token names its order and expiry, so the hub needs no table of issued tokens; the key
// ([customer_stream] key_file) is the only secret. base64url without padding, so a token fits a
// URL's query (EventSource cannot send headers). Comparison of the MAC is constant-time.
// Thread-safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace freshsync::hub {

// At least this many key bytes: a shorter HMAC key is guessable.
inline constexpr size_t kMinStreamKeyBytes = 32;

std::string MintStreamToken(std::string_view key, std::string_view order_id, int64_t expires_ms);

enum class StreamTokenCheck {
  kOk,
  kMalformed,     // not two base64url parts, or a payload that does not parse (401)
  kBadSignature,  // the MAC does not match: tampered, or made with another key (401)
  kExpired,       // expires_ms <= now_ms (401)
  kWrongOrder,    // a valid token for another order (403)
};
StreamTokenCheck CheckStreamToken(std::string_view key, std::string_view token, std::string_view order_id,
                                  int64_t now_ms);

std::string Base64UrlEncode(std::string_view bytes);

}  // namespace freshsync::hub
