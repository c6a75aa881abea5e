// libFuzzer target: the GeoJSON fence parser (edge/geofence/fences.h), which reads an
// operator-supplied file at start and at every SIGHUP. Beyond "no crash": a file that is
// accepted gives fences the geofence engine can use without re-checking: unique non-empty
// names, finite bounding boxes inside the globe, circles with a radius, and finite distances.
#include <cmath>
#include <cstdint>
#include <string_view>
#include <vector>

#include "edge/geofence/fences.h"
#include "fuzz/fuzz_check.h"

namespace {
using freshsync::fuzz::Check;
using freshsync::geofence::Fence;
using freshsync::geofence::FenceSet;
using freshsync::geofence::LatLon;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto set = FenceSet::FromGeoJson(text, "fuzz.geojson");
  if (!set.ok()) {
    Check(!set.status().message().empty(), "a refusal says why");
    return 0;
  }
  for (size_t i = 0; i < set->size(); ++i) {
    const Fence& f = set->fence(i);
    Check(!f.name.empty() && set->Find(f.name) == static_cast<int>(i), "fence names are non-empty and unique");
    Check(std::isfinite(f.min_lat) && std::isfinite(f.max_lat) && std::isfinite(f.min_lon) && std::isfinite(f.max_lon),
          "bounding box is finite");
    Check(f.min_lat <= f.max_lat && f.min_lon <= f.max_lon, "bounding box is ordered");
    Check(f.min_lat >= -90 && f.max_lat <= 90 && f.min_lon >= -180 && f.max_lon <= 180, "bounding box is on the globe");
    if (f.shape == Fence::Shape::kCircle) Check(f.radius_m > 0 && std::isfinite(f.radius_m), "a circle has a radius");
    else Check(!f.rings.empty() && f.rings[0].size() >= 4, "a polygon has an outer ring of 4+ positions");
    // Distances the engine computes at the centre and just outside a corner are finite.
    for (LatLon p : {f.center, LatLon{f.max_lat, f.max_lon}}) {
      Check(std::isfinite(set->SignedDistanceM(i, p)), "signed distance is finite");
      (void)set->Contains(i, p);
    }
  }
  set->BuildIndex(50);
  std::vector<size_t> near;
  if (set->size() > 0) set->Near(set->fence(0).center, near);
  for (size_t i : near) Check(i < set->size(), "Near returns valid indexes");
  return 0;
}
