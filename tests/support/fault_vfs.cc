#include "tests/support/fault_vfs.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstring>

namespace freshsync::testing {

namespace {

// Our file object: SQLite allocates szOsFile bytes; the real (unix) file follows ours.
struct ShimFile {
  sqlite3_file base;
  FaultVfs* owner;
  sqlite3_file* real;
  bool tracked;
  char path[512];
};

sqlite3_vfs* Root(sqlite3_vfs* v) { return static_cast<sqlite3_vfs*>(v->pAppData); }
ShimFile* Shim(sqlite3_file* f) { return reinterpret_cast<ShimFile*>(f); }
FaultVfs* Owner(sqlite3_vfs* v);

}  // namespace

struct FaultVfs::Hooks {
  // Records the bytes a write at [offset, offset+amount) will replace.
  static void RecordWrite(ShimFile* f, int64_t offset, int amount) {
    sqlite3_int64 size = 0;
    f->real->pMethods->xFileSize(f->real, &size);
    Undo u{offset, {}, size};
    if (offset < size) {
      const int64_t n = std::min<int64_t>(amount, size - offset);
      u.old_bytes.resize(static_cast<size_t>(n));
      f->real->pMethods->xRead(f->real, u.old_bytes.data(), static_cast<int>(n), offset);
    }
    std::lock_guard<std::mutex> lock(f->owner->mu_);
    f->owner->undo_[f->path].push_back(std::move(u));
  }
  static void RecordTruncate(ShimFile* f, int64_t new_size) {
    sqlite3_int64 size = 0;
    f->real->pMethods->xFileSize(f->real, &size);
    Undo u{new_size, {}, size};
    if (new_size < size) {
      u.old_bytes.resize(static_cast<size_t>(size - new_size));
      f->real->pMethods->xRead(f->real, u.old_bytes.data(), static_cast<int>(u.old_bytes.size()), new_size);
    }
    std::lock_guard<std::mutex> lock(f->owner->mu_);
    f->owner->undo_[f->path].push_back(std::move(u));
  }

  static int Close(sqlite3_file* file) {
    ShimFile* f = Shim(file);
    const int rc = f->real->pMethods ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
    return rc;
  }
  static int Read(sqlite3_file* file, void* buf, int amount, sqlite3_int64 offset) {
    return Shim(file)->real->pMethods->xRead(Shim(file)->real, buf, amount, offset);
  }
  static int Write(sqlite3_file* file, const void* buf, int amount, sqlite3_int64 offset) {
    ShimFile* f = Shim(file);
    if (f->tracked) {
      if (int rc = f->owner->Gate(Op::kWrite)) return rc;
      RecordWrite(f, offset, amount);
    }
    return f->real->pMethods->xWrite(f->real, buf, amount, offset);
  }
  static int Truncate(sqlite3_file* file, sqlite3_int64 size) {
    ShimFile* f = Shim(file);
    if (f->tracked) {
      // A truncate is a write as far as the disk is concerned: it counts towards the cut.
      if (int rc = f->owner->Gate(Op::kWrite)) return rc == SQLITE_IOERR_WRITE ? SQLITE_IOERR_TRUNCATE : rc;
      RecordTruncate(f, size);
    }
    return f->real->pMethods->xTruncate(f->real, size);
  }
  static int Sync(sqlite3_file* file, int /*flags*/) {
    ShimFile* f = Shim(file);
    if (!f->tracked) return SQLITE_OK;
    if (int rc = f->owner->Gate(Op::kSync)) return rc == SQLITE_IOERR_WRITE ? SQLITE_IOERR_FSYNC : rc;
    std::function<void(const std::string&)> listener;
    {
      std::lock_guard<std::mutex> lock(f->owner->mu_);
      f->owner->undo_.erase(f->path);  // durable now
      ++f->owner->syncs_;
      listener = f->owner->sync_listener_;
    }
    if (listener) listener(f->path);
    return SQLITE_OK;
  }
  static int FileSize(sqlite3_file* file, sqlite3_int64* size) { return Shim(file)->real->pMethods->xFileSize(Shim(file)->real, size); }
  static int Lock(sqlite3_file* file, int l) { return Shim(file)->real->pMethods->xLock(Shim(file)->real, l); }
  static int Unlock(sqlite3_file* file, int l) { return Shim(file)->real->pMethods->xUnlock(Shim(file)->real, l); }
  static int CheckReservedLock(sqlite3_file* file, int* out) {
    return Shim(file)->real->pMethods->xCheckReservedLock(Shim(file)->real, out);
  }
  static int FileControl(sqlite3_file* file, int op, void* arg) {
    return Shim(file)->real->pMethods->xFileControl(Shim(file)->real, op, arg);
  }
  static int SectorSize(sqlite3_file* file) { return Shim(file)->real->pMethods->xSectorSize(Shim(file)->real); }
  static int DeviceCharacteristics(sqlite3_file* file) {
    return Shim(file)->real->pMethods->xDeviceCharacteristics(Shim(file)->real);
  }
  static int ShmMap(sqlite3_file* file, int page, int size, int extend, void volatile** out) {
    return Shim(file)->real->pMethods->xShmMap(Shim(file)->real, page, size, extend, out);
  }
  static int ShmLock(sqlite3_file* file, int offset, int n, int flags) {
    return Shim(file)->real->pMethods->xShmLock(Shim(file)->real, offset, n, flags);
  }
  static void ShmBarrier(sqlite3_file* file) { Shim(file)->real->pMethods->xShmBarrier(Shim(file)->real); }
  static int ShmUnmap(sqlite3_file* file, int del) { return Shim(file)->real->pMethods->xShmUnmap(Shim(file)->real, del); }

  // Version 2: no xFetch, so SQLite never memory-maps the database behind our back.
  static constexpr sqlite3_io_methods kMethods = {
      2,        Close,     Read,          Write,     Truncate,    Sync,     FileSize,  Lock,
      Unlock,   CheckReservedLock, FileControl, SectorSize, DeviceCharacteristics, ShmMap, ShmLock, ShmBarrier,
      ShmUnmap, nullptr,   nullptr};

  static int Open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags, int* out_flags) {
    ShimFile* f = Shim(file);
    std::memset(f, 0, sizeof(ShimFile));
    f->owner = Owner(vfs);
    f->real = reinterpret_cast<sqlite3_file*>(f + 1);
    f->tracked = name != nullptr && (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL)) != 0;
    if (name) std::snprintf(f->path, sizeof(f->path), "%s", name);
    const int rc = Root(vfs)->xOpen(Root(vfs), name, f->real, flags, out_flags);
    // SQLite calls xClose only when pMethods is set; leave it null when the open failed.
    f->base.pMethods = rc == SQLITE_OK ? &kMethods : nullptr;
    return rc;
  }
  static int Delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
    FaultVfs* owner = Owner(vfs);
    if (owner->power_off()) return SQLITE_IOERR_DELETE;
    {
      std::lock_guard<std::mutex> lock(owner->mu_);
      owner->undo_.erase(name);
    }
    return Root(vfs)->xDelete(Root(vfs), name, sync_dir);
  }
  static int Access(sqlite3_vfs* vfs, const char* name, int flags, int* out) { return Root(vfs)->xAccess(Root(vfs), name, flags, out); }
  static int FullPathname(sqlite3_vfs* vfs, const char* name, int n, char* out) {
    return Root(vfs)->xFullPathname(Root(vfs), name, n, out);
  }
  static void* DlOpen(sqlite3_vfs* vfs, const char* name) { return Root(vfs)->xDlOpen(Root(vfs), name); }
  static void DlError(sqlite3_vfs* vfs, int n, char* out) { Root(vfs)->xDlError(Root(vfs), n, out); }
  static void (*DlSym(sqlite3_vfs* vfs, void* h, const char* sym))(void) { return Root(vfs)->xDlSym(Root(vfs), h, sym); }
  static void DlClose(sqlite3_vfs* vfs, void* h) { Root(vfs)->xDlClose(Root(vfs), h); }
  static int Randomness(sqlite3_vfs* vfs, int n, char* out) { return Root(vfs)->xRandomness(Root(vfs), n, out); }
  static int Sleep(sqlite3_vfs* vfs, int us) { return Root(vfs)->xSleep(Root(vfs), us); }
  static int CurrentTime(sqlite3_vfs* vfs, double* out) { return Root(vfs)->xCurrentTime(Root(vfs), out); }
  static int GetLastError(sqlite3_vfs* vfs, int n, char* out) { return Root(vfs)->xGetLastError(Root(vfs), n, out); }
  static int CurrentTimeInt64(sqlite3_vfs* vfs, sqlite3_int64* out) { return Root(vfs)->xCurrentTimeInt64(Root(vfs), out); }
};

namespace {
// The owner of each registered shim VFS, found by the sqlite3_vfs pointer.
std::mutex g_owners_mu;
std::map<sqlite3_vfs*, FaultVfs*> g_owners;

FaultVfs* Owner(sqlite3_vfs* v) {
  std::lock_guard<std::mutex> lock(g_owners_mu);
  return g_owners.at(v);
}
}  // namespace

FaultVfs::FaultVfs(std::string name) : name_(std::move(name)), vfs_(std::make_unique<sqlite3_vfs>()) {
  sqlite3_initialize();
  sqlite3_vfs* root = sqlite3_vfs_find(nullptr);
  sqlite3_vfs& v = *vfs_;
  std::memset(&v, 0, sizeof(v));
  v.iVersion = 2;
  v.szOsFile = static_cast<int>(sizeof(ShimFile)) + root->szOsFile;
  v.mxPathname = root->mxPathname;
  v.zName = name_.c_str();
  v.pAppData = root;
  v.xOpen = Hooks::Open;
  v.xDelete = Hooks::Delete;
  v.xAccess = Hooks::Access;
  v.xFullPathname = Hooks::FullPathname;
  v.xDlOpen = Hooks::DlOpen;
  v.xDlError = Hooks::DlError;
  v.xDlSym = Hooks::DlSym;
  v.xDlClose = Hooks::DlClose;
  v.xRandomness = Hooks::Randomness;
  v.xSleep = Hooks::Sleep;
  v.xCurrentTime = Hooks::CurrentTime;
  v.xGetLastError = Hooks::GetLastError;
  v.xCurrentTimeInt64 = Hooks::CurrentTimeInt64;
  {
    std::lock_guard<std::mutex> lock(g_owners_mu);
    g_owners[vfs_.get()] = this;
  }
  sqlite3_vfs_register(vfs_.get(), 0);
}

FaultVfs::~FaultVfs() {
  sqlite3_vfs_unregister(vfs_.get());
  std::lock_guard<std::mutex> lock(g_owners_mu);
  g_owners.erase(vfs_.get());
}

int FaultVfs::Gate(Op op) {
  std::function<void()> fired;  // the cut listener, when this call is the armed cut
  int rc = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (power_countdown_ > 0 && --power_countdown_ == 0) {
      power_off_ = true;
      power_countdown_ = -1;
      fired = cut_listener_;
    }
    if (power_off_) {
      rc = SQLITE_IOERR_WRITE;
    } else if (auto it = rules_.find(op); it != rules_.end() && it->second.count != 0 && it->second.skip == 0) {
      Rule& r = it->second;
      if (r.count > 0) --r.count;
      ++errors_injected_;
      rc = r.code;
    } else {
      if (it != rules_.end() && it->second.count != 0) --it->second.skip;
      if (op == Op::kWrite) ++writes_;
    }
  }
  if (fired) fired();
  return rc;
}

void FaultVfs::SetCutListener(std::function<void()> f) {
  std::lock_guard<std::mutex> lock(mu_);
  cut_listener_ = std::move(f);
}

void FaultVfs::ArmPowerCut(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  power_countdown_ = n;
}

void FaultVfs::PowerOffNow() {
  std::lock_guard<std::mutex> lock(mu_);
  power_off_ = true;
}

bool FaultVfs::power_off() const {
  std::lock_guard<std::mutex> lock(mu_);
  return power_off_;
}

FaultVfs::CutReport FaultVfs::RestoreAfterPowerCut(std::mt19937* torn) {
  std::lock_guard<std::mutex> lock(mu_);
  CutReport report;
  for (auto& [path, undo] : undo_) {
    if (undo.empty()) continue;
    ++report.files;
    const size_t keep = torn ? (*torn)() % (undo.size() + 1) : 0;
    const int fd = ::open(path.c_str(), O_RDWR);
    if (fd < 0) continue;  // deleted since; SQLite only deletes what it no longer needs
    // Undo newest first: after undoing entry i the file is exactly as it was before it.
    for (size_t i = undo.size(); i-- > keep;) {
      const Undo& u = undo[i];
      if (!u.old_bytes.empty() &&
          ::pwrite(fd, u.old_bytes.data(), u.old_bytes.size(), u.offset) != static_cast<ssize_t>(u.old_bytes.size())) {
        std::abort();  // the test's own disk failed: nothing after this would mean anything
      }
      if (::ftruncate(fd, u.size_before) != 0) std::abort();
    }
    ::close(fd);
    report.writes_dropped += static_cast<int64_t>(undo.size() - keep);
    report.writes_kept += static_cast<int64_t>(keep);
  }
  undo_.clear();
  power_off_ = false;
  power_countdown_ = -1;
  return report;
}

void FaultVfs::InjectErrors(Op op, int sqlite_code, int64_t skip, int64_t count) {
  std::lock_guard<std::mutex> lock(mu_);
  rules_[op] = Rule{sqlite_code, skip, count};
}

void FaultVfs::ClearErrors() {
  std::lock_guard<std::mutex> lock(mu_);
  rules_.clear();
}

void FaultVfs::SetSyncListener(std::function<void(const std::string&)> f) {
  std::lock_guard<std::mutex> lock(mu_);
  sync_listener_ = std::move(f);
}

int64_t FaultVfs::syncs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return syncs_;
}
int64_t FaultVfs::writes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return writes_;
}
int64_t FaultVfs::errors_injected() const {
  std::lock_guard<std::mutex> lock(mu_);
  return errors_injected_;
}
int64_t FaultVfs::unsynced_writes() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t n = 0;
  for (const auto& [p, u] : undo_) n += static_cast<int64_t>(u.size());
  return n;
}

}  // namespace freshsync::testing
