#include "common/config.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>
#include <sstream>

#include <toml++/toml.h>

// Header-only (no link dependency on freshsync_wire, which itself depends on common).
#include "wire/routes.h"
#include "wire/site_id.h"

namespace freshsync {
namespace {

// Reads typed keys out of one TOML table, remembering which keys were consumed so that
// anything left over can be reported as unknown. Errors are collected, first one wins.
class TableReader {
 public:
  TableReader(const toml::table& table, std::string prefix) : table_(table), prefix_(std::move(prefix)) {}

  std::string Key(std::string_view name) const { return prefix_.empty() ? std::string(name) : prefix_ + "." + std::string(name); }

  template <typename T>
  void Get(std::string_view name, T& out, bool required = false) {
    seen_.insert(std::string(name));
    const toml::node* node = table_.get(name);
    if (node == nullptr) {
      if (required) Fail(Key(name) + ": required key is missing");
      return;
    }
    if constexpr (std::is_same_v<T, std::string>) {
      if (auto v = node->value<std::string>()) out = *v;
      else Fail(Key(name) + ": must be a string");
    } else if constexpr (std::is_same_v<T, bool>) {
      if (auto v = node->value<bool>()) out = *v;
      else Fail(Key(name) + ": must be true or false");
    } else if constexpr (std::is_floating_point_v<T>) {
      if (node->is_number()) out = static_cast<T>(*node->value<double>());
      else Fail(Key(name) + ": must be a number");
    } else {
      if (auto v = node->value_exact<int64_t>()) {
        if (*v < std::numeric_limits<T>::min() || *v > std::numeric_limits<T>::max()) Fail(Key(name) + ": out of range");
        else out = static_cast<T>(*v);
      } else {
        Fail(Key(name) + ": must be an integer");
      }
    }
  }

  const toml::table* Table(std::string_view name) {
    seen_.insert(std::string(name));
    const toml::node* node = table_.get(name);
    if (node == nullptr) return nullptr;
    if (!node->is_table()) {
      Fail(Key(name) + ": must be a table");
      return nullptr;
    }
    return node->as_table();
  }

  const toml::array* Array(std::string_view name) {
    seen_.insert(std::string(name));
    const toml::node* node = table_.get(name);
    if (node == nullptr) return nullptr;
    if (!node->is_array()) {
      Fail(Key(name) + ": must be an array of tables ([[" + Key(name) + "]])");
      return nullptr;
    }
    return node->as_array();
  }

  // Marks the end of reading: any key not asked for is an error.
  void RejectUnknown() {
    for (const auto& [k, v] : table_) {
      if (!seen_.count(std::string(k.str()))) Fail(Key(k.str()) + ": unknown key");
    }
  }

  void Fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
  }
  void Absorb(const TableReader& child) {
    if (!child.error_.empty()) Fail(child.error_);
  }
  const std::string& error() const { return error_; }

 private:
  const toml::table& table_;
  std::string prefix_;
  std::set<std::string> seen_;
  std::string error_;
};

Result<toml::table> ParseToml(std::string_view text, std::string_view source_name) {
  try {
    return toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << source_name << ":" << e.source().begin.line << ":" << e.source().begin.column << ": " << e.description();
    return Status::InvalidArgument(msg.str());
  }
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot open config file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool StartsWith(const std::string& s, std::string_view p) { return s.rfind(p, 0) == 0; }

void ReadHubLink(TableReader& parent, const toml::table& t, HubLinkConfig& hub) {
  TableReader r(t, "hub");
  r.Get("url", hub.url, true);
  r.Get("ca", hub.ca, true);
  r.Get("cert", hub.cert, true);
  r.Get("key", hub.key, true);
  r.Get("batch_max_records", hub.batch_max_records);
  r.Get("batch_max_bytes", hub.batch_max_bytes);
  r.Get("batch_max_age_ms", hub.batch_max_age_ms);
  r.Get("timeout_ms", hub.timeout_ms);
  r.Get("backoff_initial_ms", hub.backoff_initial_ms);
  r.Get("backoff_max_ms", hub.backoff_max_ms);
  r.Get("probe_interval_ms", hub.probe_interval_ms);
  r.Get("reconcile_interval_s", hub.reconcile_interval_s);
  r.RejectUnknown();
  if (r.error().empty()) {
    if (!StartsWith(hub.url, "https://")) r.Fail("hub.url: must start with https:// (the link is always TLS)");
    else if (hub.batch_max_records < 1 || hub.batch_max_records > 100000) r.Fail("hub.batch_max_records: must be 1..100000");
    else if (hub.batch_max_bytes < 1024) r.Fail("hub.batch_max_bytes: must be at least 1024");
    else if (hub.batch_max_age_ms < 0) r.Fail("hub.batch_max_age_ms: must be >= 0");
    else if (hub.timeout_ms < 100) r.Fail("hub.timeout_ms: must be at least 100");
    else if (hub.backoff_initial_ms < 1 || hub.backoff_max_ms < hub.backoff_initial_ms)
      r.Fail("hub.backoff_max_ms: must be >= hub.backoff_initial_ms >= 1");
    else if (hub.probe_interval_ms < 100) r.Fail("hub.probe_interval_ms: must be at least 100");
    else if (hub.reconcile_interval_s < 1) r.Fail("hub.reconcile_interval_s: must be at least 1");
  }
  parent.Absorb(r);
}

}  // namespace

Result<std::pair<std::string, int>> ParseHostPort(std::string_view value, std::string_view key) {
  const auto colon = value.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return Status::InvalidArgument(std::string(key) + ": must be host:port");
  std::string host(value.substr(0, colon));
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port_text(value.substr(colon + 1));
  int port = 0;
  try {
    size_t used = 0;
    port = std::stoi(port_text, &used);
    if (used != port_text.size()) port = -1;
  } catch (...) {
    port = -1;
  }
  if (port < 0 || port > 65535) return Status::InvalidArgument(std::string(key) + ": port must be 0..65535");
  return std::make_pair(host, port);
}

Result<EdgeConfig> ParseEdgeConfig(std::string_view text, std::string_view source_name) {
  auto parsed = ParseToml(text, source_name);
  if (!parsed.ok()) return parsed.status();
  EdgeConfig c;
  TableReader root(*parsed, "");
  root.Get("site", c.site, true);
  root.Get("max_clock_skew_s", c.max_clock_skew_s);

  if (const toml::table* t = root.Table("mqtt")) {
    TableReader r(*t, "mqtt");
    r.Get("uri", c.mqtt.uri, true);
    r.Get("topic_root", c.mqtt.topic_root);
    r.Get("client_id", c.mqtt.client_id);
    r.Get("username", c.mqtt.username);
    r.Get("password", c.mqtt.password);
    r.Get("ca", c.mqtt.ca);
    r.Get("cert", c.mqtt.cert);
    r.Get("key", c.mqtt.key);
    r.Get("keepalive_s", c.mqtt.keepalive_s);
    r.RejectUnknown();
    root.Absorb(r);
  } else {
    root.Fail("mqtt: required table is missing");
  }

  if (const toml::table* t = root.Table("store")) {
    TableReader r(*t, "store");
    std::string durability = "normal";
    r.Get("path", c.store.path, true);
    r.Get("durability", durability);
    r.Get("busy_timeout_ms", c.store.busy_timeout_ms);
    r.Get("outbox_retention_h", c.store.outbox_retention_h);
    r.Get("quota_mb", c.store.quota_mb);
    r.RejectUnknown();
    if (durability == "normal") c.store.durability = Durability::kNormal;
    else if (durability == "strict") c.store.durability = Durability::kStrict;
    else r.Fail("store.durability: must be \"normal\" or \"strict\", not \"" + durability + "\"");
    root.Absorb(r);
  } else {
    root.Fail("store: required table is missing");
  }

  if (const toml::table* t = root.Table("metrics")) {
    TableReader r(*t, "metrics");
    r.Get("listen", c.metrics_listen);
    r.Get("tls_cert", c.metrics_tls_cert);
    r.Get("tls_key", c.metrics_tls_key);
    r.RejectUnknown();
    if (r.error().empty() && c.metrics_tls_cert.empty() != c.metrics_tls_key.empty())
      r.Fail("metrics.tls_key: tls_cert and tls_key go together");
    root.Absorb(r);
  }
  if (const toml::table* t = root.Table("geofence")) {
    TableReader r(*t, "geofence");
    r.Get("file", c.geofence_file);
    r.Get("hysteresis_m", c.geofence.hysteresis_m);
    r.Get("dwell_s", c.geofence.dwell_s);
    r.Get("max_hdop", c.geofence.max_hdop);
    r.Get("max_speed_kmh", c.geofence.max_speed_kmh);
    r.RejectUnknown();
    // Written as !(x >= lo) so that NaN is refused too.
    if (r.error().empty() && !(c.geofence.hysteresis_m >= 0 && c.geofence.hysteresis_m <= 1000))
      r.Fail("geofence.hysteresis_m: must be 0..1000");
    if (r.error().empty() && (c.geofence.dwell_s < 0 || c.geofence.dwell_s > 86400)) r.Fail("geofence.dwell_s: must be 0..86400");
    if (r.error().empty() && !(c.geofence.max_hdop > 0 && c.geofence.max_hdop <= 100)) r.Fail("geofence.max_hdop: must be > 0 and <= 100");
    if (r.error().empty() && !(c.geofence.max_speed_kmh >= 10 && c.geofence.max_speed_kmh <= 1000))
      r.Fail("geofence.max_speed_kmh: must be 10..1000");
    root.Absorb(r);
  }
  if (const toml::table* t = root.Table("coldchain")) {
    TableReader r(*t, "coldchain");
    if (const toml::array* rules = r.Array("rule")) {
      int i = 0;
      for (const toml::node& node : *rules) {
        const std::string prefix = "coldchain.rule[" + std::to_string(i++) + "]";
        if (!node.is_table()) {
          r.Fail(prefix + ": must be a table");
          continue;
        }
        TableReader rr(*node.as_table(), prefix);
        ColdchainRule rule;
        rr.Get("sensors", rule.sensors, true);
        rr.Get("min_c", rule.min_c, true);
        rr.Get("max_c", rule.max_c, true);
        rr.Get("for_s", rule.for_s);
        rr.RejectUnknown();
        if (rr.error().empty() && (rule.sensors.empty() || std::any_of(rule.sensors.begin(), rule.sensors.end(), [](unsigned char c) { return std::isspace(c) != 0; })))
          rr.Fail(prefix + ".sensors: must be a non-empty glob without spaces");
        if (rr.error().empty() && !(rule.min_c < rule.max_c)) rr.Fail(prefix + ".max_c: must be greater than min_c");
        if (rr.error().empty() && rule.for_s < 0) rr.Fail(prefix + ".for_s: must be >= 0");
        r.Absorb(rr);
        c.coldchain_rules.push_back(rule);
      }
    }
    r.Get("offline_after_s", c.coldchain.offline_after_s);
    r.Get("update_interval_s", c.coldchain.update_interval_s);
    r.Get("raw_retention_h", c.coldchain.raw_retention_h);
    r.Get("rollup_retention_d", c.coldchain.rollup_retention_d);
    r.RejectUnknown();
    if (r.error().empty() && (c.coldchain.raw_retention_h < 1 || c.coldchain.raw_retention_h > 24 * 3650))
      r.Fail("coldchain.raw_retention_h: must be 1..87600");
    if (r.error().empty() && (c.coldchain.rollup_retention_d < 1 || c.coldchain.rollup_retention_d > 3650))
      r.Fail("coldchain.rollup_retention_d: must be 1..3650");
    if (r.error().empty() && (c.coldchain.offline_after_s < 1 || c.coldchain.offline_after_s > 7 * 86400))
      r.Fail("coldchain.offline_after_s: must be 1..604800");
    if (r.error().empty() && (c.coldchain.update_interval_s < 1 || c.coldchain.update_interval_s > 86400))
      r.Fail("coldchain.update_interval_s: must be 1..86400");
    root.Absorb(r);
  }
  if (const toml::table* t = root.Table("hub")) {
    c.hub.emplace();
    ReadHubLink(root, *t, *c.hub);
  }
  if (const toml::table* t = root.Table("downstream")) {
    TableReader r(*t, "downstream");
    r.Get("enabled", c.downstream.enabled);
    r.Get("wait_ms", c.downstream.wait_ms);
    if (const toml::array* kinds = r.Array("kinds")) {
      for (const toml::node& node : *kinds) {
        auto v = node.value<std::string>();
        bool known = false;
        for (int k = 1; v && k < wire::kDownKindCount; ++k) known = known || *v == wire::kDownKindNames[k];
        if (known) c.downstream.kinds.push_back(*v);
        else r.Fail("downstream.kinds: must name order, cancel, catalog, fences, coldchain-rules, escrow-return or escrow-target");
      }
    }
    r.RejectUnknown();
    if (r.error().empty() && (c.downstream.wait_ms < 0 || c.downstream.wait_ms > 25000))
      r.Fail("downstream.wait_ms: must be 0..25000");
    root.Absorb(r);
  }
  if (const toml::table* t = root.Table("escrow")) {
    TableReader r(*t, "escrow");
    for (const auto& [key, node] : *t) {
      const std::string sku(key.str());
      int64_t units = 0;
      r.Get(sku, units, true);
      // A SKU is an identifier on the wire (wire/record_rules.h): 1..128 bytes, no control bytes.
      const bool bad_sku = sku.empty() || sku.size() > 128 ||
                           std::any_of(sku.begin(), sku.end(), [](unsigned char ch) { return ch < 0x20 || ch == 0x7f; });
      if (bad_sku) r.Fail("escrow: \"" + sku + "\" is not a valid sku");
      else if (units < 0 || units > 1000000000000000) r.Fail("escrow." + sku + ": must be 0..1e15");
      else c.escrow[sku] = units;
    }
    root.Absorb(r);
  }
  if (const toml::table* t = root.Table("log")) {
    TableReader r(*t, "log");
    r.Get("level", c.log_level);
    r.RejectUnknown();
    root.Absorb(r);
  }
  if (const toml::table* t = root.Table("privacy")) {
    TableReader r(*t, "privacy");
    r.Get("key_file", c.privacy_key_file);
    if (const toml::array* old = r.Array("old_key_files")) {
      for (const toml::node& node : *old) {
        if (auto v = node.value<std::string>(); v && !v->empty()) c.privacy_old_key_files.push_back(*v);
        else r.Fail("privacy.old_key_files: must be an array of non-empty strings");
      }
    }
    r.RejectUnknown();
    root.Absorb(r);
  }
  if (const toml::table* t = root.Table("audit")) {
    TableReader r(*t, "audit");
    r.Get("signing_key_file", c.audit_signing_key_file);
    r.RejectUnknown();
    root.Absorb(r);
  }
  root.RejectUnknown();
  if (!root.error().empty()) return Status::InvalidArgument(root.error());

  // Cross-field checks, after types are known to be right.
  if (!wire::IsSiteId(c.site)) return Status::InvalidArgument(std::string("site: ") + wire::kSiteIdRule);
  const std::string& uri = c.mqtt.uri;
  if (!(StartsWith(uri, "tcp://") || StartsWith(uri, "ssl://") || StartsWith(uri, "ws://") || StartsWith(uri, "wss://") ||
        StartsWith(uri, "mqtt://") || StartsWith(uri, "mqtts://")))
    return Status::InvalidArgument("mqtt.uri: must start with tcp://, ssl://, ws:// or wss://");
  if (c.mqtt.topic_root.empty() || c.mqtt.topic_root.find_first_of("#+") != std::string::npos || c.mqtt.topic_root.back() == '/')
    return Status::InvalidArgument("mqtt.topic_root: must be non-empty, without '#', '+' or a trailing '/'");
  if (c.mqtt.keepalive_s < 2 || c.mqtt.keepalive_s > 3600) return Status::InvalidArgument("mqtt.keepalive_s: must be 2..3600");
  if ((c.mqtt.cert.empty()) != (c.mqtt.key.empty())) return Status::InvalidArgument("mqtt.key: cert and key go together");
  if (c.mqtt.client_id.empty()) c.mqtt.client_id = "edged-" + c.site;
  if (c.store.path.empty()) return Status::InvalidArgument("store.path: must not be empty");
  if (c.store.busy_timeout_ms < 1 || c.store.busy_timeout_ms * 2 > c.mqtt.keepalive_s * 1000)
    return Status::InvalidArgument("store.busy_timeout_ms: must be >= 1 and at most half of mqtt.keepalive_s");
  if (c.store.outbox_retention_h < 0) return Status::InvalidArgument("store.outbox_retention_h: must be >= 0");
  if (c.store.quota_mb < 0) return Status::InvalidArgument("store.quota_mb: must be >= 0");
  if (!c.metrics_listen.empty()) {
    auto hp = ParseHostPort(c.metrics_listen, "metrics.listen");
    if (!hp.ok()) return hp.status();
  }
  static const std::set<std::string> levels = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  if (!levels.count(c.log_level)) return Status::InvalidArgument("log.level: must be one of trace, debug, info, warn, error, critical, off");
  if (c.max_clock_skew_s < 0) return Status::InvalidArgument("max_clock_skew_s: must be >= 0");
  return c;
}

Result<EdgeConfig> LoadEdgeConfig(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParseEdgeConfig(*text, path);
}

Result<HubConfig> ParseHubConfig(std::string_view text, std::string_view source_name) {
  auto parsed = ParseToml(text, source_name);
  if (!parsed.ok()) return parsed.status();
  HubConfig c;
  TableReader root(*parsed, "");
  root.Get("listen", c.listen, true);
  root.Get("threads", c.threads);
  root.Get("audit_log", c.audit_log);
  if (const toml::table* t = root.Table("tls")) {
    TableReader r(*t, "tls");
    r.Get("ca", c.tls_ca, true);
    r.Get("cert", c.tls_cert, true);
    r.Get("key", c.tls_key, true);
    r.RejectUnknown();
    root.Absorb(r);
  } else {
    root.Fail("tls: required table is missing (the hub only speaks HTTPS)");
  }
  if (const toml::table* t = root.Table("store")) {
    TableReader r(*t, "store");
    r.Get("backend", c.store_backend);
    r.Get("path", c.store_path, c.store_backend == "sqlite");
    r.Get("url", c.store_url, c.store_backend == "postgresql");
    r.RejectUnknown();
    root.Absorb(r);
  } else {
    root.Fail("store: required table is missing");
  }
  if (const toml::table* t = root.Table("limits")) {
    TableReader r(*t, "limits");
    r.Get("max_body_bytes", c.max_body_bytes);
    r.Get("max_decompressed_bytes", c.max_decompressed_bytes);
    r.Get("max_records_per_batch", c.max_records_per_batch);
    r.Get("max_header_bytes", c.max_header_bytes);
    r.Get("max_header_count", c.max_header_count);
    r.Get("max_connections", c.max_connections);
    r.Get("max_connections_per_address", c.max_connections_per_address);
    r.Get("handshake_nice", c.handshake_nice);
    // Deadlines in seconds (fractions allowed), kept in milliseconds.
    const std::pair<const char*, int64_t*> deadlines[] = {{"handshake_timeout_s", &c.handshake_timeout_ms},
                                                          {"head_timeout_s", &c.head_timeout_ms},
                                                          {"body_timeout_s", &c.body_timeout_ms},
                                                          {"idle_timeout_s", &c.idle_timeout_ms},
                                                          {"write_timeout_s", &c.write_timeout_ms}};
    for (const auto& [name, ms] : deadlines) {
      double secs = static_cast<double>(*ms) / 1000.0;
      r.Get(name, secs);
      if (r.error().empty() && !(secs >= 0.1 && secs <= 3600))
        r.Fail(std::string("limits.") + name + ": must be 0.1..3600 seconds");
      *ms = static_cast<int64_t>(secs * 1000.0);
    }
    r.Get("max_decompressed_total_bytes", c.max_decompressed_total_bytes);
    r.Get("site_bytes_per_day", c.site_bytes_per_day);
    r.RejectUnknown();
    root.Absorb(r);
  }
  if (const toml::table* t = root.Table("rate_limits")) {
    TableReader r(*t, "rate_limits");
    r.Get("pull_per_s", c.pull_per_s);
    r.Get("pull_burst", c.pull_burst);
    r.Get("push_per_s", c.push_per_s);
    r.Get("push_burst", c.push_burst);
    r.RejectUnknown();
    // Written as !(x >= lo) so that NaN is refused too.
    const std::pair<const char*, double> values[] = {
        {"pull_per_s", c.pull_per_s}, {"pull_burst", c.pull_burst}, {"push_per_s", c.push_per_s}, {"push_burst", c.push_burst}};
    for (const auto& [name, v] : values)
      if (r.error().empty() && !(v >= 0 && v <= 1e6)) r.Fail(std::string("rate_limits.") + name + ": must be 0..1000000");
    root.Absorb(r);
  }
  if (const toml::array* tokens = root.Array("tokens")) {
    int i = 0;
    for (const toml::node& node : *tokens) {
      const std::string prefix = "tokens[" + std::to_string(i++) + "]";
      if (!node.is_table()) {
        root.Fail(prefix + ": must be a table");
        continue;
      }
      TableReader r(*node.as_table(), prefix);
      HubToken tok;
      r.Get("name", tok.name, true);
      r.Get("role", tok.role, true);
      r.Get("sha256", tok.sha256_hex, true);
      r.RejectUnknown();
      if (r.error().empty() && tok.role != "reader" && tok.role != "writer" && tok.role != "admin")
        r.Fail(prefix + ".role: must be \"reader\", \"writer\" or \"admin\"");
      if (r.error().empty() && (tok.sha256_hex.size() != 64 ||
                                   !std::all_of(tok.sha256_hex.begin(), tok.sha256_hex.end(), [](char ch) { return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'); })))
        r.Fail(prefix + ".sha256: must be 64 lower-case hex digits (sha256sum of the token)");
      root.Absorb(r);
      c.tokens.push_back(tok);
    }
  }
  if (const toml::table* t = root.Table("log")) {
    TableReader r(*t, "log");
    r.Get("level", c.log_level);
    r.RejectUnknown();
    root.Absorb(r);
  }
  if (const toml::table* t = root.Table("downstream")) {
    TableReader r(*t, "downstream");
    r.Get("retention_h", c.downstream_retention_h);
    r.RejectUnknown();
    if (r.error().empty() && (c.downstream_retention_h < 1 || c.downstream_retention_h > 24 * 3650))
      r.Fail("downstream.retention_h: must be 1..87600");
    root.Absorb(r);
  }
  if (const toml::table* t = root.Table("retention")) {
    TableReader r(*t, "retention");
    r.Get("telemetry_days", c.telemetry_days);
    r.RejectUnknown();
    if (r.error().empty() && (c.telemetry_days < 0 || c.telemetry_days > 3650))
      r.Fail("retention.telemetry_days: must be 0 (keep everything) .. 3650");
    root.Absorb(r);
  }
  if (const toml::table* t = root.Table("privacy")) {
    TableReader r(*t, "privacy");
    r.Get("key_file", c.privacy_key_file);
    r.RejectUnknown();
    root.Absorb(r);
  }
  if (const toml::table* t = root.Table("fanout")) {
    TableReader f(*t, "fanout");
    if (const toml::table* a = f.Table("amqp")) {
      TableReader r(*a, "fanout.amqp");
      r.Get("url", c.amqp_url, true);
      r.Get("exchange", c.amqp_exchange);
      r.Get("ca_file", c.amqp_ca_file);
      r.Get("cert_file", c.amqp_cert_file);
      r.Get("key_file", c.amqp_key_file);
      r.RejectUnknown();
      // The full URL check is rabbitmq-c's parser, at hubd's start (hub::CheckAmqpUrl).
      const bool tls = c.amqp_url.rfind("amqps://", 0) == 0;
      if (r.error().empty() && !tls && c.amqp_url.rfind("amqp://", 0) != 0)
        r.Fail("fanout.amqp.url: must start with amqp:// or amqps://");
      if (r.error().empty() && c.amqp_exchange.empty()) r.Fail("fanout.amqp.exchange: must not be empty");
      // TLS verifies the broker against the operator's CA, never against nothing.
      if (r.error().empty() && tls && c.amqp_ca_file.empty())
        r.Fail("fanout.amqp.ca_file: required with amqps:// (the CA of the broker's certificate)");
      if (r.error().empty() && !tls && !(c.amqp_ca_file.empty() && c.amqp_cert_file.empty() && c.amqp_key_file.empty()))
        r.Fail("fanout.amqp.ca_file: ca_file, cert_file and key_file need an amqps:// url");
      if (r.error().empty() && c.amqp_cert_file.empty() != c.amqp_key_file.empty())
        r.Fail(std::string("fanout.amqp.") + (c.amqp_cert_file.empty() ? "cert_file" : "key_file") +
               ": cert_file and key_file go together");
      f.Absorb(r);
    }
    f.RejectUnknown();
    root.Absorb(f);
  }
  if (const toml::table* t = root.Table("notify")) {
    TableReader n(*t, "notify");
    n.Get("offline_after_s", c.notify_offline_after_s);
    n.Get("backlog_age_s", c.notify_backlog_age_s);
    n.Get("retry_min_ms", c.notify_retry_min_ms);
    n.Get("retry_max_ms", c.notify_retry_max_ms);
    n.Get("poll_ms", c.notify_poll_ms);
    if (n.error().empty() && (c.notify_offline_after_s < 1 || c.notify_backlog_age_s < 1))
      n.Fail("notify.offline_after_s, notify.backlog_age_s: must be at least 1");
    if (n.error().empty() && (c.notify_retry_min_ms < 1 || c.notify_retry_max_ms < c.notify_retry_min_ms))
      n.Fail("notify.retry_min_ms: must be at least 1 and at most notify.retry_max_ms");
    if (n.error().empty() && (c.notify_poll_ms < 10 || c.notify_poll_ms > 60000))
      n.Fail("notify.poll_ms: must be 10..60000");
    if (const toml::array* hooks = n.Array("webhook")) {
      int i = 0;
      for (const toml::node& node : *hooks) {
        const std::string prefix = "notify.webhook[" + std::to_string(i++) + "]";
        if (!node.is_table()) {
          n.Fail(prefix + ": must be a table");
          continue;
        }
        TableReader r(*node.as_table(), prefix);
        HubWebhook w;
        r.Get("name", w.name, true);
        r.Get("url", w.url, true);
        r.Get("secret", w.secret, true);
        r.Get("ca_file", w.ca_file);
        r.Get("max_attempts", w.max_attempts);
        r.Get("max_age_s", w.max_age_s);
        r.Get("timeout_ms", w.timeout_ms);
        if (const toml::array* ev = r.Array("events")) {
          for (const toml::node& e : *ev) {
            if (auto v = e.value<std::string>()) w.events.push_back(*v);
            else r.Fail(prefix + ".events: must be an array of strings");
          }
        } else if (r.error().empty()) {
          r.Fail(prefix + ".events: required key is missing");
        }
        r.RejectUnknown();
        if (r.error().empty() && w.secret.empty()) r.Fail(prefix + ".secret: must not be empty");
        if (r.error().empty() && (w.max_attempts < 1 || w.max_age_s < 1 || w.timeout_ms < 100))
          r.Fail(prefix + ": max_attempts and max_age_s must be at least 1, timeout_ms at least 100");
        for (const HubWebhook& other : c.webhooks) {
          if (r.error().empty() && other.name == w.name) r.Fail(prefix + ".name: \"" + w.name + "\" is used twice");
        }
        n.Absorb(r);
        c.webhooks.push_back(std::move(w));
      }
    }
    n.RejectUnknown();
    root.Absorb(n);
  }
  if (const toml::table* t = root.Table("console")) {
    TableReader r(*t, "console");
    r.Get("tiles_url", c.console_tiles_url);
    r.RejectUnknown();
    // The browser fetches tiles itself (the page's CSP allows that one origin): http(s) only,
    // and the three placeholders, or the map would ask for one tile everywhere.
    const std::string& u = c.console_tiles_url;
    if (r.error().empty() && !u.empty() &&
        ((u.rfind("https://", 0) != 0 && u.rfind("http://", 0) != 0) || u.find("{z}") == std::string::npos ||
         u.find("{x}") == std::string::npos || u.find("{y}") == std::string::npos))
      r.Fail("console.tiles_url: must be an http(s) URL with {z}, {x} and {y}");
    root.Absorb(r);
  }
  if (const toml::table* t = root.Table("stream")) {
    TableReader r(*t, "stream");
    double heartbeat_s = static_cast<double>(c.stream_heartbeat_ms) / 1000.0;
    double poll_s = static_cast<double>(c.stream_poll_ms) / 1000.0;
    double stall_s = static_cast<double>(c.stream_stall_ms) / 1000.0;
    r.Get("heartbeat_s", heartbeat_s);
    r.Get("poll_s", poll_s);
    r.Get("stall_s", stall_s);
    r.Get("buffer_bytes", c.stream_buffer_bytes);
    r.Get("max_clients", c.stream_max_clients);
    r.RejectUnknown();
    // Written as !(x >= lo) so that NaN is refused too.
    if (r.error().empty() && !(heartbeat_s >= 0.05 && heartbeat_s <= 15)) r.Fail("stream.heartbeat_s: must be 0.05..15 seconds");
    if (r.error().empty() && !(poll_s >= 0.01 && poll_s <= 10)) r.Fail("stream.poll_s: must be 0.01..10 seconds");
    if (r.error().empty() && !(stall_s >= 0.1 && stall_s <= 600)) r.Fail("stream.stall_s: must be 0.1..600 seconds");
    if (r.error().empty() && (c.stream_buffer_bytes < 4096 || c.stream_buffer_bytes > (int64_t{64} << 20)))
      r.Fail("stream.buffer_bytes: must be 4096..67108864");
    if (r.error().empty() && (c.stream_max_clients < 1 || c.stream_max_clients > 1000000))
      r.Fail("stream.max_clients: must be 1..1000000");
    c.stream_heartbeat_ms = static_cast<int64_t>(heartbeat_s * 1000.0);
    c.stream_poll_ms = static_cast<int64_t>(poll_s * 1000.0);
    c.stream_stall_ms = static_cast<int64_t>(stall_s * 1000.0);
    root.Absorb(r);
  }
  if (const toml::table* t = root.Table("customer_stream")) {
    TableReader r(*t, "customer_stream");
    double ttl_s = static_cast<double>(c.customer_stream_token_ttl_ms) / 1000.0;
    r.Get("key_file", c.customer_stream_key_file, true);
    r.Get("token_ttl_s", ttl_s);
    r.RejectUnknown();
    if (r.error().empty() && !(ttl_s >= 1 && ttl_s <= 86400)) r.Fail("customer_stream.token_ttl_s: must be 1..86400 seconds");
    c.customer_stream_token_ttl_ms = static_cast<int64_t>(ttl_s * 1000.0);
    root.Absorb(r);
  }
  root.RejectUnknown();
  if (!root.error().empty()) return Status::InvalidArgument(root.error());
  auto hp = ParseHostPort(c.listen, "listen");
  if (!hp.ok()) return hp.status();
  if (c.max_body_bytes < 1024) return Status::InvalidArgument("limits.max_body_bytes: must be at least 1024");
  if (c.max_decompressed_bytes < c.max_body_bytes) return Status::InvalidArgument("limits.max_decompressed_bytes: must be >= limits.max_body_bytes");
  if (c.max_records_per_batch < 1) return Status::InvalidArgument("limits.max_records_per_batch: must be >= 1");
  // One request at the per-request cap must always fit, or such a batch would get 503 for ever:
  // its worst case is a 16 MiB decoder window, zstd's buffers and about twice the cap for the
  // output string's growth (hub::DecompressWorstCase); 20 MiB covers all but the output.
  const int64_t one_request = 2 * c.max_decompressed_bytes + (20 << 20);
  if (c.max_decompressed_total_bytes == 0) c.max_decompressed_total_bytes = one_request;
  if (c.max_decompressed_total_bytes < one_request)
    return Status::InvalidArgument("limits.max_decompressed_total_bytes: must be 0 or >= 2 x limits.max_decompressed_bytes + 20 MiB (" +
                                   std::to_string(one_request) + "), so that one batch at the cap always fits");
  if (c.site_bytes_per_day < 0) return Status::InvalidArgument("limits.site_bytes_per_day: must be >= 0 (0 = unlimited)");
  if (c.threads < 1 || c.threads > 256) return Status::InvalidArgument("threads: must be 1..256");
  if (c.max_header_bytes < 1024 || c.max_header_bytes > (1 << 20))
    return Status::InvalidArgument("limits.max_header_bytes: must be 1024..1048576");
  if (c.max_header_count < 8 || c.max_header_count > 10000) return Status::InvalidArgument("limits.max_header_count: must be 8..10000");
  if (c.max_connections < 1 || c.max_connections > 1000000) return Status::InvalidArgument("limits.max_connections: must be 1..1000000");
  if (c.max_connections_per_address < 1 || c.max_connections_per_address > c.max_connections)
    return Status::InvalidArgument("limits.max_connections_per_address: must be 1..limits.max_connections");
  if (c.handshake_nice < 0 || c.handshake_nice > 19)
    return Status::InvalidArgument("limits.handshake_nice: must be 0..19 (a nice increment over hubd's own; 0 = no lower priority)");
  if (c.store_backend != "sqlite" && c.store_backend != "postgresql")
    return Status::InvalidArgument("store.backend: must be \"sqlite\" or \"postgresql\", not \"" + c.store_backend + "\"");
  if (c.store_backend == "sqlite" && c.store_path.empty()) return Status::InvalidArgument("store.path: must not be empty");
  if (c.store_backend == "postgresql" && c.store_url.empty())
    return Status::InvalidArgument("store.url: must not be empty (a libpq connection string)");
  if (c.pull_burst == 0) c.pull_burst = std::max(1.0, 2 * c.pull_per_s);
  if (c.push_burst == 0) c.push_burst = std::max(1.0, 2 * c.push_per_s);
  if (c.pull_burst < 1) return Status::InvalidArgument("rate_limits.pull_burst: must be >= 1");
  if (c.push_burst < 1) return Status::InvalidArgument("rate_limits.push_burst: must be >= 1");
  return c;
}

Result<HubConfig> LoadHubConfig(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParseHubConfig(*text, path);
}

}  // namespace freshsync
