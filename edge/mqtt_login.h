// The broker login and TLS settings of config.mqtt, put on a Paho connect-options builder (Paho
// C++) or a Paho C MQTTAsync_connectOptions (the ingest subscribers, edge/mqtt_subscriber.h):
// one home for edged's clients (edge/ingest.cc) and edgectl's dead-letter replay
// (edge/admin.cc), so all reach a TLS broker the same way.
// Thread-safety: a pure function.
#pragma once

#include <MQTTAsync.h>
#include <mqtt/connect_options.h>
#include <mqtt/ssl_options.h>

#include "common/config.h"

namespace freshsync::edge {

inline bool BrokerUsesTls(const MqttConfig& m) {
  return m.uri.rfind("ssl://", 0) == 0 || m.uri.rfind("mqtts://", 0) == 0 || m.uri.rfind("wss://", 0) == 0;
}

// User and password if configured; for ssl://, mqtts:// and wss:// URIs, TLS that verifies the
// broker (against `ca` if set) and presents `cert`/`key` if set.
inline void SetBrokerLogin(mqtt::connect_options_builder& b, const MqttConfig& m) {
  if (!m.username.empty()) b.user_name(m.username).password(m.password);
  if (BrokerUsesTls(m)) {
    auto ssl = mqtt::ssl_options_builder().enable_server_cert_auth(true).verify(true);
    if (!m.ca.empty()) ssl.trust_store(m.ca);
    if (!m.cert.empty()) ssl.key_store(m.cert).private_key(m.key);
    b.ssl(ssl.finalize());
  }
}

// The same on Paho C's structs; `c` and `ssl` point into `m`, which must outlive their use.
inline void SetBrokerLogin(MQTTAsync_connectOptions& c, MQTTAsync_SSLOptions& ssl, const MqttConfig& m) {
  if (!m.username.empty()) {
    c.username = m.username.c_str();
    c.password = m.password.c_str();
  }
  if (BrokerUsesTls(m)) {
    ssl.enableServerCertAuth = 1;
    ssl.verify = 1;
    if (!m.ca.empty()) ssl.trustStore = m.ca.c_str();
    if (!m.cert.empty()) {
      ssl.keyStore = m.cert.c_str();
      ssl.privateKey = m.key.c_str();
    }
    c.ssl = &ssl;
  }
}

}  // namespace freshsync::edge
