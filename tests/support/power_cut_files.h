// PowerCutFiles: the intake journal's file calls (edge::JournalFiles) with a power cut, the
// journal's counterpart of FaultVfs (fault_vfs.h) for the SQLite store.
//
// Model of the disk. A file's content is durable up to the size it had at its last DataSync;
// what was appended since sits in a write-back cache. A file created since its directory was
// last synced (SyncDir) has no durable name yet. Unlinks are taken as durable at once (the
// journal only deletes segments whose entries are all in the store; a segment that came back
// after a cut would be skipped by its indexes anyway). DataSync and SyncDir are not passed to
// the real disk: this bookkeeping is the model, and real syncs would only slow the tests.
//
// The cut. ArmPowerCut(n): the n-th write/sync/truncate/unlink/create from now finds the power
// off, as does every one after it (-1, errno EIO); the cut listener then runs once, on the
// thread that hit it. RestoreAfterPowerCut() rolls every file back to what a disk holds after
// the cut: its durable size, or, in the torn mode, its durable size plus a random prefix of
// what was appended since (an ordered write-back cache that flushed part of its queue); a file
// without a durable name is gone (or, torn, kept with that prefix). Writes run under the lock
// that the cut takes, so no write can land after the files were rolled back.
//
// Thread-safety: all methods lock. Journal files must be append-only, as IntakeJournal's are.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>

#include "edge/intake_journal.h"

namespace freshsync::testing {

class PowerCutFiles final : public edge::JournalFiles {
 public:
  int Open(const std::string& path, int flags, mode_t mode) override;
  ssize_t Write(int fd, const void* data, size_t n) override;
  int DataSync(int fd) override;
  int Truncate(int fd, off_t size) override;
  int TruncatePath(const std::string& path, off_t size) override;
  int Close(int fd) override;
  int Unlink(const std::string& path) override;
  int SyncDir(const std::string& dir) override;

  void ArmPowerCut(int64_t n);
  void PowerOffNow();
  bool power_off() const;
  // Runs once when an armed cut fires, on the thread whose call found the power off, with no
  // lock of this object held.
  void SetCutListener(std::function<void()> f);

  struct CutReport {
    int64_t files = 0;          // files that had unsynced bytes or no durable name
    int64_t bytes_dropped = 0;  // unsynced bytes undone
    int64_t bytes_kept = 0;     // unsynced bytes that survived (torn mode only)
    int64_t files_removed = 0;  // created, never made durable by SyncDir
  };
  // Call once nothing writes any more. `torn`: keep a random prefix of each file's unsynced
  // bytes; nullptr: drop them all. Powers back on and forgets every open file.
  CutReport RestoreAfterPowerCut(std::mt19937* torn);

  int64_t syncs() const;

 private:
  struct FileState {
    int64_t durable_size = 0;
    bool durable_name = true;
  };
  // Runs `op` (a disk call, under mu_) unless the power is off; -1 with errno EIO otherwise. The
  // call that meets the armed cut fails too, after running the cut listener.
  template <typename Op>
  auto Gated(Op op) -> decltype(op());
  static int64_t SizeOf(int fd);

  mutable std::mutex mu_;
  std::map<int, std::string> paths_;        // open fds
  std::map<std::string, FileState> files_;  // every file written through this object
  int64_t countdown_ = -1;
  bool power_off_ = false;
  std::function<void()> cut_listener_;
  int64_t syncs_ = 0;
};

}  // namespace freshsync::testing
