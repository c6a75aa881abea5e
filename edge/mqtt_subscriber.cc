#include "edge/mqtt_subscriber.h"

#include <cstring>

#include <spdlog/spdlog.h>

#include "edge/mqtt_login.h"

namespace freshsync::edge {

bool MqttSubscriber::Pending::WaitFor(int ms) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return done_; });
}

bool MqttSubscriber::Pending::ok() {
  std::lock_guard<std::mutex> lock(mu_);
  return done_ && ok_;
}

void MqttSubscriber::Pending::Complete(bool ok) {
  std::lock_guard<std::mutex> lock(mu_);
  done_ = true;
  ok_ = ok;
  cv_.notify_all();
}

namespace {
// The context of one command: Paho calls exactly one of success/failure, which deletes it.
struct PendingContext {
  MqttSubscriber::PendingPtr pending;
};
void PendingSuccess(void* context, MQTTAsync_successData*) {
  std::unique_ptr<PendingContext> c(static_cast<PendingContext*>(context));
  c->pending->Complete(true);
}
void PendingFailure(void* context, MQTTAsync_failureData*) {
  std::unique_ptr<PendingContext> c(static_cast<PendingContext*>(context));
  c->pending->Complete(false);
}

struct DoneContext {
  std::function<void(bool, int)> done;
};
void DoneSuccess(void* context, MQTTAsync_successData*) {
  std::unique_ptr<DoneContext> c(static_cast<DoneContext*>(context));
  if (c->done) c->done(true, 0);
}
void DoneFailure(void* context, MQTTAsync_failureData* data) {
  std::unique_ptr<DoneContext> c(static_cast<DoneContext*>(context));
  if (c->done) c->done(false, data != nullptr ? data->code : MQTTASYNC_FAILURE);
}

// Paho takes the filters as char* const*; the strings stay owned by `filters`.
std::vector<char*> FilterPointers(const std::vector<std::string>& filters) {
  std::vector<char*> out;
  for (const std::string& f : filters) out.push_back(const_cast<char*>(f.c_str()));
  return out;
}
}  // namespace

Result<std::unique_ptr<MqttSubscriber>> MqttSubscriber::Create(const std::string& uri, const std::string& client_id) {
  std::unique_ptr<MqttSubscriber> s(new MqttSubscriber());
  MQTTAsync_createOptions create = MQTTAsync_createOptions_initializer;
  create.MQTTVersion = MQTTVERSION_3_1_1;
  if (int rc = MQTTAsync_createWithOptions(&s->handle_, uri.c_str(), client_id.c_str(), MQTTCLIENT_PERSISTENCE_NONE, nullptr, &create);
      rc != MQTTASYNC_SUCCESS)
    return Status::InvalidArgument("cannot create an MQTT client for " + uri + ": " + MQTTAsync_strerror(rc));
  MQTTAsync_setCallbacks(s->handle_, s.get(), &MqttSubscriber::OnLost, &MqttSubscriber::OnMessage, nullptr);
  MQTTAsync_setConnected(s->handle_, s.get(), &MqttSubscriber::OnConnected);
  return s;
}

MqttSubscriber::~MqttSubscriber() {
  if (handle_ != nullptr) MQTTAsync_destroy(&handle_);
}

int MqttSubscriber::OnMessage(void* context, char* topic, int topic_len, MQTTAsync_message* message) {
  auto* self = static_cast<MqttSubscriber*>(context);
  const std::string_view t(topic, topic_len > 0 ? static_cast<size_t>(topic_len) : std::strlen(topic));
  const std::string_view payload(static_cast<const char*>(message->payload), static_cast<size_t>(std::max(0, message->payloadlen)));
  try {
    if (self->on_message_) self->on_message_(t, payload);
  } catch (const std::exception& e) {
    // Not handled, so not acknowledged: returning 0 keeps the message, Paho offers it again.
    spdlog::error("ingest: message on {} not taken: {}", t.substr(0, 200), e.what());
    return 0;
  }
  MQTTAsync_freeMessage(&message);
  MQTTAsync_free(topic);
  return 1;  // Paho sends the PUBACK now
}

void MqttSubscriber::OnConnected(void* context, char*) {
  auto* self = static_cast<MqttSubscriber*>(context);
  if (self->on_connected_) self->on_connected_();
}

void MqttSubscriber::OnLost(void* context, char* cause) {
  auto* self = static_cast<MqttSubscriber*>(context);
  if (self->on_lost_) self->on_lost_(cause != nullptr ? std::string(cause) : std::string());
}

MqttSubscriber::PendingPtr MqttSubscriber::Connect(const MqttConfig& m) {
  MQTTAsync_connectOptions c = MQTTAsync_connectOptions_initializer;
  {
    std::lock_guard<std::mutex> lock(config_mu_);
    if (!config_) config_ = std::make_unique<MqttConfig>(m);
    c.MQTTVersion = MQTTVERSION_3_1_1;  // pinned, no fallback to 3.1
    c.cleansession = 0;                 // the broker queues while we are down
    c.keepAliveInterval = config_->keepalive_s;
    c.connectTimeout = 5;
    c.automaticReconnect = 1;
    c.minRetryInterval = 1;
    c.maxRetryInterval = 30;
    SetBrokerLogin(c, ssl_, *config_);
  }
  auto pending = std::make_shared<Pending>();
  auto* ctx = new PendingContext{pending};
  c.onSuccess = &PendingSuccess;
  c.onFailure = &PendingFailure;
  c.onSuccess5 = nullptr;
  c.onFailure5 = nullptr;
  c.context = ctx;
  if (int rc = MQTTAsync_connect(handle_, &c); rc != MQTTASYNC_SUCCESS) {
    delete ctx;
    spdlog::warn("ingest: connect not started: {}", MQTTAsync_strerror(rc));
    return nullptr;
  }
  return pending;
}

bool MqttSubscriber::Subscribe(const std::vector<std::string>& filters, std::function<void(bool, int)> done) {
  std::vector<char*> topics = FilterPointers(filters);
  std::vector<int> qos(filters.size(), 1);
  MQTTAsync_responseOptions r = MQTTAsync_responseOptions_initializer;
  auto* ctx = new DoneContext{std::move(done)};
  r.onSuccess = &DoneSuccess;
  r.onFailure = &DoneFailure;
  r.context = ctx;
  if (int rc = MQTTAsync_subscribeMany(handle_, static_cast<int>(topics.size()), topics.data(), qos.data(), &r); rc != MQTTASYNC_SUCCESS) {
    delete ctx;
    spdlog::error("ingest: subscribe to {} failed: {}", filters.front(), MQTTAsync_strerror(rc));
    return false;
  }
  return true;
}

bool MqttSubscriber::Unsubscribe(const std::vector<std::string>& filters) {
  std::vector<char*> topics = FilterPointers(filters);
  MQTTAsync_responseOptions r = MQTTAsync_responseOptions_initializer;
  if (int rc = MQTTAsync_unsubscribeMany(handle_, static_cast<int>(topics.size()), topics.data(), &r); rc != MQTTASYNC_SUCCESS) {
    spdlog::warn("ingest: unsubscribe from {}: {}", filters.front(), MQTTAsync_strerror(rc));
    return false;
  }
  return true;
}

void MqttSubscriber::Disconnect(int timeout_ms, int wait_ms) {
  if (!is_connected()) return;
  auto pending = std::make_shared<Pending>();
  auto* ctx = new PendingContext{pending};
  MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
  d.timeout = timeout_ms;
  d.onSuccess = &PendingSuccess;
  d.onFailure = &PendingFailure;
  d.context = ctx;
  if (int rc = MQTTAsync_disconnect(handle_, &d); rc != MQTTASYNC_SUCCESS) {
    delete ctx;
    spdlog::warn("ingest: disconnect: {}", MQTTAsync_strerror(rc));
    return;
  }
  pending->WaitFor(wait_ms);
}

bool MqttSubscriber::is_connected() const { return MQTTAsync_isConnected(handle_) != 0; }

}  // namespace freshsync::edge
