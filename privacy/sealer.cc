#include "privacy/sealer.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include <sodium.h>

namespace freshsync {
namespace {

constexpr unsigned char kMagic = 0xF5;
constexpr unsigned char kVersion = 0x01;
constexpr size_t kHeader = 2 + Sealer::kKeyIdBytes;
constexpr size_t kBoxOverhead = crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES;

void InitSodium() {
  if (sodium_init() < 0) std::abort();  // cannot seal without it; impossible on a sane system
}

Result<Sealer::Key> ReadKey(const std::string& path, const std::string& config_key) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::InvalidArgument(config_key + ": cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string data = ss.str();
  Sealer::Key key{};
  if (data.size() == Sealer::kKeyBytes) {
    std::copy(data.begin(), data.end(), key.begin());
  } else {
    while (!data.empty() && std::isspace(static_cast<unsigned char>(data.back()))) data.pop_back();
    while (!data.empty() && std::isspace(static_cast<unsigned char>(data.front()))) data.erase(0, 1);
    size_t bin_len = 0;
    const bool ok = data.size() == 2 * Sealer::kKeyBytes &&
                    sodium_hex2bin(key.data(), key.size(), data.data(), data.size(), nullptr, &bin_len, nullptr) == 0 &&
                    bin_len == Sealer::kKeyBytes;
    sodium_memzero(data.data(), data.size());
    if (!ok) return Status::InvalidArgument(config_key + ": " + path + " must hold 32 raw bytes or 64 hex digits");
  }
  sodium_memzero(data.data(), data.size());
  return key;
}

// Opens nonce || box with one key.
std::optional<std::string> OpenBox(std::string_view nonce_box, const Sealer::Key& key) {
  if (nonce_box.size() < kBoxOverhead) return std::nullopt;
  const auto* nonce = reinterpret_cast<const unsigned char*>(nonce_box.data());
  const size_t box_len = nonce_box.size() - crypto_secretbox_NONCEBYTES;
  std::string out(box_len - crypto_secretbox_MACBYTES, '\0');
  if (crypto_secretbox_open_easy(reinterpret_cast<unsigned char*>(out.data()), nonce + crypto_secretbox_NONCEBYTES, box_len,
                                 nonce, key.data()) != 0)
    return std::nullopt;
  return out;
}

}  // namespace

Sealer::KeyId Sealer::IdOf(const Key& key) {
  InitSodium();
  unsigned char h[crypto_generichash_BYTES_MIN];
  static const char kContext[] = "freshsync privacy key id";
  // Keyed by the key itself over a fixed context: an id, not a way back to the key.
  crypto_generichash(h, sizeof h, reinterpret_cast<const unsigned char*>(kContext), sizeof kContext - 1, key.data(), key.size());
  KeyId id{};
  std::memcpy(id.data(), h, id.size());
  return id;
}

Result<Sealer> Sealer::LoadKeyFile(const std::string& path) { return LoadKeyFiles(path, {}); }

Result<Sealer> Sealer::LoadKeyFiles(const std::string& current, const std::vector<std::string>& old) {
  InitSodium();
  auto cur = ReadKey(current, "privacy.key_file");
  if (!cur.ok()) return cur.status();
  std::vector<Key> olds;
  for (const auto& path : old) {
    auto k = ReadKey(path, "privacy.old_key_files");
    if (!k.ok()) return k.status();
    olds.push_back(*k);
  }
  Sealer s = FromKeys(*cur, olds);
  sodium_memzero(cur->data(), cur->size());
  for (auto& k : olds) sodium_memzero(k.data(), k.size());
  return s;
}

Sealer Sealer::FromKey(const Key& key) { return FromKeys(key, {}); }

Sealer Sealer::FromKeys(const Key& current, const std::vector<Key>& old) {
  InitSodium();
  Sealer s;
  s.keys_.push_back({current, IdOf(current)});
  for (const auto& k : old) {
    if (k == current) continue;  // the same file listed twice must not change anything
    s.keys_.push_back({k, IdOf(k)});
  }
  return s;
}

std::string Sealer::Seal(std::string_view plaintext) const {
  const Entry& cur = keys_.front();
  std::string out(kHeader + kBoxOverhead + plaintext.size(), '\0');
  auto* p = reinterpret_cast<unsigned char*>(out.data());
  p[0] = kMagic;
  p[1] = kVersion;
  std::memcpy(p + 2, cur.id.data(), kKeyIdBytes);
  unsigned char* nonce = p + kHeader;
  randombytes_buf(nonce, crypto_secretbox_NONCEBYTES);
  crypto_secretbox_easy(nonce + crypto_secretbox_NONCEBYTES, reinterpret_cast<const unsigned char*>(plaintext.data()),
                        plaintext.size(), nonce, cur.key.data());
  return out;
}

std::optional<Sealer::KeyId> Sealer::KeyIdOf(std::string_view sealed) {
  if (sealed.size() < kHeader + kBoxOverhead || static_cast<unsigned char>(sealed[0]) != kMagic ||
      static_cast<unsigned char>(sealed[1]) != kVersion)
    return std::nullopt;
  KeyId id{};
  std::memcpy(id.data(), sealed.data() + 2, kKeyIdBytes);
  return id;
}

Result<std::string> Sealer::Open(std::string_view sealed) const {
  if (sealed.size() < kBoxOverhead) return Status::InvalidArgument("sealed blob too short");
  if (auto id = KeyIdOf(sealed)) {
    for (const auto& e : keys_) {
      if (e.id != *id) continue;
      if (auto out = OpenBox(sealed.substr(kHeader), e.key)) return std::move(*out);
    }
  }
  // A legacy blob (or, with chance 2^-16, a legacy blob that happens to start like a current one).
  for (const auto& e : keys_) {
    if (auto out = OpenBox(sealed, e.key)) return std::move(*out);
  }
  return Status::InvalidArgument("sealed blob does not open with any configured key");
}

bool Sealer::IsCurrent(std::string_view sealed) const {
  auto id = KeyIdOf(sealed);
  return id && *id == keys_.front().id && OpenBox(sealed.substr(kHeader), keys_.front().key).has_value();
}

std::string Sealer::KeyedDigestHex(std::string_view data) const {
  InitSodium();
  unsigned char out[32];
  crypto_generichash(out, sizeof out, reinterpret_cast<const unsigned char*>(data.data()), data.size(),
                     keys_.front().key.data(), keys_.front().key.size());
  char hex[2 * sizeof out + 1];
  sodium_bin2hex(hex, sizeof hex, out, sizeof out);
  return hex;
}

std::string Sealer::current_key_id_hex() const {
  char hex[2 * kKeyIdBytes + 1];
  sodium_bin2hex(hex, sizeof hex, keys_.front().id.data(), kKeyIdBytes);
  return hex;
}

std::string Sealer::ResolveKeyPath(const std::string& key_file, const char* credentials_dir) {
  if (!key_file.empty() && key_file[0] == '/') return key_file;
  if (credentials_dir != nullptr && credentials_dir[0] != '\0')
    return std::string(credentials_dir) + "/" + (key_file.empty() ? std::string("privacy.key") : key_file);
  return key_file;
}

}  // namespace freshsync
