#include "edge/downstream.h"

#include <spdlog/spdlog.h>

#include "edge/site_rules.h"
#include "freshsync.pb.h"

namespace freshsync::edge {

DownstreamApplier::DownstreamApplier(EdgeStore& store, SiteRules* rules, std::function<void(std::vector<Publication>)> publish,
                                     Clock& clock)
    : store_(store), rules_(rules), publish_(std::move(publish)), clock_(clock) {}

Result<uint64_t> DownstreamApplier::AppliedSeq() {
  auto seq = store_.DownAppliedSeq();
  if (seq.ok()) counters_.applied_seq.store(*seq, std::memory_order_relaxed);
  return seq;
}

Result<uint64_t> DownstreamApplier::Apply(const v1::DownBatch& batch) {
  using Effect = EdgeStore::DownResult::Effect;
  for (const v1::DownCommand& c : batch.commands()) {
    // A fence set that does not parse is refused whole (the running fences stay); its dedupe
    // row and the position still commit, so the log moves on.
    std::string reject;
    if (c.has_fences()) {
      if (Status s = SiteRules::CheckHqFences(c.fences().geojson()); !s.ok()) reject = "fences refused: " + s.message();
    }
    auto r = store_.ApplyDownCommand(c, clock_.NowMs(), reject);
    if (!r.ok()) return r.status();
    if (publish_) publish_(store_.TakePublications());
    else (void)store_.TakePublications();
    const int kind = c.kind() > 0 && c.kind() < wire::kDownKindCount ? c.kind() : 0;
    counters_.applied_seq.store(c.down_seq(), std::memory_order_relaxed);
    if (r->effect == Effect::kSkipped) {
      counters_.skipped.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (r->effect == Effect::kRefused) {
      counters_.refused_by_kind[kind].fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("downstream: command {} ({}) refused: {}", c.down_seq(), c.command_id(), r->reason);
      continue;
    }
    counters_.applied_by_kind[kind].fetch_add(1, std::memory_order_relaxed);
    if (rules_ && c.has_fences()) {
      if (Status s = rules_->SetHqFences(c.fences().geojson()); !s.ok())
        spdlog::error("downstream: HQ's fences version {} not combined with the file's: {}", c.fences().version(), s.message());
    } else if (rules_ && c.has_rules()) {
      if (Status s = rules_->SetHqRules(HqColdchainRules(c.rules())); !s.ok())
        spdlog::error("downstream: HQ's cold-chain rules version {} not adopted: {}", c.rules().version(), s.message());
    }
  }
  // through_seq also covers the kinds this site did not ask for.
  if (Status s = store_.AdvanceDownPosition(batch.through_seq()); !s.ok()) return s;
  return AppliedSeq();
}

}  // namespace freshsync::edge
