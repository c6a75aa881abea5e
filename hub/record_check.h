// Hub-side validation of pushed batches (a site certificate does not make a record valid) and its
// counters. The rules themselves live in wire/record_rules.h, shared with the edge's ingest.
//
// What the hub does with a record that breaks them (docs/sync-protocol.md, "Refused records"):
// it is quarantined, not applied: HubStore::ApplyBatch gets the reasons (ApplyChecks), keeps a
// bounded row in refused_records and counts its seq as held, so a permanently invalid record
// cannot wedge the site's stream; the answer is 200 with BatchAck.refused and BatchAck.error
// naming the first refused seq and field.
//
// Thread-safety: CheckBatchRecords is pure; RefusalCounters is internally locked.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "freshsync.pb.h"

namespace freshsync::hub {

struct BatchRefusals {
  std::vector<std::string> reasons;  // per record index; empty = valid
  uint32_t count = 0;                // records refused
  std::string first;                 // "seq N: <field>: <why>" of the first one, "" if none
};

// Applies wire::CheckChangeRecord to every record of an expanded (format 1) batch.
BatchRefusals CheckBatchRecords(const v1::Batch& batch);

// Counters for /metrics: freshsync_hub_records_refused_total{site, reason} (reason = the field
// named by the rule; "site_bytes_per_day" and "decompress_budget" count refused batches).
// Label cardinality is bounded: at most kMaxSites distinct sites (later ones are counted under
// site="_other") and the field names of the rules, which are a fixed set.
class RefusalCounters {
 public:
  static constexpr size_t kMaxSites = 256;
  static RefusalCounters& Process();
  void Count(const std::string& site, const std::string& reason, uint64_t n = 1);
  uint64_t Get(const std::string& site, const std::string& reason) const;
  // Prometheus text: the HELP/TYPE lines and one sample per (site, reason).
  std::string Prometheus() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, uint64_t> counts_;
  std::map<std::string, bool> sites_;
};

}  // namespace freshsync::hub
