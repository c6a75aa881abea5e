// Personal data in clear: a customer block on every topic and path, in
// valid, wrong-topic, malformed, escaped, oversized and protobuf payloads, with and without a
// privacy key. The journal is made to hold them (the applier is paused, then edged is killed
// with -9), then they are applied; the store, its -wal, the journal files, the debug log and
// everything the broker carried on fs/# are searched for the name, the phone and the address.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <thread>

#include "freshsync.pb.h"
#include "tests/ingest/site.h"

namespace freshsync::testing {
namespace {

using namespace std::chrono_literals;

const std::string kName = "Zelda Quixotefield";
const std::string kPhone = "+86 139 5550 1234";
const std::string kAddress = "42 Wisteria Lane, Pudong";

std::string CustomerJson() { return R"({"name":")" + kName + R"(","phone":")" + kPhone + R"(","address":")" + kAddress + R"("})"; }

std::string OrderJson(const std::string& id, const std::string& status = "created") {
  return R"({"order_id":")" + id + R"(","status":")" + status + R"(","ts":1764000000000,"lines":[{"sku":"px","qty":1}],"customer":)" +
         CustomerJson() + "}";
}

std::string OrderProto(const std::string& id) {
  v1::OrderStatusMsg o;
  o.set_order_id(id);
  o.set_status("created");
  o.set_ts_ms(1764000000000);
  auto* l = o.add_lines();
  l->set_sku("px");
  l->set_qty(1);
  o.mutable_customer()->set_name(kName);
  o.mutable_customer()->set_phone(kPhone);
  o.mutable_customer()->set_address(kAddress);
  return o.SerializeAsString();
}

std::vector<Msg> Hostile() {
  std::vector<Msg> m;
  const std::vector<std::string> topics = {"fs/orders/status",  "fs/orders/status/", "fs/orders",          "fs/stock/orders",
                                           "fs/stock/movements", "fs/vehicles/v1/gps", "fs/sensors/s1/climate", "fs/nowhere"};
  int n = 0;
  for (const auto& t : topics) {
    const std::string id = "pd-" + std::to_string(n++);
    m.push_back({t, OrderJson(id + "-json")});                                                     // the block as sent
    m.push_back({t, OrderJson(id + "-trunc").substr(0, OrderJson(id).size() - 3)});                // truncated JSON
    m.push_back({t, R"({"order_id":")" + id + R"(-bad" "customer":)" + CustomerJson() + "}"});   // malformed JSON
    m.push_back({t, R"({"order_id":")" + id + R"(-esc","status":"created","ts":1764000000000,"cust\u006fmer":)" + CustomerJson() + "}"});
    m.push_back({t, R"({"order_id":")" + id + R"(-str","status":"created","ts":1764000000000,"customer":")" + kName + " " + kPhone + " " +
                        kAddress + "\"}"});                                                         // wrong type
    m.push_back({t, OrderProto(id + "-pb")});                                                       // protobuf
    m.push_back({t, OrderProto(id + "-pbt").substr(0, OrderProto(id).size() - 2)});               // truncated protobuf
    m.push_back({t, R"({"order_id":")" + id + R"(-acc","status":"accepted","ts":1764000000000,"customer":)" + CustomerJson() + "}"});
  }
  return m;
}

std::string ReadAll(const std::filesystem::path& p) {
  std::string out;
  if (!std::filesystem::exists(p)) return out;
  if (std::filesystem::is_directory(p)) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(p))
      if (e.is_regular_file()) out += ReadFile(e.path().string());
    return out;
  }
  return ReadFile(p.string());
}

void ExpectNoPersonalData(const std::string& where, const std::string& bytes) {
  for (const auto& needle : {kName, kPhone, kAddress, std::string("Quixotefield"), std::string("5550 1234"), std::string("Wisteria")})
    EXPECT_EQ(bytes.find(needle), std::string::npos) << "\"" << needle << "\" in clear in " << where;
}

void RunScenario(bool with_key) {
  TempDir keys;
  std::string extra = "[log]\nlevel = \"debug\"\n";
  if (with_key) {
    WriteFile(keys.File("privacy.key"), std::string(64, 'a') + "\n");
    extra += "[privacy]\nkey_file = \"" + keys.File("privacy.key") + "\"\n";
  }
  Site site(extra);
  Subscriber all(site.broker().Uri(), "spy", "fs/#");
  // The applier waits 60 s before its first batch: everything stays in the journal.
  ASSERT_TRUE(site.StartEdged({{"FRESHSYNC_APPLIER_PACE_FOR_TEST", "512:60000"}}));
  auto pub = site.NewPublisher("pd");
  pub->Publish({"fs/stock/movements", R"({"id":"stock-px","sku":"px","delta":1000,"reason":"receive"})"});
  const auto msgs = Hostile();
  for (const auto& m : msgs) pub->Publish(m);
  pub->Flush();
  const std::string journal = site.db_path() + ".intake";
  // Every message journaled (each entry carries its topic; count the sentinel's too).
  ASSERT_TRUE(WaitFor([&] { return ReadAll(journal).find("pd-7-acc") != std::string::npos || with_key; }, 10s));
  std::this_thread::sleep_for(1500ms);
  site.KillEdged();
  const std::string held = ReadAll(journal);
  ASSERT_GT(held.size(), 1000u) << "the journal should hold the unapplied messages";
  ExpectNoPersonalData("the intake journal (unapplied)", held);

  // Applied after a restart; killed again so the -wal keeps what it holds.
  ASSERT_TRUE(site.StartEdged());
  ASSERT_TRUE(site.WaitInt("SELECT COUNT(*) FROM stock_movements WHERE id = 'stock-px'", 1, 20s));
  ASSERT_TRUE(WaitFor([&] { return site.Int("SELECT COUNT(*) FROM dead_letters") + site.Int("SELECT COUNT(*) FROM orders") >= 20; }, 20s));
  std::this_thread::sleep_for(2s);
  EXPECT_GE(site.Int("SELECT COUNT(*) FROM orders WHERE order_id = 'pd-0-json'"), 1);  // the valid order was applied
  if (with_key) {
    // The valid orders with a customer kept it, sealed: the journal gave the applier it whole.
    EXPECT_GE(site.Int("SELECT COUNT(*) FROM orders WHERE customer_sealed IS NOT NULL"), 1);
  }
  site.KillEdged();
  ExpectNoPersonalData("the store", ReadAll(site.db_path()));
  ExpectNoPersonalData("the store's -wal", ReadAll(site.db_path() + "-wal"));
  ExpectNoPersonalData("the intake journal", ReadAll(journal));
  ExpectNoPersonalData("the debug log", site.log());
  // fs/# carries what the test published as well: everything else is edged's (notifications,
  // dead letters, order states).
  std::set<std::string> ours;
  for (const auto& m : msgs) ours.insert(m.payload);
  std::string carried;
  int64_t from_edged = 0;
  for (const auto& p : all.Payloads()) {
    if (ours.count(p) || p.find("stock-px") != std::string::npos) continue;
    carried += p + "\n";
    ++from_edged;
  }
  EXPECT_GT(from_edged, 40) << "edged's dead-letter notifications should have been seen";
  ExpectNoPersonalData("what edged published", carried);
  EXPECT_GT(site.Int("SELECT COUNT(*) FROM dead_letters"), 40);
  EXPECT_EQ(site.Int("SELECT COUNT(*) FROM dead_letters WHERE reason = ''"), 0);
}

TEST(IngestPrivacyTest, NoPersonalDataInClearWithAPrivacyKey) { RunScenario(true); }
TEST(IngestPrivacyTest, NoPersonalDataInClearWithoutAKey) { RunScenario(false); }

}  // namespace
}  // namespace freshsync::testing
