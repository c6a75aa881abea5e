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
  if (batch.commands().empty()) {
    // through_seq also covers the kinds this site did not ask for.
    if (Status s = store_.AdvanceDownPosition(batch.through_seq()); !s.ok()) return s;
    return AppliedSeq();
  }
  std::vector<EdgeStore::DownInput> inputs;
  inputs.reserve(static_cast<size_t>(batch.commands_size()));
  for (const v1::DownCommand& c : batch.commands()) {
    // A fence set that does not parse is refused whole (the running fences stay); its dedupe
    // row and the position still commit, so the log moves on.
    std::string reject;
    if (c.has_fences()) {
      if (Status s = SiteRules::CheckHqFences(c.fences().geojson()); !s.ok()) reject = "fences refused: " + s.message();
    }
    inputs.push_back({&c, std::move(reject)});
  }
  // The whole batch in one transaction (one fsync); its publications go out in one hand-over.
  EdgeStore::DownBatchResult r = store_.ApplyDownCommands(inputs, batch.through_seq(), clock_.NowMs());
  if (publish_) publish_(store_.TakePublications());
  else (void)store_.TakePublications();
  for (size_t i = 0; i < r.results.size(); ++i) {
    const v1::DownCommand& c = *inputs[i].command;
    const EdgeStore::DownResult& d = r.results[i];
    const int kind = c.kind() > 0 && c.kind() < wire::kDownKindCount ? c.kind() : 0;
    if (d.effect == Effect::kSkipped) {
      counters_.skipped.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (d.effect == Effect::kRefused) {
      counters_.refused_by_kind[kind].fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("downstream: command {} ({}) refused: {}", c.down_seq(), c.command_id(), d.reason);
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
  if (!r.status.ok()) return r.status;
  return AppliedSeq();
}

}  // namespace freshsync::edge
