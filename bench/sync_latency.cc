// End-to-end latency: MQTT publish at the site -> visible in the HQ change feed, at a steady
// 1,000 msg/s. Real Mosquitto, real edged (with its sync agent), real hubd over mutual TLS,
// all on loopback. A poller reads the feed every 5 ms; latency is feed arrival minus the
// moment the message was handed to the MQTT client.
//
// Usage: sync_latency [--rate N] [--seconds S]   (edged and hubd from $FRESHSYNC_BIN_DIR)
#include <httplib.h>
#include <openssl/sha.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "bench/bench_util.h"
#include "freshsync.pb.h"
#include "tests/ingest/site.h"
#include "tests/support/harness.h"

using namespace freshsync::testing;
using SteadyClock = std::chrono::steady_clock;

namespace {

std::string Sha256Hex(const std::string& s) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(s.data()), s.size(), d);
  std::string out;
  for (unsigned char c : d) {
    static const char* hex = "0123456789abcdef";
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 15]);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int rate = 1000, seconds = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--rate") rate = std::stoi(argv[i + 1]);
    else if (a == "--seconds") seconds = std::stoi(argv[i + 1]);
  }
  freshsync::bench::DefaultBinDirToOwn(argv[0]);
  const std::string token = "latency-bench-reader";
  TempDir dir;
  std::filesystem::create_directories(dir.File("pki"));
  TestPki pki(dir.File("pki"));
  if (!pki.Init()) return 1;
  auto client = pki.Client("test-site");
  const int hub_port = PickFreePort();
  WriteFile(dir.File("hubd.toml"), "listen = \"127.0.0.1:" + std::to_string(hub_port) + "\"\n[tls]\nca = \"" + pki.ca_cert() +
                                       "\"\ncert = \"" + pki.server().cert + "\"\nkey = \"" + pki.server().key +
                                       "\"\n[store]\npath = \"" + dir.File("hub.db") +
                                       "\"\n[[tokens]]\nname = \"hq\"\nrole = \"reader\"\nsha256 = \"" + Sha256Hex(token) + "\"\n");
  ChildProcess hubd({BinDir() + "/hubd", "--config", dir.File("hubd.toml")}, dir.File("hubd.log"));
  if (!hubd.Start()) return 1;
  auto hq = [&] {
    auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", hub_port);
    c->set_ca_cert_path(pki.ca_cert().c_str());
    c->enable_server_certificate_verification(true);
    c->set_bearer_token_auth(token);
    return c;
  };
  if (!WaitFor([&] { return hq()->Get("/healthz") != nullptr; }, std::chrono::seconds(20))) return 1;
  // Defaults of [hub] except the certificates: what a site runs with.
  Site site("[hub]\nurl = \"https://127.0.0.1:" + std::to_string(hub_port) + "\"\nca = \"" + pki.ca_cert() +
            "\"\ncert = \"" + client.cert + "\"\nkey = \"" + client.key + "\"\n");
  if (!site.StartEdged()) {
    std::fprintf(stderr, "edged did not start\n%s\n", site.log().c_str());
    return 1;
  }
  std::mutex mu;
  std::map<uint64_t, SteadyClock::time_point> sent;  // device seq -> publish time
  std::vector<double> lat_ms;
  std::atomic<bool> done{false};
  const uint64_t total = static_cast<uint64_t>(rate) * seconds;
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
          if (!ch.record().has_position()) continue;
          auto it = sent.find(ch.record().position().device_seq());
          if (it != sent.end()) lat_ms.push_back(std::chrono::duration<double, std::milli>(now - it->second).count());
        }
        if (f.changes_size() > 0) after = f.next();
        if (lat_ms.size() >= total) done = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  auto pub = site.NewPublisher("latency-pub");
  const auto start = SteadyClock::now();
  for (uint64_t i = 1; i <= total; ++i) {
    const auto due = start + std::chrono::microseconds(static_cast<int64_t>((i - 1) * 1'000'000 / rate));
    std::this_thread::sleep_until(due);
    char payload[160];
    std::snprintf(payload, sizeof(payload), R"({"seq":%llu,"lat":31.2%05llu,"lon":121.5,"ts":%lld})",
                  static_cast<unsigned long long>(i), static_cast<unsigned long long>(i % 100000),
                  1764000000000LL + static_cast<long long>(i) * 1000);
    {
      std::lock_guard<std::mutex> lock(mu);
      sent[i] = SteadyClock::now();
    }
    pub->Publish({"fs/vehicles/truck-lat/gps", payload}, 1000);
  }
  pub->Flush();
  const auto deadline = SteadyClock::now() + std::chrono::seconds(60);
  while (!done && SteadyClock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  done = true;
  poller.join();
  std::lock_guard<std::mutex> lock(mu);
  if (lat_ms.size() < total) {
    std::fprintf(stderr, "only %zu of %llu records reached HQ\n", lat_ms.size(), static_cast<unsigned long long>(total));
    return 1;
  }
  std::sort(lat_ms.begin(), lat_ms.end());
  auto pct = [&](double p) { return lat_ms[std::min(lat_ms.size() - 1, static_cast<size_t>(p * lat_ms.size()))]; };
  std::printf("latency MQTT publish -> HQ feed at %d msg/s, %zu records: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms\n",
              rate, lat_ms.size(), pct(0.50), pct(0.90), pct(0.99), lat_ms.back());
  std::printf("RESULT|latency MQTT publish -> HQ feed at %d msg/s, p50 / p99|%.0f / %.0f ms|p99 <= 250 ms\n", rate,
              pct(0.50), pct(0.99));
  return 0;
}
