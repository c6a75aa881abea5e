// The shipped units pass `systemd-analyze verify` and score 2.0 or less on
// `systemd-analyze security --offline=yes`. verify needs the ExecStart binary to exist, so the
// unit is checked as a copy whose ExecStart points at the freshly built daemon; nothing else
// is changed. Skipped where systemd-analyze is not installed.
#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "tests/support/harness.h"

namespace freshsync::testing {
namespace {

bool HaveSystemdAnalyze() { return RunShell("command -v systemd-analyze > /dev/null 2>&1") == 0; }

std::string Unit(const std::string& name) { return ReadFile(std::string(FRESHSYNC_SOURCE_DIR) + "/systemd/" + name); }

class SystemdUnits : public ::testing::TestWithParam<const char*> {};

TEST_P(SystemdUnits, VerifyIsClean) {
  if (!HaveSystemdAnalyze()) GTEST_SKIP() << "systemd-analyze not installed";
  const std::string daemon = GetParam();
  const std::string bin = BinDir() + "/" + daemon;
  if (RunShell("test -x '" + bin + "'") != 0) GTEST_SKIP() << bin << " not built";
  TempDir dir;
  std::string unit = Unit(daemon + ".service");
  const std::string from = "/usr/bin/" + daemon;
  ASSERT_NE(unit.find(from), std::string::npos);
  unit.replace(unit.find(from), from.size(), bin);
  WriteFile(dir.File(daemon + ".service"), unit);
  const int rc = RunShell("systemd-analyze verify '" + dir.File(daemon + ".service") + "' > '" + dir.File("out") + "' 2>&1");
  const std::string out = ReadFile(dir.File("out"));
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "") << out;
}

TEST_P(SystemdUnits, SecurityExposureAtMostTwo) {
  if (!HaveSystemdAnalyze()) GTEST_SKIP() << "systemd-analyze not installed";
  const std::string daemon = GetParam();
  TempDir dir;
  const std::string path = std::string(FRESHSYNC_SOURCE_DIR) + "/systemd/" + daemon + ".service";
  RunShell("systemd-analyze security --offline=yes '" + path + "' > '" + dir.File("out") + "' 2>&1");
  const std::string out = ReadFile(dir.File("out"));
  // Plain string search, not std::regex: <regex> trips GCC 12's -Wmaybe-uninitialized in sanitizer builds.
  const std::string marker = "Overall exposure level for " + daemon + ".service: ";
  const auto at = out.find(marker);
  ASSERT_NE(at, std::string::npos) << out;
  EXPECT_LE(std::stod(out.substr(at + marker.size())), 2.0) << out;
}

INSTANTIATE_TEST_SUITE_P(Daemons, SystemdUnits, ::testing::Values("edged", "hubd"));

}  // namespace
}  // namespace freshsync::testing
