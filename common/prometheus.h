// The Prometheus text exposition format (0.0.4), written in one place: family heads, samples
// with escaped label values, and a latency histogram with cumulative buckets. hubd's /metrics
// uses it (hub/hub_metrics.h); edged's /metrics (edge/metrics.cc) predates it.
//
// Thread-safety: Histogram::Observe is lock-free and may race with Write (a scrape may see a
// count one ahead of a bucket, which Prometheus tolerates); LabeledHistograms and
// LabeledCounters take a mutex only to find or create a series.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace freshsync::prometheus {

using Labels = std::vector<std::pair<std::string, std::string>>;

// A label value as the format wants it: backslash, double quote and newline escaped.
std::string EscapeLabelValue(std::string_view v);

class TextWriter {
 public:
  // "# HELP" and "# TYPE" lines; once per metric name, before its samples.
  void Family(std::string_view name, std::string_view type, std::string_view help);
  void Sample(std::string_view name, const Labels& labels, double value);
  void Sample(std::string_view name, const Labels& labels, uint64_t value);
  const std::string& text() const { return out_; }
  std::string Take() { return std::move(out_); }

 private:
  void Name(std::string_view name, const Labels& labels);
  std::string out_;
};

// Bucket bounds in seconds for request and store latencies: 1 ms to 10 s.
inline constexpr std::array<double, 12> kLatencyBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                           0.1,   0.25,   0.5,   1,    2.5,   10};

class Histogram {
 public:
  explicit Histogram(std::span<const double> bounds = kLatencyBounds);
  void Observe(double value);
  // name_bucket{labels,le="..."} (cumulative), name_sum{labels} and name_count{labels}.
  void Write(TextWriter& w, std::string_view name, const Labels& labels) const;
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // per bucket, not cumulative; last is +Inf
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micros_{0};  // the sum in millionths, so that it can be atomic
};

// Histograms keyed by their label values, created on first use.
class LabeledHistograms {
 public:
  explicit LabeledHistograms(std::vector<std::string> label_names) : names_(std::move(label_names)) {}
  void Observe(const std::vector<std::string>& values, double value);
  void Write(TextWriter& w, std::string_view name, std::string_view help) const;

 private:
  std::vector<std::string> names_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<Histogram>> series_;
};

// Counters keyed by their label values, created on first use.
class LabeledCounters {
 public:
  explicit LabeledCounters(std::vector<std::string> label_names) : names_(std::move(label_names)) {}
  void Add(const std::vector<std::string>& values, uint64_t n = 1);
  void Write(TextWriter& w, std::string_view name, std::string_view help) const;
  uint64_t Get(const std::vector<std::string>& values) const;

 private:
  std::vector<std::string> names_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, uint64_t> series_;
};

}  // namespace freshsync::prometheus
