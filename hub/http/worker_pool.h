// WorkerPool: a fixed set of threads for work that may block (SQLite calls of the hub's
// routes), so that the I/O threads of http::Server never wait on the store. The queue is
// bounded: TrySubmit() refuses (false) when `max_queued` tasks already wait, and the caller
// answers 503 with Retry-After instead of queueing without limit.
//
// Thread-safety: TrySubmit() from any thread; Stop() once, then no more TrySubmit().
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace freshsync::hub::http {

class WorkerPool {
 public:
  WorkerPool(int threads, size_t max_queued);
  ~WorkerPool();  // Stop()
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  bool TrySubmit(std::function<void()> task);
  // Runs what is queued, then joins the threads.
  void Stop();

 private:
  void Loop();
  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace freshsync::hub::http
