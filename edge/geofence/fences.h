// Fences: named polygons and circles loaded from a GeoJSON FeatureCollection, with the geometry
// the geofence engine needs (signed distance to a fence's boundary) and a grid index that finds
// the few fences near a point without testing them all.
//
// Accepted GeoJSON (RFC 7946, positions are [lon, lat] in degrees):
//   {"type": "FeatureCollection", "features": [FEATURE, ...]}
//   FEATURE  = {"type": "Feature", "properties": PROPS, "geometry": GEOMETRY}
//   PROPS    = {"name": non-empty string, unique in the file (required),
//               "kind": string (optional, default "other"; depot, sorting_center, customer_drop...),
//               "radius_m": number > 0 (required for Point, ignored otherwise)}
//   GEOMETRY = {"type": "Polygon", "coordinates": [OUTER_RING, HOLE_RING...]}
//            | {"type": "Point", "coordinates": [lon, lat]}            (a circle of radius_m)
//   RING     = [[lon, lat], ..., [lon, lat]]  at least 4 positions, first == last, finite,
//              lat within -90..90, lon within -180..180, non-zero area.
// Anything else is refused with kInvalidArgument naming the feature and field, e.g.
// "features[3].properties.name: required non-empty string is missing".
//
// Geometry is computed in a local equirectangular projection centred on each fence, which is
// accurate to well under a metre for fences up to tens of kilometres across. Fences crossing
// the antimeridian or touching a pole are not supported.
//
// Thread-safety: a FenceSet is immutable after loading; const methods are safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace freshsync::geofence {

struct LatLon {
  double lat = 0;
  double lon = 0;
};

// Great-circle distance in metres (haversine), for speed gating.
double HaversineM(LatLon a, LatLon b);

struct Fence {
  enum class Shape { kPolygon, kCircle };
  std::string name;
  std::string kind;
  Shape shape = Shape::kPolygon;
  std::vector<std::vector<LatLon>> rings;  // polygon: outer ring, then holes (closed)
  LatLon center;                           // circle centre; polygon: bounding-box centre
  double radius_m = 0;                     // circle only
  double min_lat = 0, max_lat = 0, min_lon = 0, max_lon = 0;  // bounding box
  // The deepest a point can be inside the fence (metres from the boundary), estimated at load.
  // The engine caps its enter margin at half of this, so a fence smaller than the hysteresis
  // can still be entered.
  double depth_m = 0;
};

class FenceSet {
 public:
  FenceSet() = default;
  // Parses and validates a FeatureCollection; `source` names the file in error messages.
  static Result<FenceSet> FromGeoJson(std::string_view text, std::string_view source = "fences");
  // Reads a file and parses it; kNotFound if it cannot be read.
  static Result<FenceSet> LoadFile(const std::string& path);

  size_t size() const { return fences_.size(); }
  const Fence& fence(size_t i) const { return fences_[i]; }
  // Index of the fence with this name, or -1.
  int Find(const std::string& name) const;

  // Distance in metres from p to the fence's boundary: negative inside, positive outside.
  double SignedDistanceM(size_t i, LatLon p) const;
  // True if p is inside (holes excluded). Same as SignedDistanceM(i, p) < 0, but cheaper.
  bool Contains(size_t i, LatLon p) const;

  // Appends to `out` the indexes of every fence whose bounding box, grown by the margin given
  // to BuildIndex, holds p: a superset of the fences within that margin of p (callers still
  // check the distance). No duplicates within one call.
  void Near(LatLon p, std::vector<size_t>& out) const;
  // Rebuilds the grid for a margin in metres. FromGeoJson builds it with 0; the engine rebuilds
  // it with its hysteresis so that Near() also finds fences a point is just outside of.
  void BuildIndex(double margin_m);

 private:
  struct Projected {  // fence geometry in metres around `origin`
    LatLon origin;
    double kx = 0, ky = 0;  // metres per degree of lon / lat at the origin
    std::vector<std::vector<std::pair<double, double>>> rings;
  };
  std::pair<double, double> Project(size_t i, LatLon p) const;

  std::vector<Fence> fences_;
  std::vector<Projected> projected_;
  std::unordered_map<std::string, size_t> by_name_;
  // Grid over (lat, lon) cells of kCellDeg; a fence is listed in every cell its grown bounding
  // box touches. Fences covering more than kMaxCells cells go to `large_` and are always tested.
  static constexpr double kCellDeg = 0.01;  // about 1.1 km
  static constexpr int64_t kMaxCells = 4096;
  std::unordered_map<int64_t, std::vector<size_t>> grid_;
  std::vector<size_t> large_;
};

}  // namespace freshsync::geofence
