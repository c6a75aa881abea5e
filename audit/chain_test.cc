// The cold-chain audit chain: canonical bytes, the hash step, seals, the one verifier, the
// signed export and its offline check, and the site key file.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "audit/chain.h"
#include "audit/export.h"
#include "audit/verify.h"
#include "freshsync.pb.h"

namespace freshsync::audit {
namespace {

Link Reading(uint64_t index, int32_t temp_dc, int64_t ts_ms) {
  Link l;
  l.index = index;
  l.sensor = "cold-1";
  l.ts_ms = ts_ms;
  l.device_seq = index;
  l.temp_dc = temp_dc;
  l.rh_d = 500;
  return l;
}

struct Chained {
  Link link;
  std::string prev, hash;
};

std::vector<Chained> Chain(std::vector<Link> links) {
  std::vector<Chained> out;
  std::string h = GenesisHash();
  for (auto& l : links) {
    std::string next = NextHash(h, CanonicalBytes(l));
    out.push_back({l, h, next});
    h = next;
  }
  return out;
}

v1::ColdchainSeal Seal(const SigningKey& key, const std::vector<Chained>& c, size_t first, size_t last) {
  v1::ColdchainSeal s;
  s.set_sensor("cold-1");
  s.set_first_index(c[first].link.index);
  s.set_last_index(c[last].link.index);
  s.set_count(last - first + 1);
  s.set_first_ts_ms(c[first].link.ts_ms);
  s.set_last_ts_ms(c[last].link.ts_ms);
  s.set_last_hash(c[last].hash);
  s.set_public_key(key.public_key());
  s.set_signature(key.Sign(SealBytes(s)));
  return s;
}

SigningKey TestKey() { return SigningKey::FromSeed(std::string(32, '\x07')); }

TEST(ColdchainCanonical, FixedLayoutPinsEveryField) {
  const Link l = Reading(3, -150, 1'700'000'000'000);
  const std::string b = CanonicalBytes(l);
  // 'R' index(8) len(4) "cold-1"(6) ts(8) device_seq(8) temp(4) rh(4) battery(4)
  ASSERT_EQ(b.size(), 1u + 8 + 4 + 6 + 8 + 8 + 4 + 4 + 4);
  EXPECT_EQ(b[0], 'R');
  EXPECT_EQ(b[8], 3);
  EXPECT_EQ(b.substr(13, 6), "cold-1");
  Link other = l;
  other.temp_dc = -149;
  EXPECT_NE(CanonicalBytes(other), b);
  other = l;
  other.index = 4;
  EXPECT_NE(CanonicalBytes(other), b);
  Link a;
  a.kind = Link::Kind::kAlert;
  a.index = 1;
  a.sensor = "cold-1";
  a.alert_id = "x";
  a.state = "open";
  EXPECT_EQ(CanonicalBytes(a)[0], 'A');
  // h_1 over the genesis is SHA-256 of 32 zero bytes and the canonical bytes: a known vector.
  EXPECT_EQ(Hex(NextHash(GenesisHash(), "")), "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925");
}

TEST(ColdchainVerifier, WholeChainWithSealsIsOk) {
  const SigningKey key = TestKey();
  auto c = Chain({Reading(1, 300, 10), Reading(2, 310, 20), Reading(3, 320, 30)});
  ChainVerifier v(key.public_key());
  v.Start(0, "");
  for (auto& x : c) EXPECT_TRUE(v.AddLink(x.link, x.link.index, x.prev, x.hash));
  EXPECT_TRUE(v.AddSeal(Seal(key, c, 0, 2), 4));
  EXPECT_TRUE(v.ok());
  EXPECT_EQ(v.links(), 3u);
  EXPECT_EQ(v.seals(), 1u);
}

TEST(ColdchainVerifier, AlteredDeletedReorderedAndForgedSealsAreFound) {
  const SigningKey key = TestKey();
  auto c = Chain({Reading(1, 300, 10), Reading(2, 310, 20), Reading(3, 320, 30), Reading(4, 330, 40)});
  {  // altered temperature
    ChainVerifier v(key.public_key());
    v.Start(0, "");
    auto altered = c;
    altered[1].link.temp_dc = 200;
    for (auto& x : altered) v.AddLink(x.link, x.link.index, x.prev, x.hash);
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(v.first_bad()->index, 2u);
    EXPECT_NE(v.first_bad()->reason.find("hash mismatch"), std::string::npos);
  }
  {  // deleted link
    ChainVerifier v(key.public_key());
    v.Start(0, "");
    for (size_t i : {0, 2, 3}) v.AddLink(c[i].link, i + 1, c[i].prev, c[i].hash);
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(v.first_bad()->index, 2u);
    EXPECT_NE(v.first_bad()->reason.find("missing"), std::string::npos);
  }
  {  // two links swapped in place (their contents trade index)
    ChainVerifier v(key.public_key());
    v.Start(0, "");
    auto swapped = c;
    std::swap(swapped[1].link.temp_dc, swapped[2].link.temp_dc);
    std::swap(swapped[1].link.ts_ms, swapped[2].link.ts_ms);
    for (auto& x : swapped) v.AddLink(x.link, x.link.index, x.prev, x.hash);
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(v.first_bad()->index, 2u);
  }
  {  // a seal whose last hash was replaced, and one signed by another key
    ChainVerifier v(key.public_key());
    v.Start(0, "");
    for (auto& x : c) v.AddLink(x.link, x.link.index, x.prev, x.hash);
    auto s = Seal(key, c, 0, 3);
    s.set_last_hash(c[2].hash);
    EXPECT_FALSE(v.AddSeal(s, 9));
    EXPECT_NE(v.first_bad()->reason.find("bad signature"), std::string::npos);
    ChainVerifier w(key.public_key());
    w.Start(0, "");
    for (auto& x : c) w.AddLink(x.link, x.link.index, x.prev, x.hash);
    EXPECT_FALSE(w.AddSeal(Seal(SigningKey::FromSeed(std::string(32, '\x08')), c, 0, 3), 9));
  }
  {  // a range that starts mid-chain is anchored on the link before it
    ChainVerifier v(key.public_key());
    v.Start(2, c[1].hash);
    EXPECT_TRUE(v.AddLink(c[2].link, 3, c[2].prev, c[2].hash));
    ChainVerifier w(key.public_key());
    w.Start(2, c[0].hash);  // the link before was altered since
    EXPECT_FALSE(w.AddLink(c[2].link, 3, c[2].prev, c[2].hash));
  }
}

std::vector<ExportItem> Items(const SigningKey& key, const std::vector<Chained>& c) {
  std::vector<ExportItem> items;
  for (auto& x : c) {
    ExportItem it;
    it.link.link = x.link;
    it.link.seq = x.link.index * 10;
    it.link.chain_prev = x.prev;
    it.link.chain_hash = x.hash;
    items.push_back(it);
  }
  ExportItem s;
  s.is_seal = true;
  s.seal.seq = 99;
  s.seal.seal = Seal(key, c, 0, c.size() - 1);
  items.push_back(s);
  return items;
}

TEST(ColdchainExport, RoundTripThinnedAndTampered) {
  const SigningKey key = TestKey();
  Link alert;
  alert.kind = Link::Kind::kAlert;
  alert.index = 3;
  alert.sensor = "cold-1";
  alert.ts_ms = 25;
  alert.alert_id = "cold-1,x%1";  // escaped
  alert.state = "open";
  alert.alert_kind = "excursion";
  alert.min_c = 0.1;
  alert.max_c = 4.000000000000001;
  alert.started_ts_ms = 20;
  auto c = Chain({Reading(1, 300, 10), Reading(2, 310, 20), alert, Reading(4, -5, 40)});
  ExportHeader h{"s1", "cold-1", 0, 100, 0, ""};
  auto items = Items(key, c);
  const std::string text = WriteExport(h, items, key);
  auto ok = VerifyExport(text, key.public_key());
  EXPECT_TRUE(ok.ok) << ok.error;
  EXPECT_EQ(ok.links, 4u);
  EXPECT_EQ(ok.seals, 1u);

  items[1].link.thinned = true;  // the quota thinned link 2: continuity and seals still hold
  auto thin = VerifyExport(WriteExport(h, items, key), key.public_key());
  EXPECT_TRUE(thin.ok) << thin.error;
  EXPECT_EQ(thin.thinned, 1u);

  // An edit of the file breaks its signature; a re-signed edit (another key) is not the site's.
  std::string edited = text;
  edited.replace(edited.find(",310,"), 5, ",210,");
  EXPECT_FALSE(VerifyExport(edited, key.public_key()).ok);
  const SigningKey other = SigningKey::FromSeed(std::string(32, '\x09'));
  EXPECT_FALSE(VerifyExport(WriteExport(h, items, other), key.public_key()).ok);
  // An export the site key signed over altered data (a tampered store): the chain says where.
  items = Items(key, c);
  items[1].link.link.temp_dc = 210;
  auto bad = VerifyExport(WriteExport(h, items, key), key.public_key());
  ASSERT_FALSE(bad.ok);
  ASSERT_TRUE(bad.first_bad);
  EXPECT_EQ(bad.first_bad->index, 2u);
}

TEST(ColdchainKey, CreatedOnceWith0600AndRefusedWhenOthersCanRead) {
  char dir[] = "/tmp/coldchain-key-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/audit.key";
  auto k1 = SigningKey::LoadOrCreate(path);
  ASSERT_TRUE(k1.ok()) << k1.status().message();
  struct stat st{};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto k2 = SigningKey::LoadOrCreate(path);
  ASSERT_TRUE(k2.ok());
  EXPECT_EQ(k1->public_key(), k2->public_key());
  chmod(path.c_str(), 0644);
  EXPECT_FALSE(SigningKey::Load(path).ok());
  std::ofstream(path, std::ios::trunc) << "zz";
  chmod(path.c_str(), 0600);
  EXPECT_FALSE(SigningKey::Load(path).ok());
  unlink(path.c_str());
  rmdir(dir);
}

TEST(ColdchainKey, PemIsTheRfc8410Form) {
  const std::string pem = PublicKeyPem(TestKey().public_key());
  EXPECT_EQ(pem.rfind("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA", 0), 0u);
}

}  // namespace
}  // namespace freshsync::audit
