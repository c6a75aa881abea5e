// A subscribing MQTT client on Paho's C API (MQTTAsync) directly, for ingest's two persistent
// sessions (edge/ingest.h). Why not mqtt::async_client: for every message the C++ wrapper makes
// an mqtt::message (a shared_ptr, the topic and the payload copied into std::strings, a
// properties object) and frees it again, on Paho's receive thread, which is the busier of
// edged's two threads during a drain (docs/benchmarks.md, "GPS: the Paho C API"). Here the
// message callback hands Paho's own buffers to the handler as string_views and returns 1 when
// the handler returns: Paho acknowledges the message (PUBACK) only then, exactly as before, so
// ingest's rule "acknowledged only once durable in the intake journal" is unchanged.
//
// Connect options: ingest's (MQTT 3.1.1, persistent session, automatic reconnect 1-30 s), with
// the login and TLS settings of edge/mqtt_login.h, as edged's Paho C++ publisher has them.
//
// Thread-safety: every method from any thread. The handlers run on Paho's threads (messages,
// connected and connection lost on its receive thread); they are set before Connect().
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <MQTTAsync.h>

#include "common/config.h"
#include "common/status.h"

namespace freshsync::edge {

class MqttSubscriber {
 public:
  // A command in flight (connect, subscribe, disconnect): its completion can be waited for.
  class Pending;
  using PendingPtr = std::shared_ptr<Pending>;

  // kInvalidArgument for a URI or client id Paho refuses. No persistence (the broker keeps the
  // session), MQTT 3.1.1.
  static Result<std::unique_ptr<MqttSubscriber>> Create(const std::string& uri, const std::string& client_id);
  // MQTTAsync_destroy: commands still pending complete as failed (their callbacks run).
  ~MqttSubscriber();
  MqttSubscriber(const MqttSubscriber&) = delete;
  MqttSubscriber& operator=(const MqttSubscriber&) = delete;

  // The message's topic and payload are Paho's buffers, valid during the call only. When the
  // handler returns, the message is acknowledged.
  void set_message_handler(std::function<void(std::string_view topic, std::string_view payload)> h) { on_message_ = std::move(h); }
  // After every successful connect, the first and Paho's automatic reconnects.
  void set_connected_handler(std::function<void()> h) { on_connected_ = std::move(h); }
  void set_connection_lost_handler(std::function<void(const std::string& cause)> h) { on_lost_ = std::move(h); }

  // Starts connecting to m.uri with the settings of `m` (copied on the first call; every
  // connect of a client uses those); nullptr if Paho refused to start (logged).
  PendingPtr Connect(const MqttConfig& m);
  // QoS 1 subscriptions; `done(ok, rc)` runs on Paho's thread when the broker answered (or
  // the command failed). False if the command could not be queued (`done` never runs).
  bool Subscribe(const std::vector<std::string>& filters, std::function<void(bool ok, int rc)> done);
  bool Unsubscribe(const std::vector<std::string>& filters);
  // Sends DISCONNECT (Paho waits up to `timeout_ms` for in-flight messages) and waits up to
  // `wait_ms` for it to complete. The session stays with the broker (clean session false).
  void Disconnect(int timeout_ms, int wait_ms);
  bool is_connected() const;

 private:
  MqttSubscriber() = default;
  static int OnMessage(void* context, char* topic, int topic_len, MQTTAsync_message* message);
  static void OnConnected(void* context, char* cause);
  static void OnLost(void* context, char* cause);

  MQTTAsync handle_ = nullptr;
  std::mutex config_mu_;
  std::unique_ptr<MqttConfig> config_;  // the first Connect's: Paho's reconnects point into it
  MQTTAsync_SSLOptions ssl_ = MQTTAsync_SSLOptions_initializer;
  std::function<void(std::string_view, std::string_view)> on_message_;
  std::function<void()> on_connected_;
  std::function<void(const std::string&)> on_lost_;
};

class MqttSubscriber::Pending {
 public:
  // True once completed (successfully or not) within `ms`.
  bool WaitFor(int ms);
  bool ok();
  // By the command's callback (Paho's thread).
  void Complete(bool ok);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false, ok_ = false;
};

}  // namespace freshsync::edge
