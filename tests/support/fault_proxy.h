// A TCP proxy on loopback between a client (the sync agent) and a server (hubd) that injects
// link faults on demand. TLS passes through untouched: the proxy sees bytes only.
//
// Faults:
//   Cut()          closes every connection with a RST and refuses new ones (the listening
//                  socket is closed, so connect() gets ECONNREFUSED). Pass() listens again on
//                  the same port.
//   SetDelayMs(n)  holds every forwarded chunk n ms, in both directions.
//   ResetAll()     RSTs every open connection now (SO_LINGER 0), keeps accepting new ones.
//   ResetAfterBytes(n)  one-shot: the first connection whose client-to-server byte count
//                  crosses n (counted from now) is reset mid-stream.
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace freshsync::testing {

class FaultProxy {
 public:
  FaultProxy(std::string upstream_host, int upstream_port);
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  // Binds 127.0.0.1 on a free port and starts accepting. False if it cannot bind.
  bool Start();
  void Stop();
  int port() const { return port_; }

  void Pass();
  void Cut();
  void SetDelayMs(int ms) { delay_ms_.store(ms); }
  void ResetAll();
  void ResetAfterBytes(int64_t n);

  // Counters, for tests to assert that a fault really happened.
  int64_t connections() const { return connections_.load(); }
  int64_t resets() const { return resets_.load(); }
  int64_t bytes_up() const { return bytes_up_.load(); }
  int64_t bytes_down() const { return bytes_down_.load(); }
  int open_connections();

 private:
  struct Conn;
  bool Listen();
  void AcceptLoop();
  void Pump(std::shared_ptr<Conn> c);
  void Reap();

  std::string upstream_host_;
  int upstream_port_;
  int port_ = 0;
  int listen_fd_ = -1;
  // A cut listener is shut down at once (so connects are refused) but closed only by the
  // acceptor thread, which may still be polling its fd number.
  std::vector<int> retired_listen_fds_;
  int wake_[2] = {-1, -1};   // wakes the accept loop
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> cut_{false};
  std::atomic<int> delay_ms_{0};
  std::atomic<int64_t> reset_after_{-1};
  std::atomic<int64_t> connections_{0};
  std::atomic<int64_t> resets_{0};
  std::atomic<int64_t> bytes_up_{0};
  std::atomic<int64_t> bytes_down_{0};
  std::mutex mu_;
  std::list<std::shared_ptr<Conn>> conns_;
};

}  // namespace freshsync::testing
