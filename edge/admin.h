// Operator actions on a site store, for edgectl: backup, restore, verify, dead letters (show,
// replay) and a reconciliation request. Each opens its own SQLite connection(s); what they read
// of the store, they read through a StoreReader (edge/store_reader.h).
//
// Concurrency with a running edged:
//   - Backup: safe while edged runs. The source connection holds one read transaction for the
//     whole copy (a WAL snapshot: writers are never blocked) and copies in steps of a few
//     hundred pages, sleeping between steps, so the copy is one consistent commit point.
//   - Restore: refused while edged runs. edged holds an exclusive flock(2) on
//     "<store.path>.lock" for its lifetime (StoreLock below); restore takes the same lock
//     without waiting and fails with kConflict when it is held, and keeps it while it
//     swaps the files, so edged cannot start halfway through.
//   - Verify, dead letters: read-only, safe while edged runs.
//   - Reconcile: one short write of sync_state('reconcile_requested') = 1, picked up by the
//     running agent within about a second (cloud-sync/sync_agent.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/status.h"
#include "edge/store_reader.h"

namespace freshsync::edge {

// The exclusive lock edged holds on "<store path>.lock". kConflict when another
// process holds it, kIOError when the lock file cannot be opened. Released by the destructor.
class StoreLock {
 public:
  static Result<StoreLock> Acquire(const std::string& store_path);
  StoreLock(StoreLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  StoreLock& operator=(StoreLock&&) = delete;
  ~StoreLock();

 private:
  explicit StoreLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

// Consistent online copy of `store_path` into `out_path` (written to out_path + ".tmp",
// fsynced, then renamed). kIOError on SQLite or file errors.
Status BackupStore(const std::string& store_path, const std::string& out_path);

// Replaces the store with `in_path`: integrity_check of the input (kInvalidArgument with the
// findings if it fails, or if it is not an edge store), then copy beside the store, fsync,
// checkpoint and keep the old store as "<store>.pre-restore", remove stale -wal/-shm, rename.
// kConflict while edged runs.
Status RestoreStore(const std::string& in_path, const std::string& store_path);

// Moves the store (its WAL folded in first) to store_path + suffix and its intake journal
// beside it, and removes stale -wal/-shm/-journal files, so a new store can take the name.
// Nothing to move is not an error. Call with the StoreLock held.
Status SetStoreAside(const std::string& store_path, const std::string& suffix);

// PRAGMA integrity_check plus the domain invariants (docs/operations.md). Findings are
// appended to `findings`; ok() with empty findings means the store is sound. kIOError or
// kNotFound when the store cannot be read at all.
Status VerifyStore(const std::string& store_path, std::vector<std::string>* findings);

// kNotFound for an unknown id.
Result<DeadLetterFull> ReadDeadLetter(const std::string& store_path, int64_t id);
// Dead letters with code 'conflict' (refused by a rule: may apply once the cause is fixed).
Result<std::vector<DeadLetterFull>> ReadReplayableDeadLetters(const std::string& store_path);

// Publishes each payload to its topic on the site broker (QoS 1, waiting for the PUBACK), with
// the broker settings of `config.mqtt`. edged then applies (or refuses) it like live traffic.
// Returns how many were published; kUnavailable when the broker cannot be reached.
Result<int64_t> ReplayDeadLetters(const EdgeConfig& config, const std::vector<DeadLetterFull>& letters);

// Sets sync_state('reconcile_requested') = 1.
Status RequestReconcile(const std::string& store_path);

}  // namespace freshsync::edge
