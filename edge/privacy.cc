#include "edge/privacy.h"

#include <fstream>
#include <sstream>

#include <sodium.h>

namespace freshsync::edge {

Result<Sealer> Sealer::LoadKeyFile(const std::string& path) {
  if (sodium_init() < 0) return Status::Internal("libsodium failed to initialise");
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::InvalidArgument("privacy.key_file: cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string data = ss.str();
  std::array<unsigned char, kKeyBytes> key{};
  if (data.size() == kKeyBytes) {
    std::copy(data.begin(), data.end(), key.begin());
  } else {
    while (!data.empty() && std::isspace(static_cast<unsigned char>(data.back()))) data.pop_back();
    while (!data.empty() && std::isspace(static_cast<unsigned char>(data.front()))) data.erase(0, 1);
    size_t bin_len = 0;
    if (data.size() != 2 * kKeyBytes ||
        sodium_hex2bin(key.data(), key.size(), data.data(), data.size(), nullptr, &bin_len, nullptr) != 0 || bin_len != kKeyBytes)
      return Status::InvalidArgument("privacy.key_file: must hold 32 raw bytes or 64 hex digits");
  }
  Sealer s = FromKey(key);
  sodium_memzero(key.data(), key.size());
  return s;
}

Sealer Sealer::FromKey(const std::array<unsigned char, kKeyBytes>& key) {
  if (sodium_init() < 0) std::abort();  // cannot seal without it; impossible on a sane system
  Sealer s;
  s.key_ = key;
  return s;
}

std::string Sealer::Seal(std::string_view plaintext) const {
  std::string out(crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + plaintext.size(), '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(out.data());
  randombytes_buf(nonce, crypto_secretbox_NONCEBYTES);
  crypto_secretbox_easy(nonce + crypto_secretbox_NONCEBYTES, reinterpret_cast<const unsigned char*>(plaintext.data()),
                        plaintext.size(), nonce, key_.data());
  return out;
}

Result<std::string> Sealer::Open(std::string_view sealed) const {
  if (sealed.size() < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES) return Status::InvalidArgument("sealed blob too short");
  const auto* nonce = reinterpret_cast<const unsigned char*>(sealed.data());
  const size_t box_len = sealed.size() - crypto_secretbox_NONCEBYTES;
  std::string out(box_len - crypto_secretbox_MACBYTES, '\0');
  if (crypto_secretbox_open_easy(reinterpret_cast<unsigned char*>(out.data()), nonce + crypto_secretbox_NONCEBYTES, box_len, nonce,
                                 key_.data()) != 0)
    return Status::InvalidArgument("sealed blob does not open with this key");
  return out;
}

std::string Sealer::ResolveKeyPath(const std::string& key_file, const char* credentials_dir) {
  if (!key_file.empty() && key_file[0] == '/') return key_file;
  if (credentials_dir != nullptr && credentials_dir[0] != '\0')
    return std::string(credentials_dir) + "/" + (key_file.empty() ? std::string("privacy.key") : key_file);
  return key_file;
}

}  // namespace freshsync::edge
