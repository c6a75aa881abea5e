#include "sqlite/status.h"

#include <sqlite3.h>

namespace freshsync::sqlite {

StatusCode CodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE:
      return StatusCode::kOk;
    // The environment: retry later, never acknowledge (see status.h).
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_NOLFS:
    case SQLITE_NOMEM:
    case SQLITE_PROTOCOL:
    case SQLITE_INTERRUPT:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_SCHEMA:
    case SQLITE_ABORT:
      return StatusCode::kIOError;
    // A rule of the schema refused this input.
    case SQLITE_CONSTRAINT:
      return StatusCode::kConflict;
    // Corruption or a bug: CORRUPT, NOTADB, FORMAT, ERROR, MISUSE, RANGE, MISMATCH, TOOBIG,
    // AUTH, INTERNAL and any code SQLite adds later.
    default:
      return StatusCode::kInternal;
  }
}

Status StatusFor(int rc, std::string_view what, sqlite3* db) {
  const StatusCode code = CodeFor(rc);
  if (code == StatusCode::kOk) return Status::Ok();
  std::string msg(what);
  msg += ": ";
  msg += sqlite3_errstr(rc);
  if (db != nullptr) {
    const char* detail = sqlite3_errmsg(db);
    if (detail != nullptr && std::string_view(detail) != sqlite3_errstr(rc)) {
      msg += " (";
      msg += detail;
      msg += ")";
    }
  }
  return Status(code, std::move(msg));
}

Status LastError(sqlite3* db, std::string_view what) {
  if (db == nullptr) return Status::IOError(std::string(what) + ": out of memory");
  const int rc = sqlite3_extended_errcode(db);
  // A caller asking for the last error has seen one; an OK here means the connection lost it
  // (another call in between), which must not turn into an acknowledgement.
  if (CodeFor(rc) == StatusCode::kOk) return Status::Internal(std::string(what) + ": " + sqlite3_errmsg(db));
  return StatusFor(rc, what, db);
}

}  // namespace freshsync::sqlite
