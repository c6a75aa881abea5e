// What the edge store's unit tests share (store_test, downstream_test, site_rules_test,
// rebuild_test, disk_quota_test, ingest_test): a clock the test moves by hand, a fresh folder
// per test, and one-value reads on a store's connection. Test-only and header-only.
#pragma once

#include <sqlite3.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "common/clock.h"

namespace freshsync::edge::test_support {

// Both readings are `now`: the tests step wall time by hand, backwards too (as NTP can), and
// the store's timers follow it.
class HandClock : public Clock {
 public:
  explicit HandClock(int64_t start_ms = 1767225600000) : now(start_ms) {}
  int64_t NowMs() override { return now; }
  int64_t MonotonicMs() override { return now; }
  int64_t now;
};

// A folder of its own for the running test, named after it and the process (ctest runs test
// binaries in parallel), emptied at the start and removed at the end.
class TestDir {
 public:
  explicit TestDir(const std::string& prefix)
      : path_(std::filesystem::temp_directory_path() /
              (prefix + "-" + std::to_string(getpid()) + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name())) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TestDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TestDir(const TestDir&) = delete;
  TestDir& operator=(const TestDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string File(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// The first column of the first row as an integer; -1 when there is no row. A statement that
// does not prepare fails the test.
inline int64_t QueryInt(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sql << ": " << sqlite3_errmsg(db);
  int64_t v = -1;
  if (st != nullptr && sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return v;
}

// The first column of the first row as bytes (text or blob); empty when there is no row or it
// is NULL.
inline std::string QueryBytes(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr), SQLITE_OK) << sql << ": " << sqlite3_errmsg(db);
  std::string v;
  if (st != nullptr && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_blob(st, 0) != nullptr)
    v.assign(static_cast<const char*>(sqlite3_column_blob(st, 0)), static_cast<size_t>(sqlite3_column_bytes(st, 0)));
  sqlite3_finalize(st);
  return v;
}

}  // namespace freshsync::edge::test_support
