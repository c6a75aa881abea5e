// DownstreamApplier: where HQ's commands take effect at the site (docs/sync-protocol.md, "At
// the site"; who wins: docs/conflicts.md, "HQ and sites"). The puller (cloud-sync/
// downstream_puller.h) hands it each DownBatch on the puller's thread.
//
// How commands reach the writer: through an EdgeStore of their own on the same file (edged
// opens a second connection, as the disk quota does). Every batch is one BEGIN IMMEDIATE
// transaction (one fsync), each command under a savepoint of its own so that it still takes
// effect whole or not at all (EdgeStore::ApplyDownCommands). SQLite's write lock serialises it
// with ingest's batches, and the store's OutboxWriter on that connection reads the next seq and
// the newest HLC inside the transaction: seq stays dense and HLC rising with it, one writer at a
// time. A lock held past busy_timeout is a kIOError: the batch is pulled again later and the
// dedupe rows make what had committed a no-op. The stock ledger runs inside the transaction
// as for local orders, so local and HQ orders see each other's reservations.
//
// After the batch's commit: the committed publications (order states, catalog items) go to
// ingest's publication thread in one hand-over, and a new fence or rule set goes to the site rules (SiteRules::SetHq*),
// which adopt it like a SIGHUP reload. A crash between the commit and that hand-over loses
// nothing: SiteRules::Attach loads the stored sets at start.
//
// Thread-safety: Apply/AppliedSeq from the puller's thread; counters() from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "cloud-sync/downstream_puller.h"
#include "common/clock.h"
#include "edge/publications.h"
#include "edge/store.h"
#include "wire/routes.h"

namespace freshsync::edge {

class SiteRules;

struct DownstreamCounters {
  // Per DownKind value (wire::kDownKindNames): applied with an effect, refused (HQ order or
  // cancel the site refused, a body it could not use), skipped (dedupe, older version).
  std::atomic<int64_t> applied_by_kind[wire::kDownKindCount]{};
  std::atomic<int64_t> refused_by_kind[wire::kDownKindCount]{};
  std::atomic<int64_t> skipped{0};
  std::atomic<uint64_t> applied_seq{0};
};

class DownstreamApplier final : public sync::CommandSink {
 public:
  // `store`: the applier's own connection (see above). `rules`: may be null (no site rules).
  // `publish`: hands committed publications on (Ingest::PublishCommitted); may be empty.
  DownstreamApplier(EdgeStore& store, SiteRules* rules, std::function<void(std::vector<Publication>)> publish,
                    Clock& clock = SystemClock());

  Result<uint64_t> AppliedSeq() override;
  Result<uint64_t> Apply(const v1::DownBatch& batch) override;
  const DownstreamCounters& counters() const { return counters_; }

 private:
  EdgeStore& store_;
  SiteRules* rules_;
  std::function<void(std::vector<Publication>)> publish_;
  Clock& clock_;
  DownstreamCounters counters_;
};

}  // namespace freshsync::edge
