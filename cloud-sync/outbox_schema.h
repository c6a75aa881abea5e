// The edge store tables the sync agent reads and writes, exactly as docs/sync-protocol.md
// fixes them. One copy of the DDL, so that the edge store, the agent's unit tests and the
// benchmarks cannot drift apart. The edge store owns the tables (creates and migrates them);
// the agent never creates them in production.
#pragma once

namespace freshsync::sync {

// Grammar of `outbox.record`: a serialized freshsync.v1.ChangeRecord without `site` (the batch
// carries it). The agent appends these bytes to a Batch unparsed.
inline constexpr const char* kOutboxDdl = R"sql(
CREATE TABLE outbox(
  seq        INTEGER PRIMARY KEY,   -- dense per site, from 1
  entity     INTEGER NOT NULL,      -- proto Entity enum value
  key        TEXT    NOT NULL,
  version    INTEGER NOT NULL,
  hlc        INTEGER NOT NULL,
  priority   INTEGER NOT NULL,      -- 1: orders, stock, alerts, geofence; 0: bulk telemetry
  created_ms INTEGER NOT NULL,      -- edge wall clock at commit
  record     BLOB    NOT NULL       -- serialized freshsync.v1.ChangeRecord
);
)sql";

inline constexpr const char* kSyncStateDdl = R"sql(
CREATE TABLE sync_state(
  name  TEXT PRIMARY KEY,           -- 'acked_seq', 'urgent_sent_seq', 'acked_at_ms', ...
  value INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

// sync_state names. The agent writes all of them; edgectl and the store read them.
inline constexpr const char* kStateAckedSeq = "acked_seq";            // hub's contiguous seq, as last acknowledged
inline constexpr const char* kStateAckedAtMs = "acked_at_ms";         // wall clock of the last ack
inline constexpr const char* kStateUrgentSentSeq = "urgent_sent_seq"; // urgent lane scanned and sent up to here
inline constexpr const char* kStateLinkUp = "link_up";                // 1 after a 2xx/409 answer, 0 after a failure
// Set when the hub holds seqs the edge does not (the edge store was restored from an older
// backup): the highest seq the hub holds. The store allocates every new seq above it
// (next seq = max(max(outbox.seq), acked_seq, seq_floor) + 1), so no seq is reused with
// different content. Absent or 0: no constraint.
inline constexpr const char* kStateSeqFloor = "seq_floor";
// Set by `edgectl restore` in the restored copy: the last seq that copy had allocated
// (max(outbox.seq, acked_seq, seq_floor)). Records above it were written after the restore,
// and the hub may hold other content under the same seqs (from the timeline the backup lost).
// While it is set the agent sends nothing; its first successful reconciliation moves those
// records above the hub's contiguous seq (SyncStore::RenumberAfterRestore) and clears it.
inline constexpr const char* kStateRestoredLastSeq = "restored_last_seq";

}  // namespace freshsync::sync
