#include "tests/support/fault_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <vector>

namespace freshsync::testing {

struct FaultProxy::Conn {
  int client = -1;
  int server = -1;
  int wake[2] = {-1, -1};
  std::atomic<bool> reset{false};
  std::atomic<bool> done{false};
  int64_t up = 0;
  std::thread thread;
  ~Conn() {
    for (int fd : wake) {
      if (fd >= 0) close(fd);
    }
  }
  void Wake() {
    char b = 1;
    (void)!write(wake[1], &b, 1);
  }
};

namespace {

void Rst(int fd) {
  if (fd < 0) return;
  linger l{1, 0};  // close() now sends RST instead of FIN
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  close(fd);
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) {
      if (w < 0 && errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

FaultProxy::FaultProxy(std::string upstream_host, int upstream_port)
    : upstream_host_(std::move(upstream_host)), upstream_port_(upstream_port) {}

FaultProxy::~FaultProxy() { Stop(); }

bool FaultProxy::Listen() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port_));
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(fd, 128) != 0) {
    close(fd);
    return false;
  }
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  std::lock_guard<std::mutex> lock(mu_);
  listen_fd_ = fd;
  return true;
}

bool FaultProxy::Start() {
  if (pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) return false;
  if (!Listen()) return false;
  acceptor_ = std::thread([this] { AcceptLoop(); });
  return true;
}

void FaultProxy::Stop() {
  if (stopping_.exchange(true)) return;
  char b = 1;
  if (wake_[1] >= 0) (void)!write(wake_[1], &b, 1);
  if (acceptor_.joinable()) acceptor_.join();
  ResetAll();
  std::list<std::shared_ptr<Conn>> conns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    conns.swap(conns_);
    if (listen_fd_ >= 0) close(listen_fd_);
    listen_fd_ = -1;
    for (int fd : retired_listen_fds_) close(fd);
    retired_listen_fds_.clear();
  }
  for (auto& c : conns) {
    if (c->thread.joinable()) c->thread.join();
  }
  for (int& fd : wake_) {
    if (fd >= 0) close(fd);
    fd = -1;
  }
}

void FaultProxy::Pass() {
  if (!cut_.exchange(false)) return;
  // SO_REUSEADDR lets us take the same port back at once; retry briefly anyway.
  for (int i = 0; i < 50 && !Listen(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  char b = 1;
  (void)!write(wake_[1], &b, 1);
}

void FaultProxy::Cut() {
  if (cut_.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // shutdown() takes a listening socket out of LISTEN immediately, even while the acceptor
    // is blocked in poll() on it; close() alone would leave it listening until poll returns.
    if (listen_fd_ >= 0) shutdown(listen_fd_, SHUT_RDWR);
    if (listen_fd_ >= 0) retired_listen_fds_.push_back(listen_fd_);
    listen_fd_ = -1;
  }
  char b = 1;
  (void)!write(wake_[1], &b, 1);
  ResetAll();
}

void FaultProxy::ResetAll() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& c : conns_) {
    if (!c->done.load()) {
      c->reset.store(true);
      c->Wake();
    }
  }
}

void FaultProxy::ResetAfterBytes(int64_t n) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& c : conns_) c->up = 0;  // counted from now
  }
  reset_after_.store(n);
}

int FaultProxy::open_connections() {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (auto& c : conns_) n += c->done.load() ? 0 : 1;
  return n;
}

void FaultProxy::Reap() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = conns_.begin(); it != conns_.end();) {
    if ((*it)->done.load()) {
      if ((*it)->thread.joinable()) (*it)->thread.join();
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
}

void FaultProxy::AcceptLoop() {
  while (!stopping_.load()) {
    int lfd;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : retired_listen_fds_) close(fd);
      retired_listen_fds_.clear();
      lfd = listen_fd_;
    }
    pollfd p[2] = {{wake_[0], POLLIN, 0}, {lfd, POLLIN, 0}};
    const int n = poll(p, lfd >= 0 ? 2 : 1, 200);
    if (p[0].revents & POLLIN) {
      char buf[64];
      while (read(wake_[0], buf, sizeof(buf)) > 0) {
      }
    }
    Reap();
    if (n <= 0 || lfd < 0 || !(p[1].revents & POLLIN)) continue;
    int client = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    if (cut_.load()) {
      Rst(client);
      continue;
    }
    int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(upstream_port_));
    inet_pton(AF_INET, upstream_host_ == "localhost" ? "127.0.0.1" : upstream_host_.c_str(), &a.sin_addr);
    if (connect(server, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
      // Upstream down: the client sees its connection reset, as through a real middlebox.
      close(server);
      Rst(client);
      continue;
    }
    int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    auto c = std::make_shared<Conn>();
    c->client = client;
    c->server = server;
    if (pipe2(c->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
      Rst(client);
      Rst(server);
      continue;
    }
    connections_++;
    std::lock_guard<std::mutex> lock(mu_);
    conns_.push_back(c);
    c->thread = std::thread([this, c] { Pump(c); });
  }
}

void FaultProxy::Pump(std::shared_ptr<Conn> c) {
  std::vector<char> buf(64 * 1024);
  bool reset = false;
  while (!reset) {
    pollfd p[3] = {{c->wake[0], POLLIN, 0}, {c->client, POLLIN, 0}, {c->server, POLLIN, 0}};
    if (poll(p, 3, 500) < 0 && errno != EINTR) break;
    if (c->reset.load()) {
      reset = true;
      break;
    }
    bool closed = false;
    for (int side = 1; side <= 2 && !closed && !reset; ++side) {
      if (!(p[side].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const int from = side == 1 ? c->client : c->server;
      const int to = side == 1 ? c->server : c->client;
      ssize_t r = recv(from, buf.data(), buf.size(), 0);
      if (r <= 0) {
        closed = true;
        break;
      }
      if (const int d = delay_ms_.load(); d > 0) std::this_thread::sleep_for(std::chrono::milliseconds(d));
      if (side == 1) {
        int64_t limit = reset_after_.load();
        {
          std::lock_guard<std::mutex> lock(mu_);
          c->up += r;
        }
        if (limit >= 0 && c->up >= limit && reset_after_.compare_exchange_strong(limit, -1)) {
          // Forward part of the chunk so the server sees a truncated request, then RST.
          (void)WriteAll(to, buf.data(), static_cast<size_t>(r / 2));
          reset = true;
          break;
        }
        bytes_up_ += r;
      } else {
        bytes_down_ += r;
      }
      if (!WriteAll(to, buf.data(), static_cast<size_t>(r))) closed = true;
    }
    if (closed) break;
  }
  if (reset) {
    resets_++;
    Rst(c->client);
    Rst(c->server);
  } else {
    close(c->client);
    close(c->server);
  }
  c->done.store(true);
}

}  // namespace freshsync::testing
