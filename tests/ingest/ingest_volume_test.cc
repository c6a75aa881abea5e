// 10,000 mixed messages give exactly the expected rows and change records; publishing them
// all again changes nothing. Customer data ends sealed, never in clear.
#include <gtest/gtest.h>

#include "tests/ingest/workload.h"

namespace freshsync::testing {
namespace {

TEST(IngestVolumeTest, TenThousandMixedMessagesExactlyOnce) {
  TempDir keys;
  WriteFile(keys.File("privacy.key"), std::string(64, 'a') + "\n");
  Site site("[privacy]\nkey_file = \"" + keys.File("privacy.key") + "\"\n");
  ASSERT_TRUE(site.StartEdged());
  Expected exp;
  const auto msgs = MixedWorkload(10000, "v", exp);
  auto pub = site.NewPublisher("volume-pub");
  for (const auto& m : msgs) pub->Publish(m);
  pub->Publish(Sentinel("a", 1));
  pub->Flush();
  ASSERT_TRUE(site.WaitInt(SentinelSql("a", 1), 1)) << "edged did not get through the workload";
  ExpectWorkloadApplied(site, exp, 1);
  const int64_t last_seq = site.Int("SELECT MAX(seq) FROM outbox");
  const std::string stock_digest = site.Text("SELECT group_concat(sku || ':' || on_hand || ':' || version, ',') FROM stock");

  // Everything again: no new rows, no new change records, no dead letters.
  for (const auto& m : msgs) pub->Publish(m);
  pub->Publish(Sentinel("a", 2));
  pub->Flush();
  ASSERT_TRUE(site.WaitInt(SentinelSql("a", 2), 1));
  ExpectWorkloadApplied(site, exp, 2);
  EXPECT_EQ(site.Int("SELECT MAX(seq) FROM outbox"), last_seq + 1);  // only the second sentinel
  EXPECT_EQ(site.Text("SELECT group_concat(sku || ':' || on_hand || ':' || version, ',') FROM stock"), stock_digest);

  // Customer personal data: sealed in orders, nowhere in clear (store files, log).
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM orders WHERE customer_sealed IS NULL"), 0);
  EXPECT_EQ(site.StopEdged(), 0);
  for (const std::string& f : std::vector<std::string>{site.db_path(), site.db_path() + "-wal"}) {
    const std::string all = ReadFile(f);
    EXPECT_EQ(all.find("Customer Name"), std::string::npos) << f;
    EXPECT_EQ(all.find("Century Avenue"), std::string::npos) << f;
  }
  EXPECT_EQ(site.log().find("Customer Name"), std::string::npos);
}

}  // namespace
}  // namespace freshsync::testing
