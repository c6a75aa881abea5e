// StoreReader: the one read side of the site store for everything that is not the store itself:
// edgectl (status, backlog, dead letters, verify), the operator actions of edge/admin.h, the
// /metrics and /readyz queries (edge/metrics.h) and the systemd monitor (edge/service.h). Each
// holds its own StoreReader, a read-only connection of its own (WAL lets it read while edged
// writes); the SQL these read lives here and nowhere else.
//
// The numbers differ on purpose where their readers differ, and each method says how: the
// summary and backlog never show a last seq below acked_seq; Head() reports the outbox's own
// max(seq). None of them takes seq_floor into account (only Verify does).
//
// Thread-safety: none; one thread at a time per reader (the owners serialise their use).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "audit/export.h"
#include "common/status.h"
#include "sqlite/db.h"

namespace freshsync::edge {

struct StoreSummary {
  int64_t last_seq = 0;
  int64_t acked_seq = 0;
  int64_t backlog = 0;       // outbox rows with seq > acked_seq
  int64_t dead_letters = 0;
  bool link_up = false;
  // Downstream (docs/sync-protocol.md "At the site"): sync_state 'down_applied_seq', HQ's
  // commands applied (down_applied rows) and the newest applied_ms; 0 before schema 7.
  int64_t down_applied_seq = 0;
  int64_t down_commands = 0;
  int64_t down_last_applied_ms = 0;
  int64_t catalog_items = 0;
  // Set when the store was rebuilt from the hub (`edgectl restore --from-hub`, edge/rebuild.h):
  // when, and the hub's contiguous seq it continued from; 0 otherwise.
  int64_t rebuilt_from_hub_ms = 0;
  int64_t rebuilt_seq_floor = 0;
};

// edge_meta names written by a rebuild from the hub (edge/rebuild.h), read into StoreSummary.
inline constexpr char kMetaRebuiltFromHubMs[] = "rebuilt_from_hub_ms";
inline constexpr char kMetaRebuiltSeqFloor[] = "rebuilt_seq_floor";

// An escrow allotment as the site holds it (docs/escrow.md; the `escrow` table, schema 8):
// `held` is the reservation now; granted to HQ and still held = given - returned_applied -
// consumed_applied unless stock behind it was lost.
struct EscrowSummary {
  std::string sku;
  int64_t target = 0, given = 0, returned_applied = 0, consumed_applied = 0, held = 0;
};

struct DeadLetterRow {
  int64_t id = 0;
  int64_t received_ms = 0;
  std::string topic;
  std::string code;
  std::string reason;
  int64_t payload_bytes = 0;
};

// A dead letter with the payload as stored: redacted for orders, truncated at 4 KiB.
struct DeadLetterFull : DeadLetterRow {
  std::string payload;
};

// The records the hub has not acknowledged (seq > acked_seq), by sync lane (outbox.priority:
// the sync agent sends lane 1 ahead of lane 0; docs/sync-protocol.md).
struct BacklogSummary {
  int64_t last_seq = 0;
  int64_t acked_seq = 0;
  int64_t backlog = 0;           // = priority + bulk; the same number as StoreSummary::backlog
  int64_t priority = 0;          // lane 1: orders, stock, alerts, geofence events
  int64_t bulk = 0;              // lane 0: vehicle positions, climate readings
  int64_t oldest_created_ms = 0; // edge wall clock at commit of the oldest such record; 0 if none
};

// The outbox's max(seq) and acked_seq as stored, 0 for none; read in one statement.
struct OutboxHead {
  int64_t last_seq = 0;
  int64_t acked_seq = 0;
};

class StoreReader {
 public:
  // Read-only; kNotFound (`path` + ": no store database") when the file does not exist.
  static Result<StoreReader> Open(const std::string& path, int busy_timeout_ms);

  // One read transaction, so the numbers agree. last_seq is at least acked_seq.
  Result<StoreSummary> Summary();
  // Every allotment, by sku; empty before schema 8.
  Result<std::vector<EscrowSummary>> Escrow();
  // One read transaction, so the counts agree. last_seq is at least acked_seq.
  Result<BacklogSummary> Backlog();
  Result<OutboxHead> Head();
  // created_ms of the oldest record above acked_seq; 0 when none.
  Result<int64_t> OldestUnackedCreatedMs();

  // Newest first, at most `limit`.
  Result<std::vector<DeadLetterRow>> DeadLetters(int64_t limit);
  // kNotFound for an unknown id.
  Result<DeadLetterFull> DeadLetter(int64_t id);
  // Code 'conflict' (refused by a rule: may apply once the cause is fixed), oldest first.
  Result<std::vector<DeadLetterFull>> ReplayableDeadLetters();
  // Stored dead letters by code, as (code, count), in the order SQLite groups them.
  Result<std::vector<std::pair<std::string, int64_t>>> DeadLettersByCode();

  // Open cold-chain alerts (excursion and offline) from the cold-chain engine's per-sensor
  // snapshots in rule_state (edge/coldchain/coldchain_engine.cc, Encode: "exc" is an open
  // excursion alert, "off" an open offline alert); 0 without a rule_state table (before v3).
  Result<int64_t> OpenColdchainAlerts();

  // The cold-chain audit chain of `sensor` for `edgectl export-coldchain` (audit/export.h):
  // every link from the first to the last whose device time is in [from_ms, to_ms], in index
  // order, each seal after its last link, and the link before the first (header). A reading's
  // content comes from its climate_readings row: a link whose row the disk quota thinned is
  // `thinned`; one whose row is gone otherwise is written as missing (the verifier fails it).
  // One snapshot. Empty items when the sensor has no link in the range.
  Status ColdchainExport(const std::string& sensor, int64_t from_ms, int64_t to_ms, audit::ExportHeader* header,
                         std::vector<audit::ExportItem>* items);

  // PRAGMA integrity_check: each line that is not "ok" is appended to `findings`.
  Status IntegrityCheck(std::vector<std::string>* findings);
  // The tables outbox, sync_state and stock are there.
  bool IsEdgeStore();
  // The domain invariants of docs/operations.md (stock, outbox density, acked_seq), read in one
  // snapshot; each breach (or a query that fails) is appended to `findings`.
  Status Verify(std::vector<std::string>* findings);

  // The connection, for an online backup (sqlite3_backup reads from it).
  sqlite3* handle() const { return db_.get(); }

 private:
  explicit StoreReader(sqlite::Db db) : db_(std::move(db)) {}
  sqlite::Db db_;
};

// One-shot readers for edgectl and tests: open, read, close. kNotFound when the database does
// not exist.
Result<StoreSummary> ReadStoreSummary(const std::string& path);
Result<std::vector<EscrowSummary>> ReadEscrow(const std::string& path);
Result<BacklogSummary> ReadBacklog(const std::string& path);
Result<std::vector<DeadLetterRow>> ReadDeadLetters(const std::string& path, int64_t limit);

}  // namespace freshsync::edge
