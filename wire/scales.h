// Fixed-point scales of the shared records (proto/freshsync.proto), written once: the edge
// stores readings with them (edge/store.cc), the field rules check ranges with them
// (wire/record_rules.cc) and the hub turns them back into JSON units (hub/codec.cc,
// hub/server.cc). value_in_units = stored_integer / scale.
// Thread-safety: constants only.
#pragma once

#include <cmath>
#include <cstdint>

namespace freshsync::wire {

inline constexpr double kLatLonScale = 1e6;      // VehiclePosition.lat_e6, lon_e6: degrees
inline constexpr double kSpeedScale = 10.0;      // VehiclePosition.speed_dkmh: km/h
inline constexpr double kHeadingScale = 1.0;     // VehiclePosition.heading_deg: degrees
inline constexpr double kHdopScale = 10.0;       // VehiclePosition.hdop_d
inline constexpr double kTempScale = 100.0;      // ClimateReading.temp_dc: degrees C
inline constexpr double kHumidityScale = 10.0;   // ClimateReading.rh_d: percent
inline constexpr double kBatteryScale = 10.0;    // ClimateReading.battery_d: percent

// A value in its unit as the stored integer: the edge's records, and the cold-chain export's
// readings rebuilt from the site's climate_readings rows, must round alike.
inline int32_t FixedPoint(double v, double scale) { return static_cast<int32_t>(std::llround(v * scale)); }

}  // namespace freshsync::wire
