#include "sqlite/migrate.h"

#include <sqlite3.h>

#include "sqlite/db.h"

namespace freshsync::sqlite {

Result<int> UserVersion(sqlite3* db) {
  auto st = PrepareOn(db, "PRAGMA user_version");
  if (!st.ok()) return st.status();
  const int rc = st->Step();
  if (rc == SQLITE_ROW) return static_cast<int>(st->Int(0));
  return StatusFor(rc, "PRAGMA user_version", db);
}

Result<int> Migrate(sqlite3* db, const std::vector<Migration>& migrations, const MigrateOptions& options) {
  auto current = UserVersion(db);
  if (!current.ok()) return current.status();
  int version = *current;
  const int newest = migrations.empty() ? 0 : migrations.back().version;
  if (version > newest)
    return Status::Internal(options.database + " schema version " + std::to_string(version) + " is newer than this " +
                            options.program + " (" + std::to_string(newest) + "); refusing to run an older binary on it");
  const int target = options.target > 0 ? std::min(options.target, newest) : newest;
  for (const Migration& m : migrations) {
    if (m.version <= version) continue;
    if (m.version > target) break;
    if (m.version != version + 1)
      return Status::Internal(options.database + " migrations are not numbered 1, 2, 3...: " + std::to_string(m.version) +
                              " after " + std::to_string(version));
    Transaction tx(db);
    Status s = tx.Begin();
    for (size_t i = 0; s.ok() && i < m.steps.size(); ++i) {
      const MigrationStep& step = m.steps[i];
      s = step.data ? step.data(db) : ExecOn(db, step.sql);
    }
    if (s.ok()) s = ExecOn(db, "PRAGMA user_version=" + std::to_string(m.version));
    if (s.ok()) s = tx.Commit();
    if (!s.ok())
      return Status(s.code(), options.database + " migration " + std::to_string(m.version) + " failed: " + s.message());
    version = m.version;
    if (options.on_applied) options.on_applied(m);
  }
  return version;
}

}  // namespace freshsync::sqlite
