#include "audit/chain.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include <sodium.h>

#include "freshsync.pb.h"

namespace freshsync::audit {
namespace {

void InitSodium() {
  if (sodium_init() < 0) std::abort();  // no hashing or signing without it; impossible on a sane system
}

void PutU64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU32(std::string& out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutStr(std::string& out, std::string_view s) {
  PutU32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
}
void PutF64(std::string& out, double d) {
  uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  PutU64(out, bits);
}

constexpr char kSealContext[] = "freshsync-coldchain-seal-v1";
constexpr char kKeyConfig[] = "audit.signing_key_file";

}  // namespace

std::string GenesisHash() { return std::string(kHashBytes, '\0'); }

std::string CanonicalBytes(const Link& l) {
  std::string out;
  out.reserve(64 + l.sensor.size() + l.alert_id.size());
  out.push_back(l.kind == Link::Kind::kReading ? 'R' : 'A');
  PutU64(out, l.index);
  PutStr(out, l.sensor);
  PutU64(out, static_cast<uint64_t>(l.ts_ms));
  if (l.kind == Link::Kind::kReading) {
    PutU64(out, l.device_seq);
    PutU32(out, static_cast<uint32_t>(l.temp_dc));
    PutU32(out, l.rh_d);
    PutU32(out, l.battery_d);
  } else {
    PutStr(out, l.alert_id);
    PutStr(out, l.state);
    PutStr(out, l.alert_kind);
    PutF64(out, l.min_c);
    PutF64(out, l.max_c);
    PutU64(out, static_cast<uint64_t>(l.started_ts_ms));
    PutU64(out, static_cast<uint64_t>(l.ended_ts_ms));
  }
  return out;
}

std::string NextHash(std::string_view prev, std::string_view canonical) {
  InitSodium();
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  crypto_hash_sha256_update(&st, reinterpret_cast<const unsigned char*>(prev.data()), prev.size());
  crypto_hash_sha256_update(&st, reinterpret_cast<const unsigned char*>(canonical.data()), canonical.size());
  std::string out(kHashBytes, '\0');
  crypto_hash_sha256_final(&st, reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

std::string ChainSensor(const v1::ChangeRecord& r) {
  if (r.entity() == v1::CLIMATE && r.has_climate()) return r.climate().sensor().empty() ? r.key() : r.climate().sensor();
  if (r.entity() == v1::COLDCHAIN_ALERT && r.has_alert()) return r.alert().sensor();
  return "";
}

Link LinkOf(const v1::ChangeRecord& r) {
  Link l;
  l.index = r.chain_index();
  l.sensor = ChainSensor(r);
  l.ts_ms = r.ts_ms();
  if (r.has_climate()) {
    l.kind = Link::Kind::kReading;
    l.device_seq = r.climate().device_seq();
    l.temp_dc = r.climate().temp_dc();
    l.rh_d = r.climate().rh_d();
    l.battery_d = r.climate().battery_d();
  } else {
    SetAlertLink(r.alert(), l);
  }
  return l;
}

void SetAlertLink(const v1::ColdchainAlert& a, Link& l) {
  l.kind = Link::Kind::kAlert;
  l.alert_id = a.alert_id();
  l.state = a.state();
  l.alert_kind = a.kind();
  l.min_c = a.min_c();
  l.max_c = a.max_c();
  l.started_ts_ms = a.started_ts_ms();
  l.ended_ts_ms = a.ended_ts_ms();
}

std::string SealBytes(const v1::ColdchainSeal& s) {
  std::string out(kSealContext, sizeof kSealContext);  // with its terminating 0x00
  PutStr(out, s.sensor());
  PutU64(out, s.first_index());
  PutU64(out, s.last_index());
  PutU64(out, s.count());
  PutU64(out, static_cast<uint64_t>(s.first_ts_ms()));
  PutU64(out, static_cast<uint64_t>(s.last_ts_ms()));
  out.append(s.last_hash());
  return out;
}

std::string Hex(std::string_view bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

Result<std::string> FromHex(std::string_view hex) {
  if (hex.size() % 2 != 0) return Status::InvalidArgument("odd number of hex digits");
  std::string out;
  out.reserve(hex.size() / 2);
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return Status::InvalidArgument("not a hex digit");
    out.push_back(static_cast<char>(hi << 4 | lo));
  }
  return out;
}

std::string Fingerprint(std::string_view public_key) {
  InitSodium();
  unsigned char h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(h, reinterpret_cast<const unsigned char*>(public_key.data()), public_key.size());
  return "ed25519:" + Hex(std::string_view(reinterpret_cast<const char*>(h), 8));
}

bool VerifySignature(std::string_view public_key, std::string_view message, std::string_view signature) {
  InitSodium();
  if (public_key.size() != crypto_sign_PUBLICKEYBYTES || signature.size() != crypto_sign_BYTES) return false;
  return crypto_sign_verify_detached(reinterpret_cast<const unsigned char*>(signature.data()),
                                     reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                                     reinterpret_cast<const unsigned char*>(public_key.data())) == 0;
}

SigningKey SigningKey::FromSeed(std::string_view seed32) {
  InitSodium();
  SigningKey k;
  k.secret_key_.assign(crypto_sign_SECRETKEYBYTES, '\0');
  k.public_key_.assign(crypto_sign_PUBLICKEYBYTES, '\0');
  crypto_sign_seed_keypair(reinterpret_cast<unsigned char*>(k.public_key_.data()),
                           reinterpret_cast<unsigned char*>(k.secret_key_.data()),
                           reinterpret_cast<const unsigned char*>(seed32.data()));
  return k;
}

SigningKey::~SigningKey() {
  if (!secret_key_.empty()) sodium_memzero(secret_key_.data(), secret_key_.size());
}

Result<SigningKey> SigningKey::Load(const std::string& path) {
  struct stat st{};
  if (stat(path.c_str(), &st) != 0) return Status::InvalidArgument(std::string(kKeyConfig) + ": cannot open " + path);
  // A signing key others can read signs for anyone: refuse it as ssh refuses such keys.
  if ((st.st_mode & 077) != 0)
    return Status::InvalidArgument(std::string(kKeyConfig) + ": " + path + " is readable by group or others (chmod 600)");
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::InvalidArgument(std::string(kKeyConfig) + ": cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string data = ss.str();
  while (!data.empty() && std::isspace(static_cast<unsigned char>(data.back()))) data.pop_back();
  auto seed = FromHex(data);
  sodium_memzero(data.data(), data.size());
  if (!seed.ok() || seed->size() != crypto_sign_SEEDBYTES)
    return Status::InvalidArgument(std::string(kKeyConfig) + ": " + path + " must hold 64 hex digits");
  SigningKey k = FromSeed(*seed);
  sodium_memzero(seed->data(), seed->size());
  return k;
}

Result<SigningKey> SigningKey::LoadOrCreate(const std::string& path) {
  InitSodium();
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return Load(path);
    return Status::IOError(std::string(kKeyConfig) + ": cannot create " + path + ": " + std::strerror(errno));
  }
  unsigned char seed[crypto_sign_SEEDBYTES];
  randombytes_buf(seed, sizeof seed);
  std::string hex = Hex(std::string_view(reinterpret_cast<const char*>(seed), sizeof seed)) + "\n";
  const bool written = write(fd, hex.data(), hex.size()) == static_cast<ssize_t>(hex.size()) && fsync(fd) == 0;
  close(fd);
  sodium_memzero(hex.data(), hex.size());
  if (!written) {
    sodium_memzero(seed, sizeof seed);
    unlink(path.c_str());  // a half-written key would be refused at the next start
    return Status::IOError(std::string(kKeyConfig) + ": cannot write " + path);
  }
  SigningKey k = FromSeed(std::string_view(reinterpret_cast<const char*>(seed), sizeof seed));
  sodium_memzero(seed, sizeof seed);
  return k;
}

std::string SigningKey::Sign(std::string_view message) const {
  std::string sig(crypto_sign_BYTES, '\0');
  crypto_sign_detached(reinterpret_cast<unsigned char*>(sig.data()), nullptr,
                       reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                       reinterpret_cast<const unsigned char*>(secret_key_.data()));
  return sig;
}

}  // namespace freshsync::audit
