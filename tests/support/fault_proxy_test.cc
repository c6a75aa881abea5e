#include "tests/support/fault_proxy.h"

#include "tests/support/harness.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace freshsync::testing {
namespace {

// An upstream that echoes every byte back.
class EchoServer {
 public:
  EchoServer() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    listen(fd_, 16);
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        int c = accept(fd_, nullptr, nullptr);
        if (c < 0) continue;
        workers_.emplace_back([c] {
          char buf[4096];
          ssize_t n;
          while ((n = recv(c, buf, sizeof(buf), 0)) > 0) send(c, buf, static_cast<size_t>(n), MSG_NOSIGNAL);
          close(c);
        });
      }
    });
  }
  ~EchoServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
    for (auto& w : workers_) w.join();
  }
  int port() const { return port_; }

 private:
  int fd_;
  int port_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::thread> workers_;
};

int Connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

// Sends `msg`, reads the echo; returns what came back, or "ERR:<errno>" / "EOF".
std::string RoundTrip(int fd, const std::string& msg) {
  if (send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) < 0) return "ERR:" + std::to_string(errno);
  std::string got;
  char buf[4096];
  while (got.size() < msg.size()) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0) return "ERR:" + std::to_string(errno);
    if (n == 0) return "EOF";
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

TEST(FaultProxy, PassesThrough) {
  EchoServer echo;
  FaultProxy proxy("127.0.0.1", echo.port());
  ASSERT_TRUE(proxy.Start());
  int fd = Connect(proxy.port());
  ASSERT_GE(fd, 0);
  EXPECT_EQ(RoundTrip(fd, "hello"), "hello");
  const std::string big(200000, 'x');
  EXPECT_EQ(RoundTrip(fd, big), big);
  close(fd);
  EXPECT_EQ(proxy.connections(), 1);
  EXPECT_GE(proxy.bytes_up(), 200005);
}

TEST(FaultProxy, DelaysEveryChunk) {
  EchoServer echo;
  FaultProxy proxy("127.0.0.1", echo.port());
  ASSERT_TRUE(proxy.Start());
  proxy.SetDelayMs(150);
  int fd = Connect(proxy.port());
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(RoundTrip(fd, "ping"), "ping");
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(300));  // both directions
  close(fd);
}

TEST(FaultProxy, ResetAllSendsRst) {
  EchoServer echo;
  FaultProxy proxy("127.0.0.1", echo.port());
  ASSERT_TRUE(proxy.Start());
  int fd = Connect(proxy.port());
  EXPECT_EQ(RoundTrip(fd, "a"), "a");
  proxy.ResetAll();
  ASSERT_TRUE(WaitFor([&] { return proxy.resets() == 1; }, std::chrono::seconds(2)));
  EXPECT_EQ(RoundTrip(fd, "b"), "ERR:" + std::to_string(ECONNRESET));
  close(fd);
  // New connections still work.
  fd = Connect(proxy.port());
  EXPECT_EQ(RoundTrip(fd, "c"), "c");
  close(fd);
}

TEST(FaultProxy, ResetsMidStreamAfterBytes) {
  EchoServer echo;
  FaultProxy proxy("127.0.0.1", echo.port());
  ASSERT_TRUE(proxy.Start());
  int fd = Connect(proxy.port());
  EXPECT_EQ(RoundTrip(fd, "0123456789"), "0123456789");
  proxy.ResetAfterBytes(100);
  EXPECT_EQ(RoundTrip(fd, std::string(50, 'y')), std::string(50, 'y'));
  EXPECT_EQ(RoundTrip(fd, std::string(100, 'z')).rfind("ERR:", 0), 0u);
  close(fd);
  EXPECT_EQ(proxy.resets(), 1);
  // One-shot: the next connection passes.
  fd = Connect(proxy.port());
  EXPECT_EQ(RoundTrip(fd, std::string(500, 'w')), std::string(500, 'w'));
  close(fd);
}

TEST(FaultProxy, CutRefusesAndPassRestores) {
  EchoServer echo;
  FaultProxy proxy("127.0.0.1", echo.port());
  ASSERT_TRUE(proxy.Start());
  const int port = proxy.port();
  int fd = Connect(port);
  EXPECT_EQ(RoundTrip(fd, "a"), "a");
  proxy.Cut();
  EXPECT_EQ(RoundTrip(fd, "b").rfind("ERR:", 0), 0u);
  close(fd);
  EXPECT_EQ(Connect(port), -1);
  proxy.Pass();
  EXPECT_EQ(proxy.port(), port);
  fd = Connect(port);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(RoundTrip(fd, "c"), "c");
  close(fd);
}

}  // namespace
}  // namespace freshsync::testing
