// Configuration of edged and hubd: TOML files parsed with toml++, then validated.
//
// Contract: Load*Config returns either a fully validated config, or kInvalidArgument whose
// message names the offending key and the reason, e.g. "mqtt.uri: must start with tcp://,
// ssl://, ws:// or wss://". Unknown keys are refused too (a typo must not silently fall back
// to a default). Keys and defaults are documented in docs/operations.md.
// Thread-safety: the structs are plain values.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace freshsync {

enum class Durability { kNormal, kStrict };

struct MqttConfig {
  std::string uri;
  std::string topic_root = "fs";
  std::string client_id;          // default "edged-<site>"
  std::string username;
  std::string password;
  std::string ca;                 // TLS (ssl:// uris)
  std::string cert;
  std::string key;
  int keepalive_s = 20;
};

struct StoreConfig {
  std::string path;
  Durability durability = Durability::kNormal;
  int busy_timeout_ms = 2000;     // well under the MQTT keepalive: a stuck lock must not drop us
  int outbox_retention_h = 72;
  int64_t quota_mb = 0;           // 0: no quota
};

struct ColdchainRule {
  std::string sensors;            // glob on the sensor id
  double min_c = 0;
  double max_c = 0;
  int for_s = 300;
};

// Tuning of the geofence engine (edge/geofence), keys of [geofence]. Defaults suit trucks with
// consumer-grade GPS (a few metres of noise, 1 Hz fixes) and fences of 50 m radius or more.
struct GeofenceSettings {
  double hysteresis_m = 20;       // enter: inside by this much; exit: outside by this much
  int dwell_s = 30;               // the condition must hold this long (message time)
  double max_hdop = 5.0;          // fixes with a worse (larger) hdop are ignored
  double max_speed_kmh = 150;     // fixes implying a faster move from the last good fix are ignored
};

// Tuning of the cold-chain engine (edge/coldchain), keys of [coldchain] beside [[coldchain.rule]].
struct ColdchainSettings {
  int offline_after_s = 600;      // silence before an offline alert (at least 5 usual intervals)
  int update_interval_s = 60;     // an open alert's min/max updates are emitted at most this often
  int raw_retention_h = 48;       // edged keeps raw climate readings this long (message time)
  int rollup_retention_d = 90;    // and one-minute rollups this long
};

struct HubLinkConfig {
  std::string url;
  std::string ca;
  std::string cert;
  std::string key;
  int batch_max_records = 5000;
  int64_t batch_max_bytes = 4 << 20;
  int batch_max_age_ms = 100;
  int timeout_ms = 10000;
  int backoff_initial_ms = 200;
  int backoff_max_ms = 30000;
  int probe_interval_ms = 500;  // retry cadence while nothing listens at the hub (connection refused)
  int reconcile_interval_s = 300;
};

// [downstream]: the pull of HQ's commands (cloud-sync/downstream_puller.h). On by default when
// [hub] is set; `kinds` overrides the capability set (all kinds this release applies), e.g.
// to act as an older site in tests.
struct DownstreamConfig {
  bool enabled = true;
  std::vector<std::string> kinds;  // empty: every kind (wire::kDownKindNames)
  int wait_ms = 20000;             // long-poll hold asked of the hub (it caps at 25,000)
};

struct EdgeConfig {
  std::string site;
  MqttConfig mqtt;
  StoreConfig store;
  std::string metrics_listen;     // "" = no metrics endpoint
  std::string metrics_tls_cert;   // both set: the metrics endpoint speaks HTTPS (TLS 1.2+)
  std::string metrics_tls_key;
  std::string geofence_file;      // "" = no geofences
  GeofenceSettings geofence;
  std::vector<ColdchainRule> coldchain_rules;
  ColdchainSettings coldchain;
  std::optional<HubLinkConfig> hub;
  DownstreamConfig downstream;
  // [escrow] "sku" = units: the allotment per SKU this site grants HQ (docs/escrow.md).
  std::map<std::string, int64_t> escrow;
  std::string log_level = "info";
  std::string privacy_key_file;   // key for customer data at rest (new data is sealed with it)
  std::vector<std::string> privacy_old_key_files;  // earlier keys, to open data not yet re-sealed
  // [audit] signing_key_file: the site's Ed25519 key that seals the cold-chain audit chain
  // (audit/chain.h), created 0600 at the first start; "" = the chain is kept but not sealed.
  std::string audit_signing_key_file;
  int max_clock_skew_s = 0;       // 0: accept any device timestamp
};

struct HubToken {
  std::string name;
  std::string role;               // "reader" < "writer" < "admin" (each can do what the one before can)
  std::string sha256_hex;         // lower-case hex of SHA-256(token)
};

// One [[notify.webhook]] (hub/notify/notifier.h, docs/operations.md "Webhooks"). The event
// names and the URL's loopback rule are checked at hubd's start (hub::CheckWebhook), where the
// notifier that defines them lives.
struct HubWebhook {
  std::string name;                  // the lease, cursor and dead-letter list are per name
  std::string url;
  std::vector<std::string> events;
  std::string secret;                // key of X-FreshSync-Signature (HMAC-SHA256 of the body)
  std::string ca_file;               // https: CAs that verify the receiver ("" = the system's)
  int max_attempts = 10;             // then the delivery goes to the dead-letter list
  int64_t max_age_s = 86400;         // or once it has been retried this long
  int64_t timeout_ms = 10000;        // one attempt, connect to last byte of the answer
};

struct HubConfig {
  std::string listen;             // host:port
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  // [store]: backend "sqlite" (the default: store_path, one hubd) or "postgresql" (store_url,
  // any libpq connection string; several hubd replicas may share the database).
  std::string store_backend = "sqlite";
  std::string store_path;
  std::string store_url;
  std::vector<HubToken> tokens;
  int64_t max_body_bytes = 16 << 20;
  int64_t max_decompressed_bytes = 64 << 20;
  int max_records_per_batch = 100000;
  // Process-wide cap on memory held by decompression across all concurrent batch requests
  // (hub/decompress_budget.h); 0 = 2 x max_decompressed_bytes + 20 MiB, the least that always
  // fits one worst-case request (also the minimum accepted). Over it: 503 + Retry-After.
  int64_t max_decompressed_total_bytes = 0;
  // Bytes a site may add to the store per UTC day (records held plus refused-record rows);
  // 0 = unlimited. Over it: 429 + Retry-After, nothing written. Bounds what a stolen site
  // certificate can write to the hub's disk.
  int64_t site_bytes_per_day = int64_t{2} << 30;
  int threads = 8;
  // [limits], HTTP transport (hub/http/http.h): what one client may hold, and for how long.
  int64_t max_header_bytes = 16 << 10;     // request line + headers; 431 beyond
  int max_header_count = 100;              // header fields; 431 beyond
  int max_connections = 10000;             // in all; more are closed at accept
  int max_connections_per_address = 256;   // per peer IP address
  // How much lower the TLS handshake threads run than the request threads: a nice increment
  // over hubd's own, 0..19 (0: the same priority). hub/http/http.h says why.
  int handshake_nice = 10;
  int64_t handshake_timeout_ms = 10000;    // TCP accept to finished TLS handshake
  int64_t head_timeout_ms = 10000;         // first byte to last header of a request
  int64_t body_timeout_ms = 60000;         // the whole body
  int64_t idle_timeout_ms = 60000;         // keep-alive: between two requests
  int64_t write_timeout_ms = 30000;        // an answer (or a stream's chunk) to be taken by the client
  std::string audit_log;          // "" = audit rows in the store only
  // [rate_limits]: token buckets, per HQ bearer token and per site; per_s 0 = unlimited,
  // burst 0 = twice per_s (at least 1).
  double pull_per_s = 0;
  double pull_burst = 0;
  double push_per_s = 0;
  double push_burst = 0;
  std::string log_level = "info";
  // [fanout.amqp]: relay of the change feed to RabbitMQ (hub/relay/amqp_relay.h); "" = none.
  std::string amqp_url;
  std::string amqp_exchange = "freshsync.changes";
  // [notify] and [[notify.webhook]]: HQ notifications by webhook (hub/notify/notifier.h).
  std::vector<HubWebhook> webhooks;
  int64_t notify_offline_after_s = 900;   // site.offline: no batch from a site for this long
  int64_t notify_backlog_age_s = 3600;    // site.backlog: HQ commands waiting at the hub this long
  int64_t notify_retry_min_ms = 1000;     // backoff between attempts: doubles, jittered, capped
  int64_t notify_retry_max_ms = 300000;
  int64_t notify_poll_ms = 500;           // feed and site-health polling once caught up
  // amqps:// only: the CA that must have signed the broker's certificate (required), and an
  // optional client certificate and key (both or neither) for a broker that asks for one.
  std::string amqp_ca_file;
  std::string amqp_cert_file;
  std::string amqp_key_file;
  // [console]: the web console at /console/ (docs/console.md). tiles_url: a map tile URL
  // template with {z}, {x} and {y} ("" = the map draws without tiles).
  std::string console_tiles_url;
  // [stream]: the live SSE stream, GET /v1/stream (hub/stream.h).
  int64_t stream_heartbeat_ms = 15000;          // ": hb" comment when a client got nothing this long
  int64_t stream_buffer_bytes = 1 << 20;        // per client: queued + the write in flight
  int64_t stream_stall_ms = 10000;              // a client with a full buffer that took nothing this long is cut off
  int64_t stream_poll_ms = 100;                 // feed read for other replicas' commits
  int stream_max_clients = 5000;                // more get 503 + Retry-After
  // [customer_stream]: per-order streams behind HMAC tokens (hub/stream_token.h); "" = off.
  std::string customer_stream_key_file;
  int64_t customer_stream_token_ttl_ms = 15 * 60 * 1000;
  // [downstream] (docs/sync-protocol.md, "Downstream"): delivered commands older than this are
  // trimmed from the per-site logs; pending ones never are.
  int downstream_retention_h = 72;
  // [retention] telemetry_days: position history older than this many days is removed
  // (HubStore::MaintainTelemetry; PostgreSQL drops whole day partitions). 0 = keep everything.
  int telemetry_days = 90;
  // [privacy] key_file: the hub's key that seals HQ orders' customer data while they wait in
  // the downstream log (privacy/sealer.h); "" = none, and an order with a customer is refused.
  std::string privacy_key_file;
};

Result<EdgeConfig> LoadEdgeConfig(const std::string& path);
Result<EdgeConfig> ParseEdgeConfig(std::string_view toml_text, std::string_view source_name = "config");
Result<HubConfig> LoadHubConfig(const std::string& path);
Result<HubConfig> ParseHubConfig(std::string_view toml_text, std::string_view source_name = "config");

// "host:port" -> (host, port), kInvalidArgument naming `key` otherwise.
Result<std::pair<std::string, int>> ParseHostPort(std::string_view value, std::string_view key);

}  // namespace freshsync
