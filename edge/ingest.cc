#include "edge/ingest.h"

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <chrono>

namespace freshsync::edge {

// Completion of a client's subscriptions: readiness for logs, tests and sd_notify.
class SubscribeListener : public mqtt::iaction_listener {
 public:
  SubscribeListener(Ingest* ingest, bool telemetry) : ingest_(ingest), telemetry_(telemetry) {}
  void on_success(const mqtt::token&) override { ingest_->OnSubscribed(telemetry_); }
  void on_failure(const mqtt::token& tok) override {
    spdlog::error("ingest: {} subscription under {}/ refused (rc {})", telemetry_ ? "telemetry" : "main",
                  ingest_->config_.mqtt.topic_root, tok.get_return_code());
  }

 private:
  Ingest* ingest_;
  bool telemetry_;
};

namespace {
// Until this version the main client subscribed to {root}/#. Its persistent session keeps
// that subscription, so it is dropped once the telemetry client holds its own (not before:
// telemetry published in between would be queued for nobody).
std::string LegacyFilter(const std::string& root) { return root + "/#"; }
// Telemetry topics: the telemetry client's. {root}/vehicles/# and {root}/sensors/# rather
// than the exact gps/climate patterns, so that a malformed topic there is still dead-lettered.
std::vector<std::string> TelemetryFilters(const std::string& root) { return {root + "/vehicles/#", root + "/sensors/#"}; }
// Everything else edged consumes: the main client's. {root}/+ keeps single-level unknown
// topics dead-lettered; own outputs ({root}/events/#, {root}/alerts/#) are no longer echoed.
std::vector<std::string> MainFilters(const std::string& root) { return {root + "/stock/#", root + "/orders/#", root + "/+"}; }
}  // namespace

Ingest::Ingest(const EdgeConfig& config, EdgeStore& store, Clock& clock)
    : config_(config),
      store_(store),
      clock_(clock),
      sub_listener_(std::make_unique<SubscribeListener>(this, false)),
      telemetry_sub_listener_(std::make_unique<SubscribeListener>(this, true)) {}

Ingest::~Ingest() { Stop(); }

Status Ingest::Start() {
  const auto& m = config_.mqtt;
  try {
    // Offline buffering is for our own notifications (dead letters) only, and bounded.
    auto create = mqtt::create_options_builder()
                      .mqtt_version(MQTTVERSION_3_1_1)
                      .send_while_disconnected(true, true)
                      .max_buffered_messages(10000)
                      .delete_oldest_messages(true)
                      .finalize();
    client_ = std::make_unique<mqtt::async_client>(m.uri, m.client_id, create, nullptr);
    telemetry_ = std::make_unique<mqtt::async_client>(m.uri, m.client_id + "-telemetry", create, nullptr);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("mqtt.uri: ") + e.what());
  }
  auto on_message = [this](mqtt::const_message_ptr msg) {
    const auto& payload = msg->get_payload_ref();
    HandleMessage(msg->get_topic(), std::string_view(payload.data(), payload.size()));
  };
  client_->set_message_callback(on_message);
  telemetry_->set_message_callback(on_message);
  client_->set_connected_handler([this](const std::string&) { OnConnected(); });
  telemetry_->set_connected_handler([this](const std::string&) { OnTelemetryConnected(); });
  client_->set_connection_lost_handler([this](const std::string& cause) {
    subscribed_ = false;
    subscribed_logged_ = false;
    spdlog::warn("ingest: connection to {} lost ({}); reconnecting", config_.mqtt.uri, cause.empty() ? "no reason given" : cause);
  });
  telemetry_->set_connection_lost_handler([this](const std::string& cause) {
    telemetry_subscribed_ = false;
    subscribed_logged_ = false;
    spdlog::warn("ingest: telemetry connection to {} lost ({}); reconnecting", config_.mqtt.uri,
                 cause.empty() ? "no reason given" : cause);
  });
  connector_ = std::thread([this] { ConnectLoop(false); });
  telemetry_connector_ = std::thread([this] { ConnectLoop(true); });
  return Status::Ok();
}

void Ingest::ConnectLoop(bool telemetry) {
  const auto& m = config_.mqtt;
  mqtt::async_client& client = telemetry ? *telemetry_ : *client_;
  auto stop = [&] { return stopping_.load() || (telemetry && telemetry_paused_.load()); };
  auto b = mqtt::connect_options_builder()
               // Paho C++ 1.2 can silently fall back to 3.1 after a socket error: pin the version.
               .mqtt_version(MQTTVERSION_3_1_1)
               .clean_session(false)  // persistent session: the broker queues while we are down
               .keep_alive_interval(std::chrono::seconds(m.keepalive_s))
               .connect_timeout(std::chrono::seconds(5))
               .automatic_reconnect(std::chrono::seconds(1), std::chrono::seconds(30));
  if (!m.username.empty()) b.user_name(m.username).password(m.password);
  if (m.uri.rfind("ssl://", 0) == 0 || m.uri.rfind("mqtts://", 0) == 0 || m.uri.rfind("wss://", 0) == 0) {
    auto ssl = mqtt::ssl_options_builder().enable_server_cert_auth(true).verify(true);
    if (!m.ca.empty()) ssl.trust_store(m.ca);
    if (!m.cert.empty()) ssl.key_store(m.cert).private_key(m.key);
    b.ssl(ssl.finalize());
  }
  const auto opts = b.finalize();
  // Paho's automatic reconnect only starts after a first success; until then we retry here.
  int backoff_ms = 200;
  while (!stop()) {
    try {
      auto tok = client.connect(opts);
      if (tok->wait_for(std::chrono::seconds(10)) && client.is_connected()) return;
    } catch (const std::exception& e) {
      spdlog::warn("ingest: {} client cannot connect to {}: {}; retrying in {} ms", telemetry ? "telemetry" : "main", m.uri, e.what(),
                   backoff_ms);
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), stop);
    backoff_ms = std::min(backoff_ms * 2, 10000);
  }
}

namespace {
void Subscribe(mqtt::async_client& client, const std::vector<std::string>& filters, mqtt::iaction_listener& listener) {
  // Re-subscribing is harmless with a persistent session and covers a broker that lost it.
  // {root}/orders/# also brings back the order states we publish; HandleMessage skips those
  // topics (MQTT 3.1.1 has no no-local option).
  try {
    auto topics = mqtt::string_collection::create(filters);
    client.subscribe(topics, mqtt::iasync_client::qos_collection(filters.size(), 1), nullptr, listener);
  } catch (const std::exception& e) {
    spdlog::error("ingest: subscribe to {} failed: {}", filters.front(), e.what());
  }
}
}  // namespace

void Ingest::OnConnected() { Subscribe(*client_, MainFilters(config_.mqtt.topic_root), *sub_listener_); }

void Ingest::OnTelemetryConnected() {
  if (telemetry_paused_) {
    // Paho's automatic reconnect came back while we are paused (the link was down when
    // PauseTelemetry ran, so there was no connection to close): close this one.
    try {
      telemetry_->disconnect();
    } catch (const std::exception& e) {
      spdlog::warn("ingest: telemetry disconnect: {}", e.what());
    }
    return;
  }
  Subscribe(*telemetry_, TelemetryFilters(config_.mqtt.topic_root), *telemetry_sub_listener_);
}

void Ingest::OnSubscribed(bool telemetry) {
  (telemetry ? telemetry_subscribed_ : subscribed_) = true;
  if (telemetry_subscribed_ && subscribed_ && !legacy_dropped_.exchange(true)) {
    try {
      // The collection form: the token keeps the filter alive until the UNSUBSCRIBE is sent
      // (with a temporary string, Paho 1.2 sent a malformed packet after a reconnect).
      client_->unsubscribe(mqtt::string_collection::create({LegacyFilter(config_.mqtt.topic_root)}));
    } catch (const std::exception& e) {
      legacy_dropped_ = false;
      spdlog::warn("ingest: unsubscribe from {}: {}", LegacyFilter(config_.mqtt.topic_root), e.what());
    }
  }
  // One "subscribed to" line per time both are up: tests and operators wait for it.
  if (subscribed() && !subscribed_logged_.exchange(true))
    spdlog::info("ingest: subscribed to {}/{{stock,orders,+}} and, {}, {}/{{vehicles,sensors}}/# (QoS 1)", config_.mqtt.topic_root,
                 telemetry_paused_ ? "paused by the disk quota" : "as " + config_.mqtt.client_id + "-telemetry",
                 config_.mqtt.topic_root);
}

void Ingest::PauseTelemetry() {
  std::lock_guard<std::mutex> guard(pause_mu_);
  if (stopping_ || telemetry_paused_.exchange(true) || !telemetry_) return;
  cv_.notify_all();  // a connect loop in progress gives up
  if (telemetry_connector_.joinable()) telemetry_connector_.join();
  telemetry_subscribed_ = false;
  try {
    // The session stays (clean_session=false): the broker queues gps/climate for it.
    if (telemetry_->is_connected()) telemetry_->disconnect(std::chrono::milliseconds(2000))->wait_for(std::chrono::seconds(5));
  } catch (const std::exception& e) {
    spdlog::warn("ingest: telemetry disconnect: {}", e.what());
  }
  spdlog::warn("ingest: telemetry paused: gps and climate are no longer acknowledged; the broker keeps them");
}

void Ingest::ResumeTelemetry() {
  std::lock_guard<std::mutex> guard(pause_mu_);
  if (stopping_ || !telemetry_paused_.exchange(false) || !telemetry_) return;
  if (telemetry_connector_.joinable()) telemetry_connector_.join();
  telemetry_connector_ = std::thread([this] { ConnectLoop(true); });
  spdlog::info("ingest: telemetry resumed: reconnecting for what the broker kept");
}

void Ingest::Stop() {
  std::lock_guard<std::mutex> guard(pause_mu_);
  if (stopping_.exchange(true)) return;
  cv_.notify_all();
  if (connector_.joinable()) connector_.join();
  if (telemetry_connector_.joinable()) telemetry_connector_.join();
  for (auto* c : {telemetry_.get(), client_.get()}) {
    if (!c) continue;
    try {
      if (c->is_connected()) c->disconnect(std::chrono::milliseconds(2000))->wait_for(std::chrono::seconds(5));
    } catch (const std::exception& e) {
      spdlog::warn("ingest: disconnect: {}", e.what());
    }
  }
}

template <typename Op>
auto Ingest::RetryStore(Op op) -> decltype(op()) {
  int backoff_ms = 50;
  while (true) {
    auto r = op();
    if (r.ok() || r.status().code() != StatusCode::kIOError) return r;
    // The message is neither committed nor refused: we must not return (returning acks it).
    ++counters_.store_retries;
    spdlog::error("ingest: store failed ({}); holding the message unacknowledged, retry in {} ms", r.status().ToString(), backoff_ms);
    if (stopping_) {
      spdlog::critical("ingest: shutdown requested while the store is failing; exiting without acknowledging the message");
      spdlog::default_logger()->flush();
      std::_Exit(75);  // EX_TEMPFAIL; no PUBACK can go out for a message we did not commit
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [&] { return stopping_.load(); });
    backoff_ms = std::min(backoff_ms * 2, 5000);
  }
}

void Ingest::HandleMessage(const std::string& topic, std::string_view payload) {
  struct Busy {
    std::atomic<int64_t>& since;
    explicit Busy(std::atomic<int64_t>& s) : since(s) {
      since.store(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count(),
                  std::memory_order_relaxed);
    }
    ~Busy() { since.store(0, std::memory_order_relaxed); }
  } busy(counters_.busy_since_ms);
  const int64_t received_ms = clock_.NowMs();
  const TopicInfo info = ClassifyTopic(config_.mqtt.topic_root, topic);
  if (info.kind == TopicKind::kOwnOutput) {
    ++counters_.ignored;
    return;
  }
  auto decoded = Decode(config_.mqtt.topic_root, topic, payload);
  if (!decoded.ok()) {
    Refuse(topic, payload, decoded.status(), received_ms);
    return;
  }
  auto applied = RetryStore([&] { return store_.Apply(*decoded, received_ms); });
  if (applied.ok()) {
    if (*applied == EdgeStore::Outcome::kApplied) {
      ++counters_.applied;
      if (static_cast<int>(info.kind) < 4) counters_.applied_by_kind[static_cast<int>(info.kind)].fetch_add(1, std::memory_order_relaxed);
    } else {
      ++counters_.duplicates;
    }
    PublishCommitted();
    if (const auto* o = std::get_if<OrderStatus>(&*decoded); o && *applied == EdgeStore::Outcome::kApplied && client_) {
      // The order's current state, retained, for terminals that connect later. Only an applied
      // transition gets here, and transitions only move forward, so the retained message
      // never goes back. No customer data: the state names the order, nobody else.
      nlohmann::json j = {{"order_id", o->order_id}, {"status", o->status}, {"ts", o->ts_ms}};
      if (!o->actor.empty()) j["actor"] = o->actor;
      try {
        client_->publish(config_.mqtt.topic_root + "/orders/" + o->order_id + "/state", j.dump(), 1, true);
      } catch (const std::exception& e) {
        ++counters_.event_publish_failures;
        spdlog::warn("ingest: order state of {} not published: {}", o->order_id, e.what());
      }
    }
    return;
  }
  // kConflict (a rule) or kInternal (a bug, e.g. a constraint we did not expect): either way
  // this one message cannot be applied and must not stall the pipeline.
  if (applied.status().code() == StatusCode::kInternal) spdlog::error("ingest: internal error on {}: {}", topic, applied.status().ToString());
  Refuse(topic, payload, applied.status(), received_ms);
}

void Ingest::Refuse(const std::string& topic, std::string_view payload, const Status& why, int64_t received_ms) {
  ++counters_.refused;
  DeadLetter dl;
  dl.topic = topic;
  dl.reason = why.message();
  dl.code = why.code() == StatusCode::kConflict ? "conflict" : why.code() == StatusCode::kInternal ? "internal" : "invalid";
  counters_.refused_by_code[dl.code == "invalid" ? 0 : dl.code == "conflict" ? 1 : 2].fetch_add(1, std::memory_order_relaxed);
  dl.payload_bytes = static_cast<int64_t>(payload.size());
  dl.received_ms = received_ms;
  // Order payloads may carry customer personal data: keep them only once redacted, and not
  // at all when they are too broken to redact.
  if (ClassifyTopic(config_.mqtt.topic_root, topic).kind == TopicKind::kOrderStatus) {
    if (auto redacted = RedactOrderPayload(payload)) dl.payload = std::move(*redacted);
  } else {
    dl.payload = std::string(payload.substr(0, EdgeStore::kMaxDeadLetterPayload));
  }
  spdlog::info("ingest: dead letter on {} ({} bytes): {}", topic, payload.size(), dl.reason);
  auto stored = RetryStore([&]() -> Result<bool> {
    Status s = store_.AddDeadLetter(dl);
    if (!s.ok()) return s;
    return true;
  });
  if (!stored.ok()) spdlog::error("ingest: dead letter not stored: {}", stored.status().ToString());
  PublishDeadLetter(topic, dl.reason, dl.code, received_ms);
}

void Ingest::PublishCommitted() {
  // Events of committed transactions only (the store holds back those of rolled-back ones).
  auto pubs = store_.TakePublications();
  if (!client_) return;  // driven without a broker (tests, bench)
  for (auto& p : pubs) {
    try {
      client_->publish(p.topic, p.payload.data(), p.payload.size(), 1, p.retained);
    } catch (const std::exception& e) {
      ++counters_.event_publish_failures;
      spdlog::warn("ingest: event on {} not published (it is in the outbox): {}", p.topic, e.what());
    }
  }
}

void Ingest::PublishDeadLetter(const std::string& topic, const std::string& reason, const std::string& code, int64_t received_ms) {
  if (!client_) return;  // driven without a broker (tests, bench)
  // Never waits: Paho queues the publish and its send thread delivers it (bounded buffer).
  nlohmann::json j = {{"topic", topic}, {"reason", reason}, {"code", code}, {"received_ms", received_ms}};
  try {
    client_->publish(config_.mqtt.topic_root + "/deadletter", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), 1, false);
  } catch (const std::exception& e) {
    ++counters_.deadletter_publish_failures;
    spdlog::warn("ingest: dead-letter notification not published: {}", e.what());
  }
}

}  // namespace freshsync::edge
