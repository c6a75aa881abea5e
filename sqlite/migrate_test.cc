#include "sqlite/migrate.h"

#include <gtest/gtest.h>

#include "sqlite/db.h"

namespace freshsync::sqlite {
namespace {

Db Memory() {
  OpenOptions o;
  o.create = true;
  auto db = Db::Open(":memory:", o);
  EXPECT_TRUE(db.ok());
  return std::move(*db);
}

std::vector<Migration> Three(int* data_runs) {
  return {
      {1, "table", {MigrationStep::Sql("CREATE TABLE t(v INTEGER); INSERT INTO t VALUES(1), (2);")}},
      {2, "data step doubles", {MigrationStep::Sql("ALTER TABLE t ADD COLUMN w INTEGER"), MigrationStep::Data([data_runs](sqlite3* db) {
                                  ++*data_runs;
                                  return ExecOn(db, "UPDATE t SET w = v * 2");
                                })}},
      {3, "index", {MigrationStep::Sql("CREATE INDEX t_w ON t(w)")}},
  };
}

TEST(MigrateTest, AppliesInOrderWithDataStepsAndStopsAtTarget) {
  Db db = Memory();
  int runs = 0;
  const auto m = Three(&runs);
  MigrateOptions o;
  o.target = 2;
  std::vector<int> applied;
  o.on_applied = [&](const Migration& x) { applied.push_back(x.version); };
  ASSERT_EQ(*Migrate(db.get(), m, o), 2);
  EXPECT_EQ(*db.QueryInt("SELECT sum(w) FROM t"), 6);
  o.target = 0;
  ASSERT_EQ(*Migrate(db.get(), m, o), 3);
  ASSERT_EQ(*Migrate(db.get(), m, o), 3);  // nothing left to do
  EXPECT_EQ(applied, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(runs, 1);
  EXPECT_EQ(*UserVersion(db.get()), 3);
}

TEST(MigrateTest, AFailingDataStepRollsTheWholeMigrationBack) {
  Db db = Memory();
  int runs = 0;
  auto m = Three(&runs);
  m[1].steps.push_back(MigrationStep::Data([](sqlite3*) { return Status::IOError("disk full"); }));
  auto r = Migrate(db.get(), m, {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIOError);
  EXPECT_NE(r.status().message().find("migration 2 failed"), std::string::npos);
  EXPECT_EQ(*UserVersion(db.get()), 1);
  EXPECT_EQ(*db.QueryInt("SELECT count(*) FROM pragma_table_info('t') WHERE name = 'w'"), 0);  // ALTER rolled back
  EXPECT_FALSE(db.InTransaction());
}

TEST(MigrateTest, RefusesANewerDatabase) {
  Db db = Memory();
  ASSERT_TRUE(db.Exec("PRAGMA user_version = 9").ok());
  int runs = 0;
  MigrateOptions o;
  o.database = "store";
  o.program = "edged";
  auto r = Migrate(db.get(), Three(&runs), o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
  EXPECT_NE(r.status().message().find("store schema version 9 is newer than this edged (3)"), std::string::npos);
}

}  // namespace
}  // namespace freshsync::sqlite
