#include "tests/support/power_cut_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace freshsync::testing {

int PowerCutFiles::GateLocked(bool* fired) {
  if (countdown_ > 0 && --countdown_ == 0) {
    power_off_ = true;
    countdown_ = -1;
    *fired = true;
  }
  if (power_off_) {
    errno = EIO;
    return -1;
  }
  return 0;
}

void PowerCutFiles::FireIfNeeded(bool fired) {
  if (!fired) return;
  std::function<void()> listener;
  {
    std::lock_guard<std::mutex> lock(mu_);
    listener = cut_listener_;
  }
  if (listener) listener();
  errno = EIO;  // the listener may have touched errno; the caller reads it
}

int64_t PowerCutFiles::SizeOf(int fd) {
  struct stat st;
  return ::fstat(fd, &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

int PowerCutFiles::Open(const std::string& path, int flags, mode_t mode) {
  bool fired = false;
  int fd = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const bool creates = (flags & O_CREAT) != 0;
    if (creates && GateLocked(&fired) != 0) {
      // fall through to FireIfNeeded with fd = -1
    } else {
      const bool existed = ::access(path.c_str(), F_OK) == 0;
      fd = ::open(path.c_str(), flags, mode);
      if (fd >= 0) {
        paths_[fd] = path;
        auto [it, inserted] = files_.try_emplace(path);
        if (!existed) {
          it->second = FileState{0, false};
        } else if (inserted) {
          it->second = FileState{SizeOf(fd), true};
        }
        // O_TRUNC on a file with durable content: the journal only does this to a file that
        // holds no valid entry, so what it loses at a cut does not matter; count it as synced.
        if ((flags & O_TRUNC) != 0) it->second.durable_size = 0;
      }
    }
  }
  FireIfNeeded(fired);
  if (fired) errno = EIO;
  return fd;
}

ssize_t PowerCutFiles::Write(int fd, const void* data, size_t n) {
  bool fired = false;
  ssize_t rc = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (GateLocked(&fired) == 0) rc = ::write(fd, data, n);  // under the lock: see the header
  }
  FireIfNeeded(fired);
  return rc;
}

int PowerCutFiles::DataSync(int fd) {
  bool fired = false;
  int rc = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (GateLocked(&fired) == 0) {
      auto it = paths_.find(fd);
      if (it != paths_.end()) files_[it->second].durable_size = SizeOf(fd);
      ++syncs_;
      rc = 0;
    }
  }
  FireIfNeeded(fired);
  return rc;
}

int PowerCutFiles::Truncate(int fd, off_t size) {
  bool fired = false;
  int rc = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (GateLocked(&fired) == 0) {
      rc = ::ftruncate(fd, size);
      auto it = paths_.find(fd);
      if (rc == 0 && it != paths_.end()) {
        FileState& f = files_[it->second];
        if (f.durable_size > size) f.durable_size = size;  // a shrink: taken as durable
      }
    }
  }
  FireIfNeeded(fired);
  return rc;
}

int PowerCutFiles::TruncatePath(const std::string& path, off_t size) {
  bool fired = false;
  int rc = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (GateLocked(&fired) == 0) {
      rc = ::truncate(path.c_str(), size);
      auto it = files_.find(path);
      if (rc == 0 && it != files_.end() && it->second.durable_size > size) it->second.durable_size = size;
    }
  }
  FireIfNeeded(fired);
  return rc;
}

int PowerCutFiles::Close(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  paths_.erase(fd);
  return ::close(fd);
}

int PowerCutFiles::Unlink(const std::string& path) {
  bool fired = false;
  int rc = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (GateLocked(&fired) == 0) {
      rc = ::unlink(path.c_str());
      if (rc == 0) files_.erase(path);
    }
  }
  FireIfNeeded(fired);
  return rc;
}

int PowerCutFiles::SyncDir(const std::string& dir) {
  bool fired = false;
  int rc = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (GateLocked(&fired) == 0) {
      const std::string prefix = dir + "/";
      for (auto& [path, f] : files_)
        if (path.compare(0, prefix.size(), prefix) == 0 && path.find('/', prefix.size()) == std::string::npos)
          f.durable_name = true;
      ++syncs_;
      rc = 0;
    }
  }
  FireIfNeeded(fired);
  return rc;
}

void PowerCutFiles::ArmPowerCut(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  countdown_ = n;
}

void PowerCutFiles::PowerOffNow() {
  std::lock_guard<std::mutex> lock(mu_);
  power_off_ = true;
}

bool PowerCutFiles::power_off() const {
  std::lock_guard<std::mutex> lock(mu_);
  return power_off_;
}

void PowerCutFiles::SetCutListener(std::function<void()> f) {
  std::lock_guard<std::mutex> lock(mu_);
  cut_listener_ = std::move(f);
}

int64_t PowerCutFiles::syncs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return syncs_;
}

PowerCutFiles::CutReport PowerCutFiles::RestoreAfterPowerCut(std::mt19937* torn) {
  std::lock_guard<std::mutex> lock(mu_);
  CutReport report;
  for (auto& [path, f] : files_) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) continue;
    const int64_t size = static_cast<int64_t>(st.st_size);
    const int64_t unsynced = size > f.durable_size ? size - f.durable_size : 0;
    if (unsynced == 0 && f.durable_name) continue;
    ++report.files;
    const int64_t kept = torn ? static_cast<int64_t>((*torn)() % static_cast<uint64_t>(unsynced + 1)) : 0;
    if (!f.durable_name && !torn) {
      if (::unlink(path.c_str()) != 0) std::abort();  // the test's own disk failed
      ++report.files_removed;
      report.bytes_dropped += unsynced;
      continue;
    }
    if (::truncate(path.c_str(), static_cast<off_t>(f.durable_size + kept)) != 0) std::abort();
    report.bytes_dropped += unsynced - kept;
    report.bytes_kept += kept;
  }
  files_.clear();
  paths_.clear();
  power_off_ = false;
  countdown_ = -1;
  return report;
}

}  // namespace freshsync::testing
