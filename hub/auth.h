// Authentication of the hub's two kinds of callers.
//
// Sites: mutual TLS. The TLS layer has already verified the client certificate chain against
// tls.ca (a bad chain or an expired certificate fails the handshake); PeerSiteId() only reads
// the verified certificate's CN, which is the site id.
//
// HQ: `Authorization: Bearer TOKEN`. The hub holds only SHA-256(TOKEN) (config [[tokens]]) and
// compares digests in constant time, so neither the config nor a timing side channel gives a
// token away.
//
// Thread-safety: TokenAuth is immutable after construction; safe from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/ssl.h>

#include "common/config.h"

namespace freshsync::hub {

// Ordered: each role may do everything the roles before it may (a writer reads, an admin writes).
enum class Role { kReader, kWriter, kAdmin };
// "reader", "writer", "admin".
const char* RoleName(Role role);

struct Caller {
  std::string name;  // the token's name from the config, never the token itself
  Role role = Role::kReader;
};

enum class AuthOutcome {
  kOk,
  kMissing,    // no or malformed Authorization header -> 401
  kInvalid,    // no token matches -> 401
  kForbidden,  // valid token, role too weak -> 403
};

class TokenAuth {
 public:
  explicit TokenAuth(const std::vector<HubToken>& tokens);
  // `authorization` is the raw header value ("" if absent). On kOk fills *caller.
  AuthOutcome Check(std::string_view authorization, Role needed, Caller* caller) const;

 private:
  struct Entry {
    std::string sha256_hex;
    Caller caller;
  };
  std::vector<Entry> entries_;
};

// The CN of the peer's verified client certificate, or nullopt when there is no certificate,
// it was not verified, or its subject does not have exactly one CN.
std::optional<std::string> PeerSiteId(const SSL* ssl);

}  // namespace freshsync::hub
