#include "hub/auth.h"

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "wire/digest.h"

namespace freshsync::hub {

TokenAuth::TokenAuth(const std::vector<HubToken>& tokens) {
  for (const auto& t : tokens) {
    // The config's validation (common/config.cc) admits only these three names.
    const Role role = t.role == "admin" ? Role::kAdmin : t.role == "writer" ? Role::kWriter : Role::kReader;
    entries_.push_back({t.sha256_hex, Caller{t.name, role}});
  }
}

const char* RoleName(Role role) {
  switch (role) {
    case Role::kReader: return "reader";
    case Role::kWriter: return "writer";
    case Role::kAdmin: return "admin";
  }
  return "reader";
}

AuthOutcome TokenAuth::Check(std::string_view authorization, Role needed, Caller* caller) const {
  // RFC 9110 11.1: the scheme name is case-insensitive ("bearer", "BEARER"); one or more
  // spaces separate it from the token.
  constexpr std::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size() || authorization[kScheme.size()] != ' ') return AuthOutcome::kMissing;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    const char ch = authorization[i];
    if ((ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch) != kScheme[i]) return AuthOutcome::kMissing;
  }
  std::string_view token = authorization.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  if (token.empty()) return AuthOutcome::kMissing;
  const std::string hex = digest::Sha256Hex(token);
  const Entry* found = nullptr;
  // Compare against every entry, without early exit, so timing does not depend on which matched.
  for (const auto& e : entries_) {
    if (e.sha256_hex.size() == hex.size() && CRYPTO_memcmp(e.sha256_hex.data(), hex.data(), hex.size()) == 0) found = &e;
  }
  if (found == nullptr) return AuthOutcome::kInvalid;
  if (found->caller.role < needed) {
    if (caller) *caller = found->caller;
    return AuthOutcome::kForbidden;
  }
  if (caller) *caller = found->caller;
  return AuthOutcome::kOk;
}

std::optional<std::string> PeerSiteId(const SSL* ssl) {
  if (ssl == nullptr) return std::nullopt;
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (cert == nullptr) return std::nullopt;
  // Belt and braces: the handshake already fails on a bad chain, but never trust an
  // unverified certificate's name.
  if (SSL_get_verify_result(ssl) != X509_V_OK) return std::nullopt;
  X509_NAME* subject = X509_get_subject_name(cert);
  if (subject == nullptr) return std::nullopt;
  const int idx = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (idx < 0 || X509_NAME_get_index_by_NID(subject, NID_commonName, idx) >= 0) return std::nullopt;
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx));
  unsigned char* utf8 = nullptr;
  const int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len < 0) return std::nullopt;
  std::string cn(reinterpret_cast<char*>(utf8), static_cast<size_t>(len));
  OPENSSL_free(utf8);
  if (cn.find('\0') != std::string::npos) return std::nullopt;
  return cn;
}

}  // namespace freshsync::hub
