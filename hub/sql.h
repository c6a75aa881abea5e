// What an entity's handler (hub/entity_routes.h) and a HubStore share about SQL, without the
// handler knowing which database runs it: statement text per dialect, parameters to bind and
// the columns of a result row. SqliteHubStore implements SqlParams and SqlRow on its
// statements (sqlite_store.cc), PgHubStore on libpq's parameters and results (pg_store.cc).
//
// Unsigned 64-bit values (version, hlc, seq) travel as the same bits in a signed integer, as
// the stores keep them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "freshsync.pb.h"

namespace freshsync::hub {

// One statement's text per dialect.
//   sqlite    always given.
//   postgres  only where the dialects really differ (DDL types, INSERT OR IGNORE, ...). When
//             it is null, PgHubStore runs the SQLite text with its ?N placeholders made $N
//             (PostgresText, hub/pg_store.h): so a statement valid in both is written once.
struct Sql {
  const char* sqlite = nullptr;
  const char* postgres = nullptr;
};

// Parameters of a statement, numbered from 1 as in the SQL (?1, ?2, ...). Text and Blob copy,
// so a temporary is safe; TextRef and BlobRef do not (the per-record hot path binds the
// record's own strings, which outlive the statement's run).
class SqlParams {
 public:
  virtual ~SqlParams() = default;
  virtual SqlParams& Int(int i, int64_t v) = 0;
  SqlParams& UInt(int i, uint64_t v) { return Int(i, static_cast<int64_t>(v)); }
  virtual SqlParams& Real(int i, double v) = 0;
  virtual SqlParams& Text(int i, std::string_view v) = 0;
  virtual SqlParams& Blob(int i, std::string_view v) = 0;
  virtual SqlParams& TextRef(int i, const std::string& v) = 0;
  SqlParams& TextRef(int i, std::string&&) = delete;
  virtual SqlParams& BlobRef(int i, const std::string& v) = 0;
  SqlParams& BlobRef(int i, std::string&&) = delete;
  virtual SqlParams& Null(int i) = 0;
};

// The current row of a result, columns numbered from 0.
class SqlRow {
 public:
  virtual ~SqlRow() = default;
  virtual int64_t Int(int c) const = 0;
  uint64_t UInt(int c) const { return static_cast<uint64_t>(Int(c)); }
  virtual double Real(int c) const = 0;
  virtual std::string Text(int c) const = 0;  // text or blob; "" for NULL
};

// The statements of one write transaction (HubStore::Write): each runs on the transaction's
// connection, so it sees the transaction's earlier writes. `row` (may be empty) gets each
// result row.
class SqlTx {
 public:
  virtual ~SqlTx() = default;
  virtual Status Run(const Sql& sql, const std::function<void(SqlParams&)>& bind,
                     const std::function<void(const SqlRow&)>& row = {}) = 0;
};

// One statement of an entity's apply. `bind` sets the statement's parameters from a record the
// batch has just inserted into the feed (and the site's id); false: the step does not apply to
// this record (the record lacks the payload, or the step's optional part), nothing is run.
struct ApplyStep {
  Sql sql;
  bool (*bind)(const v1::ChangeRecord& record, int64_t site_id, SqlParams& params);
  const char* what;  // names the step in an error
  // Optional, PostgreSQL only: the step for all of a batch's records in one statement. $k is
  // the array of parameter k over the records `bind` took, in batch order (cast it: $2::text[]).
  // It must leave exactly the end state of `sql` run once per record in that order, including
  // for several records of one key (reduce them by the step's own conflict rule first, e.g.
  // DISTINCT ON the key ORDER BY the rule). Null: PgHubStore runs `sql` per record, pipelined.
  const char* postgres_batch = nullptr;
  // Optional, PostgreSQL only, instead of postgres_batch for a step that only inserts rows no
  // earlier apply can have made (its key holds the record's seq, and a store applies a site's
  // seq once): `COPY table(columns) FROM STDIN`, the columns those of `bind`'s parameters in
  // order. The batch's rows go in by one COPY: no per-row conflict check, no statement to plan.
  const char* postgres_copy = nullptr;
};

// An entity's DDL and the numbered migration (1-based, as PRAGMA user_version) that runs it.
// A shipped migration's effect never changes: a later change to a table is a new step with a
// new number.
struct SchemaStep {
  int migration;
  Sql ddl;
};

}  // namespace freshsync::hub
