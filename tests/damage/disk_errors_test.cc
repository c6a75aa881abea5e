// Disk errors under the store, injected (disk_full_test.cc fills a real tmpfs). FaultVfs makes writes fail with SQLITE_FULL or SQLITE_IOERR_WRITE and syncs
// with SQLITE_IOERR_FSYNC, in bursts, at random moments. Apply is retried the way ingest
// retries (the message is held, unacknowledged, until it commits). Then:
//   - every failed Apply says kIOError (so ingest holds the message; never a dead letter);
//   - the same store object recovers by itself once the disk works again (no reopen);
//   - in strict mode, a power cut right after the run loses nothing acknowledged;
//   - the file is intact and holds exactly the workload's effect.
#include <random>

#include <gtest/gtest.h>

#include "tests/damage/store_damage.h"
#include "tests/support/fault_vfs.h"
#include "tests/support/harness.h"

namespace freshsync::testing {
namespace {

using edge::EdgeStore;

void RunDiskErrors(Durability durability, const std::string& tag, uint32_t seed) {
  TempDir dir;
  const std::string path = dir.File("edge.db");
  FaultVfs vfs("errors-" + tag);
  Expected exp;
  const auto msgs = DecodeAll(MixedWorkload(6000, tag, exp, seed));
  std::mt19937 rng(seed);
  edge::StoreOptions opts;
  opts.path = path;
  opts.durability = durability;
  opts.vfs_name = vfs.name();
  auto store = EdgeStore::Open(opts);
  ASSERT_TRUE(store.ok()) << store.status().ToString();

  int64_t failed_applies = 0, bursts = 0, committed_though_failed = 0, longest_hold = 0;
  for (size_t i = 0; i < msgs.size(); ++i) {
    if (rng() % 40 == 0) {
      ++bursts;
      const bool on_sync = rng() % 3 == 0;
      const int code = on_sync ? SQLITE_IOERR_FSYNC : (rng() % 2 ? SQLITE_FULL : SQLITE_IOERR_WRITE);
      vfs.InjectErrors(on_sync ? FaultVfs::Op::kSync : FaultVfs::Op::kWrite, code, rng() % 40, 1 + rng() % 60);
    }
    bool failed_before = false;
    for (int64_t attempt = 0;; ++attempt) {
      ASSERT_LT(attempt, 10000) << "the store did not recover after the disk did";
      auto r = (*store)->Apply(msgs[i], 1764000000000);
      if (r.ok()) {
        // A commit can reach the disk and still report an error (a failing checkpoint after
        // it): the retry then finds it applied. Safe: it was not acknowledged in between.
        if (failed_before && *r == EdgeStore::Outcome::kDuplicate) ++committed_though_failed;
        longest_hold = std::max(longest_hold, attempt);
        break;
      }
      ASSERT_EQ(r.status().code(), StatusCode::kIOError) << "message " << i << ": " << r.status().ToString();
      ++failed_applies;
      failed_before = true;
      // After enough retries the burst is over; a real disk comes back on its own too.
      if (attempt == 200) vfs.ClearErrors();
    }
  }
  vfs.ClearErrors();
  std::cerr << "FIGURES disk_errors_" << tag << " messages=" << msgs.size() << " error_bursts=" << bursts
            << " errors_injected=" << vfs.errors_injected() << " failed_applies=" << failed_applies
            << " committed_though_reported_failed=" << committed_though_failed << " longest_hold_retries=" << longest_hold << "\n";
  EXPECT_GT(vfs.errors_injected(), 100);
  EXPECT_GT(failed_applies, 50);
  {
    StoreFile live(path);  // a second reader while the store is open, as edgectl would be
    live.ExpectConsistent("while open");
  }
  if (durability == Durability::kStrict) {
    vfs.PowerOffNow();  // and the power goes right after the last acknowledgement
    store = Status::Unavailable("closed");
    vfs.RestoreAfterPowerCut(nullptr);
  } else {
    store = Status::Unavailable("closed");
  }
  StoreFile db(path);
  db.ExpectConsistent("after the run");
  ExpectExactly(db, exp);
}

TEST(DiskErrorsTest, StrictNeverAcknowledgesWhatItCouldNotStore) { RunDiskErrors(Durability::kStrict, "strict", DamageSeed(501)); }
TEST(DiskErrorsTest, NormalNeverAcknowledgesWhatItCouldNotStore) { RunDiskErrors(Durability::kNormal, "normal", DamageSeed(502)); }

}  // namespace
}  // namespace freshsync::testing
