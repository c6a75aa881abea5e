#include "edge/geofence/fences.h"

#include <cmath>

#include <gtest/gtest.h>

namespace freshsync::geofence {
namespace {

// Offsets in metres around a point near Shanghai, as [lon, lat] text for GeoJSON.
constexpr double kLat0 = 31.22, kLon0 = 121.544;
constexpr double kMPerDegLat = 111195.08;  // matches the engine's sphere to well under 0.1 %
double MLon() { return kMPerDegLat * std::cos(kLat0 * 3.14159265358979323846 / 180); }
LatLon At(double east_m, double north_m) { return {kLat0 + north_m / kMPerDegLat, kLon0 + east_m / MLon()}; }
std::string Pos(double east_m, double north_m) {
  const LatLon p = At(east_m, north_m);
  char buf[96];
  std::snprintf(buf, sizeof buf, "[%.9f, %.9f]", p.lon, p.lat);
  return buf;
}
std::string Ring(const std::vector<std::pair<double, double>>& m) {
  std::string s = "[";
  // Appended piece by piece: `const char* + std::string` (operator+ inserting at the front) trips
  // GCC 12's -Wrestrict false positive at -O3 (GCC bug 105651), which -Werror makes fatal.
  for (size_t i = 0; i < m.size(); ++i) {
    if (i) s += ",";
    s += Pos(m[i].first, m[i].second);
  }
  return s + "," + Pos(m[0].first, m[0].second) + "]";
}
std::string Feature(const std::string& props, const std::string& geometry) {
  return R"({"type":"Feature","properties":)" + props + R"(,"geometry":)" + geometry + "}";
}
std::string Collection(const std::vector<std::string>& features) {
  std::string s = R"({"type":"FeatureCollection","features":[)";
  for (size_t i = 0; i < features.size(); ++i) {
    if (i) s += ",";  // not `(i ? "," : "") + ...`: see Ring
    s += features[i];
  }
  return s + "]}";
}

// A U open to the north: 300 m wide, 300 m tall, with a 100 m wide notch 200 m deep.
std::string UShape() {
  return Feature(R"({"name":"u-yard","kind":"sorting_center"})",
                 R"({"type":"Polygon","coordinates":[)" +
                     Ring({{0, 0}, {300, 0}, {300, 300}, {200, 300}, {200, 100}, {100, 100}, {100, 300}, {0, 300}}) + "]}");
}

TEST(FenceSetTest, LoadsPolygonsAndCircles) {
  auto set = FenceSet::FromGeoJson(Collection(
      {UShape(), Feature(R"({"name":"drop-1","kind":"customer_drop","radius_m":60})", R"({"type":"Point","coordinates":)" + Pos(1000, 0) + "}"),
       Feature(R"({"name":"misc","radius_m":5})", R"({"type":"Point","coordinates":)" + Pos(5000, 0) + "}")}));
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  ASSERT_EQ(set->size(), 3u);
  EXPECT_EQ(set->fence(0).kind, "sorting_center");
  EXPECT_EQ(set->fence(1).shape, Fence::Shape::kCircle);
  EXPECT_EQ(set->fence(2).kind, "other");  // kind is optional
  EXPECT_EQ(set->Find("drop-1"), 1);
  EXPECT_EQ(set->Find("nope"), -1);
  EXPECT_NEAR(set->fence(1).depth_m, 60, 1e-9);
  // The U's deepest point is where an arm meets the base: d = 100 * sqrt(2) / (1 + sqrt(2)).
  EXPECT_NEAR(set->fence(0).depth_m, 58.6, 4);
}

TEST(FenceSetTest, ConcavePolygonPointInPolygon) {
  auto set = FenceSet::FromGeoJson(Collection({UShape()}));
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  // In the notch (inside the bounding box and the convex hull, but outside the U).
  EXPECT_FALSE(set->Contains(0, At(150, 200)));
  EXPECT_NEAR(set->SignedDistanceM(0, At(150, 200)), 50, 0.5);
  EXPECT_NEAR(set->SignedDistanceM(0, At(150, 290)), 50, 0.5);
  // In the arms and the base.
  EXPECT_TRUE(set->Contains(0, At(50, 250)));
  EXPECT_TRUE(set->Contains(0, At(250, 250)));
  EXPECT_TRUE(set->Contains(0, At(150, 50)));
  EXPECT_NEAR(set->SignedDistanceM(0, At(150, 50)), -50, 0.5);
  EXPECT_NEAR(set->SignedDistanceM(0, At(50, 250)), -50, 0.5);
  // Just inside the notch's bottom edge, and outside the whole thing.
  EXPECT_NEAR(set->SignedDistanceM(0, At(150, 95)), -5, 0.5);
  EXPECT_NEAR(set->SignedDistanceM(0, At(150, 105)), 5, 0.5);
  EXPECT_FALSE(set->Contains(0, At(-10, 150)));
  EXPECT_NEAR(set->SignedDistanceM(0, At(-10, 150)), 10, 0.5);
  // A ray through a vertex (y = 100, y = 300) must not double count.
  EXPECT_TRUE(set->Contains(0, At(50, 100)));
  EXPECT_FALSE(set->Contains(0, At(150, 100.0001)));
}

TEST(FenceSetTest, PolygonWithHole) {
  auto set = FenceSet::FromGeoJson(Collection({Feature(
      R"({"name":"ring","kind":"depot"})",
      R"({"type":"Polygon","coordinates":[)" + Ring({{0, 0}, {400, 0}, {400, 400}, {0, 400}}) + "," +
          Ring({{100, 100}, {100, 300}, {300, 300}, {300, 100}}) + "]}")}));
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_TRUE(set->Contains(0, At(50, 200)));
  EXPECT_FALSE(set->Contains(0, At(200, 200)));
  EXPECT_NEAR(set->SignedDistanceM(0, At(200, 200)), 100, 0.5);
  EXPECT_NEAR(set->SignedDistanceM(0, At(50, 200)), -50, 0.5);
}

TEST(FenceSetTest, CircleDistance) {
  auto set = FenceSet::FromGeoJson(
      Collection({Feature(R"({"name":"c","kind":"customer_drop","radius_m":100})", R"({"type":"Point","coordinates":)" + Pos(0, 0) + "}")}));
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_NEAR(set->SignedDistanceM(0, At(0, 0)), -100, 0.01);
  EXPECT_NEAR(set->SignedDistanceM(0, At(60, 80)), 0, 0.1);
  EXPECT_NEAR(set->SignedDistanceM(0, At(0, -150)), 50, 0.1);
  EXPECT_NEAR(HaversineM(At(0, 0), At(0, 1000)), 1000, 0.5);
}

TEST(FenceSetTest, GridIndexFindsNearbyFencesOnly) {
  std::vector<std::string> features;
  for (int i = 0; i < 200; ++i) {
    features.push_back(Feature(R"({"name":"d)" + std::to_string(i) + R"(","radius_m":50})",
                               R"({"type":"Point","coordinates":)" + Pos(i * 500.0, 0) + "}"));
  }
  auto set = FenceSet::FromGeoJson(Collection(features));
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  set->BuildIndex(30);
  std::vector<size_t> near;
  set->Near(At(100 * 500.0 + 70, 0), near);  // 70 m east of d100: within 50 + 30
  EXPECT_NE(std::find(near.begin(), near.end(), 100u), near.end());
  EXPECT_LT(near.size(), 10u);  // not all 200
  // Every fence within the margin is found, wherever the point falls in its cell.
  for (int i = 0; i < 200; i += 7) {
    near.clear();
    set->Near(At(i * 500.0, 79), near);
    EXPECT_NE(std::find(near.begin(), near.end(), static_cast<size_t>(i)), near.end()) << i;
  }
}

struct BadFile {
  std::string text;
  std::string expected;  // substring of the error
};

class FenceSetErrorTest : public ::testing::TestWithParam<BadFile> {};

TEST_P(FenceSetErrorTest, NamesFeatureAndField) {
  auto set = FenceSet::FromGeoJson(GetParam().text, "fences.geojson");
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(set.status().message().find(GetParam().expected), std::string::npos) << set.status().message();
}

const std::string kGoodCircle = Feature(R"({"name":"ok","radius_m":10})", R"({"type":"Point","coordinates":[121.5,31.2]})");

INSTANTIATE_TEST_SUITE_P(
    Files, FenceSetErrorTest,
    ::testing::Values(
        BadFile{"{not json", "fences.geojson: not valid JSON"},
        BadFile{R"({"type":"Feature"})", "FeatureCollection"},
        BadFile{R"({"type":"FeatureCollection","features":{}})", "features: must be an array"},
        BadFile{Collection({kGoodCircle, Feature(R"({"kind":"depot","radius_m":10})", R"({"type":"Point","coordinates":[121.5,31.2]})")}),
                "features[1].properties.name"},
        BadFile{Collection({Feature(R"({"name":"","radius_m":10})", R"({"type":"Point","coordinates":[121.5,31.2]})")}),
                "features[0].properties.name"},
        BadFile{Collection({kGoodCircle, kGoodCircle}), "features[1].properties.name: duplicate"},
        BadFile{Collection({Feature(R"({"name":"a","radius_m":0})", R"({"type":"Point","coordinates":[121.5,31.2]})")}),
                "features[0].properties.radius_m: must be > 0"},
        BadFile{Collection({Feature(R"({"name":"a","radius_m":-5})", R"({"type":"Point","coordinates":[121.5,31.2]})")}),
                "features[0].properties.radius_m"},
        BadFile{Collection({Feature(R"({"name":"a"})", R"({"type":"Point","coordinates":[121.5,31.2]})")}),
                "features[0].properties.radius_m"},
        BadFile{Collection({Feature(R"({"name":"a","radius_m":5})", R"({"type":"Point","coordinates":[121.5,"x"]})")}),
                "features[0].geometry.coordinates: coordinates must be numbers"},
        BadFile{Collection({Feature(R"({"name":"a","radius_m":5})", R"({"type":"Point","coordinates":[121.5,95]})")}),
                "features[0].geometry.coordinates: latitude"},
        BadFile{Collection({Feature(R"({"name":"a","radius_m":5})", R"({"type":"Point","coordinates":[121.5,1e999]})")}),
                "fences.geojson: not valid JSON"},
        BadFile{Collection({Feature(R"({"name":"a","radius_m":5})", R"({"type":"Point","coordinates":[121.5,NaN]})")}),
                "not valid JSON"},
        BadFile{Collection({Feature(R"({"name":"a"})", R"({"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]})")}),
                "features[0].geometry.coordinates[0]: ring is not closed"},
        BadFile{Collection({Feature(R"({"name":"a"})", R"({"type":"Polygon","coordinates":[[[0,0],[1,0],[0,0]]]})")}),
                "features[0].geometry.coordinates[0]: a ring needs at least 4"},
        BadFile{Collection({Feature(R"({"name":"a"})", R"({"type":"Polygon","coordinates":[[[0,0],[1,0],[2,0],[0,0]]]})")}),
                "features[0].geometry.coordinates[0]: ring has zero area"},
        BadFile{Collection({Feature(R"({"name":"a"})", R"({"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,"y"],[0,0]]]})")}),
                "features[0].geometry.coordinates[0][3]"},
        BadFile{Collection({Feature(R"({"name":"a"})", R"({"type":"LineString","coordinates":[[0,0],[1,1]]})")}),
                "features[0].geometry.type: unknown geometry type \"LineString\""},
        BadFile{Collection({Feature(R"({"name":"a"})", R"(null)")}), "features[0].geometry"},
        BadFile{Collection({R"({"type":"Feature","geometry":{"type":"Point","coordinates":[0,0]}})"}), "features[0].properties"},
        BadFile{Collection({Feature(R"({"name":"a","kind":7,"radius_m":5})", R"({"type":"Point","coordinates":[121.5,31.2]})")}),
                "features[0].properties.kind"}));

TEST(FenceSetTest, LoadFileMissingIsNotFound) {
  auto set = FenceSet::LoadFile("/nonexistent/fences.geojson");
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace freshsync::geofence
