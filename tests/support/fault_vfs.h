// FaultVfs: a SQLite VFS that wraps the default one ("unix") and simulates what a disk does
// under damage, for tests that open a store through it (StoreOptions::vfs_name).
//
// Power loss. Every write and truncate of the main database, its WAL and its rollback journal
// is recorded with the bytes it overwrote, until the file's next xSync makes it durable. The
// power cut is armed to happen at the N-th write/sync/truncate: that operation and every one
// after it fail with SQLITE_IOERR (the machine is off; nothing reaches the disk). Once every
// connection through the VFS is closed, RestoreAfterPowerCut() rolls each file back to what a
// disk would hold after the cut: its content at its last sync, plus, in the torn mode, a
// random prefix of the writes made since (an ordered write-back cache flushing part of its
// queue). xSync is not passed to the real disk: the test's model of durability is this
// bookkeeping, and real fsyncs would only make the tests slow.
//
// I/O errors. InjectErrors() makes writes or syncs fail with a chosen SQLite code (SQLITE_FULL
// for ENOSPC, SQLITE_IOERR_WRITE / SQLITE_IOERR_FSYNC for EIO) for a number of calls, after
// which the disk works again.
//
// Files opened without a name (temp files) and the -shm index are passed through untracked:
// the index is rebuilt from the WAL when the first connection opens the database again.
// Thread-safety: all methods lock; one FaultVfs per name per process.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

struct sqlite3_vfs;

namespace freshsync::testing {

class FaultVfs {
 public:
  // Registers a VFS called `name` (not the default) wrapping SQLite's default VFS.
  explicit FaultVfs(std::string name);
  ~FaultVfs();  // unregisters; no connection may still use it
  FaultVfs(const FaultVfs&) = delete;
  FaultVfs& operator=(const FaultVfs&) = delete;
  const std::string& name() const { return name_; }

  // ---- power loss ----
  // The `n`-th write/sync/truncate from now (1 = the next one) finds the power off.
  void ArmPowerCut(int64_t n);
  void PowerOffNow();
  bool power_off() const;
  // Runs once when an armed cut fires, on the thread whose call found the power off, with no
  // lock of the VFS held (that call still fails as usual if the listener returns).
  void SetCutListener(std::function<void()> f);
  struct CutReport {
    int64_t files = 0;
    int64_t writes_dropped = 0;   // unsynced writes undone
    int64_t writes_kept = 0;      // unsynced writes that survived (torn mode only)
  };
  // Call with every connection closed. `torn`: keep a random prefix of each file's unsynced
  // writes; nullptr: drop them all. Powers the VFS back on.
  CutReport RestoreAfterPowerCut(std::mt19937* torn);

  // ---- I/O errors ----
  enum class Op { kWrite, kSync };
  // After `skip` more successful calls of `op`, the next `count` calls fail with `sqlite_code`
  // (count < 0: until ClearErrors()). Replaces any earlier rule for `op`.
  void InjectErrors(Op op, int sqlite_code, int64_t skip, int64_t count);
  void ClearErrors();

  // ---- observation ----
  // Called (under no lock of the VFS) after each successful sync of a tracked file, with its path.
  void SetSyncListener(std::function<void(const std::string& path)> f);
  int64_t syncs() const;
  int64_t writes() const;
  int64_t errors_injected() const;
  // Writes not yet made durable by a sync, over all files.
  int64_t unsynced_writes() const;

  // For the file shim (fault_vfs.cc); not for tests.
  struct Hooks;

 private:
  struct Undo {
    int64_t offset;
    std::string old_bytes;   // what the write or truncate replaced
    int64_t size_before;     // file size before the operation
  };
  struct Rule {
    int code = 0;
    int64_t skip = 0;
    int64_t count = 0;
  };
  friend struct Hooks;
  // Returns 0 to let the operation through, or the SQLite code it fails with.
  int Gate(Op op);

  std::string name_;
  std::unique_ptr<sqlite3_vfs> vfs_;
  mutable std::mutex mu_;
  std::map<std::string, std::vector<Undo>> undo_;  // by path
  int64_t power_countdown_ = -1;                   // < 0: not armed
  bool power_off_ = false;
  std::map<Op, Rule> rules_;
  std::function<void(const std::string&)> sync_listener_;
  std::function<void()> cut_listener_;
  int64_t syncs_ = 0, writes_ = 0, errors_injected_ = 0;
};

}  // namespace freshsync::testing
