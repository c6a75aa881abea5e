#include "common/tls_policy.h"

namespace freshsync {

bool ApplyServerTlsPolicy(SSL_CTX& ctx) {
  if (SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION) != 1) return false;
  SSL_CTX_set_options(&ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Forward secrecy and AEAD only (TLS 1.3 suites are all of that already).
  return SSL_CTX_set_cipher_list(&ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") == 1;
}

}  // namespace freshsync
