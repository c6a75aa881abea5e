#include "common/prometheus.h"

#include <cmath>
#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace freshsync::prometheus {
namespace {

std::string FormatDouble(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  // Shortest form that reads back the same, so that `le` values stay readable ("0.001").
  for (int precision = 1; precision < 17; ++precision) {
    char shorter[32];
    std::snprintf(shorter, sizeof shorter, "%.*g", precision, v);
    if (std::strtod(shorter, nullptr) == v) return shorter;
  }
  return buf;
}

Labels Zip(const std::vector<std::string>& names, const std::vector<std::string>& values) {
  Labels l;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) l.emplace_back(names[i], values[i]);
  return l;
}

}  // namespace

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

void TextWriter::Family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += help;
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void TextWriter::Name(std::string_view name, const Labels& labels) {
  out_ += name;
  if (labels.empty()) return;
  out_ += '{';
  for (size_t i = 0; i < labels.size(); ++i) {
    if (i) out_ += ',';
    out_ += labels[i].first;
    out_ += "=\"";
    out_ += EscapeLabelValue(labels[i].second);
    out_ += '"';
  }
  out_ += '}';
}

void TextWriter::Sample(std::string_view name, const Labels& labels, double value) {
  Name(name, labels);
  out_ += ' ';
  out_ += FormatDouble(value);
  out_ += '\n';
}

void TextWriter::Sample(std::string_view name, const Labels& labels, uint64_t value) {
  Name(name, labels);
  out_ += ' ';
  out_ += std::to_string(value);
  out_ += '\n';
}

Histogram::Histogram(std::span<const double> bounds)
    : bounds_(bounds.begin(), bounds.end()), buckets_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<uint64_t>(std::llround(std::max(0.0, value) * 1e6)), std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

void Histogram::Write(TextWriter& w, std::string_view name, const Labels& labels) const {
  const std::string bucket = std::string(name) + "_bucket";
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    Labels l = labels;
    l.emplace_back("le", i < bounds_.size() ? FormatDouble(bounds_[i]) : "+Inf");
    w.Sample(bucket, l, cumulative);
  }
  w.Sample(std::string(name) + "_sum", labels, static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6);
  // The count is the +Inf bucket, so that the two agree even while Observe races the scrape.
  w.Sample(std::string(name) + "_count", labels, cumulative);
}

void LabeledHistograms::Observe(const std::vector<std::string>& values, double value) {
  Histogram* h = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& slot = series_[values];
    if (!slot) slot = std::make_unique<Histogram>();
    h = slot.get();
  }
  h->Observe(value);  // series are never removed, so the pointer stays valid
}

void LabeledHistograms::Write(TextWriter& w, std::string_view name, std::string_view help) const {
  w.Family(name, "histogram", help);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, h] : series_) h->Write(w, name, Zip(names_, values));
}

void LabeledCounters::Add(const std::vector<std::string>& values, uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  series_[values] += n;
}

uint64_t LabeledCounters::Get(const std::vector<std::string>& values) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = series_.find(values);
  return it == series_.end() ? 0 : it->second;
}

void LabeledCounters::Write(TextWriter& w, std::string_view name, std::string_view help) const {
  w.Family(name, "counter", help);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, n] : series_) w.Sample(name, Zip(names_, values), n);
}

}  // namespace freshsync::prometheus
