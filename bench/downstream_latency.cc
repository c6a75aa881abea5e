// Downstream: HQ POST -> the command applied at the site, and a backlog's drain after an outage.
// Real Mosquitto, real edged (sync agent and downstream puller), real hubd over mutual TLS, on
// loopback, with the same configs for the measured path and its baseline.
//
//   1. Baseline, the plain upstream: a local order published at the site's broker -> its ORDER
//      record in HQ's change feed (polled every 5 ms).
//   2. Downstream: POST /v1/sites/{site}/orders -> the order's retained state on
//      {root}/orders/{id}/state at the site's broker (the site has reserved it and committed).
//   3. Backlog: with edged stopped, HQ posts --backlog orders; then edged starts, and the drain
//      rate is the commands applied per second until the site's applied down_seq reaches the
//      last one (read from `edgectl status --json`, as an operator would).
//
// Usage: downstream_latency [--orders N] [--rate R] [--backlog B]   (daemons from $FRESHSYNC_BIN_DIR)
#include <httplib.h>
#include <mqtt/async_client.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "freshsync.pb.h"
#include "tests/ingest/site.h"
#include "tests/support/harness.h"
#include "wire/digest.h"

using namespace freshsync::testing;
using SteadyClock = std::chrono::steady_clock;
using nlohmann::json;

namespace {

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

double Ms(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Arrival times of the retained order states edged publishes, by order id.
class StateWatcher : public virtual mqtt::callback {
 public:
  explicit StateWatcher(const std::string& uri) : client_(uri, "downstream-bench-watch") {
    client_.set_callback(*this);
    auto opts = mqtt::connect_options_builder().clean_session(true).finalize();
    client_.connect(opts)->wait();
    client_.subscribe("fs/orders/+/state", 1)->wait();
  }
  ~StateWatcher() override {
    try {
      client_.disconnect()->wait();
    } catch (...) {
    }
  }
  void message_arrived(mqtt::const_message_ptr msg) override {
    const auto now = SteadyClock::now();
    const std::string& t = msg->get_topic();  // fs/orders/{id}/state
    const auto a = t.find('/', 3), b = t.rfind('/');
    if (a == std::string::npos || b <= a) return;
    std::lock_guard<std::mutex> lock(mu_);
    seen_.emplace(t.substr(a + 1, b - a - 1), now);
  }
  std::optional<SteadyClock::time_point> Seen(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = seen_.find(id);
    if (it == seen_.end()) return std::nullopt;
    return it->second;
  }

 private:
  mqtt::async_client client_;
  std::mutex mu_;
  std::map<std::string, SteadyClock::time_point> seen_;
};

}  // namespace

int main(int argc, char** argv) {
  int orders = 300, rate = 20, backlog = 100000;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--orders") orders = std::stoi(argv[i + 1]);
    else if (a == "--rate") rate = std::stoi(argv[i + 1]);
    else if (a == "--backlog") backlog = std::stoi(argv[i + 1]);
  }
  freshsync::bench::DefaultBinDirToOwn(argv[0]);
  const std::string token = "downstream-bench-writer";
  TempDir dir;
  std::filesystem::create_directories(dir.File("pki"));
  TestPki pki(dir.File("pki"));
  if (!pki.Init()) return 1;
  auto client = pki.Client("test-site");
  const int hub_port = PickFreePort();
  WriteFile(dir.File("hubd.toml"), "listen = \"127.0.0.1:" + std::to_string(hub_port) + "\"\n[tls]\nca = \"" + pki.ca_cert() +
                                       "\"\ncert = \"" + pki.server().cert + "\"\nkey = \"" + pki.server().key +
                                       "\"\n[store]\npath = \"" + dir.File("hub.db") +
                                       "\"\n[[tokens]]\nname = \"hq\"\nrole = \"writer\"\nsha256 = \"" + freshsync::digest::Sha256Hex(token) + "\"\n");
  ChildProcess hubd({BinDir() + "/hubd", "--config", dir.File("hubd.toml")}, dir.File("hubd.log"));
  if (!hubd.Start()) return 1;
  auto hq = [&] {
    auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", hub_port);
    c->set_ca_cert_path(pki.ca_cert().c_str());
    c->enable_server_certificate_verification(true);
    c->set_bearer_token_auth(token);
    c->set_read_timeout(30, 0);
    c->set_keep_alive(true);  // as an HQ client would: one TLS handshake per connection, not per POST
    c->set_tcp_nodelay(true);  // with keep-alive, Nagle and delayed ACKs would add ~40 ms per request
    return c;
  };
  if (!WaitFor([&] { return hq()->Get("/healthz") != nullptr; }, std::chrono::seconds(20))) return 1;
  Site site("[hub]\nurl = \"https://127.0.0.1:" + std::to_string(hub_port) + "\"\nca = \"" + pki.ca_cert() +
            "\"\ncert = \"" + client.cert + "\"\nkey = \"" + client.key + "\"\n");
  if (!site.StartEdged()) {
    std::fprintf(stderr, "edged did not start\n%s\n", site.log().c_str());
    return 1;
  }
  auto pub = site.NewPublisher("downstream-bench-pub");
  // Stock for every order of the run: HQ orders and local ones reserve 1 unit each.
  pub->Publish({"fs/stock/movements", R"({"id":"seed-1","sku":"veg-001","delta":100000000,"reason":"receive","ts":1764000000000})"});
  pub->Flush();
  if (!site.WaitInt("SELECT IFNULL(SUM(on_hand), 0) FROM stock WHERE sku = 'veg-001'", 100000000, std::chrono::seconds(30))) {
    std::fprintf(stderr, "the seed stock did not arrive\n");
    return 1;
  }
  StateWatcher watcher(site.broker().Uri());
  const auto period = std::chrono::microseconds(1'000'000 / std::max(1, rate));

  // 1. Baseline: local orders, MQTT publish -> HQ feed.
  std::vector<double> up_ms;
  {
    std::mutex mu;
    std::map<std::string, SteadyClock::time_point> sent;
    std::atomic<bool> done{false};
    std::thread poller([&] {
      auto c = hq();
      uint64_t after = 0;
      while (!done) {
        auto r = c->Get("/v1/changes?after=" + std::to_string(after) + "&limit=10000", {{"Accept", "application/x-protobuf"}});
        const auto now = SteadyClock::now();
        freshsync::v1::Feed f;
        if (r && r->status == 200 && f.ParseFromString(r->body)) {
          std::lock_guard<std::mutex> lock(mu);
          for (const auto& ch : f.changes()) {
            if (!ch.record().has_order()) continue;
            auto it = sent.find(ch.record().order().order_id());
            if (it == sent.end()) continue;
            up_ms.push_back(Ms(it->second, now));
            sent.erase(it);
          }
          if (f.changes_size() > 0) after = f.next();
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
    const auto start = SteadyClock::now();
    for (int i = 1; i <= orders; ++i) {
      std::this_thread::sleep_until(start + (i - 1) * period);
      const std::string id = "local-" + std::to_string(i);
      {
        std::lock_guard<std::mutex> lock(mu);
        sent[id] = SteadyClock::now();
      }
      pub->Publish({"fs/orders/status", R"({"order_id":")" + id + R"(","status":"created","ts":)" +
                                           std::to_string(1764000000000LL + i) +
                                           R"(,"lines":[{"sku":"veg-001","qty":1}]})"});
    }
    pub->Flush();
    WaitFor([&] { std::lock_guard<std::mutex> lock(mu); return static_cast<int>(up_ms.size()) >= orders; }, std::chrono::seconds(60));
    done = true;
    poller.join();
  }
  if (static_cast<int>(up_ms.size()) < orders) {
    std::fprintf(stderr, "baseline: only %zu of %d local orders reached HQ\n", up_ms.size(), orders);
    return 1;
  }

  // 2. Downstream: HQ POST -> retained state at the site.
  std::vector<double> down_ms;
  {
    auto c = hq();
    const auto start = SteadyClock::now();
    std::vector<std::pair<std::string, SteadyClock::time_point>> posted;
    for (int i = 1; i <= orders; ++i) {
      std::this_thread::sleep_until(start + (i - 1) * period);
      const std::string id = "hq-" + std::to_string(i);
      const auto t0 = SteadyClock::now();
      auto r = c->Post("/v1/sites/test-site/orders", R"({"order_id":")" + id + R"(","lines":[{"sku":"veg-001","qty":1}]})",
                       "application/json");
      if (!r || r->status != 202) {
        std::fprintf(stderr, "POST order %s: %d %s\n", id.c_str(), r ? r->status : -1, r ? r->body.c_str() : "no answer");
        return 1;
      }
      posted.emplace_back(id, t0);
    }
    WaitFor([&] { return watcher.Seen(posted.back().first).has_value(); }, std::chrono::seconds(60));
    for (const auto& [id, t0] : posted)
      if (auto t = watcher.Seen(id)) down_ms.push_back(Ms(t0, *t));
  }
  if (static_cast<int>(down_ms.size()) < orders) {
    std::fprintf(stderr, "downstream: only %zu of %d HQ orders reached the site\n", down_ms.size(), orders);
    return 1;
  }

  // 3. A backlog after an outage.
  double drain_rate = 0, post_rate = 0;
  if (backlog > 0) {
    site.StopEdged();
    const auto p0 = SteadyClock::now();
    std::atomic<int> next{0}, failed{0};
    std::vector<std::thread> posters;
    for (int t = 0; t < 4; ++t)
      posters.emplace_back([&] {
        auto c = hq();
        for (int i = next++; i < backlog; i = next++) {
          auto r = c->Post("/v1/sites/test-site/orders",
                           R"({"order_id":"backlog-)" + std::to_string(i) + R"(","lines":[{"sku":"veg-001","qty":1}]})",
                           "application/json");
          if (!r || r->status != 202) ++failed;
        }
      });
    for (auto& t : posters) t.join();
    post_rate = backlog / freshsync::bench::Secs(p0, SteadyClock::now());
    if (failed > 0) {
      std::fprintf(stderr, "backlog: %d posts failed\n", failed.load());
      return 1;
    }
    auto pending = json::parse(hq()->Get("/v1/sites/test-site/downstream")->body, nullptr, false);
    const int64_t last = pending.value("last_seq", int64_t{0});
    const auto d0 = SteadyClock::now();
    if (!site.StartEdged()) return 1;
    const bool drained = site.WaitInt("SELECT IFNULL((SELECT value FROM sync_state WHERE name = 'down_applied_seq'), 0) >= " +
                                          std::to_string(last),
                                      1, std::chrono::seconds(600));
    const double secs = freshsync::bench::Secs(d0, SteadyClock::now());
    if (!drained) {
      std::fprintf(stderr, "backlog: not drained in %.0f s\n", secs);
      return 1;
    }
    drain_rate = backlog / secs;
  }

  const double up99 = Pct(up_ms, 0.99), down50 = Pct(down_ms, 0.50), down99 = Pct(down_ms, 0.99);
  std::printf("baseline upstream (local order -> HQ feed), %zu orders: p50 %.1f ms, p99 %.1f ms\n", up_ms.size(),
              Pct(up_ms, 0.5), up99);
  std::printf("downstream (HQ POST -> retained state at the site), %zu orders at %d/s: p50 %.1f ms, p99 %.1f ms (%.2fx the upstream p99)\n",
              down_ms.size(), rate, down50, down99, up99 > 0 ? down99 / up99 : 0);
  std::printf("RESULT|downstream HQ POST -> applied at site, p50 / p99 (upstream p99 baseline)|%.0f / %.0f ms (%.0f ms)|p99 <= 300 ms\n",
              down50, down99, up99);
  if (backlog > 0) {
    std::printf("backlog of %d orders: posted at %.0f/s, drained at %.0f commands/s\n", backlog, post_rate, drain_rate);
    std::printf("RESULT|downstream backlog of %d commands drained after an outage|%.0f commands/s|>= 10,000/s\n", backlog,
                drain_rate);
  }
  return 0;
}
