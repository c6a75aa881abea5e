// Key rotation of customer data at rest: old data stays readable, is re-sealed to the new key
// in batches, and the old key can then be dropped.
#include "edge/key_rotation.h"

#include <sodium.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <map>

#include <gtest/gtest.h>

#include "edge/store.h"

namespace freshsync::edge {
namespace {

class FixedClock : public Clock {
 public:
  int64_t NowMs() override { return 1764000000000; }
  int64_t MonotonicMs() override { return 1; }
};

Sealer::Key KeyOf(unsigned char fill) {
  Sealer::Key k{};
  k.fill(fill);
  return k;
}

// The format written before key ids existed: nonce || box.
std::string LegacySeal(std::string_view plain, const Sealer::Key& key) {
  std::string out(crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + plain.size(), '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(out.data());
  randombytes_buf(nonce, crypto_secretbox_NONCEBYTES);
  crypto_secretbox_easy(nonce + crypto_secretbox_NONCEBYTES, reinterpret_cast<const unsigned char*>(plain.data()), plain.size(),
                        nonce, key.data());
  return out;
}

class KeyRotationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("edge-keyrot-test-" + std::to_string(getpid()) + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "edge.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Writes `n` created orders with customers through a store sealing with `sealer`.
  void WriteOrders(const Sealer& sealer, int first, int n) {
    StoreOptions o;
    o.path = path_;
    o.clock = &clock_;
    o.sealer = sealer;
    auto store = EdgeStore::Open(o);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    for (int i = first; i < first + n; ++i) {
      OrderStatus s;
      s.order_id = "o-" + std::to_string(1000 + i);
      s.status = "created";
      s.ts_ms = 1764000000000;
      s.lines = {{"SKU-1", 1}};
      s.customer = Customer{"Customer " + std::to_string(i), "+86 1380000" + std::to_string(1000 + i), "Road " + std::to_string(i)};
      ASSERT_TRUE((*store)->Apply(s, 1764000000000).ok());
    }
  }

  std::map<std::string, std::string> Blobs() {
    std::map<std::string, std::string> out;
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT order_id, customer_sealed FROM orders WHERE customer_sealed IS NOT NULL", -1, &st, nullptr);
    while (sqlite3_step(st) == SQLITE_ROW)
      out[reinterpret_cast<const char*>(sqlite3_column_text(st, 0))] =
          std::string(static_cast<const char*>(sqlite3_column_blob(st, 1)), static_cast<size_t>(sqlite3_column_bytes(st, 1)));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  }

  void SetBlob(const std::string& order_id, const std::string& blob) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2(path_.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "UPDATE orders SET customer_sealed = ?2 WHERE order_id = ?1", -1, &st, nullptr);
    sqlite3_bind_text(st, 1, order_id.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(st, 2, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
    EXPECT_EQ(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
  }

  FixedClock clock_;
  std::filesystem::path dir_;
  std::string path_;
};

TEST(SealerTest, KeyIdsAndFormats) {
  const Sealer a = Sealer::FromKey(KeyOf(1));
  const Sealer b = Sealer::FromKey(KeyOf(2));
  const Sealer ring = Sealer::FromKeys(KeyOf(2), {KeyOf(1)});
  EXPECT_NE(a.current_key_id_hex(), b.current_key_id_hex());
  EXPECT_EQ(ring.current_key_id_hex(), b.current_key_id_hex());
  EXPECT_EQ(a.current_key_id_hex().size(), 16u);
  const std::string sealed = a.Seal("{\"name\":\"Li Wei\"}");
  EXPECT_EQ(Sealer::KeyIdOf(sealed), Sealer::IdOf(KeyOf(1)));
  EXPECT_TRUE(a.IsCurrent(sealed));
  EXPECT_FALSE(ring.IsCurrent(sealed));
  EXPECT_FALSE(b.Open(sealed).ok());  // the new key alone cannot open it
  ASSERT_TRUE(ring.Open(sealed).ok());
  EXPECT_EQ(*ring.Open(sealed), "{\"name\":\"Li Wei\"}");
  // Legacy blobs (no key id) open with whichever key of the ring fits.
  const std::string legacy = LegacySeal("legacy", KeyOf(1));
  EXPECT_FALSE(Sealer::KeyIdOf(legacy).has_value() && *Sealer::KeyIdOf(legacy) == Sealer::IdOf(KeyOf(1)));
  ASSERT_TRUE(ring.Open(legacy).ok());
  EXPECT_EQ(*ring.Open(legacy), "legacy");
  EXPECT_FALSE(ring.IsCurrent(legacy));
  // Tampering is caught in either format.
  std::string bad = sealed;
  bad.back() ^= 1;
  EXPECT_FALSE(ring.Open(bad).ok());
  EXPECT_FALSE(a.IsCurrent(bad));
}

TEST_F(KeyRotationTest, OldDataStaysReadableIsResealedAndOldKeyCanGo) {
  const Sealer old_only = Sealer::FromKey(KeyOf(1));
  WriteOrders(old_only, 0, 1203);  // more than two batches of 500
  // One row from before key ids, as an older edged wrote it.
  SetBlob("o-1000", LegacySeal("{\"address\":\"Road 0\",\"name\":\"Customer 0\",\"phone\":\"+86 13800001000\"}", KeyOf(1)));
  const auto before = Blobs();
  ASSERT_EQ(before.size(), 1203u);

  const Sealer new_only = Sealer::FromKey(KeyOf(2));
  const Sealer ring = Sealer::FromKeys(KeyOf(2), {KeyOf(1)});
  std::map<std::string, std::string> plain;
  for (const auto& [id, blob] : before) {
    EXPECT_FALSE(new_only.Open(blob).ok()) << id;  // the rotation is needed for real
    auto p = ring.Open(blob);
    ASSERT_TRUE(p.ok()) << id;  // old data readable with the new key configured
    plain[id] = *p;
  }
  // New orders after the key change are sealed with the new key at once.
  WriteOrders(ring, 5000, 3);
  auto r = ResealCustomerData(path_, ring, 500);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->scanned, 1206);
  EXPECT_EQ(r->resealed, 1203);
  EXPECT_EQ(r->already_current, 3);
  EXPECT_EQ(r->unreadable, 0);
  EXPECT_EQ(r->remaining_old, 0);

  // The old key can go: every row opens with the new key alone, to the same data.
  const auto after = Blobs();
  ASSERT_EQ(after.size(), 1206u);
  for (const auto& [id, blob] : after) {
    ASSERT_TRUE(new_only.IsCurrent(blob)) << id;
    auto p = new_only.Open(blob);
    ASSERT_TRUE(p.ok()) << id;
    if (plain.count(id)) {
      EXPECT_EQ(*p, plain[id]) << id;
      EXPECT_NE(blob, before.at(id)) << id;
    }
    EXPECT_EQ(blob.find("Customer"), std::string::npos);
  }
  // A second run has nothing to do.
  r = ResealCustomerData(path_, new_only, 500);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->resealed, 0);
  EXPECT_EQ(r->already_current, 1206);
}

TEST_F(KeyRotationTest, RowsNoKeyOpensAreReportedAndLeftAlone) {
  WriteOrders(Sealer::FromKey(KeyOf(1)), 0, 3);
  const Sealer stranger = Sealer::FromKey(KeyOf(9));  // the old key was lost
  auto r = ResealCustomerData(path_, stranger, 2);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->scanned, 3);
  EXPECT_EQ(r->unreadable, 3);
  EXPECT_EQ(r->remaining_old, 3);
  EXPECT_EQ(r->resealed, 0);
  for (const auto& [id, blob] : Blobs()) EXPECT_TRUE(Sealer::FromKey(KeyOf(1)).Open(blob).ok()) << id;
}

}  // namespace
}  // namespace freshsync::edge
