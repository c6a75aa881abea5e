#include "tests/support/power_cut_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace freshsync::testing {

template <typename Op>
auto PowerCutFiles::Gated(Op op) -> decltype(op()) {
  bool fired = false, refused = false;
  decltype(op()) rc = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (countdown_ > 0 && --countdown_ == 0) {
      power_off_ = true;
      countdown_ = -1;
      fired = true;
    }
    // The operation runs under the lock, so none can land after a cut rolled the files back.
    refused = power_off_;
    if (!refused) rc = op();
  }
  if (fired) {
    std::function<void()> listener;
    {
      std::lock_guard<std::mutex> lock(mu_);
      listener = cut_listener_;
    }
    if (listener) listener();
  }
  if (refused) errno = EIO;  // set last: the listener may have touched errno
  return rc;
}

int64_t PowerCutFiles::SizeOf(int fd) {
  struct stat st;
  return ::fstat(fd, &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

int PowerCutFiles::Open(const std::string& path, int flags, mode_t mode) {
  auto open = [&] {
    const bool existed = ::access(path.c_str(), F_OK) == 0;
    const int fd = ::open(path.c_str(), flags, mode);
    if (fd < 0) return fd;
    paths_[fd] = path;
    auto [it, inserted] = files_.try_emplace(path);
    if (!existed) it->second = FileState{0, false};
    else if (inserted) it->second = FileState{SizeOf(fd), true};
    // O_TRUNC on a file with durable content: the journal only does this to a file that holds
    // no valid entry, so what it loses at a cut does not matter; count it as synced.
    if ((flags & O_TRUNC) != 0) it->second.durable_size = 0;
    return fd;
  };
  if ((flags & O_CREAT) != 0) return Gated(open);  // creating is a disk write; opening is not
  std::lock_guard<std::mutex> lock(mu_);
  return open();
}

ssize_t PowerCutFiles::Write(int fd, const void* data, size_t n) {
  return Gated([&] { return ::write(fd, data, n); });
}

int PowerCutFiles::DataSync(int fd) {
  return Gated([&] {
    if (auto it = paths_.find(fd); it != paths_.end()) files_[it->second].durable_size = SizeOf(fd);
    ++syncs_;
    return 0;
  });
}

int PowerCutFiles::Truncate(int fd, off_t size) {
  return Gated([&] {
    const int rc = ::ftruncate(fd, size);
    if (auto it = paths_.find(fd); rc == 0 && it != paths_.end()) {
      FileState& f = files_[it->second];
      if (f.durable_size > size) f.durable_size = size;  // a shrink: taken as durable
    }
    return rc;
  });
}

int PowerCutFiles::TruncatePath(const std::string& path, off_t size) {
  return Gated([&] {
    const int rc = ::truncate(path.c_str(), size);
    if (auto it = files_.find(path); rc == 0 && it != files_.end() && it->second.durable_size > size)
      it->second.durable_size = size;
    return rc;
  });
}

int PowerCutFiles::Close(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  paths_.erase(fd);
  return ::close(fd);
}

int PowerCutFiles::Unlink(const std::string& path) {
  return Gated([&] {
    const int rc = ::unlink(path.c_str());
    if (rc == 0) files_.erase(path);
    return rc;
  });
}

int PowerCutFiles::SyncDir(const std::string& dir) {
  return Gated([&] {
    const std::string prefix = dir + "/";
    for (auto& [path, f] : files_)
      if (path.compare(0, prefix.size(), prefix) == 0 && path.find('/', prefix.size()) == std::string::npos)
        f.durable_name = true;
    ++syncs_;
    return 0;
  });
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
