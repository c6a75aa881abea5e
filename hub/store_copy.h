// CopyHubStore: moves a hub from one store to another, site by site, resumable
// (`hubd --migrate-from-sqlite FILE`, docs/operations.md "Moving a hub from SQLite to PostgreSQL").
//
// What is copied, and how:
//   records   each site's held records are *applied* to the target as the site's own batches
//             would be (HubStore::ApplyBatch), in seq order: records up to the source's
//             contiguous seq as normal batches, the ones held above it as urgent batches, and
//             quarantined seqs as refused records with their reason again. So every table the
//             records materialize (stock, orders, positions, alerts, escrow, ...) is built by
//             the same code as for a push, whatever tables the handlers have then, and a
//             second run (or a resumed one) applies nothing twice: the target's contiguous seq
//             is where a site resumes.
//   HQ's side what records cannot rebuild: each site's downstream lane and its commands, the
//             catalog, escrow's hub-side counters (`returned`, `used`) and the audit log. Rows
//             already in the target are left as they are (first copy wins), so a rerun
//             changes nothing; the audit log resumes after the last id copied (a cursor named
//             kAuditCursor in the target's relay cursors).
//   not       feed cursors (the target numbers its feed itself: a follower of /v1/changes or
//             the stream starts again from 0 on the new hub, and the RabbitMQ relay republishes
//             with the same message_id, which consumers deduplicate), leases, relay cursors,
//             per-day usage counters, the time of each site's last push (the copy's time).
//
// The source must not change while it is copied (stop hubd first). Errors come back as the
// stores' statuses; what was committed before stays committed, and a rerun continues.
// Thread-safety: one call at a time per target.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "common/status.h"
#include "hub/store.h"

namespace freshsync::hub {

struct StoreCopyOptions {
  int page = 2000;  // records per applied batch
  // Stops (kUnavailable) after this many applied batches, as an interrupted run would; 0 = no
  // limit. For the resume test.
  int64_t stop_after_batches_for_test = 0;
  std::function<void(const std::string& line)> progress;  // one line per site and step
};

struct StoreCopyReport {
  int sites = 0;
  uint64_t records = 0;    // applied to the target by this run
  uint64_t refused = 0;    // quarantined seqs carried over
  uint64_t commands = 0;   // downstream commands copied
  uint64_t catalog = 0;    // catalog items copied
  uint64_t audit = 0;      // audit entries copied
};

inline constexpr char kAuditCursor[] = "migrate:audit";

Result<StoreCopyReport> CopyHubStore(HubStore& from, HubStore& to, int64_t now_ms, const StoreCopyOptions& options = {});

}  // namespace freshsync::hub
