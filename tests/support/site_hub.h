// An edge site synced to a hub, for integration tests: a test PKI, a real hubd over mutual TLS,
// a FaultProxy between them, and a Site (tests/ingest/site.h: Mosquitto + edged) whose sync
// agent talks to the hub through the proxy. Plus read access to HQ's API. Test-only.
//
// Link: freshsync_site_hub_fixture (tests/CMakeLists.txt).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "freshsync.pb.h"
#include "tests/ingest/site.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/harness.h"

namespace freshsync::testing {

struct SiteHubOptions {
  std::string edge_toml;   // appended to edged.toml after the [hub] table (e.g. more tables)
  std::string hub_tuning = "batch_max_records = 500\ntimeout_ms = 3000\nbackoff_initial_ms = 50\n"
                           "backoff_max_ms = 2000\nreconcile_interval_s = 2\n";  // inside [hub]
  std::string hub_toml;    // appended to hubd.toml after its [[tokens]] (e.g. a [limits] table)
  std::string hub_store;   // hubd's [store] table; "" = a SQLite file, hub_db()
};

class SiteHub {
 public:
  static constexpr const char* kSiteId = "test-site";  // tests/ingest/site.cc names its site so
  static constexpr const char* kToken = "hq-reader-token-for-tests";
  static constexpr const char* kWriterToken = "hq-writer-token-for-tests";  // HQ writes (downstream)

  // Sets everything up and starts hubd (not edged). Check ok() before use.
  explicit SiteHub(SiteHubOptions options = {});
  ~SiteHub();
  bool ok() const { return ok_; }

  Site& site() { return *site_; }
  FaultProxy& proxy() { return *proxy_; }
  TempDir& dir() { return dir_; }
  TestPki& pki() { return *pki_; }
  // hubd's own HTTPS port (the site reaches it through proxy(); HQ and attackers directly).
  int hub_port() const { return hub_port_; }
  pid_t hub_pid() const { return hubd_.pid(); }
  std::string hub_db() const { return dir_.File("hub.db"); }

  bool StartHubd();
  void KillHubd() { hubd_.Kill(); }
  int StopHubd() { return hubd_.Stop(); }
  std::string HubLog() const { return ReadFile(dir_.File("hubd.log")); }

  // HQ's API (bearer token, CA-verified TLS).
  nlohmann::json HqJson(const std::string& path);
  std::vector<v1::FeedChange> Feed();          // the whole change feed
  int64_t HubRecords();                        // records the hub holds for the site; -1: no answer
  std::map<std::string, int64_t> HubStock();   // sku -> on_hand at HQ
  // An HQ write (writer token, JSON body): the HTTP status, -1 without an answer.
  int HqWrite(const std::string& method, const std::string& path, const std::string& body);

  int64_t EdgeLastSeq();
  int64_t EdgeBacklog();
  std::map<std::string, int64_t> EdgeStock();
  // The hub holds all `n` records and the edge backlog is zero.
  bool WaitSynced(int64_t n, std::chrono::milliseconds timeout = std::chrono::seconds(120));
  // The feed holds seq 1..last for the site exactly once; returns a description of what is
  // wrong, "" when all is well.
  std::string CheckFeedExactlyOnce(int64_t last);

 private:
  TempDir dir_;
  std::unique_ptr<TestPki> pki_;
  int hub_port_ = 0;
  ChildProcess hubd_;
  std::unique_ptr<FaultProxy> proxy_;
  std::unique_ptr<Site> site_;
  bool ok_ = false;
};

}  // namespace freshsync::testing
