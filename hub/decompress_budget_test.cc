// The process-wide decompression budget and ZstdDecompressCapped's use of it.
#include "hub/decompress_budget.h"

#include <gtest/gtest.h>

#include <string>

#include "hub/codec.h"
#include "hub/record_check.h"

namespace freshsync::hub {
namespace {

TEST(DecompressBudgetTest, ReservationsAreBoundedAndReturned) {
  DecompressBudget budget(100);
  {
    DecompressReservation a(&budget), b(&budget);
    EXPECT_TRUE(a.GrowTo(60));
    EXPECT_FALSE(b.GrowTo(41));  // 60 + 41 > 100: nothing taken
    EXPECT_EQ(budget.used(), 60u);
    EXPECT_TRUE(b.GrowTo(40));
    EXPECT_TRUE(a.GrowTo(50));  // never shrinks, no-op
    EXPECT_EQ(budget.used(), 100u);
    a.ReleaseAll();
    EXPECT_EQ(budget.used(), 40u);
  }
  EXPECT_EQ(budget.used(), 0u);
  EXPECT_EQ(budget.refused_total(), 1u);
}

TEST(DecompressBudgetTest, DecompressionStopsWithUnavailableWhenTheBudgetIsShort) {
  const std::string raw(8 << 20, 'z');
  const std::string packed = ZstdCompress(raw, 1);
  ZstdLimits limits;
  limits.max_output_bytes = 64 << 20;
  {
    DecompressBudget budget(4 << 20);  // less than the output: refused before allocating it
    DecompressReservation hold(&budget);
    limits.reservation = &hold;
    auto out = ZstdDecompressCapped(packed, limits);
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), StatusCode::kUnavailable);
    EXPECT_LE(budget.used(), budget.total());
  }
  {
    DecompressBudget budget(64 << 20);
    DecompressReservation hold(&budget);
    limits.reservation = &hold;
    auto out = ZstdDecompressCapped(packed, limits);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_EQ(*out, raw);
    // What was reserved covers what the output string really holds.
    EXPECT_GE(hold.held(), out->capacity());
  }
}

TEST(RecordCheckTest, CountersKeepSiteLabelsBounded) {
  RefusalCounters c;
  for (size_t i = 0; i < RefusalCounters::kMaxSites + 10; ++i) c.Count("site-" + std::to_string(i), "key");
  EXPECT_EQ(c.Get("site-0", "key"), 1u);
  EXPECT_EQ(c.Get("_other", "key"), 10u);
  EXPECT_NE(c.Prometheus().find("freshsync_hub_records_refused_total{site=\"site-1\",reason=\"key\"} 1"), std::string::npos);
}

TEST(RecordCheckTest, BatchRefusalsNameSeqAndField) {
  v1::Batch b;
  auto* ok = b.add_records();
  ok->set_seq(1);
  ok->set_entity(v1::STOCK);
  ok->set_key("sku-1");
  ok->set_version(1);
  ok->mutable_stock()->set_sku("sku-1");
  auto* bad = b.add_records();
  *bad = *ok;
  bad->set_seq(2);
  bad->mutable_stock()->set_on_hand(-1);
  const BatchRefusals r = CheckBatchRecords(b);
  EXPECT_EQ(r.count, 1u);
  EXPECT_TRUE(r.reasons[0].empty());
  EXPECT_EQ(r.first.rfind("seq 2: stock.on_hand:", 0), 0u) << r.first;
}

}  // namespace
}  // namespace freshsync::hub
