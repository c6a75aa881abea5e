// The broker login and TLS settings of config.mqtt, put on a Paho connect-options builder: one
// home for edged's clients (edge/ingest.cc) and edgectl's dead-letter replay (edge/admin.cc),
// so both reach a TLS broker the same way.
// Thread-safety: a pure function.
#pragma once

#include <mqtt/connect_options.h>
#include <mqtt/ssl_options.h>

#include "common/config.h"

namespace freshsync::edge {

// User and password if configured; for ssl://, mqtts:// and wss:// URIs, TLS that verifies the
// broker (against `ca` if set) and presents `cert`/`key` if set.
inline void SetBrokerLogin(mqtt::connect_options_builder& b, const MqttConfig& m) {
  if (!m.username.empty()) b.user_name(m.username).password(m.password);
  if (m.uri.rfind("ssl://", 0) == 0 || m.uri.rfind("mqtts://", 0) == 0 || m.uri.rfind("wss://", 0) == 0) {
    auto ssl = mqtt::ssl_options_builder().enable_server_cert_auth(true).verify(true);
    if (!m.ca.empty()) ssl.trust_store(m.ca);
    if (!m.cert.empty()) ssl.key_store(m.cert).private_key(m.key);
    b.ssl(ssl.finalize());
  }
}

}  // namespace freshsync::edge
