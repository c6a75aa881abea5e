// `edgectl restore --from-hub`: a site store rebuilt from what the hub holds, after the edge
// server died with its disk (docs/operations.md, "An edge server died with its disk"). The hub's
// side is hub/rebuild_snapshot.h (GET /v1/sites/{site}/rebuild-snapshot, protobuf
// v1::RebuildSnapshot).
//
// What seeding writes, in one transaction on a freshly migrated store, and why:
//   stock         each lot received through the stock ledger (edge/stock_ledger.h), then the
//                 escrow allotment and each open order's reservation reserved through it
//                 (FEFO: the hub does not know which lot a reservation took), then each SKU's
//                 totals with the hub's version, so the next STOCK record is version + 1 and the
//                 state digests of edge and hub agree;
//   orders        the open orders (status, lines, sealed customer, reason, down_seq);
//   catalog, hq_rule_sets, escrow counters: as the hub holds them;
//   entity_versions per (entity, key) the hub's highest version: a new record never carries
//                 a version the hub would ignore as older;
//   dedupe        the movement ids and "{order}#{status}" keys the hub holds: a message the
//                 broker redelivers after the crash has no second effect;
//   down_applied  "order:{id}" (and "cancel:{id}" for a cancelled order) of every order an HQ
//                 command made or changed: that command, pulled again, has no second effect;
//   sync_state    acked_seq = seq_floor = the hub's contiguous seq (the next record is
//                 floor + 1: no seq the hub holds is reused); down_applied_seq = the highest
//                 down_seq any held ORDER record names. Commands above it are pulled again,
//                 also those the dead edge had acknowledged (delivered_seq) whose effect never
//                 reached the hub: their effect died with the disk, so applying them again is
//                 their one effect here; the down_applied rows and the versions of catalog,
//                 fences and rules make the rest no-ops;
//   edge_meta     hlc_last (no HLC at or below the hub's), rebuilt_from_hub_ms and
//                 rebuilt_seq_floor (edgectl status shows them).
// No outbox record is written: the hub holds all of it already.
//
// Thread-safety: none needed; edgectl's one thread. Refused while edged runs (StoreLock).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/status.h"
#include "freshsync.pb.h"

namespace freshsync::sync {
class Transport;
}

namespace freshsync::edge {

// GET {hub.url}/v1/sites/{site}/rebuild-snapshot over `transport` (the site's mutual TLS).
// kUnavailable when no answer came or on an HTTP error status (with its
// body), kInvalidArgument when the answer is not a snapshot of this site.
Result<v1::RebuildSnapshot> FetchRebuildSnapshot(const EdgeConfig& config, sync::Transport& transport);

struct RebuildSummary {
  uint64_t seq_floor = 0;         // the hub's contiguous seq; the next record is + 1
  uint64_t hub_max_seq = 0;       // the hub's highest held seq (above seq_floor: urgent records)
  uint64_t down_applied_seq = 0;  // the puller's next `after`
  uint64_t delivered_seq = 0;     // what the dead edge had acknowledged
  size_t skus = 0, lots = 0, open_orders = 0, reservations = 0, catalog = 0, escrow = 0;
  size_t commands_marked = 0;     // down_applied rows written
  size_t dedupe_keys = 0;
  uint64_t fences_version = 0, rules_version = 0;
  // Differences between the seeded store and the hub's stock rows (reserved totals that the
  // records' reservations do not reproduce, a reservation stock could not cover): the store
  // is still seeded; the operator sees what to check.
  std::vector<std::string> warnings;
  std::string set_aside;          // with force: where the previous store was moved
};

// Creates the store at `store_path` and seeds it from `snap` (see above). kConflict while
// edged runs, and when a store with content exists there and `force` is false; with `force`
// the old store (and its intake journal) is kept as "<store>.pre-rebuild".
Result<RebuildSummary> SeedStoreFromSnapshot(const std::string& store_path, const v1::RebuildSnapshot& snap, bool force,
                                             int64_t now_ms);

}  // namespace freshsync::edge
