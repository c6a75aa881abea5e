// The TLS policy of our server sides, in one place: protocol versions, options and cipher
// suites. hub/server.cc (hubd's HTTPS) and edge/metrics.cc (edged's /metrics over HTTPS) apply
// it before loading the certificates of their config; the TLS stream's fuzz target
// (fuzz/tls_stream_fuzz.cc) applies it so that it fuzzes what hubd offers a peer.
#pragma once

#include <openssl/ssl.h>

namespace freshsync {

// TLS 1.2 and up, no compression, no renegotiation, the server's cipher order, forward secrecy
// and AEAD suites only. False if OpenSSL refused a setting (its error queue says which).
bool ApplyServerTlsPolicy(SSL_CTX& ctx);

}  // namespace freshsync
