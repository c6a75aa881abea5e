// The PostgreSQL fixture does what the hub's PostgreSQL tests will lean on: a cluster of its own
// on a free port, committed data surviving an immediate shutdown (crash recovery from the WAL),
// and the same URL working after the restart.
#include "tests/support/postgres.h"

#include <gtest/gtest.h>

namespace freshsync::testing {
namespace {

TEST(PostgresServerTest, CommittedRowsSurviveACrashAndTheUrlStaysTheSame) {
  TempDir tmp;
  PostgresServer pg(tmp.File("pg"));
  ASSERT_TRUE(pg.Start()) << ReadFile(pg.log_path());
  ASSERT_TRUE(pg.CreateDatabase("freshsync"));
  const std::string url_before = pg.Url("freshsync");
  EXPECT_EQ(pg.Query("freshsync", "SELECT current_setting('server_version_num')::int / 10000"), "15");
  ASSERT_EQ(pg.Query("freshsync", "CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 1000); SELECT count(*) FROM t"),
            "1000");

  pg.Crash();
  EXPECT_EQ(pg.Query("freshsync", "SELECT 1"), "") << "the server answered after the crash";

  ASSERT_TRUE(pg.Start()) << ReadFile(pg.log_path());
  EXPECT_EQ(pg.Url("freshsync"), url_before);
  EXPECT_EQ(pg.Query("freshsync", "SELECT count(*), sum(n) FROM t"), "1000|500500");
  EXPECT_NE(ReadFile(pg.log_path()).find("database system was interrupted"), std::string::npos)
      << "the restart did not go through crash recovery";
}

}  // namespace
}  // namespace freshsync::testing
