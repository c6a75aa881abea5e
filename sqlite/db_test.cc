#include "sqlite/db.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include <gtest/gtest.h>

namespace freshsync::sqlite {
namespace {

OpenOptions Opts(bool create, int busy_timeout_ms = 5000, bool read_only = false, std::vector<std::string> pragmas = {}) {
  OpenOptions o;
  o.create = create;
  o.busy_timeout_ms = busy_timeout_ms;
  o.read_only = read_only;
  o.pragmas = std::move(pragmas);
  return o;
}

class SqliteDbTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sqlite_db_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { (void)!std::system(("rm -rf '" + dir_ + "'").c_str()); }
  std::string File(const char* name) const { return dir_ + "/" + name; }
  std::string dir_;
};

TEST_F(SqliteDbTest, OpenRunsPragmasAndStatementsRoundTrip) {
  auto db = Db::Open(File("a.db"), Opts(true, 5000, false, {"PRAGMA journal_mode=WAL"}));
  ASSERT_TRUE(db.ok()) << db.status().ToString();
  ASSERT_TRUE(db->QueryInt("PRAGMA journal_mode").ok());  // text "wal" reads as 0
  ASSERT_TRUE(db->Exec("CREATE TABLE t(i INTEGER, d REAL, s TEXT, b BLOB, n)").ok());
  auto ins = db->Prepare("INSERT INTO t VALUES(?1, ?2, ?3, ?4, ?5)", true);
  ASSERT_TRUE(ins.ok());
  const std::string blob("a\0b", 3);
  ins->Bind(1, uint64_t{1} << 40).Bind(2, 2.5).Bind(3, std::string("text")).BindBlobRef(4, blob).BindNull(5);
  ASSERT_TRUE(ins->Run("insert").ok());
  auto sel = db->Prepare("SELECT i, d, s, b, n FROM t");
  ASSERT_TRUE(sel.ok());
  ASSERT_EQ(sel->Step(), SQLITE_ROW);
  EXPECT_EQ(sel->Int(0), int64_t{1} << 40);
  EXPECT_EQ(sel->Real(1), 2.5);
  EXPECT_EQ(sel->Text(2), "text");
  EXPECT_EQ(sel->Text(3), blob);
  EXPECT_TRUE(sel->IsNull(4));
  EXPECT_EQ(sel->Step(), SQLITE_DONE);
  sel->Reset();
  EXPECT_EQ(sel->Step(), SQLITE_ROW);
}

TEST_F(SqliteDbTest, RealErrorsMapThroughTheTable) {
  auto db = Db::Open(File("b.db"), Opts(true));
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->Exec("CREATE TABLE t(k TEXT PRIMARY KEY, v INTEGER CHECK (v >= 0))").ok());
  EXPECT_EQ(db->Exec("INSERT INTO t VALUES('a', -1)").code(), StatusCode::kConflict);
  EXPECT_EQ(db->Exec("SELEKT 1").code(), StatusCode::kInternal);
  EXPECT_EQ(db->Prepare("SELECT nope FROM t").status().code(), StatusCode::kInternal);

  // A write lock held past busy_timeout: kIOError, like a failed write.
  auto other = Db::Open(File("b.db"), Opts(false, 0));
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(db->Exec("BEGIN IMMEDIATE").ok());
  EXPECT_EQ(other->Exec("BEGIN IMMEDIATE").code(), StatusCode::kIOError);
  ASSERT_TRUE(db->Exec("ROLLBACK").ok());

  auto ro = Db::Open(File("b.db"), Opts(false, 5000, true));
  ASSERT_TRUE(ro.ok());
  EXPECT_EQ(ro->Exec("INSERT INTO t VALUES('b', 1)").code(), StatusCode::kIOError);

  EXPECT_EQ(Db::Open(File("missing.db"), Opts(false)).status().code(), StatusCode::kIOError);

  { std::ofstream(File("junk.db")) << std::string(4096, 'x'); }
  auto junk = Db::Open(File("junk.db"), Opts(false));
  ASSERT_TRUE(junk.ok());
  EXPECT_EQ(junk->Exec("SELECT * FROM sqlite_master").code(), StatusCode::kInternal);
}

TEST_F(SqliteDbTest, TransactionRollsBackUnlessCommitted) {
  auto db = Db::Open(File("c.db"), Opts(true));
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->Exec("CREATE TABLE t(i)").ok());
  {
    Transaction tx(db->get());
    ASSERT_TRUE(tx.Begin().ok());
    ASSERT_TRUE(db->Exec("INSERT INTO t VALUES(1)").ok());
  }
  EXPECT_EQ(*db->QueryInt("SELECT count(*) FROM t"), 0);
  {
    Transaction tx(db->get());
    ASSERT_TRUE(tx.Begin().ok());
    ASSERT_TRUE(db->Exec("INSERT INTO t VALUES(1)").ok());
    ASSERT_TRUE(tx.Commit().ok());
  }
  EXPECT_EQ(*db->QueryInt("SELECT count(*) FROM t"), 1);
  EXPECT_FALSE(db->InTransaction());
}

TEST(PrepareAllOn, PreparesEachAndStopsAtTheFirstFailure) {
  auto db = Db::Open(":memory:", {});
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->Exec("CREATE TABLE t(i)").ok());
  Stmt a, b, c;
  ASSERT_TRUE(PrepareAllOn(db->get(), {{"SELECT count(*) FROM t", &a}, {"INSERT INTO t VALUES(?1)", &b}}).ok());
  EXPECT_TRUE(a && b);
  const Status s = PrepareAllOn(db->get(), {{"SELECT * FROM missing", &c}});
  EXPECT_FALSE(s.ok());
  EXPECT_FALSE(c);
}

}  // namespace
}  // namespace freshsync::sqlite
