#include "hub/pg_store.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <ctime>
#include <map>
#include <optional>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>

#include "hub/conn_pool.h"
#include "hub/entity_routes.h"
#include "hub/position_chunk.h"
#include "hub/sqlite_store.h"
#include "hub/store_sql.h"
#include "wire/digest.h"
#include "wire/record_rules.h"

namespace freshsync::hub {

std::string PostgresText(const Sql& sql) {
  if (sql.postgres != nullptr) return sql.postgres;
  std::string out;
  bool quoted = false;
  for (const char* p = sql.sqlite; *p != '\0'; ++p) {
    if (*p == '\'') quoted = !quoted;  // '' inside a literal toggles twice: still right
    if (*p == '?' && !quoted && std::isdigit(static_cast<unsigned char>(p[1]))) {
      out += '$';
      continue;
    }
    out += *p;
  }
  return out;
}

CopyBinaryRows::CopyBinaryRows() : buf_("PGCOPY\n\xff\r\n\0", 11) {
  BigEndian(0, 4);  // flags
  BigEndian(0, 4);  // header extension length
}
void CopyBinaryRows::BigEndian(uint64_t v, int bytes) {
  for (int k = bytes - 1; k >= 0; --k) buf_ += static_cast<char>((v >> (8 * k)) & 0xff);
}
CopyBinaryRows& CopyBinaryRows::Row(int fields) {
  ++rows_;
  BigEndian(static_cast<uint64_t>(fields), 2);
  return *this;
}
CopyBinaryRows& CopyBinaryRows::Int8(int64_t v) {
  BigEndian(8, 4);
  BigEndian(static_cast<uint64_t>(v), 8);
  return *this;
}
CopyBinaryRows& CopyBinaryRows::Int4(int32_t v) {
  BigEndian(4, 4);
  BigEndian(static_cast<uint32_t>(v), 4);
  return *this;
}
CopyBinaryRows& CopyBinaryRows::Bytes(std::string_view v) {
  BigEndian(v.size(), 4);
  buf_.append(v);
  return *this;
}
void CopyBinaryRows::SetInt8(size_t at, int64_t v) {
  const auto u = static_cast<uint64_t>(v);
  for (size_t k = 0; k < 8; ++k) buf_[at + 4 + k] = static_cast<char>((u >> (8 * (7 - k))) & 0xff);
}
const std::string& CopyBinaryRows::Finish() {
  BigEndian(0xffff, 2);
  return buf_;
}

namespace {

// PostgresText of a statement, translated once per text (the per-record apply steps would
// otherwise translate on every run). Keyed by the address of the SQLite text, a literal.
const std::string& PgText(const Sql& sql) {
  static std::mutex mu;
  static std::unordered_map<const char*, std::string> cache;
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(sql.sqlite);
  if (it == cache.end()) it = cache.emplace(sql.sqlite, PostgresText(sql)).first;
  return it->second;
}

constexpr Oid kByteaOid = 17;
// Advisory lock keys (one namespace per database): the schema migrations, and the feed.
constexpr int64_t kMigrationLockKey = 0x46534d4947;  // "FSMIG"
// The feed floors (InsertFeed): kFeedFloor + a cursor, above every other key (cursors < 2^62).
constexpr int64_t kFeedFloor = int64_t{1} << 62;

// The store's own part of each migration, numbered as SqliteHubStore's (sqlite_store.cc), so a
// handler's SchemaStep names the same migration for both; the handlers' DDL (their postgres
// text) follows each. A shipped migration's effect never changes.
const std::vector<std::string>& Migrations() {
  static const std::vector<std::string> m = [] {
    std::vector<std::string> sql = {
        // 1: sites, the feed, latest vehicle positions, audit. COLLATE "C": bytewise order, as
        // SQLite's BINARY, for every key the reads sort by.
        R"sql(
CREATE TABLE sites(
  site_id BIGSERIAL PRIMARY KEY, site TEXT COLLATE "C" NOT NULL UNIQUE,
  contiguous_seq BIGINT NOT NULL DEFAULT 0, max_seq BIGINT NOT NULL DEFAULT 0,
  records BIGINT NOT NULL DEFAULT 0, last_push_ms BIGINT NOT NULL DEFAULT 0);
-- cursor: from the sequence, after the batch announced its floor (pg_store.h, InsertFeed).
CREATE TABLE changes(
  cursor BIGSERIAL PRIMARY KEY, site_id BIGINT NOT NULL, seq BIGINT NOT NULL, entity INT NOT NULL,
  key TEXT COLLATE "C" NOT NULL, version BIGINT NOT NULL, record BYTEA NOT NULL);
CREATE UNIQUE INDEX changes_site_seq ON changes(site_id, seq);
CREATE TABLE vehicles(
  vehicle TEXT COLLATE "C" PRIMARY KEY, site_id BIGINT NOT NULL,
  device_seq BIGINT NOT NULL, lat_e6 BIGINT NOT NULL, lon_e6 BIGINT NOT NULL,
  speed_dkmh BIGINT NOT NULL, heading_deg BIGINT NOT NULL, hdop_d BIGINT NOT NULL,
  ts_ms BIGINT NOT NULL, hlc BIGINT NOT NULL, seq BIGINT NOT NULL);
CREATE INDEX vehicles_site ON vehicles(site_id);
CREATE TABLE audit(
  id BIGSERIAL PRIMARY KEY, ts_ms BIGINT NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL, path TEXT NOT NULL,
  seq_from BIGINT NOT NULL, seq_to BIGINT NOT NULL, count BIGINT NOT NULL, status INT NOT NULL,
  detail TEXT NOT NULL);
)sql",
        // 2: position history in chunks (hub/position_chunk.h).
        R"sql(
CREATE TABLE position_chunks(
  site_id BIGINT NOT NULL, vehicle TEXT COLLATE "C" NOT NULL, ts_min BIGINT NOT NULL, seq_min BIGINT NOT NULL,
  ts_max BIGINT NOT NULL, count BIGINT NOT NULL, fixes BYTEA NOT NULL,
  PRIMARY KEY(site_id, vehicle, ts_min, seq_min));
)sql",
        // 3: quarantine of refused records, and per-site daily usage.
        R"sql(
CREATE TABLE refused_records(
  site_id BIGINT NOT NULL, seq BIGINT NOT NULL, entity INT NOT NULL, version BIGINT NOT NULL,
  key TEXT COLLATE "C", field TEXT NOT NULL, reason TEXT NOT NULL, received_ms BIGINT NOT NULL,
  PRIMARY KEY(site_id, seq));
CREATE TABLE site_usage(
  site_id BIGINT NOT NULL, day BIGINT NOT NULL, bytes BIGINT NOT NULL, PRIMARY KEY(site_id, day));
)sql",
        // 4: pallet scans at dock doors (the handler's dock_scans only).
        "",
        // 5: the RabbitMQ relay's leases and cursors (hub/relay/amqp_relay.h). BIGINT: SQLite's
        // INTEGER is 64-bit, PostgreSQL's is not.
        R"sql(
CREATE TABLE leases(name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_ms BIGINT NOT NULL);
CREATE TABLE relay_cursors(name TEXT PRIMARY KEY, cursor BIGINT NOT NULL);
)sql",
        // 6: the downstream logs (as SqliteHubStore's migration 6). The lane row is what an
        // append locks FOR UPDATE, so appends to one site are serialised across replicas.
        R"sql(
CREATE TABLE down_lanes(
  site TEXT COLLATE "C" PRIMARY KEY, last_seq BIGINT NOT NULL DEFAULT 0,
  delivered_seq BIGINT NOT NULL DEFAULT 0, delivered_ms BIGINT NOT NULL DEFAULT 0,
  seeded BIGINT NOT NULL DEFAULT 0, fences_version BIGINT NOT NULL DEFAULT 0,
  fences_digest TEXT NOT NULL DEFAULT '', rules_version BIGINT NOT NULL DEFAULT 0,
  rules_digest TEXT NOT NULL DEFAULT '');
CREATE TABLE down_commands(
  site TEXT COLLATE "C" NOT NULL, down_seq BIGINT NOT NULL, kind BIGINT NOT NULL,
  command_id TEXT COLLATE "C" NOT NULL, digest TEXT NOT NULL, body BYTEA NOT NULL, sealed BYTEA,
  issued_ms BIGINT NOT NULL, issued_by TEXT NOT NULL,
  PRIMARY KEY(site, down_seq), UNIQUE(site, command_id));
CREATE INDEX down_commands_by_id ON down_commands(command_id);
CREATE TABLE catalog_items(
  sku TEXT COLLATE "C" PRIMARY KEY, version BIGINT NOT NULL, digest TEXT NOT NULL,
  body BYTEA NOT NULL, updated_ms BIGINT NOT NULL);
)sql",
        // 7: escrow allotments (the handler's escrow only).
        "",
        // 8: each site's current HQ fences and rules, kept past retention (as SqliteHubStore's
        // migration 8).
        R"sql(
CREATE TABLE down_current(
  site TEXT COLLATE "C" NOT NULL, kind BIGINT NOT NULL, version BIGINT NOT NULL, body BYTEA NOT NULL,
  updated_ms BIGINT NOT NULL, PRIMARY KEY(site, kind));
INSERT INTO down_current(site, kind, version, body, updated_ms)
  SELECT c.site, c.kind, l.fences_version, c.body, c.issued_ms FROM down_lanes l
  JOIN down_commands c ON c.site = l.site AND c.command_id = 'fences:' || l.fences_version
  WHERE l.fences_version > 0;
INSERT INTO down_current(site, kind, version, body, updated_ms)
  SELECT c.site, c.kind, l.rules_version, c.body, c.issued_ms FROM down_lanes l
  JOIN down_commands c ON c.site = l.site AND c.command_id = 'coldchain-rules:' || l.rules_version
  WHERE l.rules_version > 0;
)sql",
        // 9: position history partitioned by day of ts_min (HubStore::MaintainTelemetry makes
        // the day partitions and drops them past retention). The rows move to the DEFAULT
        // partition here; the first upkeep round moves the recent days into their own.
        R"sql(
ALTER TABLE position_chunks RENAME TO position_chunks_unpartitioned;
ALTER INDEX position_chunks_pkey RENAME TO position_chunks_unpartitioned_pkey;
CREATE TABLE position_chunks(
  site_id BIGINT NOT NULL, vehicle TEXT COLLATE "C" NOT NULL, ts_min BIGINT NOT NULL, seq_min BIGINT NOT NULL,
  ts_max BIGINT NOT NULL, count BIGINT NOT NULL, fixes BYTEA NOT NULL,
  PRIMARY KEY(site_id, vehicle, ts_min, seq_min)) PARTITION BY RANGE (ts_min);
CREATE TABLE position_chunks_default PARTITION OF position_chunks DEFAULT;
INSERT INTO position_chunks SELECT * FROM position_chunks_unpartitioned;
DROP TABLE position_chunks_unpartitioned;
)sql",
        // 10: webhook dead letters (as SqliteHubStore's migration 10).
        R"sql(
CREATE TABLE webhook_deadletters(
  id BIGSERIAL PRIMARY KEY, webhook TEXT COLLATE "C" NOT NULL, event TEXT NOT NULL, site TEXT NOT NULL,
  idem_key TEXT NOT NULL, body TEXT NOT NULL, attempts BIGINT NOT NULL, last_error TEXT NOT NULL,
  dead_ms BIGINT NOT NULL, replay BIGINT NOT NULL DEFAULT 0, replays BIGINT NOT NULL DEFAULT 0);
CREATE INDEX webhook_deadletters_by_hook ON webhook_deadletters(webhook, replay, id);
)sql",
    };
    // Migrations not listed here are the handlers' tables alone: the list is as long as
    // SqliteHubStore's, so a new entity's migration needs no line here.
    sql.resize(static_cast<size_t>(std::max<int>(static_cast<int>(sql.size()), SqliteHubStore::SchemaVersion())));
    for (const SchemaStep& step : EntitySchema()) {
      if (step.migration >= 1 && static_cast<size_t>(step.migration) <= sql.size())
        sql[static_cast<size_t>(step.migration) - 1] += PostgresText(step.ddl);
    }
    return sql;
  }();
  return m;
}

struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, ResultDeleter>;

// Parameters in libpq's text format, bytea in binary; types left to the server to infer.
class PgParams final : public SqlParams {
 public:
  SqlParams& Int(int i, int64_t v) override { return Set(i, std::to_string(v), 0, 0); }
  SqlParams& Real(int i, double v) override {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%.17g", v);
    return Set(i, buf, 0, 0);
  }
  SqlParams& Text(int i, std::string_view v) override { return Set(i, std::string(v), 0, 0); }
  SqlParams& Blob(int i, std::string_view v) override { return Set(i, std::string(v), 1, kByteaOid); }
  SqlParams& TextRef(int i, const std::string& v) override { return Text(i, v); }
  SqlParams& BlobRef(int i, const std::string& v) override { return Blob(i, v); }
  SqlParams& Null(int i) override {
    Set(i, "", 0, 0);
    null_[static_cast<size_t>(i - 1)] = true;
    return *this;
  }
  PGresult* Exec(PGconn* c, const std::string& sql) {
    Pointers v(*this);
    return PQexecParams(c, sql.c_str(), static_cast<int>(values_.size()), types_.data(), v.values.data(),
                        v.lengths.data(), formats_.data(), 0);
  }
  int count() const { return static_cast<int>(values_.size()); }
  // Parameter i (from 1) as an element of an array literal, appended to `out`: quoted with
  // backslash and double quote escaped, a bytea as its \x hex text, NULL bare.
  void AppendArrayElement(int i, std::string* out) const {
    const auto k = static_cast<size_t>(i - 1);
    if (k >= values_.size() || null_[k]) {
      *out += "NULL";
      return;
    }
    std::string text;
    if (formats_[k] == 1) {
      static const char* hex = "0123456789abcdef";
      text = "\\x";
      for (unsigned char ch : values_[k]) {
        text += hex[ch >> 4];
        text += hex[ch & 15];
      }
    }
    *out += '"';
    for (char ch : formats_[k] == 1 ? text : values_[k]) {
      if (ch == '"' || ch == '\\') *out += '\\';
      *out += ch;
    }
    *out += '"';
  }
  // Parameter i (from 1) as a field of COPY's text format, appended to `out`: backslash, tab,
  // newline and carriage return escaped, a bytea as its \x hex text, NULL as \N.
  void AppendCopyField(int i, std::string* out) const {
    const auto k = static_cast<size_t>(i - 1);
    if (k >= values_.size() || null_[k]) {
      *out += "\\N";
      return;
    }
    if (formats_[k] == 1) {
      static const char* hex = "0123456789abcdef";
      *out += "\\\\x";
      for (unsigned char ch : values_[k]) {
        *out += hex[ch >> 4];
        *out += hex[ch & 15];
      }
      return;
    }
    for (char ch : values_[k]) {
      switch (ch) {
        case '\\': *out += "\\\\"; break;
        case '\t': *out += "\\t"; break;
        case '\n': *out += "\\n"; break;
        case '\r': *out += "\\r"; break;
        default: *out += ch;
      }
    }
  }
  // Queues the statement in pipeline mode; 1 on success, as PQsendQueryParams.
  int Send(PGconn* c, const std::string& sql) {
    Pointers v(*this);
    return PQsendQueryParams(c, sql.c_str(), static_cast<int>(values_.size()), types_.data(), v.values.data(),
                             v.lengths.data(), formats_.data(), 0);
  }

 private:
  // What libpq takes: one pointer and length per parameter (nullptr: NULL).
  struct Pointers {
    explicit Pointers(const PgParams& p) : values(p.values_.size()), lengths(p.values_.size()) {
      for (size_t k = 0; k < p.values_.size(); ++k) {
        values[k] = p.null_[k] ? nullptr : p.values_[k].data();
        lengths[k] = static_cast<int>(p.values_[k].size());
      }
    }
    std::vector<const char*> values;
    std::vector<int> lengths;
  };
  SqlParams& Set(int i, std::string v, int format, Oid type) {
    const auto k = static_cast<size_t>(i - 1);
    if (values_.size() <= k) {
      values_.resize(k + 1);
      null_.resize(k + 1, false);
      formats_.resize(k + 1, 0);
      types_.resize(k + 1, 0);
    }
    values_[k] = std::move(v);
    null_[k] = false;
    formats_[k] = format;
    types_[k] = type;
    return *this;
  }
  std::vector<std::string> values_;
  std::vector<bool> null_;
  std::vector<int> formats_;
  std::vector<Oid> types_;
};

// A row of a text-format result; bytea columns are unescaped by Text().
class PgRow final : public SqlRow {
 public:
  PgRow(const PGresult* r, int row) : r_(r), row_(row) {}
  int64_t Int(int c) const override { return std::strtoll(PQgetvalue(r_, row_, c), nullptr, 10); }
  double Real(int c) const override { return std::strtod(PQgetvalue(r_, row_, c), nullptr); }
  std::string Text(int c) const override {
    if (PQgetisnull(r_, row_, c)) return "";
    if (PQftype(r_, c) != kByteaOid) return std::string(PQgetvalue(r_, row_, c), PQgetlength(r_, row_, c));
    size_t n = 0;
    unsigned char* raw = PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(r_, row_, c)), &n);
    std::string out(reinterpret_cast<const char*>(raw), n);
    PQfreemem(raw);
    return out;
  }

 private:
  const PGresult* r_;
  int row_;
};

// A failed statement: deadlocks and serialization failures are worth retrying the whole
// transaction (transient, SQLSTATE class 40); a lost connection and everything else the
// database refused is kIOError (hub/server.cc answers 503, the edge retries).
struct PgError {
  static bool Retryable(const PGresult* r) {
    const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    return state != nullptr && std::strncmp(state, "40", 2) == 0;
  }
};

Status ErrorOf(PGconn* c, const PGresult* r, const char* what) {
  std::string msg = r ? PQresultErrorMessage(r) : PQerrorMessage(c);
  while (!msg.empty() && std::isspace(static_cast<unsigned char>(msg.back()))) msg.pop_back();
  return Status::IOError(std::string(what) + ": " + msg);
}

// A connection of the pool.
class Conn {
 public:
  ~Conn() {
    if (c_ != nullptr) PQfinish(c_);
  }
  Status Open(const std::string& url) {
    c_ = PQconnectdb(url.c_str());
    if (PQstatus(c_) != CONNECTION_OK) return ErrorOf(c_, nullptr, "connect to PostgreSQL");
    return Exec("SET client_min_messages = warning");
  }
  // A connection the server dropped (restart, failover) is re-established on next use.
  void Heal() {
    if (PQstatus(c_) == CONNECTION_BAD) PQreset(c_);
  }
  PGconn* get() const { return c_; }
  Status Exec(const std::string& sql) {
    PgResult r(PQexec(c_, sql.c_str()));
    const auto st = PQresultStatus(r.get());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      last_retryable = PgError::Retryable(r.get());
      return ErrorOf(c_, r.get(), "exec");
    }
    return Status::Ok();
  }
  // Runs `sql` with `params`; the result or the error as `what`.
  Result<PgResult> Run(const std::string& sql, PgParams& params, const char* what) {
    PgResult r(params.Exec(c_, sql));
    const auto st = PQresultStatus(r.get());
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      last_retryable = PgError::Retryable(r.get());
      return ErrorOf(c_, r.get(), what);
    }
    return r;
  }
  bool last_retryable = false;

 private:
  PGconn* c_ = nullptr;
};

uint64_t U(const PGresult* r, int row, int c) {
  return static_cast<uint64_t>(std::strtoll(PQgetvalue(r, row, c), nullptr, 10));
}

}  // namespace

struct PgHubStore::Impl {
  PgHubStoreOptions options;
  ConnPool<Conn> pool;

  // At most options.apply_concurrency batches of this process in a transaction at once (the
  // rest wait here, in hubd, not inside PostgreSQL): see PgHubStoreOptions.
  std::mutex apply_mu;
  std::condition_variable apply_cv;
  int applying = 0;
  class ApplySlot {
   public:
    explicit ApplySlot(Impl& impl) : impl_(impl) {
      std::unique_lock<std::mutex> l(impl_.apply_mu);
      impl_.apply_cv.wait(l, [&] { return impl_.applying < std::max(1, impl_.options.apply_concurrency); });
      ++impl_.applying;
    }
    ~ApplySlot() {
      {
        std::lock_guard<std::mutex> l(impl_.apply_mu);
        --impl_.applying;
      }
      impl_.apply_cv.notify_one();
    }
    ApplySlot(const ApplySlot&) = delete;
    ApplySlot& operator=(const ApplySlot&) = delete;

   private:
    Impl& impl_;
  };

  ConnPool<Conn>::Lease Acquire() {
    auto c = pool.Acquire();
    c->Heal();
    return c;
  }

  // Runs `body` in one transaction on a pooled connection and commits; a deadlock or
  // serialization failure (two batches of different sites upserting the same order or vehicle
  // in opposite order) retries the whole transaction a few times. `body` returns false in its
  // result to roll back without an error (a refused batch).
  template <typename T, typename Body>
  Result<T> Transaction(Body body, const char* begin = "BEGIN") {
    for (int attempt = 0;; ++attempt) {
      auto c = Acquire();
      c->last_retryable = false;
      if (Status s = c->Exec(begin); !s.ok()) return s;
      bool commit = true;
      Result<T> r = body(*c, commit);
      if (r.ok() && commit) {
        Status s = c->Exec("COMMIT");
        if (s.ok()) return r;
        r = s;
      }
      const bool retry = !r.ok() && c->last_retryable && attempt < 4;
      (void)c->Exec("ROLLBACK");
      if (!retry) return r;
    }
  }

  Status Migrate(Conn& c) {
    const auto& sql = Migrations();
    for (const SchemaStep& step : EntitySchema()) {
      if (step.migration < 1 || static_cast<size_t>(step.migration) > sql.size())
        return Status::Internal("an entity's table names migration " + std::to_string(step.migration) +
                                ", which the list in pg_store.cc does not have");
    }
    // Session lock: a second replica starting now waits here, then finds the work done.
    if (Status s = c.Exec("SELECT pg_advisory_lock(" + std::to_string(kMigrationLockKey) + ")"); !s.ok()) return s;
    auto body = [&]() -> Status {
      if (Status s = c.Exec("CREATE TABLE IF NOT EXISTS pg_schema(version INT NOT NULL)"); !s.ok()) return s;
      PgParams none;
      auto v = c.Run("SELECT version FROM pg_schema", none, "schema version");
      if (!v.ok()) return v.status();
      int version = 0;
      if (PQntuples(v->get()) == 0) {
        if (Status s = c.Exec("INSERT INTO pg_schema VALUES(0)"); !s.ok()) return s;
      } else {
        version = std::atoi(PQgetvalue(v->get(), 0, 0));
      }
      if (version > static_cast<int>(sql.size()))
        return Status::Internal("the database's schema version " + std::to_string(version) +
                                " is newer than this hubd knows (" + std::to_string(sql.size()) + ")");
      for (size_t i = static_cast<size_t>(version); i < sql.size(); ++i) {
        // Each migration commits with its version bump, or not at all.
        Status s = c.Exec("BEGIN");
        if (s.ok()) s = c.Exec(sql[i]);
        if (s.ok()) s = c.Exec("UPDATE pg_schema SET version = " + std::to_string(i + 1));
        if (s.ok()) s = c.Exec("COMMIT");
        if (!s.ok()) {
          (void)c.Exec("ROLLBACK");
          return Status::Internal("migration " + std::to_string(i + 1) + ": " + s.message());
        }
      }
      return Status::Ok();
    };
    Status s = body();
    (void)c.Exec("SELECT pg_advisory_unlock(" + std::to_string(kMigrationLockKey) + ")");
    return s;
  }

  // Locks the site's row (FOR UPDATE: one batch per site at a time, across replicas), creating
  // it first if need be. Returns site_id, contiguous_seq, max_seq.
  struct SiteRow {
    int64_t id = 0;
    uint64_t contiguous = 0, max_seq = 0;
  };
  static Result<SiteRow> LockSite(Conn& c, const std::string& site) {
    for (int round = 0; round < 2; ++round) {
      PgParams p;
      p.Text(1, site);
      auto r = c.Run("SELECT site_id, contiguous_seq, max_seq FROM sites WHERE site = $1 FOR UPDATE", p, "lock site");
      if (!r.ok()) return r.status();
      if (PQntuples(r->get()) == 1)
        return SiteRow{std::strtoll(PQgetvalue(r->get(), 0, 0), nullptr, 10), U(r->get(), 0, 1), U(r->get(), 0, 2)};
      // Not there yet: create it (another replica may be doing so too; it wins, we wait).
      auto ins = c.Run("INSERT INTO sites(site) VALUES($1) ON CONFLICT (site) DO NOTHING", p, "insert site");
      if (!ins.ok()) return ins.status();
    }
    return Status::Internal("site row vanished");
  }

  static Status Exec(Conn& c, const std::string& sql, PgParams& p, const char* what) {
    auto r = c.Run(sql, p, what);
    return r.ok() ? Status::Ok() : r.status();
  }

  static Status InsertAudit(Conn& c, const AuditEntry& e) {
    PgParams p;
    p.Int(1, e.ts_ms).Text(2, e.kind).Text(3, e.actor).Text(4, e.path).UInt(5, e.seq_from).UInt(6, e.seq_to);
    p.UInt(7, e.count).Int(8, e.status).Text(9, e.detail);
    return Exec(c, PgText(store_sql::kInsertAudit), p, "insert audit");
  }

  // `sql` once for all `rows`: its parameter k is the array literal of every row's parameter k,
  // in order (ApplyStep::postgres_batch, the vehicles' upsert).
  static Status ExecArrays(Conn& c, const char* sql, const std::vector<PgParams>& rows, const char* what) {
    if (rows.empty()) return Status::Ok();
    int params = 0;
    for (const PgParams& r : rows) params = std::max(params, r.count());
    PgParams arrays;
    std::string a;
    for (int k = 1; k <= params; ++k) {
      a = "{";
      for (size_t i = 0; i < rows.size(); ++i) {
        if (i > 0) a += ',';
        rows[i].AppendArrayElement(k, &a);
      }
      a += '}';
      arrays.Text(k, a);
    }
    return Exec(c, sql, arrays, what);
  }

  // The handlers' apply steps of a batch, run in libpq's pipeline mode: one round trip per
  // kPipelineChunk statements instead of one per statement (the per-record upserts were most of
  // a batch's time). Synced every chunk so that neither side's socket buffer fills with
  // unread results (blocking mode would then deadlock). The first failure is the batch's.
  struct PendingStep {
    const ApplyStep* step;
    PgParams params;
  };
  static constexpr size_t kPipelineChunk = 256;
  static Status RunPipelined(Conn& c, std::vector<PendingStep>& steps) {
    if (steps.empty()) return Status::Ok();
    PGconn* pc = c.get();
    if (PQenterPipelineMode(pc) != 1) return ErrorOf(pc, nullptr, "pipeline");
    Status out = Status::Ok();
    for (size_t begin = 0; begin < steps.size() && out.ok(); begin += kPipelineChunk) {
      const size_t end = std::min(steps.size(), begin + kPipelineChunk);
      size_t sent = 0;
      for (size_t i = begin; i < end; ++i, ++sent) {
        if (steps[i].params.Send(pc, PgText(steps[i].step->sql)) != 1) {
          out = ErrorOf(pc, nullptr, steps[i].step->what);
          break;
        }
      }
      if (PQpipelineSync(pc) != 1 && out.ok()) out = ErrorOf(pc, nullptr, "pipeline sync");
      // Each sent statement's result, then NULL; after them the sync's PGRES_PIPELINE_SYNC.
      for (size_t i = 0; i < sent; ++i) {
        while (PGresult* raw = PQgetResult(pc)) {
          PgResult r(raw);
          const auto st = PQresultStatus(raw);
          if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && out.ok()) {
            c.last_retryable = PgError::Retryable(raw);
            out = ErrorOf(pc, raw, steps[begin + i].step->what);
          }
        }
      }
      while (PGresult* raw = PQgetResult(pc)) {
        PgResult r(raw);
        if (PQresultStatus(raw) == PGRES_PIPELINE_SYNC) break;
      }
    }
    if (PQexitPipelineMode(pc) != 1 && out.ok()) out = ErrorOf(pc, nullptr, "pipeline end");
    return out;
  }

  // The audit row of an applied push, in its transaction (nothing when `audit` is null).
  static Status AuditPush(Conn& c, const AuditEntry* audit, uint32_t applied) {
    if (audit == nullptr) return Status::Ok();
    AuditEntry e = *audit;
    e.count = applied;
    e.status = 200;
    return InsertAudit(c, e);
  }

  // Per vehicle and batch: the chunks of its fixes and one latest-position upsert (the same
  // rule as SqliteHubStore::Impl::WritePositions). All the batch's chunks go in one binary COPY
  // and all its vehicles in one upsert of arrays (one row per vehicle: no key twice).
  static Status WritePositions(Conn& c, int64_t site_id,
                               const std::map<std::string, std::vector<const v1::ChangeRecord*>>& by_vehicle) {
    if (by_vehicle.empty()) return Status::Ok();
    std::vector<ChunkFix> fixes;
    std::string blob;
    CopyBinaryRows chunks;
    std::vector<PgParams> latest_rows;
    latest_rows.reserve(by_vehicle.size());
    for (const auto& [vehicle, recs] : by_vehicle) {
      const v1::ChangeRecord* latest = recs.front();
      fixes.clear();
      for (const v1::ChangeRecord* rec : recs) {
        if (std::make_pair(rec->ts_ms(), rec->hlc()) > std::make_pair(latest->ts_ms(), latest->hlc())) latest = rec;
        fixes.push_back(FixFromRecord(*rec));
      }
      std::sort(fixes.begin(), fixes.end(), FixBefore);
      for (size_t begin = 0; begin < fixes.size();) {
        const size_t end = ChunkEnd(fixes, begin);
        blob.clear();
        EncodeChunk(fixes.data() + begin, end - begin, &blob);
        chunks.Row(7).Int8(site_id).Bytes(vehicle).Int8(fixes[begin].ts_ms).Int8(static_cast<int64_t>(fixes[begin].seq));
        chunks.Int8(fixes[end - 1].ts_ms).Int8(static_cast<int64_t>(end - begin)).Bytes(blob);
        begin = end;
      }
      const v1::ChangeRecord& r = *latest;
      const auto& pos = r.position();
      PgParams& p = latest_rows.emplace_back();
      p.Text(1, vehicle).Int(2, site_id).UInt(3, pos.device_seq()).Int(4, pos.lat_e6()).Int(5, pos.lon_e6());
      p.Int(6, pos.speed_dkmh()).Int(7, pos.heading_deg()).Int(8, pos.hdop_d()).Int(9, r.ts_ms()).UInt(10, r.hlc());
      p.UInt(11, r.seq());
    }
    if (Status s = Copy(c, "COPY position_chunks(site_id, vehicle, ts_min, seq_min, ts_max, count, fixes) FROM STDIN BINARY",
                        chunks.Finish(), "insert position chunks");
        !s.ok())
      return s;
    return ExecArrays(c, store_sql::kUpsertVehicles, latest_rows, "upsert vehicles");
  }

  // One COPY ... FROM STDIN of `data`.
  static Status Copy(Conn& c, const char* sql, const std::string& data, const char* what) {
    PgResult start(PQexec(c.get(), sql));
    if (PQresultStatus(start.get()) != PGRES_COPY_IN) {
      c.last_retryable = PgError::Retryable(start.get());
      return ErrorOf(c.get(), start.get(), what);
    }
    if (PQputCopyData(c.get(), data.data(), static_cast<int>(data.size())) != 1 || PQputCopyEnd(c.get(), nullptr) != 1)
      return ErrorOf(c.get(), nullptr, what);
    Status out = Status::Ok();
    while (PGresult* raw = PQgetResult(c.get())) {
      PgResult r(raw);
      if (PQresultStatus(raw) != PGRES_COMMAND_OK && out.ok()) {
        c.last_retryable = PgError::Retryable(raw);
        out = ErrorOf(c.get(), raw, what);
      }
    }
    return out;
  }

  // The batch's feed rows, the last statement before COMMIT: one round trip announces the
  // batch's lowest possible cursor (a shared advisory lock on kFeedFloor + the sequence's
  // last_value, held to the end of the transaction) and then reserves its cursors (n nextvals,
  // so the rows go in by one binary COPY with their cursors). Readers stop below every
  // announced floor (FeedHorizon), which is what
  // makes the feed exact while batches of all replicas commit in parallel
  // (docs/architecture-hub.md, "An exact feed across replicas").
  static Status InsertFeed(Conn& c, int64_t site_id, const v1::Batch& batch, const std::vector<int>& rows) {
    if (rows.empty()) return Status::Ok();
    CopyBinaryRows copy;
    std::vector<size_t> cursor_at;
    cursor_at.reserve(rows.size());
    std::string rec;
    for (int i : rows) {
      const v1::ChangeRecord& r = batch.records(i);
      rec.clear();
      r.SerializeToString(&rec);
      copy.Row(7);
      cursor_at.push_back(copy.Next());
      copy.Int8(0);  // the cursor, once reserved
      copy.Int8(site_id).Int8(static_cast<int64_t>(r.seq())).Int4(static_cast<int32_t>(r.entity())).Bytes(r.key());
      copy.Int8(static_cast<int64_t>(r.version())).Bytes(rec);
    }
    // Two statements, run in this order: the floor is announced before the reservation, so
    // every cursor reserved is >= it (nextval never returns less than last_value). The cursors
    // are n nextvals (not a setval of a range: that is not atomic between sessions); from one
    // session they increase, so the batch's records keep their order in the feed.
    PgResult reserved(PQexec(
        c.get(), ("SELECT pg_advisory_xact_lock_shared(" + std::to_string(kFeedFloor) +
                  " + (SELECT last_value FROM changes_cursor_seq)); SELECT nextval('changes_cursor_seq') "
                  "FROM generate_series(1, " + std::to_string(rows.size()) + ")")
                     .c_str()));
    if (PQresultStatus(reserved.get()) != PGRES_TUPLES_OK ||
        PQntuples(reserved.get()) != static_cast<int>(rows.size())) {
      c.last_retryable = PgError::Retryable(reserved.get());
      return ErrorOf(c.get(), reserved.get(), "reserve feed cursors");
    }
    std::vector<uint64_t> cursors(rows.size());
    for (size_t k = 0; k < rows.size(); ++k) cursors[k] = U(reserved.get(), static_cast<int>(k), 0);
    std::sort(cursors.begin(), cursors.end());
    for (size_t k = 0; k < rows.size(); ++k) copy.SetInt8(cursor_at[k], static_cast<int64_t>(cursors[k]));
    return Copy(c, "COPY changes(cursor, site_id, seq, entity, key, version, record) FROM STDIN BINARY", copy.Finish(),
                "copy changes");
  }

  // The feed's horizon for a reader: every row with a cursor below it that will ever commit is
  // visible to a snapshot taken after this call. Two statements, in this order: the last cursor
  // handed out, S (cursors above S are not reserved yet), then the lowest floor announced by a
  // transaction still open (its locks are released only after its commit is visible). The
  // horizon is min(S + 1, lowest floor). The caller's read must take its snapshot afterwards
  // (a later statement in READ COMMITTED).
  static Result<uint64_t> FeedHorizon(Conn& c) {
    PgParams none;
    // The last cursor handed out: last_value, or one less before the sequence's first nextval.
    auto s = c.Run("SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM changes_cursor_seq", none,
                   "feed horizon");
    if (!s.ok()) return s.status();
    const uint64_t last = U(s->get(), 0, 0);
    auto floor = c.Run("SELECT min(((classid::bigint << 32) | objid::bigint) - " + std::to_string(kFeedFloor) +
                           ") FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 "
                           "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                           "AND ((classid::bigint << 32) | objid::bigint) >= " + std::to_string(kFeedFloor),
                       none, "feed horizon");
    if (!floor.ok()) return floor.status();
    uint64_t horizon = last + 1;
    if (!PQgetisnull(floor->get(), 0, 0)) horizon = std::min(horizon, U(floor->get(), 0, 0));
    return horizon;
  }

  Result<ApplyResult> ApplyInTxn(Conn& c, bool& commit, const std::string& site, const v1::Batch& batch,
                                 int64_t now_ms, const AuditEntry* audit, const ApplyChecks& checks) {
    ApplyResult res;
    auto row = LockSite(c, site);
    if (!row.ok()) return row.status();
    const int64_t site_id = row->id;
    uint64_t contiguous = row->contiguous, max_seq = row->max_seq;
    res.contiguous_seq = contiguous;
    const auto& recs = batch.records();
    if (recs.empty()) {
      // As SqliteHubStore: the site is known from now on, and the push is audited.
      if (Status s = AuditPush(c, audit, 0); !s.ok()) return s;
      return res;
    }
    if (!batch.urgent() && recs[0].seq() > contiguous + 1) {
      res.gap = true;
      commit = false;
      return res;
    }
    // Seqs above contiguous already held (the urgent lane, a resend) or quarantined: the site
    // row is locked, so nobody adds to them meanwhile.
    std::set<uint64_t> held;
    const uint64_t lo = std::max<uint64_t>(contiguous + 1, recs[0].seq());
    const uint64_t hi = recs[recs.size() - 1].seq();
    if (lo <= hi && max_seq >= lo) {
      PgParams p;
      p.Int(1, site_id).UInt(2, lo).UInt(3, hi);
      auto r = c.Run(
          "SELECT seq FROM changes WHERE site_id = $1 AND seq BETWEEN $2 AND $3 "
          "UNION ALL SELECT seq FROM refused_records WHERE site_id = $1 AND seq BETWEEN $2 AND $3",
          p, "held seqs");
      if (!r.ok()) return r.status();
      for (int i = 0; i < PQntuples(r->get()); ++i) held.insert(U(r->get(), i, 0));
    }
    uint64_t added_bytes = 0;
    std::vector<int> feed_rows;
    std::vector<PendingStep> steps;
    std::map<const ApplyStep*, std::vector<PgParams>> batched, copied;
    std::map<std::string, std::vector<const v1::ChangeRecord*>> positions;
    const std::vector<std::string>* refusals = checks.refusals;
    for (int i = 0; i < recs.size(); ++i) {
      const v1::ChangeRecord& r = recs[i];
      if (r.seq() <= contiguous || held.count(r.seq()) != 0) {
        ++res.duplicates;
        continue;
      }
      if (refusals != nullptr && i < static_cast<int>(refusals->size()) && !(*refusals)[i].empty()) {
        const bool key_ok = wire::CheckId("key", r.key()).ok();
        const std::string why = (*refusals)[i].substr(0, 256);
        const std::string field(wire::RefusalField(why));
        PgParams p;
        p.Int(1, site_id).UInt(2, r.seq()).Int(3, r.entity()).UInt(4, r.version());
        if (key_ok) p.Text(5, r.key()); else p.Null(5);
        p.Text(6, field).Text(7, why).Int(8, now_ms);
        if (Status s = Exec(c, PgText(store_sql::kQuarantine), p, "insert refused record"); !s.ok())
          return s;
        ++res.refused;
        added_bytes += RefusedRowBytes(r, key_ok, why, field);
        max_seq = std::max<uint64_t>(max_seq, r.seq());
        continue;
      }
      feed_rows.push_back(i);
      ++res.applied;
      added_bytes += RowBytes(r, r.ByteSizeLong());
      max_seq = std::max<uint64_t>(max_seq, r.seq());
      if (r.entity() == v1::VEHICLE_POSITION) {
        if (r.has_position()) positions[r.key()].push_back(&r);
        continue;
      }
      for (const ApplyStep& step : EntityApply(r.entity())) {
        PgParams p;
        if (!step.bind(r, site_id, p)) continue;
        if (step.postgres_copy != nullptr)
          copied[&step].push_back(std::move(p));
        else if (step.postgres_batch != nullptr)
          batched[&step].push_back(std::move(p));
        else
          steps.push_back({&step, std::move(p)});
      }
    }
    // Steps of different entities touch different rows, so the batched ones may run apart
    // from the per-record ones; each keeps its records' order.
    for (const auto& [step, rows] : batched) {
      if (Status s = ExecArrays(c, step->postgres_batch, rows, step->what); !s.ok()) return s;
    }
    for (const auto& [step, rows] : copied) {
      std::string data;
      for (const PgParams& row : rows) {
        for (int k = 1; k <= row.count(); ++k) {
          if (k > 1) data += '\t';
          row.AppendCopyField(k, &data);
        }
        data += '\n';
      }
      if (Status s = Copy(c, step->postgres_copy, data, step->what); !s.ok()) return s;
    }
    if (Status s = RunPipelined(c, steps); !s.ok()) return s;
    if (checks.site_bytes_per_day > 0 && added_bytes > 0) {
      // One statement: charge the batch and read the day's total (the check is the same as
      // SqliteHubStore's: over the limit with this batch, and the whole transaction rolls back,
      // the charge with it). A separate read, charge and delete of old days were three round
      // trips, the delete a scan of site_usage, per batch.
      const int64_t day = now_ms / 86400000;
      PgParams up;
      up.Int(1, site_id).Int(2, day).UInt(3, added_bytes);
      auto u = c.Run(store_sql::kChargeSiteUsageReturning, up, "site usage");
      if (!u.ok()) return u.status();
      const uint64_t total = PQntuples(u->get()) == 1 ? U(u->get(), 0, 0) : added_bytes;
      const uint64_t used = total >= added_bytes ? total - added_bytes : 0;
      if (total > static_cast<uint64_t>(checks.site_bytes_per_day)) {
        ApplyResult refused;
        refused.over_quota = true;
        refused.quota_used = used;
        refused.contiguous_seq = contiguous;
        commit = false;
        return refused;
      }
      // Older days are of no use to the limit: the site's own are dropped when it starts a new
      // day (its row for the day was inserted, not updated), by the primary key (site_id, day),
      // so sites never wait on each other's rows.
      if (PQntuples(u->get()) == 1 && PQgetvalue(u->get(), 0, 1)[0] == 't') {
        PgParams old;
        old.Int(1, site_id).Int(2, day - 7);
        if (Status s = Exec(c, "DELETE FROM site_usage WHERE site_id = $1 AND day < $2", old, "site usage"); !s.ok())
          return s;
      }
    }
    if (Status s = WritePositions(c, site_id, positions); !s.ok()) return s;
    if (!batch.urgent()) contiguous = std::max<uint64_t>(contiguous, recs[recs.size() - 1].seq());
    res.contiguous_seq = contiguous;
    {
      PgParams p;
      p.Int(1, site_id).UInt(2, contiguous).UInt(3, std::max(max_seq, contiguous)).Int(4, res.applied).Int(5, now_ms);
      if (Status s = Exec(c, PgText(store_sql::kUpdateSite), p, "update site"); !s.ok())
        return s;
    }
    if (Status s = AuditPush(c, audit, res.applied); !s.ok()) return s;
    if (Status s = InsertFeed(c, site_id, batch, feed_rows); !s.ok()) return s;
    return res;
  }

  // A read on a pooled connection: each row of `sql` with `params` to `row`.
  template <typename RowFn>
  Status Query(Conn& c, const std::string& sql, PgParams& params, const char* what, RowFn row) {
    auto r = c.Run(sql, params, what);
    if (!r.ok()) return r.status();
    for (int i = 0; i < PQntuples(r->get()); ++i) row(r->get(), i);
    return Status::Ok();
  }
  template <typename RowFn>
  Status Query(const std::string& sql, PgParams& params, const char* what, RowFn row) {
    auto c = Acquire();
    return Query(*c, sql, params, what, row);
  }

  // Each row of `sql` mapped by `row` (a PgRow to a T), in order.
  template <typename T, typename RowFn>
  Result<std::vector<T>> QueryAll(const Sql& sql, PgParams& params, const char* what, RowFn row) {
    std::vector<T> out;
    Status s = Query(PgText(sql), params, what, [&](const PGresult* r, int i) { out.push_back(row(PgRow(r, i))); });
    if (!s.ok()) return s;
    return out;
  }

  // The site's contiguous seq and the rows of `sql` in one snapshot (REPEATABLE READ).
  template <typename RowFn>
  Result<uint64_t> SnapshotRead(const std::string& site, const std::string& sql, PgParams& params, const char* what,
                                RowFn row) {
    return Transaction<uint64_t>(
        [&](Conn& c, bool&) -> Result<uint64_t> {
          PgParams p;
          p.Text(1, site);
          uint64_t contiguous = 0;
          Status s = Query(c, PgText(store_sql::kContiguousSeq), p, "contiguous seq",
                           [&](const PGresult* r, int i) { contiguous = U(r, i, 0); });
          if (!s.ok()) return s;
          if (s = Query(c, sql, params, what, row); !s.ok()) return s;
          return contiguous;
        },
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
  }
};

PgHubStore::PgHubStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PgHubStore::~PgHubStore() = default;

int PgHubStore::SchemaVersion() { return static_cast<int>(Migrations().size()); }

Result<std::unique_ptr<PgHubStore>> PgHubStore::Open(const PgHubStoreOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  for (int i = 0; i < std::max(1, options.connections); ++i) {
    auto c = std::make_unique<Conn>();
    if (Status s = c->Open(options.url); !s.ok()) return s;
    if (i == 0) {
      if (Status s = impl->Migrate(*c); !s.ok()) return s;
    }
    impl->pool.Add(std::move(c));
  }
  return std::unique_ptr<PgHubStore>(new PgHubStore(std::move(impl)));
}

Result<ApplyResult> PgHubStore::ApplyBatch(const std::string& site, const v1::Batch& batch, int64_t now_ms,
                                           const AuditEntry* audit, const ApplyChecks& checks) {
  if (Status s = ValidateBatch(batch); !s.ok()) return s;
  Impl::ApplySlot slot(*impl_);
  return impl_->Transaction<ApplyResult>([&](Conn& c, bool& commit) {
    return impl_->ApplyInTxn(c, commit, site, batch, now_ms, audit, checks);
  });
}

Result<uint64_t> PgHubStore::ContiguousSeq(const std::string& site) {
  PgParams p;
  p.Text(1, site);
  uint64_t out = 0;
  Status s = impl_->Query(PgText(store_sql::kContiguousSeq), p, "contiguous seq",
                          [&](const PGresult* r, int i) { out = U(r, i, 0); });
  if (!s.ok()) return s;
  return out;
}

Result<std::vector<FeedEntry>> PgHubStore::Changes(uint64_t after, int limit) {
  auto c = impl_->Acquire();
  auto horizon = Impl::FeedHorizon(*c);
  if (!horizon.ok()) return horizon.status();
  std::vector<FeedEntry> out;
  if (*horizon <= after + 1) return out;  // nothing below the horizon after `after`
  PgParams p;
  p.UInt(1, after).Int(2, limit).UInt(3, *horizon);
  Status s = impl_->Query(*c,
                          "SELECT c.cursor, s.site, c.record FROM changes c JOIN sites s ON s.site_id = c.site_id "
                          "WHERE c.cursor > $1 AND c.cursor < $3 ORDER BY c.cursor LIMIT $2",
                          p, "changes", [&](const PGresult* r, int i) {
                            const PgRow row(r, i);
                            FeedEntry e;
                            e.cursor = row.UInt(0);
                            e.site = row.Text(1);
                            // A row we wrote ourselves; a parse failure means corruption,
                            // surfaced as an empty record.
                            (void)e.record.ParseFromString(row.Text(2));
                            out.push_back(std::move(e));
                          });
  if (!s.ok()) return s;
  return out;
}

Result<std::vector<SiteInfo>> PgHubStore::Sites() {
  PgParams p;
  return impl_->QueryAll<SiteInfo>(store_sql::kSites, p, "sites", [](const PgRow& row) {
    return SiteInfo{row.Text(0), row.UInt(1), row.UInt(2), row.UInt(3), row.Int(4)};
  });
}

Status PgHubStore::Write(const std::function<Status(SqlTx&)>& body) {
  // SqlTx on the transaction's connection.
  class ConnTx final : public SqlTx {
   public:
    explicit ConnTx(Conn& c) : c_(c) {}
    Status Run(const Sql& sql, const std::function<void(SqlParams&)>& bind,
               const std::function<void(const SqlRow&)>& row) override {
      PgParams p;
      if (bind) bind(p);
      auto r = c_.Run(PgText(sql), p, "write");
      if (!r.ok()) return r.status();
      if (row) {
        const int n = PQntuples(r->get());
        for (int i = 0; i < n; ++i) row(PgRow(r->get(), i));
      }
      return Status::Ok();
    }

   private:
    Conn& c_;
  };
  auto r = impl_->Transaction<bool>([&](Conn& c, bool&) -> Result<bool> {
    ConnTx tx(c);
    Status s = body(tx);
    if (!s.ok()) return s;
    return true;
  });
  return r.ok() ? Status::Ok() : r.status();
}

Status PgHubStore::Read(const Sql& sql, const std::function<void(SqlParams&)>& bind,
                        const std::function<void(const SqlRow&)>& row) {
  PgParams p;
  bind(p);
  return impl_->Query(PgText(sql), p, "read", [&](const PGresult* r, int i) { row(PgRow(r, i)); });
}

Result<std::vector<v1::PositionItem>> PgHubStore::Track(const std::string& site, const std::string& vehicle,
                                                         int64_t from_ms, int64_t to_ms, int limit) {
  std::vector<v1::PositionItem> out;
  if (limit <= 0 || to_ms < from_ms) return out;
  // As SqliteHubStore::Track: a chunk holding a fix at or after `from` starts no earlier than
  // from - kChunkMaxSpanMs.
  const int64_t lowest = from_ms >= std::numeric_limits<int64_t>::min() + kChunkMaxSpanMs
                             ? from_ms - kChunkMaxSpanMs
                             : std::numeric_limits<int64_t>::min();
  PgParams p;
  p.Text(1, site).Text(2, vehicle).Int(3, lowest).Int(4, to_ms).Int(5, from_ms);
  std::vector<ChunkFix> fixes, decoded;
  bool damaged = false;
  Status s = impl_->Query(
      PgText(store_sql::kTrackChunks), p, "track", [&](const PGresult* r, int i) {
        const PgRow row(r, i);
        decoded.clear();
        if (!DecodeChunk(row.Text(2), row.UInt(1), &decoded)) {
          damaged = true;
          return;
        }
        for (const ChunkFix& f : decoded) {
          if (f.ts_ms >= from_ms && f.ts_ms <= to_ms) fixes.push_back(f);
        }
      });
  if (!s.ok()) return s;
  if (damaged) return Status::Internal("position chunk of " + vehicle + " at site " + site + " is damaged");
  std::sort(fixes.begin(), fixes.end(), FixBefore);
  if (fixes.size() > static_cast<size_t>(limit)) fixes.resize(static_cast<size_t>(limit));
  out.reserve(fixes.size());
  for (const ChunkFix& f : fixes) out.push_back(ItemFromFix(vehicle, site, f));
  return out;
}

Result<DigestResult> PgHubStore::Digest(const std::string& site, uint64_t from, uint64_t to, uint64_t buckets) {
  auto digesters = DigestBuckets::Make(from, to, buckets);
  if (!digesters.ok()) return digesters.status();
  PgParams p;
  p.Text(1, site).UInt(2, from).UInt(3, to);
  auto contiguous = impl_->SnapshotRead(
      site, PgText(store_sql::kDigestRows), p, "digest", [&](const PGresult* r, int i) {
        const PgRow row(r, i);
        digesters->Add(row.UInt(0), static_cast<uint32_t>(row.Int(1)), row.UInt(2), row.Text(3));
      });
  if (!contiguous.ok()) return contiguous.status();
  return digesters->Finish(*contiguous);
}

Result<StateDigestResult> PgHubStore::StateDigest(const std::string& site) {
  StateDigestResult out;
  digest::StateDigester d;
  if (Status st = d.status(); !st.ok()) return st;
  PgParams p;
  p.Text(1, site);
  auto contiguous = impl_->SnapshotRead(
      site,
      PgText(store_sql::kStateDigestRows), p, "state digest", [&](const PGresult* r, int i) {
        const PgRow row(r, i);
        d.AddStock(row.Text(0), row.Int(1), row.Int(2), row.UInt(3));
      });
  if (!contiguous.ok()) return contiguous.status();
  out.contiguous_seq = *contiguous;
  out.skus = d.count();
  out.digest = d.FinishAsString();
  return out;
}

Result<RebuildResult> PgHubStore::RebuildState(const std::string& site, const AuditEntry* audit) {
  return impl_->Transaction<RebuildResult>([&](Conn& c, bool&) -> Result<RebuildResult> {
    RebuildCount count;
    auto site_row = Impl::LockSite(c, site);
    if (!site_row.ok()) return site_row.status();
    const int64_t site_id = site_row->id;
    PgParams p;
    p.Int(1, site_id);
    Status s = impl_->Query(c, PgText(store_sql::kSiteStock), p,
                            "rebuild: read stock", [&](const PGresult* r, int i) {
                              const PgRow row(r, i);
                              count.Before(row.Text(0), row.Int(1), row.Int(2), row.UInt(3));
                            });
    if (!s.ok()) return s;
    if (s = Impl::Exec(c, PgText(store_sql::kDeleteSiteStock), p, "rebuild: delete stock"); !s.ok()) return s;
    PgParams q;
    q.Int(1, site_id).Int(2, v1::STOCK);
    auto sel = c.Run(PgText(store_sql::kStockRecordsByKey), q, "rebuild: read changes");
    if (!sel.ok()) return sel.status();
    for (int i = 0; i < PQntuples(sel->get()); ++i) {
      const PgRow row(sel->get(), i);
      const std::string key = row.Text(0);
      if (count.Rebuilt(key)) continue;
      v1::ChangeRecord rec;
      if (!rec.ParseFromString(row.Text(2)) || !rec.has_stock()) continue;
      PgParams ins;
      ins.Int(1, site_id).Text(2, key).Int(3, rec.stock().on_hand()).Int(4, rec.stock().reserved());
      ins.UInt(5, rec.version()).UInt(6, rec.hlc()).Int(7, rec.ts_ms()).UInt(8, row.UInt(1));
      if (s = Impl::Exec(c, PgText(store_sql::kInsertStock), ins, "rebuild: insert stock"); !s.ok())
        return s;
      count.Rebuild(key, rec);
    }
    const RebuildResult res = count.Finish();
    if (audit != nullptr) {
      AuditEntry e = *audit;
      e.count = res.changed;
      if (s = Impl::InsertAudit(c, e); !s.ok()) return s;
    }
    return res;
  });
}

Status PgHubStore::AppendAudit(const AuditEntry& entry) {
  auto c = impl_->Acquire();
  return Impl::InsertAudit(*c, entry);
}

Result<bool> PgHubStore::HoldLease(const std::string& name, const std::string& holder, int64_t now_ms, int64_t ttl_ms) {
  PgParams p;
  p.Text(1, name).Text(2, holder).Int(3, now_ms + ttl_ms).Int(4, now_ms);
  auto c = impl_->Acquire();
  auto r = c->Run(PgText(store_sql::kHoldLease), p, "hold lease");
  if (!r.ok()) return r.status();
  return std::string_view(PQcmdTuples(r->get())) == "1";
}

Result<uint64_t> PgHubStore::RelayCursor(const std::string& name) {
  PgParams p;
  p.Text(1, name);
  uint64_t out = 0;
  Status s = impl_->Query(PgText(store_sql::kRelayCursor), p, "relay cursor", [&](const PGresult* r, int i) { out = U(r, i, 0); });
  if (!s.ok()) return s;
  return out;
}

Status PgHubStore::SetRelayCursor(const std::string& name, uint64_t cursor) {
  PgParams p;
  p.Text(1, name).UInt(2, cursor);
  auto c = impl_->Acquire();
  auto r = c->Run(PgText(store_sql::kSetRelayCursor), p, "set relay cursor");
  return r.ok() ? Status::Ok() : r.status();
}

Result<std::vector<AuditEntry>> PgHubStore::Audit(uint64_t after, int limit) {
  PgParams p;
  p.UInt(1, after).Int(2, limit);
  return impl_->QueryAll<AuditEntry>(store_sql::kAuditAfter, p, "audit", [](const PgRow& row) {
    return AuditEntry{row.UInt(0), row.Int(1), row.Text(2), row.Text(3), row.Text(4),
                      row.UInt(5), row.UInt(6), row.UInt(7), static_cast<int>(row.Int(8)), row.Text(9)};
  });
}

namespace {
constexpr int64_t kDayMs = 86400000;
constexpr int kDaysBackMade = 7;    // day partitions made back from today: a site's week offline
constexpr int kDaysAheadMade = 3;   // and ahead of it, so that midnight never finds none

// The day-partitioned telemetry tables (HubStore::MaintainTelemetry): the partition key, and
// the column by which a row of the DEFAULT partition is past retention (a chunk goes when its
// newest fix does). `deleted` is the upkeep's counter of such rows.
struct DayPartitioned {
  const char* table;
  const char* key;
  const char* newest;
  uint64_t TelemetryUpkeep::*deleted;
};
const DayPartitioned kDayPartitioned[] = {
    {"position_chunks", "ts_min", "ts_max", &TelemetryUpkeep::rows_deleted},
    {"climate_readings", "ts_ms", "ts_ms", &TelemetryUpkeep::readings_deleted},
};

// TABLE_pYYYYMMDD for the UTC day `day` (days since the epoch), and back.
std::string DayPartition(const std::string& table, int64_t day) {
  const time_t t = static_cast<time_t>(day * 86400);
  tm u{};
  gmtime_r(&t, &u);
  char name[64];
  std::snprintf(name, sizeof name, "%s_p%04d%02d%02d", table.c_str(), u.tm_year + 1900, u.tm_mon + 1, u.tm_mday);
  return name;
}
std::optional<int64_t> PartitionDay(const std::string& table, const std::string& name) {
  const std::string prefix = table + "_p";
  if (name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  int y = 0, m = 0, d = 0;
  if (std::sscanf(name.c_str() + prefix.size(), "%4d%2d%2d", &y, &m, &d) != 3) return std::nullopt;
  tm u{};
  u.tm_year = y - 1900;
  u.tm_mon = m - 1;
  u.tm_mday = d;
  return static_cast<int64_t>(timegm(&u)) / 86400;
}
}  // namespace

Result<TelemetryUpkeep> PgHubStore::MaintainTelemetry(int64_t now_ms, int keep_days) {
  TelemetryUpkeep done;
  auto c = impl_->Acquire();
  c->Heal();
  for (const DayPartitioned& t : kDayPartitioned) {
    const std::string table = t.table, key = t.key;
    PgParams name;
    name.Text(1, table);
    auto parts = c->Run("SELECT child.relname FROM pg_inherits i JOIN pg_class child ON child.oid = i.inhrelid "
                        "JOIN pg_class parent ON parent.oid = i.inhparent WHERE parent.relname = $1",
                        name, "list partitions");
    if (!parts.ok()) return parts.status();
    std::set<int64_t> days;
    for (int i = 0; i < PQntuples(parts->get()); ++i) {
      if (auto d = PartitionDay(table, PQgetvalue(parts->get(), i, 0))) days.insert(*d);
    }
    const int64_t today = now_ms / kDayMs;
    const int64_t cutoff = keep_days > 0 ? TelemetryCutoffMs(now_ms, keep_days) : std::numeric_limits<int64_t>::min();
    // Make the missing days, each in one transaction: a plain table, the day's rows moved out
    // of the default partition into it, then attached (ATTACH checks that the default
    // partition holds none of the day any more, and takes a lighter lock than CREATE ...
    // PARTITION OF). A writer that put a row of that day into the default partition meanwhile
    // makes the ATTACH fail: rolled back, and the next round tries again.
    for (int64_t day = today - kDaysBackMade; day <= today + kDaysAheadMade; ++day) {
      if (days.count(day) || (day + 1) * kDayMs <= cutoff) continue;
      const std::string part = DayPartition(table, day), lo = std::to_string(day * kDayMs),
                        hi = std::to_string((day + 1) * kDayMs);
      const std::string sql = "BEGIN;"
                              "CREATE TABLE " + part + " (LIKE " + table + ");"
                              "WITH moved AS (DELETE FROM " + table + "_default WHERE " + key + " >= " + lo + " AND " + key +
                              " < " + hi + " RETURNING *) INSERT INTO " + part + " SELECT * FROM moved;"
                              "ALTER TABLE " + table + " ATTACH PARTITION " + part + " FOR VALUES FROM (" + lo + ") TO (" + hi + ");"
                              "COMMIT";
      if (Status s = c->Exec(sql); !s.ok()) {
        (void)c->Exec("ROLLBACK");
        return Status(s.code(), "make partition " + part + ": " + s.message());
      }
      ++done.partitions_created;
    }
    if (keep_days <= 0) continue;
    // Retention: whole days past it are dropped; the default partition's old rows are deleted.
    for (int64_t day : days) {
      if ((day + 1) * kDayMs > cutoff) continue;
      if (Status s = c->Exec("DROP TABLE IF EXISTS " + DayPartition(table, day)); !s.ok()) return s;
      ++done.partitions_dropped;
    }
    PgParams p;
    p.Int(1, cutoff);
    auto del = c->Run("DELETE FROM " + table + "_default WHERE " + t.newest + " < $1", p, "telemetry retention");
    if (!del.ok()) return del.status();
    done.*t.deleted += std::strtoull(PQcmdTuples(del->get()), nullptr, 10);
  }
  return done;
}

}  // namespace freshsync::hub
