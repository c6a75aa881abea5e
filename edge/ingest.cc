#include "edge/ingest.h"

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include <chrono>

namespace freshsync::edge {

// Completion of the {root}/# subscription: readiness for logs, tests and sd_notify.
class SubscribeListener : public mqtt::iaction_listener {
 public:
  explicit SubscribeListener(Ingest* ingest) : ingest_(ingest) {}
  void on_success(const mqtt::token&) override {
    ingest_->subscribed_ = true;
    spdlog::info("ingest: subscribed to {}/# (QoS 1)", ingest_->config_.mqtt.topic_root);
  }
  void on_failure(const mqtt::token& tok) override {
    spdlog::error("ingest: subscription to {}/# refused (rc {})", ingest_->config_.mqtt.topic_root, tok.get_return_code());
  }

 private:
  Ingest* ingest_;
};

Ingest::Ingest(const EdgeConfig& config, EdgeStore& store, Clock& clock)
    : config_(config), store_(store), clock_(clock), sub_listener_(std::make_unique<SubscribeListener>(this)) {}

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
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("mqtt.uri: ") + e.what());
  }
  client_->set_message_callback([this](mqtt::const_message_ptr msg) {
    const auto& payload = msg->get_payload_ref();
    HandleMessage(msg->get_topic(), std::string_view(payload.data(), payload.size()));
  });
  client_->set_connected_handler([this](const std::string&) { OnConnected(); });
  client_->set_connection_lost_handler([this](const std::string& cause) {
    subscribed_ = false;
    spdlog::warn("ingest: connection to {} lost ({}); reconnecting", config_.mqtt.uri, cause.empty() ? "no reason given" : cause);
  });
  connector_ = std::thread([this] { ConnectLoop(); });
  return Status::Ok();
}

void Ingest::ConnectLoop() {
  const auto& m = config_.mqtt;
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
  while (!stopping_) {
    try {
      auto tok = client_->connect(opts);
      if (tok->wait_for(std::chrono::seconds(10)) && client_->is_connected()) return;
    } catch (const std::exception& e) {
      spdlog::warn("ingest: cannot connect to {}: {}; retrying in {} ms", m.uri, e.what(), backoff_ms);
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [&] { return stopping_.load(); });
    backoff_ms = std::min(backoff_ms * 2, 10000);
  }
}

void Ingest::OnConnected() {
  // Re-subscribing is harmless with a persistent session and covers a broker that lost it.
  // {root}/# also brings back what we publish ourselves; HandleMessage skips those topics
  // (MQTT 3.1.1 has no no-local option).
  const std::string filter = config_.mqtt.topic_root + "/#";
  try {
    client_->subscribe(filter, 1, nullptr, *sub_listener_);
  } catch (const std::exception& e) {
    spdlog::error("ingest: subscribe to {} failed: {}", filter, e.what());
  }
}

void Ingest::Stop() {
  if (stopping_.exchange(true)) return;
  cv_.notify_all();
  if (connector_.joinable()) connector_.join();
  if (client_) {
    try {
      if (client_->is_connected()) client_->disconnect(std::chrono::milliseconds(2000))->wait_for(std::chrono::seconds(5));
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
  if (Status skew = CheckDeviceClock(*decoded, received_ms, config_.max_clock_skew_s); !skew.ok()) {
    Refuse(topic, payload, skew, received_ms);
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
