// A full disk under the real edged, for real (disk_errors_test.cc injects errors through a VFS). The store lives on a small tmpfs (the tests run as root).
// Publishing fills it; edged must stay up and answer /healthz, say in its log that the disk is
// full, count the retries in /metrics, and acknowledge nothing it could not store. When space
// comes back (the tmpfs is remounted bigger) it carries on by itself: every published message
// is applied exactly once and the file is intact.
#include <httplib.h>
#include <sys/mount.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "tests/ingest/workload.h"

namespace freshsync::testing {
namespace {

double Scrape(int port, const std::string& series) {
  httplib::Client c("127.0.0.1", port);
  auto r = c.Get("/metrics");
  if (!r || r->status != 200) return -2;
  const size_t p = r->body.find("\n" + series + " ");
  if (p == std::string::npos) return -1;
  return std::stod(r->body.substr(p + 2 + series.size()));
}

class SmallTmpfs {
 public:
  explicit SmallTmpfs(const std::string& dir, const std::string& size) : dir_(dir) {
    std::filesystem::create_directories(dir_);
    mounted_ = ::mount("tmpfs", dir_.c_str(), "tmpfs", 0, ("size=" + size + ",mode=0700").c_str()) == 0;
    if (!mounted_) error_ = std::strerror(errno);
  }
  ~SmallTmpfs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool Resize(const std::string& size) {
    return ::mount("tmpfs", dir_.c_str(), "tmpfs", MS_REMOUNT, ("size=" + size + ",mode=0700").c_str()) == 0;
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  std::string dir_;
  bool mounted_ = false;
  std::string error_;
};

TEST(DiskFullTest, EdgedHoldsMessagesWhileTheDiskIsFullAndRecoversWhenSpaceReturns) {
  TempDir mnt_parent;
  SmallTmpfs disk(mnt_parent.File("store"), "1536k");
  if (!disk.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (" << disk.error() << "); this test needs root";
  const int metrics_port = PickFreePort();
  SiteOptions o;
  o.store_dir = mnt_parent.File("store");
  o.extra_toml = "[metrics]\nlisten = \"127.0.0.1:" + std::to_string(metrics_port) + "\"\n";
  Site site(o);
  ASSERT_TRUE(site.StartEdged()) << site.log();

  Expected exp;
  const auto msgs = MixedWorkload(3000, "full", exp, 31);
  auto pub = site.NewPublisher("full-pub");
  for (const auto& m : msgs) pub->Publish(m, 500);
  pub->Publish(Sentinel("full", 1));
  pub->Flush();  // the broker has them all (its own persistence is not on the small disk)

  // The disk fills up: edged says so, keeps running, keeps answering, counts its retries.
  ASSERT_TRUE(WaitFor([&] { return site.log().find("database or disk is full") != std::string::npos; }, std::chrono::seconds(60)))
      << "the store never hit the full disk:\n" << site.log();
  const int64_t stuck_at = site.Int("SELECT COUNT(*) FROM dedupe");
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_TRUE(site.EdgedRunning());
  httplib::Client c("127.0.0.1", metrics_port);
  auto health = c.Get("/healthz");
  ASSERT_TRUE(health) << "edged stopped answering with a full disk";
  EXPECT_EQ(health->status, 200);
  EXPECT_GT(Scrape(metrics_port, "freshsync_ingest_store_retries_total"), 0);
  EXPECT_LT(stuck_at, static_cast<int64_t>(msgs.size()));
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM dedupe"), stuck_at) << "progress while the disk is full?";
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM dead_letters"), 0) << "a full disk must not turn messages into dead letters";
  EXPECT_EQ(site.Text("PRAGMA quick_check"), "ok");

  // Space comes back: no restart, no operator.
  ASSERT_TRUE(disk.Resize("256m"));
  ASSERT_TRUE(site.WaitInt(SentinelSql("full", 1), 1, std::chrono::seconds(180))) << site.log();
  // The sentinel (telemetry) may be applied before stock/orders when ingest runs them on
  // separate sessions (the telemetry client split): wait for both.
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM dedupe", exp.total() + 1, std::chrono::seconds(60)));
  ExpectWorkloadApplied(site, exp, 1);
  EXPECT_EQ(site.Text("PRAGMA integrity_check"), "ok");
  EXPECT_TRUE(site.EdgedRunning());
  std::cerr << "FIGURES disk_full tmpfs=1536k messages=" << msgs.size() + 1 << " applied_before_full=" << stuck_at
            << " store_retries=" << Scrape(metrics_port, "freshsync_ingest_store_retries_total") << "\n";
  ASSERT_EQ(site.StopEdged(), 0);
}

}  // namespace
}  // namespace freshsync::testing
