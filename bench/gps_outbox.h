// A GPS backlog in an edge store's outbox, as edged writes it: shared by the benchmarks that
// drain an outbox to a hub (sync_drain, outage_return).
#pragma once

#include <sqlite3.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "edge/migrations.h"
#include "freshsync.pb.h"
#include "sqlite/migrate.h"

namespace freshsync::bench {

namespace fs = freshsync;

// GPS change records as edged writes them for fs/vehicles/{vehicle}/gps at 1 Hz per truck.
inline void Generate(const std::string& path, uint64_t n, int64_t created_ms) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  Exec(db, "PRAGMA journal_mode=WAL");
  Exec(db, "PRAGMA synchronous=NORMAL");
  // The edge store's schema, by its own migrations.
  if (auto v = fs::sqlite::Migrate(db, fs::edge::StoreMigrations(), {}); !v.ok()) {
    std::fprintf(stderr, "migrate: %s\n", v.status().ToString().c_str());
    std::exit(1);
  }
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO outbox VALUES(?,?,?,?,?,?,?,?)", -1, &st, nullptr);
  constexpr int kTrucks = 50;
  struct Truck {
    std::string id;
    double lat, lon, heading, speed;
    uint64_t seq = 0;
    uint32_t hdop = 9;
  };
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-1, 1);
  std::vector<Truck> trucks;
  for (int i = 0; i < kTrucks; ++i) {
    char id[32];
    std::snprintf(id, sizeof(id), "truck-%03d", i);
    trucks.push_back({id, 31.2 + 0.1 * u(rng), 121.5 + 0.1 * u(rng), 180 + 180 * u(rng), 40 + 20 * u(rng), 0, 9});
  }
  // Model: each truck's receiver reports on the whole second (GPS time), the message reaches
  // edged 20-120 ms later and is committed in ingest's 100-message transactions; the HLC
  // physical part is that commit time. hdop changes now and then, speed and heading drift.
  const int64_t t0 = 1'764'000'000'000;
  uint64_t hlc = 0;
  Exec(db, "BEGIN");
  fs::v1::ChangeRecord r;
  std::string blob;
  for (uint64_t s = 1; s <= n; ++s) {
    Truck& t = trucks[(s - 1) % kTrucks];
    const int64_t ts = t0 + static_cast<int64_t>((s - 1) / kTrucks) * 1000;
    const int64_t commit_ms = ts + 20 + static_cast<int64_t>(rng() % 100);
    const uint64_t wall = static_cast<uint64_t>(commit_ms) << 16;
    hlc = wall > hlc ? wall : hlc + 1;
    t.heading = std::fmod(t.heading + 5 * u(rng) + 360, 360);
    t.speed = std::clamp(t.speed + 2 * u(rng), 0.0, 90.0);
    if (rng() % 20 == 0) t.hdop = 8 + static_cast<uint32_t>(rng() % 5);
    const double dist_deg = t.speed / 3.6 / 111000.0;  // per second
    t.lat += dist_deg * std::cos(t.heading * M_PI / 180);
    t.lon += dist_deg * std::sin(t.heading * M_PI / 180);
    r.Clear();
    r.set_seq(s);
    r.set_entity(fs::v1::VEHICLE_POSITION);
    r.set_key(t.id);
    r.set_version(++t.seq);
    r.set_hlc(hlc);
    r.set_ts_ms(ts);
    auto* p = r.mutable_position();
    p->set_vehicle(t.id);
    p->set_device_seq(t.seq);
    p->set_lat_e6(static_cast<int32_t>(std::lround(t.lat * 1e6)));
    p->set_lon_e6(static_cast<int32_t>(std::lround(t.lon * 1e6)));
    p->set_speed_dkmh(static_cast<uint32_t>(std::lround(t.speed * 10)));
    p->set_heading_deg(static_cast<uint32_t>(std::lround(t.heading)));
    p->set_hdop_d(t.hdop);
    r.SerializeToString(&blob);
    sqlite3_bind_int64(st, 1, static_cast<int64_t>(s));
    sqlite3_bind_int(st, 2, r.entity());
    sqlite3_bind_text(st, 3, t.id.c_str(), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, static_cast<int64_t>(t.seq));
    sqlite3_bind_int64(st, 5, static_cast<int64_t>(r.hlc()));
    sqlite3_bind_int(st, 6, 0);
    sqlite3_bind_int64(st, 7, created_ms);
    sqlite3_bind_blob(st, 8, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE) {
      std::fprintf(stderr, "insert failed: %s\n", sqlite3_errmsg(db));
      std::exit(1);
    }
    sqlite3_reset(st);
    if (s % 100000 == 0) {
      Exec(db, "COMMIT");
      Exec(db, "BEGIN");
    }
  }
  Exec(db, "COMMIT");
  sqlite3_finalize(st);
  Exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite3_close(db);
}

}  // namespace freshsync::bench
