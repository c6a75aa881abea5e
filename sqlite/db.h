// One SQLite connection wrapper and one prepared-statement wrapper for every store (edge,
// sync agent, hub). Thin: they own the handles (RAII close / finalize), open with the options
// each store passes, and report failures through sqlite/status.h. SQL stays in the stores.
//
// Thread-safety: none. A Db and its Stmts belong to one thread at a time (connections are
// opened with SQLITE_OPEN_NOMUTEX).
#pragma once

#include <sqlite3.h>

#include <concepts>
#include <initializer_list>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "sqlite/status.h"

namespace freshsync::sqlite {

// A prepared statement. Move-only; finalized on destruction.
//
// Binding: numbers by value. Text and blobs are copied by Bind/BindBlob (SQLITE_TRANSIENT),
// so a temporary is safe. BindRef/BindBlobRef do not copy (SQLITE_STATIC): for hot paths where
// the string outlives the step and the reset; they refuse temporaries at compile time.
class Stmt {
 public:
  Stmt() = default;
  explicit Stmt(sqlite3_stmt* s) : s_(s) {}
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(Stmt&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  Stmt& operator=(Stmt&& o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  sqlite3_stmt* get() const { return s_; }
  explicit operator bool() const { return s_ != nullptr; }

  // Any integer type binds as int64 (uint64 values above INT64_MAX wrap, as SQLite stores them).
  template <std::integral T>
  Stmt& Bind(int i, T v) {
    sqlite3_bind_int64(s_, i, static_cast<sqlite3_int64>(v));
    return *this;
  }
  template <std::floating_point T>
  Stmt& Bind(int i, T v) {
    sqlite3_bind_double(s_, i, static_cast<double>(v));
    return *this;
  }
  Stmt& BindDouble(int i, double v) { return Bind(i, v); }
  Stmt& Bind(int i, std::string_view v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Bind(int i, const std::string& v) { return Bind(i, std::string_view(v)); }
  Stmt& Bind(int i, const char* v) { return Bind(i, std::string_view(v)); }
  Stmt& BindBlob(int i, std::string_view v) {
    sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& BindRef(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Stmt& BindRef(int i, std::string&&) = delete;
  Stmt& BindBlobRef(int i, const std::string& v) {
    sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Stmt& BindBlobRef(int i, std::string&&) = delete;
  Stmt& BindNull(int i) {
    sqlite3_bind_null(s_, i);
    return *this;
  }
  Stmt& BindOptional(int i, const std::optional<double>& v) { return v ? Bind(i, *v) : BindNull(i); }
  // Empty text binds NULL.
  Stmt& BindTextOrNull(int i, const std::string& v) { return v.empty() ? BindNull(i) : Bind(i, v); }

  // SQLITE_ROW, SQLITE_DONE or an error code (map it with StatusFor / LastError).
  int Step() { return sqlite3_step(s_); }
  // Steps a statement that returns no rows: Ok on SQLITE_DONE, else the mapped error.
  Status Run(std::string_view what);
  void Reset() { sqlite3_reset(s_); }
  void ClearBindings() { sqlite3_clear_bindings(s_); }

  int64_t Int(int c) const { return sqlite3_column_int64(s_, c); }
  uint64_t UInt(int c) const { return static_cast<uint64_t>(sqlite3_column_int64(s_, c)); }
  double Real(int c) const { return sqlite3_column_double(s_, c); }
  bool IsNull(int c) const { return sqlite3_column_type(s_, c) == SQLITE_NULL; }
  // Text or blob column, bytes as stored (embedded NULs kept); empty for NULL.
  std::string Text(int c) const {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(s_, c));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_, c))) : std::string();
  }

 private:
  sqlite3_stmt* s_ = nullptr;
};

// Resets a statement when leaving scope, so that an early return never leaves it busy (a busy
// read statement pins the WAL snapshot and stops checkpoints).
class ResetGuard {
 public:
  explicit ResetGuard(Stmt& s, bool clear_bindings = false) : s_(s), clear_(clear_bindings) {}
  ~ResetGuard() {
    s_.Reset();
    if (clear_) s_.ClearBindings();
  }
  ResetGuard(const ResetGuard&) = delete;
  ResetGuard& operator=(const ResetGuard&) = delete;

 private:
  Stmt& s_;
  bool clear_;
};

struct OpenOptions {
  bool create = false;     // SQLITE_OPEN_CREATE
  bool read_only = false;  // SQLITE_OPEN_READONLY instead of READWRITE
  std::string vfs;         // empty: the default VFS
  int busy_timeout_ms = 5000;  // 0: fail at once on a held lock
  // Run in order after open (e.g. "PRAGMA journal_mode=WAL"); a failure fails the open.
  std::vector<std::string> pragmas;
};

// A connection. Move-only; closed (sqlite3_close_v2) on destruction.
class Db {
 public:
  Db() = default;
  ~Db() { Close(); }
  Db(Db&& o) noexcept : db_(std::exchange(o.db_, nullptr)) {}
  Db& operator=(Db&& o) noexcept {
    std::swap(db_, o.db_);
    return *this;
  }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // Opens path with SQLITE_OPEN_NOMUTEX and extended result codes. A failure to open is
  // kIOError "<path>: cannot open database: ..."; a failing pragma is its mapped status.
  static Result<Db> Open(const std::string& path, const OpenOptions& options);

  sqlite3* get() const { return db_; }
  explicit operator bool() const { return db_ != nullptr; }
  void Close();
  // Gives up ownership (for a store that keeps the raw handle and closes it itself).
  sqlite3* Release() { return std::exchange(db_, nullptr); }

  // Runs one or more statements (sqlite3_exec).
  Status Exec(std::string_view sql);
  // Prepares one statement; persistent statements are kept for the connection's lifetime.
  Result<Stmt> Prepare(const char* sql, bool persistent = false);
  // The connection's last error, mapped.
  Status Error(std::string_view what) const { return LastError(db_, what); }
  // Reads a single integer (e.g. "PRAGMA user_version"); def when the query returns no row.
  Result<int64_t> QueryInt(const char* sql, int64_t def = 0);
  bool InTransaction() const { return db_ != nullptr && sqlite3_get_autocommit(db_) == 0; }

 private:
  sqlite3* db_ = nullptr;
};

// Statement helpers for connections a store owns as a raw sqlite3* (kept while its code moves).
Status ExecOn(sqlite3* db, std::string_view sql);
Result<Stmt> PrepareOn(sqlite3* db, const char* sql, bool persistent = false);
// Prepares a store's statement set, each persistent, into its Stmt; the first failure is
// returned (the statements before it stay prepared).
struct StmtSpec {
  const char* sql;
  Stmt* out;
};
Status PrepareAllOn(sqlite3* db, std::initializer_list<StmtSpec> specs);

// A write transaction: BEGIN IMMEDIATE (takes the write lock up front, so busy_timeout applies
// to it instead of a deadlock-prone upgrade from a read lock). Rolls back on destruction unless
// committed. Commit failing rolls back too.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) {}
  ~Transaction() { Rollback(); }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  Status Begin() {
    Status s = ExecOn(db_, "BEGIN IMMEDIATE");
    open_ = s.ok();
    return s;
  }
  Status Commit() {
    Status s = ExecOn(db_, "COMMIT");
    if (s.ok()) open_ = false;
    else Rollback();
    return s;
  }
  void Rollback() {
    // SQLite may already have rolled back (e.g. on SQLITE_FULL): then ROLLBACK would fail.
    if (open_ && sqlite3_get_autocommit(db_) == 0) (void)ExecOn(db_, "ROLLBACK");
    open_ = false;
  }

 private:
  sqlite3* db_;
  bool open_ = false;
};

}  // namespace freshsync::sqlite
