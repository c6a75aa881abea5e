#include "sqlite/db.h"

namespace freshsync::sqlite {

Status Stmt::Run(std::string_view what) {
  const int rc = Step();
  if (rc == SQLITE_DONE || rc == SQLITE_ROW) return Status::Ok();
  return StatusFor(rc, what, sqlite3_db_handle(s_));
}

Result<Db> Db::Open(const std::string& path, const OpenOptions& options) {
  int flags = (options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX;
  if (options.create) flags |= SQLITE_OPEN_CREATE;
  Db db;
  const int rc = sqlite3_open_v2(path.c_str(), &db.db_, flags, options.vfs.empty() ? nullptr : options.vfs.c_str());
  if (rc != SQLITE_OK) {
    const std::string m = db.db_ ? sqlite3_errmsg(db.db_) : sqlite3_errstr(rc);
    return Status::IOError(path + ": cannot open database: " + m);
  }
  sqlite3_extended_result_codes(db.db_, 1);
  sqlite3_busy_timeout(db.db_, options.busy_timeout_ms);
  for (const std::string& p : options.pragmas) {
    if (Status s = db.Exec(p); !s.ok()) return s;
  }
  return db;
}

void Db::Close() {
  if (db_ != nullptr) sqlite3_close_v2(db_);
  db_ = nullptr;
}

Status Db::Exec(std::string_view sql) { return ExecOn(db_, sql); }

Result<Stmt> Db::Prepare(const char* sql, bool persistent) { return PrepareOn(db_, sql, persistent); }

Result<int64_t> Db::QueryInt(const char* sql, int64_t def) {
  auto st = Prepare(sql);
  if (!st.ok()) return st.status();
  const int rc = st->Step();
  if (rc == SQLITE_ROW) return st->Int(0);
  if (rc == SQLITE_DONE) return def;
  return StatusFor(rc, sql, db_);
}

Status ExecOn(sqlite3* db, std::string_view sql) {
  const std::string text(sql);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, text.c_str(), nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return Status::Ok();
  std::string msg = err ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  int code = sqlite3_extended_errcode(db);
  if (CodeFor(code) == StatusCode::kOk) code = rc;
  Status s = StatusFor(code, text.substr(0, 200));
  return Status(s.code(), s.message() + " (" + msg + ")");
}

Result<Stmt> PrepareOn(sqlite3* db, const char* sql, bool persistent) {
  sqlite3_stmt* s = nullptr;
  const int rc = sqlite3_prepare_v3(db, sql, -1, persistent ? SQLITE_PREPARE_PERSISTENT : 0, &s, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(s);
    return StatusFor(rc, std::string("prepare: ") + sql, db);
  }
  return Stmt(s);
}

Status PrepareAllOn(sqlite3* db, std::initializer_list<StmtSpec> specs) {
  for (const StmtSpec& spec : specs) {
    auto st = PrepareOn(db, spec.sql, true);
    if (!st.ok()) return st.status();
    *spec.out = std::move(*st);
  }
  return Status::Ok();
}

}  // namespace freshsync::sqlite
