// The sync agent's own view of the edge store file: its own SQLite connection, statements
// prepared once, reading `outbox` and reading/writing `sync_state` (DDL in outbox_schema.h).
//
// The store (edge/) owns the file, its WAL mode and its schema; ingest writes the same file
// from another connection. So every write here is a short transaction, and the connection
// waits for the lock up to busy_timeout_ms instead of failing at once.
//
// Status codes: SQLite failures through the one mapping (sqlite/status.h): kIOError for the
// environment (including SQLITE_BUSY after the timeout: the caller retries later), kConflict
// for a constraint, kInternal for corruption or a bug; kNotFound when the file or the tables
// are missing at Open.
// Thread-safety: none; one SyncStore per thread (the agent's thread).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "wire/digest.h"
#include "common/status.h"
#include "sqlite/db.h"

namespace freshsync::sync {

struct OutboxRow {
  uint64_t seq = 0;
  int priority = 0;
  int64_t created_ms = 0;
  std::string record;  // serialized ChangeRecord
};

// The edge's current-state digest (wire/digest.h StateDigester over the `stock` table) and the
// outbox's last seq, read in one read transaction so they describe the same snapshot.
struct StockSnapshot {
  bool available = false;  // false: the store has no `stock` table (nothing to compare)
  std::string digest;      // 32 raw bytes
  uint64_t skus = 0;
  uint64_t last_seq = 0;   // max(outbox.seq) in the same snapshot
};

class SyncStore {
 public:
  static Result<std::unique_ptr<SyncStore>> Open(const std::string& path, int busy_timeout_ms);
  ~SyncStore();
  SyncStore(const SyncStore&) = delete;
  SyncStore& operator=(const SyncStore&) = delete;

  // sync_state value, or `def` when the row is absent.
  Result<int64_t> GetState(const char* name, int64_t def);
  // Upserts all pairs in one transaction.
  Status SetStates(const std::vector<std::pair<const char*, int64_t>>& values);

  // max(seq) and min(seq) of the outbox; 0 when empty.
  Result<uint64_t> LastSeq();
  Result<uint64_t> FirstSeq();

  // Rows with after < seq <= upto, ascending, at most max_records and, past the first row,
  // at most max_bytes of record bytes. `*full` says whether a limit stopped the read.
  Status ReadRange(uint64_t after, uint64_t upto, int max_records, int64_t max_bytes, std::vector<OutboxRow>* out,
                   bool* full);
  // Priority rows (priority = 1) with after < seq <= upto, same limits.
  Status ReadPriority(uint64_t after, uint64_t upto, int max_records, int64_t max_bytes,
                      std::vector<OutboxRow>* out, bool* full);

  // Deletes acknowledged rows: seq <= upto and created_ms < cutoff_ms, at most `chunk` rows
  // per transaction and at most `max_chunks` transactions, so that ingest never waits long
  // for the write lock. Returns the number of rows deleted.
  Result<int64_t> TrimAcked(uint64_t upto, int64_t cutoff_ms, int chunk, int max_chunks);

  // After an edge restore (outbox_schema.h, kStateRestoredLastSeq): in one write transaction,
  // moves every outbox row with seq > restored_last up by (hub_contiguous - restored_last),
  // rewriting the seq inside its record and in the raw telemetry rows that point at it, and
  // sets acked_seq, urgent_sent_seq and seq_floor to hub_contiguous and restored_last_seq to 0.
  // Rows are moved highest first, so no two ever share a seq. Requires hub_contiguous >
  // restored_last. Returns the number of rows moved. kIOError: nothing changed (rolled back).
  // The one transaction holds the write lock for the whole move (ingest waits and retries
  // with its journal holding the messages): about a second per 100k rows here.
  Result<int64_t> RenumberAfterRestore(uint64_t restored_last, uint64_t hub_contiguous);

  // Current-state digest of the edge's stock, with the outbox's last seq (one snapshot).
  Result<StockSnapshot> StockDigest();

  // Digest of the outbox over [from, to] (wire/digest.h).
  Result<std::vector<digest::DigestBucket>> Digest(uint64_t from, uint64_t to, uint32_t buckets);

 private:
  SyncStore() = default;
  Status Exec(const char* sql);
  // Upserts sync_state rows inside the caller's transaction.
  Status WriteStates(const std::vector<std::pair<const char*, int64_t>>& values);
  Status Error(const char* what);
  Status ReadWith(sqlite::Stmt& stmt, uint64_t after, uint64_t upto, int max_records, int64_t max_bytes,
                  std::vector<OutboxRow>* out, bool* full);

  sqlite::Db db_;  // declared first: the statements are finalized before it closes
  sqlite::Stmt get_state_, set_state_, last_seq_, first_seq_, read_range_, read_priority_, trim_, digest_;
};

}  // namespace freshsync::sync
