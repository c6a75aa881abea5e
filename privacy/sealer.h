// Sealing of customer personal data (name, phone, address) at rest, with libsodium
// crypto_secretbox (XSalsa20-Poly1305), and rotation of the key.
//
// Sealed blob grammar:
//   current: 0xF5 0x01 key-id(8) nonce(24) box      -- key-id: first 8 bytes of BLAKE2b(key)
//   legacy:  nonce(24) box                           -- written before key ids existed
// The key id names the key without revealing it, so a blob can be opened with the right key
// from the ring, and rotation (edge/key_rotation.h) can tell what is not yet on the current key.
// A legacy blob is opened by trying each key (the MAC tells which one fits).
//
// Key files: 32 raw bytes, or 64 hex digits (whitespace around ignored). Config:
// privacy.key_file is the current key (new data is sealed with it); privacy.old_key_files are
// earlier keys, kept only to open data not yet re-sealed (docs/operations.md, "Key rotation").
// Thread-safety: a Sealer is immutable after construction; Seal/Open are safe from any thread.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace freshsync {

class Sealer {
 public:
  static constexpr size_t kKeyBytes = 32;
  static constexpr size_t kKeyIdBytes = 8;
  using Key = std::array<unsigned char, kKeyBytes>;
  using KeyId = std::array<unsigned char, kKeyIdBytes>;

  // kInvalidArgument naming privacy.key_file when the file is missing or malformed.
  static Result<Sealer> LoadKeyFile(const std::string& path);
  // The current key and earlier ones; kInvalidArgument naming privacy.key_file or
  // privacy.old_key_files when one is missing or malformed.
  static Result<Sealer> LoadKeyFiles(const std::string& current, const std::vector<std::string>& old);
  // Where the key is: `key_file` if absolute; else, when $CREDENTIALS_DIRECTORY is set (systemd
  // LoadCredential=), that directory joined with `key_file`, or with "privacy.key" when
  // key_file is empty; else `key_file` as given (relative to the working directory). "" = no key.
  static std::string ResolveKeyPath(const std::string& key_file, const char* credentials_dir);
  static Sealer FromKey(const Key& key);
  static Sealer FromKeys(const Key& current, const std::vector<Key>& old);

  // Sealed with the current key, in the current format.
  std::string Seal(std::string_view plaintext) const;
  // kInvalidArgument when the blob is not one of ours (no key of the ring opens it, truncated,
  // tampered).
  Result<std::string> Open(std::string_view sealed) const;
  // True when `sealed` is in the current format under the current key: nothing to re-seal.
  bool IsCurrent(std::string_view sealed) const;

  // Hex of BLAKE2b-256 of `data` keyed with the current key: equal inputs give equal digests
  // under one key, and without the key a digest tells nothing of the input. For comparing
  // personal data (the hub's idempotency of HQ orders) without keeping it in clear.
  std::string KeyedDigestHex(std::string_view data) const;

  // Hex of the current key's id (for logs and edgectl; never the key).
  std::string current_key_id_hex() const;
  // The key id a blob names; nullopt for a legacy blob.
  static std::optional<KeyId> KeyIdOf(std::string_view sealed);
  static KeyId IdOf(const Key& key);

 private:
  struct Entry {
    Key key{};
    KeyId id{};
  };
  std::vector<Entry> keys_;  // [0] is the current key
};

}  // namespace freshsync
