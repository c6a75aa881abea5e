#include "edge/geofence/fences.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

namespace freshsync::geofence {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kEarthRadiusM = 6371008.8;
constexpr double kMetresPerDegLat = kEarthRadiusM * kPi / 180.0;

using Json = nlohmann::json;

Status Bad(const std::string& where, const std::string& what) { return Status::InvalidArgument(where + ": " + what); }

// Reads one [lon, lat] position; `where` names it in errors.
Status ReadPosition(const Json& j, const std::string& where, LatLon& out) {
  if (!j.is_array() || j.size() < 2) return Bad(where, "a position must be an array [lon, lat]");
  if (!j[0].is_number() || !j[1].is_number()) return Bad(where, "coordinates must be numbers");
  const double lon = j[0].get<double>();
  const double lat = j[1].get<double>();
  if (!std::isfinite(lon) || !std::isfinite(lat)) return Bad(where, "coordinates must be finite (no NaN or infinity)");
  if (lat < -90 || lat > 90) return Bad(where, "latitude " + std::to_string(lat) + " is outside -90..90");
  if (lon < -180 || lon > 180) return Bad(where, "longitude " + std::to_string(lon) + " is outside -180..180");
  out = {lat, lon};
  return Status::Ok();
}

double DistToSegment(double px, double py, double ax, double ay, double bx, double by) {
  const double dx = bx - ax, dy = by - ay;
  const double len2 = dx * dx + dy * dy;
  double t = len2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / len2 : 0;
  t = std::clamp(t, 0.0, 1.0);
  const double cx = ax + t * dx - px, cy = ay + t * dy - py;
  return std::sqrt(cx * cx + cy * cy);
}

}  // namespace

double HaversineM(LatLon a, LatLon b) {
  const double rad = kPi / 180.0;
  const double dlat = (b.lat - a.lat) * rad, dlon = (b.lon - a.lon) * rad;
  const double h = std::sin(dlat / 2) * std::sin(dlat / 2) +
                   std::cos(a.lat * rad) * std::cos(b.lat * rad) * std::sin(dlon / 2) * std::sin(dlon / 2);
  return 2 * kEarthRadiusM * std::asin(std::min(1.0, std::sqrt(h)));
}

Result<FenceSet> FenceSet::FromGeoJson(std::string_view text, std::string_view source) {
  Json root;
  try {
    root = Json::parse(text);
  } catch (const Json::exception& e) {
    // nlohmann's message carries the byte offset. NaN and Infinity literals, and numbers too
    // large for a double (1e999), end up here too.
    return Status::InvalidArgument(std::string(source) + ": not valid JSON: " + e.what());
  }
  const std::string src(source);
  if (!root.is_object() || root.value("type", Json()) != "FeatureCollection")
    return Bad(src, "top level must be {\"type\": \"FeatureCollection\", ...}");
  if (!root.contains("features") || !root["features"].is_array()) return Bad(src + ": features", "must be an array");

  FenceSet set;
  const Json& features = root["features"];
  for (size_t i = 0; i < features.size(); ++i) {
    const std::string at = "features[" + std::to_string(i) + "]";
    const Json& f = features[i];
    if (!f.is_object()) return Bad(at, "must be an object");
    if (!f.contains("properties") || !f["properties"].is_object()) return Bad(at + ".properties", "required object is missing");
    const Json& props = f["properties"];
    Fence fence;
    if (!props.contains("name") || !props["name"].is_string() || props["name"].get<std::string>().empty())
      return Bad(at + ".properties.name", "required non-empty string is missing");
    fence.name = props["name"].get<std::string>();
    if (set.by_name_.count(fence.name)) return Bad(at + ".properties.name", "duplicate fence name \"" + fence.name + "\"");
    fence.kind = "other";
    if (props.contains("kind")) {
      if (!props["kind"].is_string() || props["kind"].get<std::string>().empty())
        return Bad(at + ".properties.kind", "must be a non-empty string");
      fence.kind = props["kind"].get<std::string>();
    }
    if (!f.contains("geometry") || !f["geometry"].is_object()) return Bad(at + ".geometry", "required object is missing");
    const Json& geom = f["geometry"];
    if (!geom.contains("type") || !geom["type"].is_string()) return Bad(at + ".geometry.type", "required string is missing");
    const std::string type = geom["type"].get<std::string>();
    if (!geom.contains("coordinates")) return Bad(at + ".geometry.coordinates", "required array is missing");
    const Json& coords = geom["coordinates"];

    if (type == "Point") {
      fence.shape = Fence::Shape::kCircle;
      Status s = ReadPosition(coords, at + ".geometry.coordinates", fence.center);
      if (!s.ok()) return s;
      if (!props.contains("radius_m") || !props["radius_m"].is_number())
        return Bad(at + ".properties.radius_m", "a Point fence needs a numeric radius_m");
      fence.radius_m = props["radius_m"].get<double>();
      if (!std::isfinite(fence.radius_m) || !(fence.radius_m > 0)) return Bad(at + ".properties.radius_m", "must be > 0");
      if (fence.radius_m > 100000) return Bad(at + ".properties.radius_m", "must be at most 100000 (100 km)");
      const double dlat = fence.radius_m / kMetresPerDegLat;
      const double coslat = std::max(0.01, std::cos(fence.center.lat * kPi / 180));
      const double dlon = dlat / coslat;
      fence.min_lat = fence.center.lat - dlat;
      fence.max_lat = fence.center.lat + dlat;
      fence.min_lon = fence.center.lon - dlon;
      fence.max_lon = fence.center.lon + dlon;
      fence.depth_m = fence.radius_m;
    } else if (type == "Polygon") {
      fence.shape = Fence::Shape::kPolygon;
      if (!coords.is_array() || coords.empty()) return Bad(at + ".geometry.coordinates", "a Polygon needs at least an outer ring");
      fence.min_lat = fence.min_lon = std::numeric_limits<double>::infinity();
      fence.max_lat = fence.max_lon = -std::numeric_limits<double>::infinity();
      for (size_t r = 0; r < coords.size(); ++r) {
        const std::string rat = at + ".geometry.coordinates[" + std::to_string(r) + "]";
        const Json& ring = coords[r];
        if (!ring.is_array() || ring.size() < 4) return Bad(rat, "a ring needs at least 4 positions (first == last)");
        std::vector<LatLon> pts;
        for (size_t k = 0; k < ring.size(); ++k) {
          LatLon p;
          Status s = ReadPosition(ring[k], rat + "[" + std::to_string(k) + "]", p);
          if (!s.ok()) return s;
          pts.push_back(p);
        }
        if (pts.front().lat != pts.back().lat || pts.front().lon != pts.back().lon)
          return Bad(rat, "ring is not closed (the last position must equal the first)");
        // Shoelace in degrees: only its sign-free magnitude matters, to refuse degenerate rings.
        double area = 0;
        for (size_t k = 0; k + 1 < pts.size(); ++k) area += pts[k].lon * pts[k + 1].lat - pts[k + 1].lon * pts[k].lat;
        if (std::fabs(area) < 1e-14) return Bad(rat, "ring has zero area");
        if (r == 0) {
          for (const auto& p : pts) {
            fence.min_lat = std::min(fence.min_lat, p.lat);
            fence.max_lat = std::max(fence.max_lat, p.lat);
            fence.min_lon = std::min(fence.min_lon, p.lon);
            fence.max_lon = std::max(fence.max_lon, p.lon);
          }
        }
        fence.rings.push_back(std::move(pts));
      }
      if (fence.max_lon - fence.min_lon > 180) return Bad(at + ".geometry.coordinates", "fences crossing the antimeridian are not supported");
      fence.center = {(fence.min_lat + fence.max_lat) / 2, (fence.min_lon + fence.max_lon) / 2};
    } else {
      return Bad(at + ".geometry.type", "unknown geometry type \"" + type + "\" (expected Polygon, or Point with radius_m)");
    }

    // Local projection around the centre.
    Projected proj;
    proj.origin = fence.center;
    proj.ky = kMetresPerDegLat;
    proj.kx = kMetresPerDegLat * std::cos(fence.center.lat * kPi / 180);
    for (const auto& ring : fence.rings) {
      std::vector<std::pair<double, double>> pr;
      pr.reserve(ring.size());
      for (const auto& p : ring) pr.emplace_back((p.lon - proj.origin.lon) * proj.kx, (p.lat - proj.origin.lat) * proj.ky);
      proj.rings.push_back(std::move(pr));
    }
    const size_t index = set.fences_.size();
    set.by_name_[fence.name] = index;
    set.fences_.push_back(std::move(fence));
    set.projected_.push_back(std::move(proj));

    if (set.fences_[index].shape == Fence::Shape::kPolygon) {
      // Estimate the depth by sampling a grid over the bounding box: good to a few per cent,
      // which is all the enter-margin cap needs.
      Fence& fz = set.fences_[index];
      constexpr int kSamples = 32;
      double depth = 0;
      for (int a = 0; a <= kSamples; ++a) {
        for (int b = 0; b <= kSamples; ++b) {
          const LatLon p{fz.min_lat + (fz.max_lat - fz.min_lat) * a / kSamples, fz.min_lon + (fz.max_lon - fz.min_lon) * b / kSamples};
          depth = std::max(depth, -set.SignedDistanceM(index, p));
        }
      }
      if (!(depth > 0)) return Bad(at + ".geometry.coordinates", "polygon is too thin to hold a point");
      fz.depth_m = depth;
    }
  }
  set.BuildIndex(0);
  return set;
}

Result<FenceSet> FenceSet::LoadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path + ": cannot open geofence file");
  std::ostringstream ss;
  ss << in.rdbuf();
  return FromGeoJson(ss.str(), path);
}

int FenceSet::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? -1 : static_cast<int>(it->second);
}

std::pair<double, double> FenceSet::Project(size_t i, LatLon p) const {
  const Projected& pr = projected_[i];
  return {(p.lon - pr.origin.lon) * pr.kx, (p.lat - pr.origin.lat) * pr.ky};
}

bool FenceSet::Contains(size_t i, LatLon p) const {
  const auto [x, y] = Project(i, p);
  if (fences_[i].shape == Fence::Shape::kCircle) return x * x + y * y < fences_[i].radius_m * fences_[i].radius_m;
  // Even-odd ray casting over every ring: a point in a hole crosses the outer ring and the hole's.
  bool inside = false;
  for (const auto& ring : projected_[i].rings) {
    for (size_t a = 0, b = ring.size() - 1; a < ring.size(); b = a++) {
      const auto [xa, ya] = ring[a];
      const auto [xb, yb] = ring[b];
      if ((ya > y) != (yb > y) && x < (xb - xa) * (y - ya) / (yb - ya) + xa) inside = !inside;
    }
  }
  return inside;
}

double FenceSet::SignedDistanceM(size_t i, LatLon p) const {
  const auto [x, y] = Project(i, p);
  if (fences_[i].shape == Fence::Shape::kCircle) return std::sqrt(x * x + y * y) - fences_[i].radius_m;
  double d = std::numeric_limits<double>::infinity();
  for (const auto& ring : projected_[i].rings) {
    for (size_t k = 0; k + 1 < ring.size(); ++k)
      d = std::min(d, DistToSegment(x, y, ring[k].first, ring[k].second, ring[k + 1].first, ring[k + 1].second));
  }
  return Contains(i, p) ? -d : d;
}

void FenceSet::BuildIndex(double margin_m) {
  grid_.clear();
  large_.clear();
  for (size_t i = 0; i < fences_.size(); ++i) {
    const Fence& f = fences_[i];
    const double dlat = margin_m / kMetresPerDegLat;
    const double worst_lat = std::max(std::fabs(f.min_lat), std::fabs(f.max_lat));
    const double dlon = dlat / std::max(0.01, std::cos(worst_lat * kPi / 180));
    const int64_t la0 = static_cast<int64_t>(std::floor((f.min_lat - dlat + 90) / kCellDeg));
    const int64_t la1 = static_cast<int64_t>(std::floor((f.max_lat + dlat + 90) / kCellDeg));
    const int64_t lo0 = static_cast<int64_t>(std::floor((f.min_lon - dlon + 180) / kCellDeg));
    const int64_t lo1 = static_cast<int64_t>(std::floor((f.max_lon + dlon + 180) / kCellDeg));
    if ((la1 - la0 + 1) * (lo1 - lo0 + 1) > kMaxCells) {
      large_.push_back(i);
      continue;
    }
    for (int64_t a = la0; a <= la1; ++a)
      for (int64_t b = lo0; b <= lo1; ++b) grid_[a * 100000 + b].push_back(i);
  }
}

void FenceSet::Near(LatLon p, std::vector<size_t>& out) const {
  out.insert(out.end(), large_.begin(), large_.end());
  const int64_t a = static_cast<int64_t>(std::floor((p.lat + 90) / kCellDeg));
  const int64_t b = static_cast<int64_t>(std::floor((p.lon + 180) / kCellDeg));
  auto it = grid_.find(a * 100000 + b);
  if (it != grid_.end()) out.insert(out.end(), it->second.begin(), it->second.end());
}

}  // namespace freshsync::geofence
