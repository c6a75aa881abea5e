#include "hub/record_check.h"

#include "wire/record_rules.h"

namespace freshsync::hub {

BatchRefusals CheckBatchRecords(const v1::Batch& batch) {
  BatchRefusals out;
  out.reasons.resize(static_cast<size_t>(batch.records_size()));
  for (int i = 0; i < batch.records_size(); ++i) {
    const auto& r = batch.records(i);
    Status s = wire::CheckChangeRecord(r);
    if (s.ok()) continue;
    out.reasons[static_cast<size_t>(i)] = s.message();
    if (out.count++ == 0) out.first = "seq " + std::to_string(r.seq()) + ": " + s.message();
  }
  return out;
}

RefusalCounters& RefusalCounters::Process() {
  static RefusalCounters counters;
  return counters;
}

void RefusalCounters::Count(const std::string& site, const std::string& reason, uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string s = site;
  if (!sites_.count(s)) {
    if (sites_.size() >= kMaxSites) s = "_other";
    else sites_[s] = true;
  }
  counts_[{s, reason}] += n;
}

uint64_t RefusalCounters::Get(const std::string& site, const std::string& reason) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find({site, reason});
  return it == counts_.end() ? 0 : it->second;
}

std::string RefusalCounters::Prometheus() const {
  std::string body =
      "# HELP freshsync_hub_records_refused_total Records refused by the field rules (quarantined), or bytes-limit "
      "refusals (reason=\"site_bytes_per_day\", counted per batch), per site.\n"
      "# TYPE freshsync_hub_records_refused_total counter\n";
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Site ids are certificate CNs that passed the route's [a-z0-9-] pattern and reasons are
    // the rules' field names, so neither needs escaping.
    for (const auto& [k, v] : counts_)
      body += "freshsync_hub_records_refused_total{site=\"" + k.first + "\",reason=\"" + k.second + "\"} " +
              std::to_string(v) + "\n";
  }
  return body;
}

}  // namespace freshsync::hub
