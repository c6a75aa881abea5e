// Ingest: the site's MQTT broker into the EdgeStore, one message at a time, acknowledged
// only after its transaction has committed.
//
// How "commit, then ack" is met with Paho (facts in design.md): the message callback
// (set_message_callback) runs on Paho's single receive thread and Paho C sends the PUBACK
// only after it returns. So OnMessage() commits (or dead-letters) before returning. When the
// store cannot commit (disk full, I/O error, lock held past busy_timeout) the callback does
// NOT return: it retries in place with backoff, holding the message. If that lasts longer
// than 1.5 x keepalive the broker drops the connection and will redeliver the message, which
// dedupe then absorbs; if the disk recovers first the PUBACK goes out after the commit as
// usual. If a shutdown is requested while the store is failing, the process exits with
// status 75 (EX_TEMPFAIL) from inside the callback, so the PUBACK is never sent.
// Either way no message is acknowledged before it is committed. (docs/architecture.md)
//
// Two clients, two persistent sessions: the main client (mqtt.client_id) takes stock, orders
// and anything unknown; the telemetry client (mqtt.client_id + "-telemetry") takes GPS and
// climate. So telemetry can be paused on its own (PauseTelemetry, the disk quota's last
// resort, edge/disk_quota.h): its client disconnects, the broker keeps queueing its session's
// messages (up to max_queued_messages), and ResumeTelemetry reconnects for the redelivery,
// while stock and orders keep flowing. Paho runs both clients' callbacks on one receive
// thread, so HandleMessage stays serial. Publications (events, alerts, order state, dead
// letters) all go out through the main client.
//
// Thread-safety: Start/Stop/PauseTelemetry/ResumeTelemetry from controlling threads (not from
// the callback). The callback is serial.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/config.h"
#include "common/status.h"
#include "edge/store.h"

namespace mqtt {
class async_client;
class message;
}  // namespace mqtt

namespace freshsync::edge {

struct IngestCounters {
  std::atomic<int64_t> applied{0};
  std::atomic<int64_t> duplicates{0};
  std::atomic<int64_t> refused{0};       // dead letters
  std::atomic<int64_t> ignored{0};       // our own output topics echoed back by {root}/#
  std::atomic<int64_t> store_retries{0}; // commits retried after an environment error
  std::atomic<int64_t> deadletter_publish_failures{0};
  std::atomic<int64_t> event_publish_failures{0};  // geofence events, alerts, order states
  // Applied messages by TopicKind (stock movements, order status, gps, climate), for metrics.
  std::atomic<int64_t> applied_by_kind[4]{};
  // Dead letters by code: 0 invalid, 1 conflict, 2 internal (DeadLetter::code), for metrics.
  std::atomic<int64_t> refused_by_code[3]{};
  // steady_clock ms at which the message now in the callback arrived; 0 between messages.
  // The watchdog (edge/service.h) reads it to tell a wedged ingest from an idle one.
  std::atomic<int64_t> busy_since_ms{0};
};

class Ingest {
 public:
  // `store` must outlive the Ingest. Nothing happens before Start().
  Ingest(const EdgeConfig& config, EdgeStore& store, Clock& clock = SystemClock());
  ~Ingest();
  Ingest(const Ingest&) = delete;
  Ingest& operator=(const Ingest&) = delete;

  // Creates the client and starts connecting in the background (retrying with backoff until
  // the broker answers; Paho reconnects automatically afterwards). kInvalidArgument for a bad
  // mqtt.* setting.
  Status Start();
  // Disconnects (waits up to a few seconds). Messages not yet acknowledged are redelivered
  // to the next run by the broker (persistent session).
  void Stop();

  // Main client subscribed, and the telemetry client too unless telemetry is paused.
  bool subscribed() const { return subscribed_.load() && (telemetry_subscribed_.load() || telemetry_paused_.load()); }
  // Disconnects the telemetry client: nothing more is acknowledged on gps/climate topics, the
  // broker keeps them. Waits up to a few seconds. Idempotent.
  void PauseTelemetry();
  // Reconnects it (in the background); the broker redelivers what it kept. Idempotent.
  void ResumeTelemetry();
  bool telemetry_paused() const { return telemetry_paused_.load(); }
  const IngestCounters& counters() const { return counters_; }

  // The work of one message; public so that tests and the benchmark can drive it without a
  // broker. Returns only once the message is committed or dead-lettered.
  void HandleMessage(const std::string& topic, std::string_view payload);

 private:
  friend class SubscribeListener;
  // Connects the main or the telemetry client, retrying with backoff, until connected, stopping,
  // or (telemetry) paused.
  void ConnectLoop(bool telemetry);
  void OnConnected();
  void OnTelemetryConnected();
  void OnSubscribed(bool telemetry);
  void Refuse(const std::string& topic, std::string_view payload, const Status& why, int64_t received_ms);
  // Retries `op` until it does not fail with kIOError (see the header comment).
  template <typename Op>
  auto RetryStore(Op op) -> decltype(op());
  // Publishes what the store released after commits (EdgeStore::TakePublications).
  void PublishCommitted();
  void PublishDeadLetter(const std::string& topic, const std::string& reason, const std::string& code, int64_t received_ms);

  EdgeConfig config_;
  EdgeStore& store_;
  Clock& clock_;
  std::unique_ptr<mqtt::async_client> client_;
  std::unique_ptr<mqtt::async_client> telemetry_;  // gps + climate (see the header comment)
  std::thread connector_;
  std::thread telemetry_connector_;
  std::mutex pause_mu_;  // serializes PauseTelemetry/ResumeTelemetry/Stop on telemetry_
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> subscribed_{false};
  std::atomic<bool> telemetry_subscribed_{false};
  std::atomic<bool> telemetry_paused_{false};
  std::atomic<bool> subscribed_logged_{false};
  std::atomic<bool> legacy_dropped_{false};  // the pre-split {root}/# subscription, once per process
  IngestCounters counters_;
  std::unique_ptr<class SubscribeListener> sub_listener_;
  std::unique_ptr<class SubscribeListener> telemetry_sub_listener_;
};

}  // namespace freshsync::edge
