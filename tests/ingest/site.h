// A test site: a real Mosquitto, an edged config, the edged process, a Paho publisher and
// read access to the store. Test-only.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <mqtt/async_client.h>

#include "tests/support/harness.h"

namespace freshsync::testing {

struct Msg {
  std::string topic;
  std::string payload;
};

// Publishes QoS 1 from the test process.
class Publisher {
 public:
  Publisher(const std::string& uri, const std::string& client_id);
  ~Publisher();
  // Windowed: at most `window` unacknowledged publishes in flight.
  void Publish(const Msg& m, size_t window = 200);
  // Waits for every outstanding publish.
  void Flush();
  // One at a time, waiting for the broker's PUBACK, reconnecting and resending on any failure
  // (at least once: a message may arrive twice, never zero times).
  void PublishReliably(const Msg& m);

 private:
  void Connect();
  std::unique_ptr<mqtt::async_client> client_;
  std::deque<mqtt::delivery_token_ptr> pending_;
};

// Collects what arrives on a topic filter.
class Subscriber {
 public:
  Subscriber(const std::string& uri, const std::string& client_id, const std::string& filter);
  ~Subscriber();
  std::vector<std::string> Payloads();

 private:
  std::unique_ptr<mqtt::async_client> client_;
  std::mutex mu_;
  std::vector<std::string> payloads_;
};

struct SiteOptions {
  std::string extra_toml;      // appended to edged.toml (after [store])
  std::string broker_conf;     // appended to mosquitto.conf
  // Replaces the [mqtt] table (given the broker's plain URI); empty: plain TCP to the broker.
  std::function<std::string(const std::string& plain_uri)> mqtt_table;
  std::string root_toml;       // top-level keys, placed before the first table
  std::string store_dir;       // where edge.db lives; empty: the site's temp dir
  std::string site_id = "test-site";
};

class Site {
 public:
  explicit Site(std::string extra_toml = "") : Site(SiteOptions{std::move(extra_toml), "", nullptr, "", ""}) {}
  explicit Site(SiteOptions options);
  ~Site();
  MosquittoBroker& broker() { return *broker_; }
  const std::string& config_path() const { return config_path_; }
  const std::string& db_path() const { return db_path_; }
  std::string log() const { return ReadFile(log_path_); }

  // Starts edged and waits until it has subscribed (counted from the log).
  bool StartEdged(std::map<std::string, std::string> env = {}, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // Environment every StartEdged adds (a call's own `env` wins), e.g. CREDENTIALS_DIRECTORY.
  void SetEdgedEnv(std::map<std::string, std::string> env) { edged_env_ = std::move(env); }
  void KillEdged() { edged_.Kill(); }
  void SignalEdged(int sig) { edged_.Signal(sig); }
  int StopEdged() { return edged_.Stop(); }
  bool EdgedRunning() { return edged_.Running(); }

  // SQL on the store (a fresh read-only connection each time).
  int64_t Int(const std::string& sql) const;
  std::string Text(const std::string& sql) const;
  // Waits until `sql` returns `value`.
  bool WaitInt(const std::string& sql, int64_t value, std::chrono::milliseconds timeout = std::chrono::seconds(120)) const;

  std::unique_ptr<Publisher> NewPublisher(const std::string& id);

 private:
  TempDir dir_;
  std::unique_ptr<MosquittoBroker> broker_;
  std::string config_path_, db_path_, log_path_;
  ChildProcess edged_;
  std::map<std::string, std::string> edged_env_;
  int starts_ = 0;
};
// The same class for tests on the hubd fixture (tests/hub/hubd_fixture.h), whose member Site()
// (a site's HTTPS client) hides this name inside the fixture.
using EdgeSite = Site;

// The checks every ingest test ends with: seq is dense and unique.
void ExpectDenseOutbox(const Site& site);

}  // namespace freshsync::testing
