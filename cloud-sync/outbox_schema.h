// The sync_state names the sync agent writes, as docs/sync-protocol.md fixes them. The tables
// themselves (outbox, sync_state) are the edge store's: their one DDL is its migration 1
// (edge/migrations.cc), which also documents the columns; the agent never creates them, and
// its tests and benchmarks run on a store migrated by those migrations.
#pragma once

namespace freshsync::sync {

// sync_state names. The agent writes all of them; edgectl and the store read them.
inline constexpr const char* kStateAckedSeq = "acked_seq";            // hub's contiguous seq, as last acknowledged
inline constexpr const char* kStateAckedAtMs = "acked_at_ms";         // wall clock of the last ack
inline constexpr const char* kStateUrgentSentSeq = "urgent_sent_seq"; // urgent lane scanned and sent up to here
inline constexpr const char* kStateLinkUp = "link_up";                // 1 after a 2xx/409 answer, 0 after a failure
// Set when the hub holds seqs the edge does not (the edge store was restored from an older
// backup): the highest seq the hub holds. The store allocates every new seq above it (the
// outbox writer's rule, edge/outbox_writer.h), so no seq is reused with different content.
// Absent or 0: no constraint.
inline constexpr const char* kStateSeqFloor = "seq_floor";
// Set by `edgectl restore` in the restored copy: the last seq that copy had allocated
// (edge/outbox_writer.h, kLastIssuedSeqSql). Records above it were written after the restore,
// and the hub may hold other content under the same seqs (from the timeline the backup lost).
// While it is set the agent sends nothing; its first successful reconciliation moves those
// records above the hub's contiguous seq (SyncStore::RenumberAfterRestore) and clears it.
inline constexpr const char* kStateRestoredLastSeq = "restored_last_seq";
// Downstream (docs/sync-protocol.md, "At the site"): the highest down_seq the site has applied,
// written by the edge store in the transaction of each command it applies (edge/store.h,
// ApplyDownCommand); the puller's next `after`, hence the hub's acknowledgement.
inline constexpr const char* kStateDownAppliedSeq = "down_applied_seq";

}  // namespace freshsync::sync
