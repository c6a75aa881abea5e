// A fixed set of database connections shared by threads (SqliteHubStore's readers, PgHubStore's
// connections): Acquire() waits for an idle one and lends it; the Lease gives it back when it
// goes out of scope.
//
// Thread-safety: Add and Acquire from any thread. A Lease is used by one thread at a time.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace freshsync::hub {

template <typename Conn>
class ConnPool {
 public:
  class Lease {
   public:
    Lease(ConnPool* pool, std::unique_ptr<Conn> c) : pool_(pool), c_(std::move(c)) {}
    Lease(Lease&&) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (c_ != nullptr) pool_->Add(std::move(c_));
    }
    Conn& operator*() { return *c_; }
    Conn* operator->() { return c_.get(); }

   private:
    ConnPool* pool_;
    std::unique_ptr<Conn> c_;
  };

  void Add(std::unique_ptr<Conn> c) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      idle_.push_back(std::move(c));
    }
    cv_.notify_one();
  }

  Lease Acquire() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !idle_.empty(); });
    auto c = std::move(idle_.back());
    idle_.pop_back();
    return Lease(this, std::move(c));
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Conn>> idle_;
};

}  // namespace freshsync::hub
