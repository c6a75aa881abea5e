#include "sqlite/status.h"

#include <sqlite3.h>

#include <gtest/gtest.h>

namespace freshsync::sqlite {
namespace {

struct Row {
  int rc;
  StatusCode code;
};

// The table of sqlite/status.h. Changing a row changes what is retried, refused or
// acknowledged: read docs/reliability.md first.
TEST(SqliteStatusTest, MappingTable) {
  const Row rows[] = {
      {SQLITE_OK, StatusCode::kOk},
      {SQLITE_ROW, StatusCode::kOk},
      {SQLITE_DONE, StatusCode::kOk},
      // The environment: kIOError, held and retried, never acknowledged.
      {SQLITE_FULL, StatusCode::kIOError},
      {SQLITE_IOERR, StatusCode::kIOError},
      {SQLITE_IOERR_WRITE, StatusCode::kIOError},
      {SQLITE_IOERR_FSYNC, StatusCode::kIOError},
      {SQLITE_IOERR_READ, StatusCode::kIOError},
      {SQLITE_IOERR_SHORT_READ, StatusCode::kIOError},
      {SQLITE_IOERR_TRUNCATE, StatusCode::kIOError},
      {SQLITE_IOERR_DELETE, StatusCode::kIOError},
      {SQLITE_IOERR_NOMEM, StatusCode::kIOError},
      {SQLITE_CANTOPEN, StatusCode::kIOError},
      {SQLITE_READONLY, StatusCode::kIOError},
      {SQLITE_READONLY_DBMOVED, StatusCode::kIOError},
      {SQLITE_PERM, StatusCode::kIOError},
      {SQLITE_NOLFS, StatusCode::kIOError},
      {SQLITE_NOMEM, StatusCode::kIOError},
      {SQLITE_PROTOCOL, StatusCode::kIOError},
      {SQLITE_INTERRUPT, StatusCode::kIOError},
      {SQLITE_BUSY, StatusCode::kIOError},
      {SQLITE_BUSY_SNAPSHOT, StatusCode::kIOError},
      {SQLITE_BUSY_RECOVERY, StatusCode::kIOError},
      {SQLITE_LOCKED, StatusCode::kIOError},
      {SQLITE_LOCKED_SHAREDCACHE, StatusCode::kIOError},
      {SQLITE_SCHEMA, StatusCode::kIOError},
      {SQLITE_ABORT, StatusCode::kIOError},
      {SQLITE_ABORT_ROLLBACK, StatusCode::kIOError},
      // A schema rule refused the input.
      {SQLITE_CONSTRAINT, StatusCode::kConflict},
      {SQLITE_CONSTRAINT_CHECK, StatusCode::kConflict},
      {SQLITE_CONSTRAINT_UNIQUE, StatusCode::kConflict},
      {SQLITE_CONSTRAINT_PRIMARYKEY, StatusCode::kConflict},
      {SQLITE_CONSTRAINT_NOTNULL, StatusCode::kConflict},
      // Corruption or a bug.
      {SQLITE_CORRUPT, StatusCode::kInternal},
      {SQLITE_CORRUPT_INDEX, StatusCode::kInternal},
      {SQLITE_NOTADB, StatusCode::kInternal},
      {SQLITE_FORMAT, StatusCode::kInternal},
      {SQLITE_ERROR, StatusCode::kInternal},
      {SQLITE_MISUSE, StatusCode::kInternal},
      {SQLITE_RANGE, StatusCode::kInternal},
      {SQLITE_MISMATCH, StatusCode::kInternal},
      {SQLITE_TOOBIG, StatusCode::kInternal},
      {SQLITE_AUTH, StatusCode::kInternal},
      {SQLITE_INTERNAL, StatusCode::kInternal},
      {SQLITE_EMPTY, StatusCode::kInternal},
  };
  for (const Row& r : rows) EXPECT_EQ(CodeFor(r.rc), r.code) << "rc " << r.rc << " " << sqlite3_errstr(r.rc);
}

TEST(SqliteStatusTest, StatusCarriesWhatAndSqliteText) {
  Status s = StatusFor(SQLITE_FULL, "apply");
  EXPECT_EQ(s.code(), StatusCode::kIOError);
  EXPECT_EQ(s.message(), std::string("apply: ") + sqlite3_errstr(SQLITE_FULL));
  EXPECT_TRUE(StatusFor(SQLITE_DONE, "x").ok());
}

TEST(SqliteStatusTest, LastErrorWithoutConnectionIsIOError) {
  EXPECT_EQ(LastError(nullptr, "open").code(), StatusCode::kIOError);
}

}  // namespace
}  // namespace freshsync::sqlite
