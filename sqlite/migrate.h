// The numbered-migration runner both stores use (edge/migrations.cc, hub/sqlite_store.cc).
//
// PRAGMA user_version holds the number of the last migration applied; migration N moves a
// database from version N-1 to N. Each migration runs in one BEGIN IMMEDIATE transaction
// together with its user_version bump: its steps in order, each either SQL text or a data step
// (a C++ function run on the connection inside that same transaction, e.g. moving rows into a
// new format). A failing step rolls the whole migration back and leaves user_version where it
// was. Migrations are append-only: a shipped one is never edited, a change is a new one.
//
// Thread-safety: call with the connection used by no other thread.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/status.h"

struct sqlite3;

namespace freshsync::sqlite {

struct MigrationStep {
  // Exactly one of the two: SQL text (may hold several statements) or a data step.
  const char* sql = nullptr;
  std::function<Status(sqlite3*)> data;

  static MigrationStep Sql(const char* text) { return {text, {}}; }
  static MigrationStep Data(std::function<Status(sqlite3*)> fn) { return {nullptr, std::move(fn)}; }
};

struct Migration {
  int version = 0;  // user_version after it: 1, 2, 3, ... in order
  const char* description = "";
  std::vector<MigrationStep> steps;
};

struct MigrateOptions {
  // Names for messages: "<database> schema version 9 is newer than this <program> (3)".
  std::string database = "database";
  std::string program = "binary";
  int target = 0;  // migrate up to this version; 0: the newest (tests pin older versions)
  // Called after each migration commits.
  std::function<void(const Migration&)> on_applied;
};

// Migrates db. Returns the version the database is at afterwards. kInternal when the database
// is newer than the newest migration (an older binary must not run on it); a failing step's
// own code otherwise (kIOError for a full disk, ...), its message prefixed with
// "<database> migration N failed: ".
Result<int> Migrate(sqlite3* db, const std::vector<Migration>& migrations, const MigrateOptions& options);

// PRAGMA user_version.
Result<int> UserVersion(sqlite3* db);

}  // namespace freshsync::sqlite
