// A server-sent-events reader for the stream tests: httplib's SSLClient GET with a content
// receiver on a thread of its own, parsing events as EventSource does (id, event, data lines,
// blank line ends an event; ':' lines are comments, counted as heartbeats when ": hb").
// Stop() ends it (the receiver returns false, which closes the connection); Stall() makes the
// receiver block, as a client that stops reading.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace freshsync::testing {

struct SseEvent {
  std::string id;
  std::string event;
  std::string data;
};

class SseClient {
 public:
  // `make` opens a configured client; `path` with query; `headers` e.g. Last-Event-ID.
  SseClient(std::function<std::unique_ptr<httplib::SSLClient>()> make, std::string path, httplib::Headers headers = {})
      : make_(std::move(make)), path_(std::move(path)), headers_(std::move(headers)) {
    headers_.emplace("Accept", "text/event-stream");
    thread_ = std::thread([this] { Run(); });
  }
  ~SseClient() { Stop(); }

  void Stop() {
    stop_ = true;
    Release();
    if (thread_.joinable()) thread_.join();
  }
  void Stall() { stalled_ = true; }
  void Release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stalled_ = false;
    }
    cv_.notify_all();
  }
  // Until `pred(events)` holds or `timeout` passes.
  bool WaitUntil(const std::function<bool(const std::vector<SseEvent>&)>& pred, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return pred(events_) || done_; }) && pred(events_);
  }
  bool WaitDone(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return done_; });
  }
  std::vector<SseEvent> events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  int heartbeats() {
    std::lock_guard<std::mutex> lock(mu_);
    return heartbeats_;
  }
  int status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  std::string content_type() {
    std::lock_guard<std::mutex> lock(mu_);
    return content_type_;
  }
  std::string raw() {
    std::lock_guard<std::mutex> lock(mu_);
    return raw_;
  }
  // Ends after `n` events (the receiver returns false at once: a disconnect mid-stream).
  void StopAfter(size_t n) { stop_after_ = n; }

 private:
  void Run() {
    auto c = make_();
    c->set_read_timeout(60);
    auto res = c->Get(
        path_.c_str(), headers_,
        [this](const httplib::Response& r) {
          std::lock_guard<std::mutex> lock(mu_);
          status_ = r.status;
          content_type_ = r.get_header_value("Content-Type");
          return true;
        },
        [this](const char* data, size_t n) {
          {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return !stalled_ || stop_; });
          }
          if (stop_) return false;
          return Feed(std::string_view(data, n));
        });
    std::lock_guard<std::mutex> lock(mu_);
    if (res && status_ == 0) status_ = res->status;
    if (res && raw_.empty()) raw_ = res->body;
    done_ = true;
    cv_.notify_all();
  }

  bool Feed(std::string_view chunk) {
    std::lock_guard<std::mutex> lock(mu_);
    raw_.append(chunk);
    line_.append(chunk);
    size_t nl;
    bool more = true;
    while ((nl = line_.find('\n')) != std::string::npos) {
      const std::string line = line_.substr(0, nl);
      line_.erase(0, nl + 1);
      if (line.empty()) {
        if (!cur_.data.empty() || !cur_.id.empty()) {
          events_.push_back(cur_);
          if (stop_after_ && events_.size() >= stop_after_) more = false;
        }
        cur_ = SseEvent{};
      } else if (line == ": hb") {
        ++heartbeats_;
      } else if (line.rfind("id: ", 0) == 0) {
        cur_.id = line.substr(4);
      } else if (line.rfind("event: ", 0) == 0) {
        cur_.event = line.substr(7);
      } else if (line.rfind("data: ", 0) == 0) {
        cur_.data += line.substr(6);
      }
      if (!more) break;
    }
    cv_.notify_all();
    return more;
  }

  std::function<std::unique_ptr<httplib::SSLClient>()> make_;
  std::string path_;
  httplib::Headers headers_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> stop_after_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stalled_ = false;
  bool done_ = false;
  int status_ = 0;
  std::string content_type_;
  std::string raw_;
  std::string line_;
  SseEvent cur_;
  std::vector<SseEvent> events_;
  int heartbeats_ = 0;
  std::thread thread_;
};

}  // namespace freshsync::testing
