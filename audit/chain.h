// The cold-chain audit chain (docs/formats.md, "Cold-chain audit chain"): what the site computes
// as it commits a sensor's readings and alerts, what the hub recomputes to verify a range, and
// what an auditor's `edgectl verify-coldchain` recomputes from an export. One definition of the
// canonical bytes, the hash step and the seal's signed bytes, shared by edge, hub and edgectl
// (design.md: code both sides of the wire share sits in a module neither owns).
//
// Grammar (all integers big-endian, str = u32 length || bytes):
//   reading  = 'R' u64 index  str sensor  i64 ts_ms  u64 device_seq  i32 temp_dc  u32 rh_d  u32 battery_d
//   alert    = 'A' u64 index  str sensor  i64 ts_ms  str alert_id  str state  str kind
//                  f64 min_c  f64 max_c  i64 started_ts_ms  i64 ended_ts_ms      (f64: IEEE-754 bits)
//   h_0      = 32 zero bytes (per sensor)
//   h_n      = SHA-256(h_{n-1} || canonical bytes of link n)          (libsodium crypto_hash_sha256)
//   seal     = "freshsync-coldchain-seal-v1" 0x00 str sensor u64 first_index u64 last_index u64 count
//              i64 first_ts_ms i64 last_ts_ms  32 bytes last_hash
//   signature = Ed25519 (crypto_sign_detached) over `seal` with the site's key
// The link index is part of the hashed bytes, so a link moved to another place in the chain
// changes its hash even where its content does not.
//
// Thread-safety: free functions and an immutable SigningKey; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace freshsync::v1 {
class ChangeRecord;
class ColdchainAlert;
class ColdchainSeal;
}  // namespace freshsync::v1

namespace freshsync::audit {

inline constexpr size_t kHashBytes = 32;
inline constexpr size_t kPublicKeyBytes = 32;
inline constexpr size_t kSignatureBytes = 64;

// The fields of a link, whichever side has them (record, hub row, export line).
struct Link {
  enum class Kind { kReading, kAlert };
  Kind kind = Kind::kReading;
  uint64_t index = 0;
  std::string sensor;
  int64_t ts_ms = 0;
  // reading
  uint64_t device_seq = 0;
  int32_t temp_dc = 0;
  uint32_t rh_d = 0;
  uint32_t battery_d = 0;
  // alert
  std::string alert_id, state, alert_kind;
  double min_c = 0, max_c = 0;
  int64_t started_ts_ms = 0, ended_ts_ms = 0;
};

std::string GenesisHash();  // h_0
std::string CanonicalBytes(const Link& link);
// SHA-256(prev || canonical)
std::string NextHash(std::string_view prev, std::string_view canonical);

// The sensor whose chain a record belongs to: a CLIMATE record, or a COLDCHAIN_ALERT record
// naming a sensor; "" for every other record (not chained).
std::string ChainSensor(const v1::ChangeRecord& record);
// The link of a chained record (index from record.chain_index()).
Link LinkOf(const v1::ChangeRecord& record);
// The alert fields of a link (kind kAlert), from the alert as the record and the edge store carry it.
void SetAlertLink(const v1::ColdchainAlert& alert, Link& link);

// The signed bytes of a seal (its signature and public key are not part of them).
std::string SealBytes(const v1::ColdchainSeal& seal);

std::string Hex(std::string_view bytes);
// kInvalidArgument unless `hex` is an even number of hex digits.
Result<std::string> FromHex(std::string_view hex);
// How a public key is named in answers and exports: "ed25519:" + the first 16 hex digits of
// SHA-256(public key).
std::string Fingerprint(std::string_view public_key);
bool VerifySignature(std::string_view public_key, std::string_view message, std::string_view signature);

// The site's Ed25519 key ([audit] signing_key_file): 64 hex digits of the 32-byte seed.
class SigningKey {
 public:
  // Reads the key file; when it does not exist, creates it (0600, O_EXCL) with a new key.
  // kInvalidArgument naming audit.signing_key_file when the file is malformed or readable by
  // group or others; kIOError when it cannot be created.
  static Result<SigningKey> LoadOrCreate(const std::string& path);
  // Reads an existing key file only (edgectl).
  static Result<SigningKey> Load(const std::string& path);
  static SigningKey FromSeed(std::string_view seed32);
  SigningKey(const SigningKey&) = default;
  SigningKey& operator=(const SigningKey&) = default;
  ~SigningKey();

  const std::string& public_key() const { return public_key_; }
  std::string Sign(std::string_view message) const;

 private:
  SigningKey() = default;
  std::string secret_key_;  // libsodium's 64-byte secret key (seed || public key)
  std::string public_key_;
};

}  // namespace freshsync::audit
