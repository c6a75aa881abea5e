// A real RabbitMQ (Debian's rabbitmq-server 3.10) for tests: its own node name, ports, epmd and
// mnesia folder in a temporary folder, started, SIGKILLed and restarted on demand. Test-only,
// like the rest of tests/support/.
//
// No systemd: the node runs in the foreground as the `rabbitmq` user (setpriv when the test
// runs as root), with RUNNING_UNDER_SYSTEMD set only so that rabbitmq-server execs the VM in
// place (the ChildProcess pid is then beam's own, and SIGKILL reaches it). Its own epmd runs on
// ERL_EPMD_PORT, a free port, so that parallel tests do not share one; it is killed at teardown.
// No plugins (an empty enabled-plugins file). Start() takes 10-25 s on this machine kind.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/harness.h"

namespace freshsync::testing {

class RabbitMqServer {
 public:
  // `dir` is made reachable by `rabbitmq` (as PostgresServer does for `postgres`).
  explicit RabbitMqServer(const std::string& dir);
  ~RabbitMqServer();  // SIGKILL the node and its epmd
  RabbitMqServer(const RabbitMqServer&) = delete;
  RabbitMqServer& operator=(const RabbitMqServer&) = delete;

  // Starts the node (same name, ports and mnesia folder on every call, so durable exchanges,
  // queues and persistent messages survive a Kill()) and waits until it accepts AMQP
  // connections. false on failure, the reason in log_path().
  bool Start();
  // SIGKILL to the VM: no clean shutdown, as in a crash.
  void Kill();
  bool Running() { return node_process_.Running(); }

  // amqp://guest:guest@127.0.0.1:PORT/ (guest may log in over loopback).
  std::string Url() const;
  // Before Start(): also a TLS listener on 127.0.0.1 (a free port) with this certificate and
  // key, which requires a client certificate signed by `ca` (copies of the files go into the
  // node's folder, readable by `rabbitmq`). TlsUrl(): amqps://guest:guest@localhost:PORT/
  // (localhost, a name the test PKI's server certificate carries).
  void EnableTls(const std::string& ca, const std::string& cert, const std::string& key);
  std::string TlsUrl() const;
  int port() const { return port_; }
  const std::string& node_name() const { return node_; }
  std::string log_path() const { return dir_ + "/rabbitmq.log"; }

 private:
  std::string AsRabbit(const std::string& command) const;
  std::string dir_;
  std::string node_;
  int port_ = 0;
  int dist_port_ = 0;
  int epmd_port_ = 0;
  int tls_port_ = 0;  // 0: no TLS listener
  ChildProcess node_process_;

};

// One message as a consumer got it.
struct AmqpDelivered {
  std::string routing_key;
  std::string message_id;
  std::string content_type;
  int delivery_mode = 0;
  std::string body;
  std::chrono::steady_clock::time_point received;
};

// A rabbitmq-c consumer on its own thread: declares the durable topic exchange `exchange` (as
// the hub's relay does, so that either may come first) and the durable queue `queue` bound to
// it with "#", consumes with manual acks, records each message and then acks it. Reconnects
// while the broker is down; a message not acked before a broker death is delivered again.
class AmqpConsumer {
 public:
  AmqpConsumer(std::string url, std::string exchange, std::string queue);
  ~AmqpConsumer();
  AmqpConsumer(const AmqpConsumer&) = delete;
  AmqpConsumer& operator=(const AmqpConsumer&) = delete;
  // True once the queue is bound (messages published from then on reach it).
  bool bound() const { return bound_; }
  std::vector<AmqpDelivered> Messages();
  size_t count();

 private:
  void Run();
  void Session(void* connection);
  const std::string url_, exchange_, queue_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> bound_{false};
  std::mutex mu_;
  std::vector<AmqpDelivered> messages_;
  std::thread thread_;
};

}  // namespace freshsync::testing
