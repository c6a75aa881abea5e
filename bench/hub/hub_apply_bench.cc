// Hub apply rate: decode (zstd + protobuf) and SqliteHubStore::ApplyBatch, against a raw
// SQLite insert baseline on the same machine. See docs/benchmarks.md.
// With --postgres URL (an empty database; its tables are dropped and made again) the same for
// PgHubStore, against a raw COPY of the same number of rows into a table with the feed's
// unique index, one transaction per batch.
//
//   build/bin/hub_apply_bench --records 500000 --batch 5000 [--dir /tmp] [--sync normal] [--postgres URL]
#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>

#include <CLI/CLI.hpp>

#include "hub/codec.h"
#include "hub/pg_store.h"
#include "hub/sqlite_store.h"

namespace {

using Clock = std::chrono::steady_clock;
double Secs(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

freshsync::v1::ChangeRecord MakeRecord(uint64_t seq, bool mixed) {
  freshsync::v1::ChangeRecord r;
  r.set_seq(seq);
  r.set_version(seq);
  r.set_hlc((uint64_t{1764000000000} + seq) << 16);
  r.set_ts_ms(1764000000000 + static_cast<int64_t>(seq) * 100);
  const int kind = mixed ? static_cast<int>(seq % 20) : 0;
  if (kind < 14) {  // 70 % positions
    r.set_entity(freshsync::v1::VEHICLE_POSITION);
    r.set_key("truck-" + std::to_string(seq % 50));
    auto* p = r.mutable_position();
    p->set_vehicle(r.key());
    p->set_device_seq(seq);
    p->set_lat_e6(31230000 + static_cast<int32_t>(seq % 1000));
    p->set_lon_e6(121470000 + static_cast<int32_t>(seq % 777));
    p->set_speed_dkmh(420);
  } else if (kind < 16) {
    r.set_entity(freshsync::v1::CLIMATE);
    r.set_key("cold-" + std::to_string(seq % 20));
    r.mutable_climate()->set_sensor(r.key());
    r.mutable_climate()->set_temp_dc(350);
  } else if (kind < 18) {
    r.set_entity(freshsync::v1::STOCK);
    r.set_key("sku-" + std::to_string(seq % 500));
    r.mutable_stock()->set_sku(r.key());
    r.mutable_stock()->set_on_hand(static_cast<int64_t>(seq));
  } else if (kind < 19) {
    r.set_entity(freshsync::v1::ORDER);
    r.set_key("o-" + std::to_string(seq / 7));
    r.mutable_order()->set_status("picking");
  } else {
    r.set_entity(freshsync::v1::COLDCHAIN_ALERT);
    r.set_key("al-" + std::to_string(seq / 40));
    r.mutable_alert()->set_state("open");
  }
  return r;
}

using StoreFactory = std::function<freshsync::Result<std::unique_ptr<freshsync::hub::HubStore>>()>;

double HubApply(const StoreFactory& open, uint64_t records, uint64_t batch_size, bool mixed) {
  auto store = open();
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    std::exit(1);
  }
  // Encode first: the edge does that work, the hub does the decoding below.
  std::vector<std::string> bodies;
  for (uint64_t s = 1; s <= records; s += batch_size) {
    freshsync::v1::Batch b;
    b.set_site("bench-site");
    for (uint64_t q = s; q < s + batch_size && q <= records; ++q) *b.add_records() = MakeRecord(q, mixed);
    bodies.push_back(freshsync::hub::ZstdCompress(b.SerializeAsString(), 1));
  }
  const auto t0 = Clock::now();
  for (const auto& body : bodies) {
    auto raw = freshsync::hub::ZstdDecompressCapped(body, {});
    freshsync::v1::Batch b;
    if (!raw.ok() || !b.ParseFromString(*raw)) std::exit(1);
    auto r = (*store)->ApplyBatch("bench-site", b, 0);
    if (!r.ok() || r->gap) {
      std::fprintf(stderr, "apply failed\n");
      std::exit(1);
    }
  }
  return records / Secs(t0);
}

StoreFactory Sqlite(const std::string& path, bool full) {
  return [=]() -> freshsync::Result<std::unique_ptr<freshsync::hub::HubStore>> {
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
    auto s = freshsync::hub::SqliteHubStore::Open({path, 1, full});
    if (!s.ok()) return s.status();
    return std::unique_ptr<freshsync::hub::HubStore>(std::move(*s));
  };
}

// Runs `sql` on `url`; exits on failure (a benchmark's set-up).
void PgExec(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  const auto st = PQresultStatus(r);
  PQclear(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_COPY_IN) {
    std::fprintf(stderr, "%s: %s\n", sql.c_str(), PQerrorMessage(c));
    std::exit(1);
  }
}

// A fresh schema for each run: everything the store or the baseline made is dropped.
void PgReset(const std::string& url) {
  PGconn* c = PQconnectdb(url.c_str());
  PgExec(c, "SET client_min_messages = warning; DROP SCHEMA public CASCADE; CREATE SCHEMA public");
  PQfinish(c);
}

StoreFactory Postgres(const std::string& url) {
  return [=]() -> freshsync::Result<std::unique_ptr<freshsync::hub::HubStore>> {
    PgReset(url);
    auto s = freshsync::hub::PgHubStore::Open({url, 2});
    if (!s.ok()) return s.status();
    return std::unique_ptr<freshsync::hub::HubStore>(std::move(*s));
  };
}

// The PostgreSQL baseline: COPY of one row per record (site, seq, the record's bytes) into a
// table with the unique (site_id, seq) index, one transaction per batch.
double RawCopy(const std::string& url, uint64_t records, uint64_t batch_size) {
  PgReset(url);
  PGconn* c = PQconnectdb(url.c_str());
  PgExec(c, "CREATE TABLE t(id BIGSERIAL PRIMARY KEY, site_id BIGINT, seq BIGINT, record BYTEA); "
            "CREATE UNIQUE INDEX t_seq ON t(site_id, seq)");
  std::string hex = "\\\\x";  // COPY text: the bytea's \x with its backslash escaped
  for (unsigned char ch : MakeRecord(1, false).SerializeAsString()) {
    hex += "0123456789abcdef"[ch >> 4];
    hex += "0123456789abcdef"[ch & 15];
  }
  const auto t0 = Clock::now();
  std::string rows;
  for (uint64_t s = 1; s <= records; s += batch_size) {
    PgExec(c, "BEGIN");
    PgExec(c, "COPY t(site_id, seq, record) FROM STDIN");
    rows.clear();
    for (uint64_t q = s; q < s + batch_size && q <= records; ++q) rows += "1\t" + std::to_string(q) + "\t" + hex + "\n";
    if (PQputCopyData(c, rows.data(), static_cast<int>(rows.size())) != 1 || PQputCopyEnd(c, nullptr) != 1) std::exit(1);
    while (PGresult* r = PQgetResult(c)) PQclear(r);
    PgExec(c, "COMMIT");
  }
  const double rate = records / Secs(t0);
  PQfinish(c);
  return rate;
}

double RawSqlite(const std::string& path, uint64_t records, uint64_t batch_size, bool full) {
  std::filesystem::remove(path);
  std::filesystem::remove(path + "-wal");
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db, full ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;" : "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
               nullptr, nullptr, nullptr);
  sqlite3_exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, site_id INTEGER, seq INTEGER, record BLOB); "
                   "CREATE UNIQUE INDEX t_seq ON t(site_id, seq);", nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO t(site_id, seq, record) VALUES(1, ?1, ?2)", -1, &st, nullptr);
  const std::string blob = MakeRecord(1, false).SerializeAsString();
  const auto t0 = Clock::now();
  for (uint64_t s = 1; s <= records; s += batch_size) {
    sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    for (uint64_t q = s; q < s + batch_size && q <= records; ++q) {
      sqlite3_bind_int64(st, 1, static_cast<int64_t>(q));
      sqlite3_bind_blob(st, 2, blob.data(), static_cast<int>(blob.size()), SQLITE_STATIC);
      sqlite3_step(st);
      sqlite3_reset(st);
    }
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  const double rate = records / Secs(t0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hub apply benchmark"};
  uint64_t records = 500000, batch = 5000;
  std::string dir = std::filesystem::temp_directory_path().string();
  std::string sync = "full";
  std::string postgres;
  app.add_option("--records", records);
  app.add_option("--batch", batch);
  app.add_option("--dir", dir);
  app.add_option("--sync", sync, "full (hubd's setting) or normal");
  app.add_option("--postgres", postgres, "also PgHubStore on this (empty) database, baseline raw COPY");
  CLI11_PARSE(app, argc, argv);
  const bool full = sync == "full";
  const std::string path = dir + "/hub_apply_bench." + std::to_string(getpid()) + ".db";
  std::printf("records=%llu batch=%llu synchronous=%s\n", (unsigned long long)records, (unsigned long long)batch, sync.c_str());
  const double raw = RawSqlite(path, records, batch, full);
  const double positions = HubApply(Sqlite(path, full), records, batch, false);
  const double mixed = HubApply(Sqlite(path, full), records, batch, true);
  std::printf("raw sqlite insert (1 row/record, unique index)  %10.0f records/s\n", raw);
  std::printf("hub apply, positions only (decode + apply)       %10.0f records/s  (%.2f of raw)\n", positions,
              positions / raw);
  std::printf("hub apply, mixed entities (decode + apply)       %10.0f records/s  (%.2f of raw)\n", mixed, mixed / raw);
  std::printf("RESULT|raw SQLite insert, %llu per transaction (baseline)|%.0f rec/s|\n", (unsigned long long)batch, raw);
  std::printf("RESULT|hub apply in-process, positions / mixed|%.0f / %.0f rec/s (%.2f / %.2f of raw)|\n", positions,
              mixed, positions / raw, mixed / raw);
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);
  if (!postgres.empty()) {
    const double copy = RawCopy(postgres, records, batch);
    const double pg_positions = HubApply(Postgres(postgres), records, batch, false);
    const double pg_mixed = HubApply(Postgres(postgres), records, batch, true);
    std::printf("raw postgresql COPY (1 row/record, unique index) %10.0f records/s\n", copy);
    std::printf("pg hub apply, positions only (decode + apply)    %10.0f records/s  (%.2f of COPY)\n", pg_positions,
                pg_positions / copy);
    std::printf("pg hub apply, mixed entities (decode + apply)    %10.0f records/s  (%.2f of COPY)\n", pg_mixed,
                pg_mixed / copy);
  }
  return 0;
}
