// IntakeJournal: the append-only file where ingest puts each MQTT message before the broker
// gets its acknowledgement. The batch applier (edge/ingest.cc) later applies the entries to
// the EdgeStore in large transactions and records, in the same transaction, the index of the
// last entry applied; on start the journal hands back exactly the entries after that index.
//
// Ordering invariant (docs/architecture.md, "Intake journal"):
//   Append() returns  =>  the entry survives a process crash (kill -9): write() has returned,
//                         and with sync_each_append (durability = strict) fdatasync too, so it
//                         survives a power cut as well.
//   Only then does the caller return from the Paho callback, which sends the PUBACK.
//   An entry whose Append() failed or was torn by a crash was never acknowledged: Open()
//   drops a torn tail (bad length, checksum or index) and the broker redelivers it.
//
// Format (little-endian), one directory of segments named intake-<first index, 20 digits>.log:
//   segment := magic(8 bytes "FSJRNL02") entry*
//   entry   := body_len:u32 crc:u32 index:u64 body
//   body    := received_ms:i64 flags:u8 topic_len:u16 topic payload   (body_len bytes)
//   crc     := CRC-32C of index and body
//   flags   := kJournalSealed | kJournalWithheld (JournalEntry), or 0: the payload as received
// Version 1 segments ("FSJRNL01", written before flags existed: body := received_ms:i64
// topic_len:u16 topic payload) are still recovered, their entries with flags 0; new entries
// always go to a new segment (Open never appends to a recovered file), so a file holds one
// version only.
// Indexes are dense and increasing across segments. A segment is rotated once it passes
// segment_bytes and deleted once every entry in it is applied (Release()).
//
// Memory: the unapplied entries are also kept in memory for the applier (no read-back in steady
// state); their total is bounded by the caller's backpressure (Ingest waits while Unapplied()
// is over its limit).
//
// Thread-safety: Append() from one thread at a time (the Paho receive thread); Take(),
// Release() and the observers from any thread (the applier).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <sys/types.h>

#include "common/status.h"

namespace freshsync::edge {

// The journal's writing file-system calls, behind a seam (as EdgeStore has its SQLite VFS) so
// that a test can cut the power under them and roll the files back to what a disk would hold
// (tests/support/power_cut_files.h). Each call behaves like the POSIX call it names: -1 with
// errno set on failure. Reads (recovery) go straight to the files: they see whatever the disk
// holds. PosixJournalFiles() is the real disk; it is stateless and thread-safe.
class JournalFiles {
 public:
  virtual ~JournalFiles() = default;
  virtual int Open(const std::string& path, int flags, mode_t mode) = 0;  // open(2)
  virtual ssize_t Write(int fd, const void* data, size_t n) = 0;           // write(2)
  virtual int DataSync(int fd) = 0;                                        // fdatasync(2)
  virtual int Truncate(int fd, off_t size) = 0;                            // ftruncate(2)
  virtual int TruncatePath(const std::string& path, off_t size) = 0;       // truncate(2)
  virtual int Close(int fd) = 0;                                           // close(2)
  virtual int Unlink(const std::string& path) = 0;                         // unlink(2)
  virtual int SyncDir(const std::string& dir) = 0;  // open(O_DIRECTORY) + fsync(2) + close
};
JournalFiles& PosixJournalFiles();

// JournalEntry::flags: what the payload field holds (ingest decides, edge/ingest.cc Accept; a
// payload that may carry personal data is never journaled in clear, docs/security.md).
// The payload is a Sealer blob (privacy/sealer.h) of the payload as received.
constexpr uint8_t kJournalSealed = 0x01;
// The payload was not kept (it may carry personal data, no privacy key, and it cannot be
// redacted): the field holds the reason it is refused (Decode's, which never quotes payload
// bytes); the applier dead-letters it without a payload.
constexpr uint8_t kJournalWithheld = 0x02;

struct JournalEntry {
  uint64_t index = 0;
  int64_t received_ms = 0;
  std::string topic;
  std::string payload;
  uint8_t flags = 0;
};

struct IntakeJournalOptions {
  std::string dir;                       // created if missing (0700)
  bool sync_each_append = false;         // durability = strict: fdatasync before Append returns
  uint64_t segment_bytes = 8u << 20;     // rotate after this many bytes
  JournalFiles* files = nullptr;         // nullptr: PosixJournalFiles(); must outlive the journal
};

class IntakeJournal {
 public:
  static constexpr size_t kMaxTopic = 65535;

  // Opens the directory, deletes segments whose entries are all <= applied_index, drops a torn
  // tail of the last segment (truncating the file), and queues every valid entry after
  // applied_index for Take(). New entries get indexes above max(last valid, applied_index).
  // kIOError when the directory or a segment cannot be read or written.
  static Result<std::unique_ptr<IntakeJournal>> Open(IntakeJournalOptions options, uint64_t applied_index);
  ~IntakeJournal();
  IntakeJournal(const IntakeJournal&) = delete;
  IntakeJournal& operator=(const IntakeJournal&) = delete;

  // Appends one message; returns its index once durable (see the invariant above). kIOError:
  // nothing was appended (a partial write is cut back off), the caller must not acknowledge.
  // kInvalidArgument: topic longer than kMaxTopic.
  Result<uint64_t> Append(std::string_view topic, std::string_view payload, int64_t received_ms, uint8_t flags = 0);

  // Moves up to max_entries queued (appended, not yet taken) entries into *out, oldest first.
  // Waits up to wait_ms for the first one; returns false if none came.
  bool Take(size_t max_entries, int wait_ms, std::vector<JournalEntry>* out);
  // Wakes a Take() that is waiting (shutdown).
  void Interrupt();
  // Backpressure: waits until fewer than max_entries entries and max_bytes bytes are
  // unapplied, or timeout_ms passed, or CancelRoomWaits() was called. True if there is room.
  bool WaitForRoom(uint64_t max_entries, uint64_t max_bytes, int timeout_ms);
  // Shutdown: every WaitForRoom, now and later, returns at once. The Paho callback must not
  // sit in WaitForRoom while Stop() needs Paho's lock to disconnect (docs/architecture.md,
  // "Who waits on whom").
  void CancelRoomWaits();
  // Entries up to `index` are committed in the store: forget them and delete the segments
  // that hold nothing else.
  void Release(uint64_t index);
  // Clean shutdown, with no Append() running: if every entry is released, deletes every
  // segment (the one being appended to as well) and returns true; otherwise changes nothing.
  // So a journal left by a clean stop is empty and replays nothing into whatever store it
  // meets next, such as an earlier copy of the store put back by an operator (its entries
  // belong to the store that applied them). A later Append() starts a new segment.
  bool RemoveIfAllApplied();

  uint64_t last_index() const;     // last appended (or recovered) index; 0 if none ever
  uint64_t applied_index() const;  // last Release()d
  // Appended and not yet released: what the applier still has to do.
  uint64_t UnappliedEntries() const;
  uint64_t UnappliedBytes() const;
  // Entries dropped by Open() as a torn tail (never acknowledged).
  uint64_t torn_entries_dropped() const { return torn_dropped_; }
  size_t segment_count() const;

  // Called before every write(); a non-ok Status fails that Append as a disk would.
  void SetAppendFaultForTest(std::function<Status()> fault) { append_fault_ = std::move(fault); }

 private:
  struct Segment {
    uint64_t first_index = 0;
    std::string path;
  };
  explicit IntakeJournal(IntakeJournalOptions options);
  Status Recover(uint64_t applied_index);
  Status OpenNewSegment(uint64_t first_index);
  void DeleteReleasedSegments();  // mu_ held

  IntakeJournalOptions options_;
  JournalFiles& files_;
  std::function<Status()> append_fault_;
  // Appender's own state (one appending thread).
  int fd_ = -1;
  uint64_t segment_size_ = 0;
  std::string buf_;  // encoding buffer, reused
  uint64_t torn_dropped_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool interrupted_ = false;
  bool room_waits_cancelled_ = false;
  std::vector<Segment> segments_;     // oldest first; the last one is being appended to
  std::deque<JournalEntry> queued_;   // appended, not yet taken
  std::deque<std::pair<uint64_t, uint64_t>> sizes_;  // (index, bytes) of entries not yet released
  uint64_t unapplied_bytes_ = 0;
  uint64_t last_index_ = 0;
  uint64_t applied_index_ = 0;
};

// CRC-32C (Castagnoli), as used in the entry header. Exposed for tests.
uint32_t Crc32c(const void* data, size_t n, uint32_t crc = 0);

// For edgectl: the last index in the journal at `dir` (0 if empty or missing), without
// opening it for writing.
Result<uint64_t> ReadJournalLastIndex(const std::string& dir);

// Where the intake journal of the store at `store_path` lives (edged, edgectl restore, tests).
inline std::string IntakeJournalDir(const std::string& store_path) { return store_path + ".intake"; }

}  // namespace freshsync::edge
