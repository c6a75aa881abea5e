// The rebuild snapshot of a site (GET /v1/sites/{site}/rebuild-snapshot, docs/api.md): what
// the hub holds of a site, for `edgectl restore --from-hub` to seed a fresh edge store with
// after the edge server died with its disk (docs/operations.md). Read from any HubStore
// through its generic reads (HubStore::Read), so SQLite and PostgreSQL answer alike.
//
// Which facts the hub holds, and which it derives (docs/sync-protocol.md, "Rebuild from the
// hub"):
//   held      the contiguous and highest seq (`sites`), stock per SKU (`stock`), the escrow
//             counters of the site's newest ESCROW record (`escrow`), the catalog
//             (`catalog_items`), the downstream lane (`down_lanes`), HQ's current fences and
//             rules (`down_current`, kept past the lane's retention; CurrentHqRuleSets).
//   derived   from the site's held records, in seq order:
//             - lots: each STOCK record's movement (lot, delta, expiry) moved as the edge's
//               ledger moves it (incoming to its lot, outgoing from its lot or FEFO), then
//               fitted to the SKU's on_hand (a surplus taken FEFO, a shortfall to lot "");
//             - reservations: each STOCK record's change of `reserved` against the SKU's
//               previous record, attributed to its order_id; only open orders keep theirs;
//             - orders: per order its newest record (status, actor, reason) with the lines and
//               sealed customer of the record that carried them, and the down_seq of its
//               newest record naming one; records_down_seq is the highest of all;
//             - per (entity, key) the highest version; the movement ids and order status keys
//               (the edge's dedupe); the highest HLC of the STOCK and ORDER records.
// The reads are not one transaction: the snapshot is for a site that is down (it pushes
// nothing meanwhile); HQ commands appended meanwhile are pulled by the rebuilt edge anyway.
//
// Thread-safety: as the HubStore.
#pragma once

#include <string>

#include "common/status.h"
#include "freshsync.pb.h"
#include "hub/store.h"

namespace freshsync::hub {

// kNotFound when the hub has never heard of the site (no record, no downstream lane).
Result<v1::RebuildSnapshot> ReadRebuildSnapshot(HubStore& store, const std::string& site);

// The site's current HQ fence set and cold-chain rule set: today the bodies of the newest
// fences / coldchain-rules commands still on its downstream lane (unset when retention has
// trimmed them). The one place to switch to a store of the current sets kept past retention.
Status CurrentHqRuleSets(HubStore& store, const std::string& site, v1::RebuildSnapshot& out);

}  // namespace freshsync::hub
