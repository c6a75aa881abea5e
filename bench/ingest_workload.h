// The MQTT workloads of the ingest benchmarks (ingest_drain through a broker, ingest_apply
// in-process): one message at a time, the same bytes for the same index.
//   gps:   140-byte fixes from 20 vehicles, full double precision as a receiver prints them;
//   stock: 3/4 stock movements, 1/4 GPS;
//   mix:   1/4 movements, 1/2 GPS (10 vehicles, short numbers), 1/4 climate readings.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace freshsync::bench {

enum class Workload { kGps, kStock, kMix };

inline Workload WorkloadNamed(const std::string& name) {
  return name == "gps" ? Workload::kGps : name == "stock" ? Workload::kStock : Workload::kMix;
}

// A GPS fix as a receiver reports it: full double precision for the position, as a device's
// JSON library prints it (about 140 bytes). `vehicles` trucks, each with its own seq.
inline std::string GpsFix(size_t i, size_t vehicles, int64_t ts, std::string& topic) {
  topic = "fs/vehicles/truck-" + std::to_string(i % vehicles) + "/gps";
  const double t = static_cast<double>(i);
  auto cents = [](double v) { return std::round(v * 100) / 100; };
  return nlohmann::json({{"seq", i / vehicles + 1}, {"lat", 31.2304 + 0.01 * std::sin(t / 997.0)},
                         {"lon", 121.4737 - 0.01 * std::cos(t / 1009.0)}, {"ts", ts}, {"speed_kmh", 42.5 + 7.5 * std::sin(t / 13.0)},
                         {"heading", cents(180.0 + 90.0 * std::sin(t / 7.0))}, {"hdop", cents(0.8 + 0.01 * static_cast<double>(i % 40))}})
      .dump();
}

inline std::string Movement(size_t i, int64_t ts, std::string& topic) {
  topic = "fs/stock/movements";
  return nlohmann::json({{"id", "bench-m-" + std::to_string(i)}, {"sku", "sku-" + std::to_string(i % 50)}, {"delta", 5},
                         {"reason", "receive"}, {"lot", "L-2026-11-25"}, {"ts", ts}})
      .dump();
}

// Message `i` of workload `w`: its payload, and its topic in `topic`.
inline std::string MessageFor(Workload w, size_t i, std::string& topic) {
  const int64_t ts = 1764000000000 + static_cast<int64_t>(i);
  switch (w) {
    case Workload::kGps:
      return GpsFix(i, 20, ts, topic);
    case Workload::kStock:
      return i % 4 == 3 ? GpsFix(i, 20, ts, topic) : Movement(i, ts, topic);
    case Workload::kMix:
      break;
  }
  switch (i % 4) {  // the mix the earlier results in docs/benchmarks.md were measured on
    case 0:
      return Movement(i, ts, topic);
    case 1:
    case 2:
      topic = "fs/vehicles/truck-" + std::to_string(i % 10) + "/gps";
      return nlohmann::json({{"seq", i}, {"lat", 31.2304 + (i % 1000) / 1e5}, {"lon", 121.4737 - (i % 1000) / 1e5}, {"ts", ts},
                             {"speed_kmh", 42.5}, {"heading", 181.0}, {"hdop", 0.9}})
          .dump();
    default:
      topic = "fs/sensors/cold-" + std::to_string(i % 10) + "/climate";
      return nlohmann::json({{"seq", i}, {"ts", ts}, {"temp_c", 3.25}, {"rh", 88.5}, {"battery", 97.0}}).dump();
  }
}

}  // namespace freshsync::bench
