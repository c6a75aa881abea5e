#include "tests/support/site_hub.h"

#include <httplib.h>
#include <signal.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "wire/digest.h"

namespace freshsync::testing {

SiteHub::SiteHub(SiteHubOptions options) {
  signal(SIGPIPE, SIG_IGN);  // a peer (hubd) killed mid-request must not kill the test
  std::filesystem::create_directories(dir_.File("pki"));
  pki_ = std::make_unique<TestPki>(dir_.File("pki"));
  if (!pki_->Init()) return;
  const auto client = pki_->Client(kSiteId);
  hub_port_ = PickFreePort();
  const std::string store = options.hub_store.empty() ? "[store]\npath = \"" + dir_.File("hub.db") + "\"\n" : options.hub_store;
  WriteFile(dir_.File("hubd.toml"), "listen = \"127.0.0.1:" + std::to_string(hub_port_) + "\"\nthreads = 4\n[tls]\nca = \"" +
                                        pki_->ca_cert() + "\"\ncert = \"" + pki_->server().cert + "\"\nkey = \"" + pki_->server().key +
                                        "\"\n" + store + "[[tokens]]\nname = \"hq\"\nrole = \"reader\"\n"
                                        "sha256 = \"" + digest::Sha256Hex(kToken) + "\"\n[[tokens]]\nname = \"hq-writer\"\nrole = \"writer\"\n"
                                        "sha256 = \"" + digest::Sha256Hex(kWriterToken) + "\"\n" + options.hub_toml);
  if (!StartHubd()) return;
  proxy_ = std::make_unique<FaultProxy>("127.0.0.1", hub_port_);
  if (!proxy_->Start()) return;
  // The site key reaches edged as edged.service gives it: a systemd credential named in the
  // config by its bare name (key = "site.key", looked up in $CREDENTIALS_DIRECTORY).
  const std::string credentials = dir_.File("credentials");
  std::filesystem::create_directories(credentials);
  std::filesystem::copy_file(client.key, credentials + "/site.key");
  site_ = std::make_unique<Site>("[hub]\nurl = \"https://127.0.0.1:" + std::to_string(proxy_->port()) + "\"\nca = \"" +
                                 pki_->ca_cert() + "\"\ncert = \"" + client.cert + "\"\nkey = \"site.key\"\n" +
                                 options.hub_tuning + options.edge_toml);
  site_->SetEdgedEnv({{"CREDENTIALS_DIRECTORY", credentials}});
  ok_ = true;
}

SiteHub::~SiteHub() {
  site_.reset();
  if (proxy_) proxy_->Stop();
  hubd_.Kill();
}

bool SiteHub::StartHubd() {
  hubd_ = ChildProcess({BinDir() + "/hubd", "--config", dir_.File("hubd.toml")}, dir_.File("hubd.log"),
                       {{"FRESHSYNC_HUB_SHED_FILE_FOR_TEST", dir_.File("shed")}});
  if (!hubd_.Start()) return false;
  return WaitFor(
      [&] {
        httplib::SSLClient c("127.0.0.1", hub_port_);
        c.enable_server_certificate_verification(false);
        c.set_connection_timeout(1);
        return c.Get("/healthz") != nullptr;
      },
      std::chrono::seconds(20));
}

nlohmann::json SiteHub::HqJson(const std::string& path) {
  httplib::SSLClient c("127.0.0.1", hub_port_);
  c.set_ca_cert_path(pki_->ca_cert().c_str());
  c.enable_server_certificate_verification(true);
  c.set_bearer_token_auth(kToken);
  c.set_connection_timeout(2);
  c.set_read_timeout(10);
  auto r = c.Get(path);
  if (!r || r->status != 200) return nlohmann::json();
  return nlohmann::json::parse(r->body, nullptr, false);
}

int SiteHub::HqWrite(const std::string& method, const std::string& path, const std::string& body) {
  httplib::SSLClient c("127.0.0.1", hub_port_);
  c.set_ca_cert_path(pki_->ca_cert().c_str());
  c.enable_server_certificate_verification(true);
  c.set_bearer_token_auth(kWriterToken);
  c.set_connection_timeout(2);
  c.set_read_timeout(10);
  auto r = method == "PUT" ? c.Put(path, body, "application/json") : c.Post(path, body, "application/json");
  return r ? r->status : -1;
}

std::vector<v1::FeedChange> SiteHub::Feed() {
  std::vector<v1::FeedChange> out;
  httplib::SSLClient c("127.0.0.1", hub_port_);
  c.set_ca_cert_path(pki_->ca_cert().c_str());
  c.enable_server_certificate_verification(true);
  c.set_bearer_token_auth(kToken);
  c.set_read_timeout(30);
  uint64_t after = 0;
  while (true) {
    auto r = c.Get("/v1/changes?after=" + std::to_string(after) + "&limit=10000", {{"Accept", "application/x-protobuf"}});
    if (!r || r->status != 200) {
      ADD_FAILURE() << "feed: " << (r ? r->status : -1);
      return out;
    }
    v1::Feed f;
    EXPECT_TRUE(f.ParseFromString(r->body));
    if (f.changes_size() == 0) return out;
    for (auto& ch : *f.mutable_changes()) out.push_back(std::move(ch));
    after = f.next();
  }
}

int64_t SiteHub::HubRecords() {
  nlohmann::json j = HqJson("/v1/sites");
  if (!j.is_object()) return -1;
  for (auto& s : j["sites"])
    if (s["site"] == kSiteId) return s["records"].get<int64_t>();
  return 0;
}

std::map<std::string, int64_t> SiteHub::HubStock() {
  std::map<std::string, int64_t> m;
  nlohmann::json j = HqJson(std::string("/v1/sites/") + kSiteId + "/stock");
  if (j.is_object())
    for (auto& r : j["stock"]) m[r["sku"].get<std::string>()] = r["on_hand"].get<int64_t>();
  return m;
}

int64_t SiteHub::EdgeLastSeq() { return site_->Int("SELECT IFNULL(max(seq), 0) FROM outbox"); }

int64_t SiteHub::EdgeBacklog() {
  return site_->Int("SELECT count(*) FROM outbox WHERE seq > IFNULL((SELECT value FROM sync_state WHERE name = 'acked_seq'), 0)");
}

std::map<std::string, int64_t> SiteHub::EdgeStock() {
  std::map<std::string, int64_t> m;
  const int64_t n = site_->Int("SELECT COUNT(*) FROM stock");
  for (int64_t i = 0; i < n; ++i) {
    const std::string sku = site_->Text("SELECT sku FROM stock ORDER BY sku LIMIT 1 OFFSET " + std::to_string(i));
    m[sku] = site_->Int("SELECT on_hand FROM stock WHERE sku = '" + sku + "'");
  }
  return m;
}

bool SiteHub::WaitSynced(int64_t n, std::chrono::milliseconds timeout) {
  return WaitFor([&] { return EdgeLastSeq() == n && EdgeBacklog() == 0 && HubRecords() == n; }, timeout);
}

std::string SiteHub::CheckFeedExactlyOnce(int64_t last) {
  std::map<uint64_t, int> seqs;
  for (const auto& ch : Feed())
    if (ch.site() == kSiteId) seqs[ch.record().seq()]++;
  if (static_cast<int64_t>(seqs.size()) != last)
    return "feed holds " + std::to_string(seqs.size()) + " distinct seqs, expected " + std::to_string(last);
  for (const auto& [s, n] : seqs)
    if (n != 1) return "seq " + std::to_string(s) + " in the feed " + std::to_string(n) + " times";
  if (!seqs.empty() && (seqs.begin()->first != 1 || static_cast<int64_t>(seqs.rbegin()->first) != last)) return "feed seqs are not 1..last";
  return "";
}

}  // namespace freshsync::testing
