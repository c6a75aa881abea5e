// Hub fan-in benchmark: S simulated sites (default 100), each with its own client certificate,
// push their backlogs at the same time to one real hubd over HTTPS (mutual TLS) on loopback.
//
// Baseline in the same run: the same batches (same bytes) decoded and applied in-process by
// SqliteHubStore, one after the other from one thread (no HTTP, no TLS, no concurrency), on a
// store with the same settings as hubd's (synchronous=FULL).
// After the HTTPS run the hub's store is checked: every record held once, the latest-position
// view has the newest fix of every truck, the stock view the last level of every SKU.
//
// Records per site: GPS fixes of 20 trucks at 1 Hz (80 %), stock changes (10 %), climate
// readings (10 %), as edged writes them, encoded by the agent's own BatchEncoder (format 2,
// zstd level 3). Certificates: TestPki, one CA issuing one CN per site.
//
// Usage: hub_fanin [--sites 100] [--records 10000] [--batch 2000] [--format 2]
//   --records is per site. hubd is taken from $FRESHSYNC_BIN_DIR (default: this binary's dir).
#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>

#include "bench/bench_util.h"
#include "cloud-sync/sync_store.h"
#include "wire/batch_format.h"
#include "common/clock.h"
#include "freshsync.pb.h"
#include "hub/codec.h"
#include "hub/sqlite_store.h"
#include "tests/support/harness.h"

namespace fs = freshsync;
using Clock = std::chrono::steady_clock;

namespace {

using freshsync::bench::Secs;

using freshsync::bench::CpuSecondsOf;
using freshsync::bench::SelfCpuSeconds;

constexpr int kTrucks = 20;
constexpr int kSkus = 200;
constexpr int64_t kT0 = 1'764'000'000'000;

struct SiteLoad {
  std::string site;
  std::vector<std::string> bodies;  // zstd(Batch format 2), in send order
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // seq range of each body
};

// The records of one site, encoded as the agent would send them.
SiteLoad MakeSite(int index, uint64_t records, int batch, int format) {
  SiteLoad load;
  char name[32];
  std::snprintf(name, sizeof(name), "site-%03d", index);
  load.site = name;
  std::vector<uint64_t> truck_version(kTrucks, 0), sku_version(kSkus, 0), sensor_version(10, 0);
  std::vector<fs::sync::OutboxRow> rows;
  fs::wire::BatchEncoder enc(3);
  fs::v1::ChangeRecord r;
  uint64_t hlc = 0, fixes = 0;
  for (uint64_t s = 1; s <= records; ++s) {
    const int64_t ts = kT0 + static_cast<int64_t>(s / kTrucks) * 1000 + index;
    const uint64_t wall = static_cast<uint64_t>(ts + 20 + static_cast<int64_t>(s * 7919 % 100)) << 16;
    hlc = wall > hlc ? wall : hlc + 1;
    r.Clear();
    r.set_seq(s);
    r.set_hlc(hlc);
    r.set_ts_ms(ts);
    const int kind = static_cast<int>(s % 10);
    if (kind < 8) {
      const int t = static_cast<int>(fixes++ % kTrucks);
      char id[32];
      std::snprintf(id, sizeof(id), "s%03d-truck-%02d", index, t);
      r.set_entity(fs::v1::VEHICLE_POSITION);
      r.set_key(id);
      r.set_version(++truck_version[t]);
      auto* p = r.mutable_position();
      p->set_vehicle(id);
      p->set_device_seq(truck_version[t]);
      p->set_lat_e6(31'200'000 + static_cast<int32_t>(truck_version[t] * 13 + t * 1000));
      p->set_lon_e6(121'500'000 + static_cast<int32_t>(truck_version[t] * 17 + t * 1000));
      p->set_speed_dkmh(400 + static_cast<uint32_t>(s % 50));
      p->set_heading_deg(static_cast<uint32_t>(s * 3 % 360));
      p->set_hdop_d(9);
    } else if (kind == 8) {
      const int k = static_cast<int>(s / 10 % kSkus);
      r.set_entity(fs::v1::STOCK);
      r.set_key("sku-" + std::to_string(k));
      r.set_version(++sku_version[k]);
      r.mutable_stock()->set_sku(r.key());
      r.mutable_stock()->set_on_hand(static_cast<int64_t>(s));
    } else {
      const int k = static_cast<int>(s / 10 % 10);
      r.set_entity(fs::v1::CLIMATE);
      r.set_key("cold-" + std::to_string(k));
      r.set_version(++sensor_version[k]);
      r.mutable_climate()->set_sensor(r.key());
      r.mutable_climate()->set_device_seq(sensor_version[k]);
      r.mutable_climate()->set_temp_dc(300 + static_cast<int32_t>(s % 40));
    }
    rows.push_back({s, 0, 0, r.SerializeAsString()});
    if (rows.size() == static_cast<size_t>(batch) || s == records) {
      load.bodies.emplace_back(enc.Encode(load.site, rows, false, format));
      load.ranges.emplace_back(rows.front().seq, rows.back().seq);
      rows.clear();
    }
  }
  return load;
}

int64_t QueryInt(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  int64_t v = -1;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

// The hub's store after the run: all records once, current-state views up to date.
bool Verify(const std::string& db_path, int sites, uint64_t per_site) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) return false;
  bool ok = true;
  auto expect = [&](const std::string& what, const std::string& sql, int64_t want) {
    const int64_t got = QueryInt(db, sql);
    if (got != want) {
      std::fprintf(stderr, "verify: %s: %lld, expected %lld\n", what.c_str(), static_cast<long long>(got),
                   static_cast<long long>(want));
      ok = false;
    }
  };
  const auto total = static_cast<int64_t>(per_site) * sites;
  expect("changes held", "SELECT count(*) FROM changes", total);
  expect("sites complete", "SELECT count(*) FROM sites WHERE contiguous_seq = " + std::to_string(per_site), sites);
  expect("positions in the history", "SELECT sum(count) FROM position_chunks",
         QueryInt(db, "SELECT count(*) FROM changes WHERE entity = 3"));
  expect("vehicles", "SELECT count(*) FROM vehicles", int64_t{kTrucks} * sites);
  // The latest-position view holds each truck's newest fix (its highest seq, as ts grows with seq).
  expect("vehicles not at their newest fix",
         "SELECT count(*) FROM vehicles v JOIN (SELECT site_id, key, max(seq) AS m FROM changes WHERE entity = 3 "
         "GROUP BY site_id, key) x ON x.site_id = v.site_id AND x.key = v.vehicle WHERE v.seq != x.m",
         0);
  expect("stock rows not at their highest version",
         "SELECT count(*) FROM stock s JOIN (SELECT site_id, key, max(version) AS m FROM changes WHERE entity = 1 "
         "GROUP BY site_id, key) x ON x.site_id = s.site_id AND x.key = s.sku WHERE s.version != x.m",
         0);
  sqlite3_close(db);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  int sites = 100;
  uint64_t per_site = 10000;
  int batch = 2000;
  int format = 2;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string("0"); };
    if (a == "--sites") sites = std::stoi(next());
    else if (a == "--records") per_site = std::stoull(next());
    else if (a == "--batch") batch = std::stoi(next());
    else if (a == "--format") format = std::stoi(next());
    else {
      std::fprintf(stderr, "usage: %s [--sites N] [--records N per site] [--batch N] [--format 1|2]\n", argv[0]);
      return 2;
    }
  }
  if (sites < 1 || sites > 120 || per_site < 1 || batch < 1) {
    std::fprintf(stderr, "--sites 1..120 (hubd threads are capped at 256), --records and --batch >= 1\n");
    return 2;
  }
  freshsync::bench::DefaultBinDirToOwn(argv[0]);
  fs::testing::TempDir dir;
  const uint64_t total = per_site * static_cast<uint64_t>(sites);

  auto t0 = Clock::now();
  std::vector<SiteLoad> loads;
  uint64_t body_bytes = 0;
  for (int i = 0; i < sites; ++i) {
    loads.push_back(MakeSite(i, per_site, batch, format));
    for (const auto& b : loads.back().bodies) body_bytes += b.size();
  }
  std::printf("sites %d x %llu records = %llu, batches of %d, %.2f B/record compressed (format %d), built in %.1f s\n",
              sites, static_cast<unsigned long long>(per_site), static_cast<unsigned long long>(total), batch,
              static_cast<double>(body_bytes) / static_cast<double>(total), format, Secs(t0, Clock::now()));

  // ---- Baseline: in-process decode + apply, one batch at a time, synchronous=FULL. ----
  double baseline_cpu_us = 0;
  {
    const std::string path = dir.File("baseline.db");
    auto store = fs::hub::SqliteHubStore::Open({path, 1, true});
    if (!store.ok()) {
      std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
      return 1;
    }
    t0 = Clock::now();
    const double cpu0 = SelfCpuSeconds();
    // Round-robin over sites, as their batches would interleave at the hub.
    for (size_t b = 0; b < loads[0].bodies.size(); ++b) {
      for (auto& load : loads) {
        auto raw = fs::hub::ZstdDecompressCapped(load.bodies[b], {});
        fs::v1::Batch batch_msg;
        if (!raw.ok() || !batch_msg.ParseFromString(*raw) || !fs::wire::ExpandBatch(batch_msg).ok()) return 1;
        auto res = (*store)->ApplyBatch(load.site, batch_msg, 0);
        if (!res.ok() || res->gap) {
          std::fprintf(stderr, "baseline apply failed\n");
          return 1;
        }
      }
    }
    const double s = Secs(t0, Clock::now());
    baseline_cpu_us = (SelfCpuSeconds() - cpu0) * 1e6 / static_cast<double>(total);
    std::printf("baseline  in-process decode+apply, one batch per transaction: %.0f rec/s (%.2f s), %.2f us CPU/record\n",
                static_cast<double>(total) / s, s, baseline_cpu_us);
    std::printf("RESULT|in-process decode + apply, one batch at a time (baseline)|%.0f rec/s|\n",
                static_cast<double>(total) / s);
  }

  // ---- hubd over HTTPS, all sites at once. ----
  const std::string hubd = fs::testing::BinDir() + "/hubd";
  if (!std::filesystem::exists(hubd)) {
    std::printf("fan-in: skipped, %s not built\n", hubd.c_str());
    return 0;
  }
  std::filesystem::create_directories(dir.File("pki"));
  fs::testing::TestPki pki(dir.File("pki"));
  if (!pki.Init()) return 1;
  t0 = Clock::now();
  std::vector<fs::testing::TestPki::Files> certs;
  for (const auto& load : loads) certs.push_back(pki.Client(load.site));
  std::printf("certificates: %d client certificates in %.1f s\n", sites, Secs(t0, Clock::now()));
  const int hub_port = fs::testing::PickFreePort();
  // One HTTP worker per pushing site plus headroom: hubd admits threads/2 batches at once.
  const int threads = std::min(256, 2 * sites + 8);
  fs::testing::WriteFile(dir.File("hubd.toml"),
                         "listen = \"127.0.0.1:" + std::to_string(hub_port) + "\"\nthreads = " + std::to_string(threads) +
                             "\n[log]\nlevel = \"warn\"\n[tls]\nca = \"" + pki.ca_cert() + "\"\ncert = \"" +
                             pki.server().cert + "\"\nkey = \"" + pki.server().key + "\"\n[store]\npath = \"" +
                             dir.File("hub.db") + "\"\n");
  fs::testing::ChildProcess hub({hubd, "--config", dir.File("hubd.toml")}, dir.File("hubd.log"));
  if (!hub.Start()) return 1;
  auto client_for = [&](int i) {
    auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", hub_port, certs[i].cert, certs[i].key);
    c->set_ca_cert_path(pki.ca_cert().c_str());
    c->enable_server_certificate_verification(true);
    c->set_keep_alive(true);
    c->set_read_timeout(120, 0);
    return c;
  };
  if (!fs::testing::WaitFor([&] { return client_for(0)->Get("/healthz") != nullptr; }, std::chrono::seconds(20))) {
    std::fprintf(stderr, "hubd did not start; log:\n%s\n", fs::testing::ReadFile(dir.File("hubd.log")).c_str());
    return 1;
  }
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<uint64_t> retries{0}, failures{0};
  std::vector<std::thread> pushers;
  for (int i = 0; i < sites; ++i) {
    pushers.emplace_back([&, i] {
      auto c = client_for(i);
      // Connect (TLS handshake) before the clock starts: sites keep their connection open.
      (void)c->Get("/healthz");
      ready++;
      while (!go) std::this_thread::yield();
      const auto& load = loads[static_cast<size_t>(i)];
      const std::string path = "/v1/sites/" + load.site + "/batches";
      const httplib::Headers h = {{"Content-Encoding", "zstd"}, {"Accept", "application/x-protobuf"}};
      for (size_t b = 0; b < load.bodies.size();) {
        auto res = c->Post(path, h, load.bodies[b], "application/x-protobuf");
        if (res && res->status == 200) {
          ++b;
          continue;
        }
        if (res && (res->status == 503 || res->status == 429)) {
          retries++;
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          continue;
        }
        if (!res) {  // connection rotated by the server: reconnect and resend (idempotent)
          retries++;
          c = client_for(i);
          continue;
        }
        std::fprintf(stderr, "%s: HTTP %d %s\n", load.site.c_str(), res->status, res->body.substr(0, 200).c_str());
        failures++;
        return;
      }
    });
  }
  while (ready < sites) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  t0 = Clock::now();
  const double hub_cpu0 = CpuSecondsOf(hub.pid()), self_cpu0 = SelfCpuSeconds();
  go = true;
  for (auto& t : pushers) t.join();
  const double s = Secs(t0, Clock::now());
  const double hub_cpu_us = (CpuSecondsOf(hub.pid()) - hub_cpu0) * 1e6 / static_cast<double>(total);
  const double client_cpu_us = (SelfCpuSeconds() - self_cpu0) * 1e6 / static_cast<double>(total);
  std::printf("fan-in    %d sites -> hubd over HTTPS at once: %.0f rec/s (%.2f s), %llu retries (503/reconnect)\n",
              sites, static_cast<double>(total) / s, s, static_cast<unsigned long long>(retries.load()));
  std::printf("cpu       hubd %.2f us/record (in-process baseline %.2f), the %d pushing clients %.2f us/record\n",
              hub_cpu_us, baseline_cpu_us, sites, client_cpu_us);
  std::printf("RESULT|hubd CPU per record during fan-in (in-process baseline)|%.2f us (%.2f us)|\n", hub_cpu_us,
              baseline_cpu_us);
  hub.Stop();
  if (failures > 0) return 1;
  const bool ok = Verify(dir.File("hub.db"), sites, per_site);
  std::printf("RESULT|%d sites pushing at once to hubd over HTTPS, applied|%.0f rec/s%s|>= 200000 rec/s\n", sites,
              static_cast<double>(total) / s, ok ? "" : " (verification FAILED)");
  std::printf("verify    hub store after fan-in: %s\n", ok ? "all records held once, vehicle and stock views current"
                                                           : "FAILED");
  return ok ? 0 : 1;
}
