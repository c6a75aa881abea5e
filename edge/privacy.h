// Sealing of customer personal data (name, phone, address) at rest, with libsodium
// crypto_secretbox (XSalsa20-Poly1305). A sealed blob is: nonce (24 bytes) || box.
//
// Key file (privacy.key_file): 32 raw bytes, or 64 hex digits (whitespace around ignored).
// Thread-safety: a Sealer is immutable after Load; Seal/Open are safe from any thread.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace freshsync::edge {

class Sealer {
 public:
  static constexpr size_t kKeyBytes = 32;
  // kInvalidArgument naming privacy.key_file when the file is missing or malformed.
  static Result<Sealer> LoadKeyFile(const std::string& path);
  // Where the key is: `key_file` if absolute; else, when $CREDENTIALS_DIRECTORY is set (systemd
  // LoadCredential=), that directory joined with `key_file`, or with "privacy.key" when
  // key_file is empty; else `key_file` as given (relative to the working directory). "" = no key.
  static std::string ResolveKeyPath(const std::string& key_file, const char* credentials_dir);
  static Sealer FromKey(const std::array<unsigned char, kKeyBytes>& key);

  std::string Seal(std::string_view plaintext) const;
  // kInvalidArgument when the blob is not one of ours (wrong key, truncated, tampered).
  Result<std::string> Open(std::string_view sealed) const;

 private:
  std::array<unsigned char, kKeyBytes> key_{};
};

}  // namespace freshsync::edge
