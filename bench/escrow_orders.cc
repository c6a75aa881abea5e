// Escrow orders (docs/escrow.md): HQ orders/s one hubd accepts against a site's allotment
// ("decided_by": "hub"), against the plain downstream order path ("decided_by": "site") in the
// same run, same hubd, same clients. Real hubd (SQLite store), HTTPS with keep-alive, W client
// threads each posting one-line orders back to back.
//
//   1. The site "bench-site" pushes one ESCROW record granting a large allotment (its own
//      certificate, as edged would).
//   2. Baseline: N orders to "plain-site" (no grant): the plain append.
//   3. Escrow: N orders to "bench-site": the decision + `used` + the append, one transaction.
//
// Usage: escrow_orders [--orders N] [--clients W] [--min-rate R]   (hubd from $FRESHSYNC_BIN_DIR)
// --min-rate is issue 17's target (escrow orders/s): a miss prints MISSED|... and exits 3.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "freshsync.pb.h"
#include "hub/codec.h"
#include "tests/support/harness.h"
#include "wire/digest.h"

using namespace freshsync::testing;
using SteadyClock = std::chrono::steady_clock;

namespace {

constexpr const char* kToken = "escrow-bench-writer";

struct Run {
  double secs = 0;
  int64_t ok = 0, hub_decided = 0, errors = 0;
};

Run Post(int port, const std::string& ca, const std::string& site, const std::string& prefix, int orders, int clients) {
  std::atomic<int> next{0};
  std::atomic<int64_t> ok{0}, hub{0}, errors{0};
  const auto t0 = SteadyClock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      httplib::SSLClient cli("127.0.0.1", port);
      cli.set_ca_cert_path(ca.c_str());
      cli.enable_server_certificate_verification(true);
      cli.set_bearer_token_auth(kToken);
      cli.set_keep_alive(true);
      cli.set_tcp_nodelay(true);  // else Nagle and delayed ACKs hold each request ~40 ms
      cli.set_read_timeout(30);
      for (int i; (i = next.fetch_add(1)) < orders;) {
        const std::string body = R"({"order_id":")" + prefix + std::to_string(i) + R"(","lines":[{"sku":"veg-001","qty":1}]})";
        auto r = cli.Post(("/v1/sites/" + site + "/orders").c_str(), body, "application/json");
        if (!r || r->status != 202) {
          errors.fetch_add(1);
          continue;
        }
        ok.fetch_add(1);
        if (r->body.find(R"("decided_by":"hub")") != std::string::npos) hub.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  return {freshsync::bench::Secs(t0, SteadyClock::now()), ok.load(), hub.load(), errors.load()};
}

}  // namespace

int main(int argc, char** argv) {
  int orders = 20000, clients = 8;
  double min_rate = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--orders") orders = std::stoi(argv[i + 1]);
    else if (a == "--clients") clients = std::stoi(argv[i + 1]);
    else if (a == "--min-rate") min_rate = std::stod(argv[i + 1]);
  }
  freshsync::bench::DefaultBinDirToOwn(argv[0]);
  TempDir dir;
  std::filesystem::create_directories(dir.File("pki"));
  TestPki pki(dir.File("pki"));
  if (!pki.Init()) return 1;
  const auto site = pki.Client("bench-site");
  const int port = PickFreePort();
  WriteFile(dir.File("hubd.toml"), "listen = \"127.0.0.1:" + std::to_string(port) + "\"\nthreads = 8\n[tls]\nca = \"" + pki.ca_cert() +
                                       "\"\ncert = \"" + pki.server().cert + "\"\nkey = \"" + pki.server().key +
                                       "\"\n[store]\npath = \"" + dir.File("hub.db") +
                                       "\"\n[[tokens]]\nname = \"hq\"\nrole = \"writer\"\nsha256 = \"" +
                                       freshsync::digest::Sha256Hex(kToken) + "\"\n");
  ChildProcess hubd({BinDir() + "/hubd", "--config", dir.File("hubd.toml")}, dir.File("hubd.log"));
  if (!hubd.Start()) return 1;
  auto health = [&] {
    httplib::SSLClient c("127.0.0.1", port);
    c.set_ca_cert_path(pki.ca_cert().c_str());
    c.enable_server_certificate_verification(true);
    return c.Get("/healthz") != nullptr;
  };
  if (!WaitFor(health, std::chrono::seconds(20))) return 1;

  // The grant, as the site's ESCROW record.
  freshsync::v1::Batch b;
  b.set_site("bench-site");
  auto* r = b.add_records();
  r->set_seq(1);
  r->set_entity(freshsync::v1::ESCROW);
  r->set_key("veg-001");
  r->set_version(1);
  r->set_hlc(uint64_t{1764000000000} << 16);
  r->set_ts_ms(1764000000000);
  auto* e = r->mutable_escrow();
  e->set_sku("veg-001");
  e->set_given(int64_t{1} << 40);
  e->set_held(int64_t{1} << 40);
  e->set_target(int64_t{1} << 40);
  {
    httplib::SSLClient c("127.0.0.1", port, site.cert, site.key);
    c.set_ca_cert_path(pki.ca_cert().c_str());
    c.enable_server_certificate_verification(true);
    auto res = c.Post("/v1/sites/bench-site/batches", {{"Content-Encoding", "zstd"}},
                      freshsync::hub::ZstdCompress(b.SerializeAsString(), 1), "application/x-protobuf");
    if (!res || res->status != 200) {
      std::fprintf(stderr, "escrow_orders: the grant was not accepted (%d)\n", res ? res->status : -1);
      return 1;
    }
  }

  // CPU of hubd and of this process (the clients' TLS and HTTP, on the same cores) per path.
  const double cpu0 = freshsync::bench::CpuSecondsOf(hubd.pid()), self0 = freshsync::bench::SelfCpuSeconds();
  const Run plain = Post(port, pki.ca_cert(), "plain-site", "p-", orders, clients);
  const double cpu1 = freshsync::bench::CpuSecondsOf(hubd.pid()), self1 = freshsync::bench::SelfCpuSeconds();
  const Run escrow = Post(port, pki.ca_cert(), "bench-site", "e-", orders, clients);
  const double cpu2 = freshsync::bench::CpuSecondsOf(hubd.pid()), self2 = freshsync::bench::SelfCpuSeconds();
  std::printf("escrow_orders: %d orders per path, %d clients, one hubd (SQLite store)\n", orders, clients);
  auto line = [](const char* name, const Run& r, double hub_cpu, double client_cpu) {
    std::printf("  %s %8.0f orders/s  (%lld accepted 202, %lld by the hub, %lld errors), hubd cpu %.2f s = %.0f us/order, "
                "client cpu %.2f s = %.0f us/order\n",
                name, static_cast<double>(r.ok) / r.secs, static_cast<long long>(r.ok), static_cast<long long>(r.hub_decided),
                static_cast<long long>(r.errors), hub_cpu, hub_cpu * 1e6 / static_cast<double>(std::max<int64_t>(1, r.ok)),
                client_cpu, client_cpu * 1e6 / static_cast<double>(std::max<int64_t>(1, r.ok)));
  };
  line("plain downstream order path:", plain, cpu1 - cpu0, self1 - self0);
  line("escrow (decided by the hub):", escrow, cpu2 - cpu1, self2 - self1);
  hubd.Kill();
  // The summary lines of scripts/bench.sh.
  const double plain_rate = static_cast<double>(plain.ok) / plain.secs, escrow_rate = static_cast<double>(escrow.ok) / escrow.secs;
  auto us_per = [](double cpu, const Run& r) { return cpu * 1e6 / static_cast<double>(std::max<int64_t>(1, r.ok)); };
  std::printf("RESULT|plain downstream orders, %d clients (baseline): orders/s, hubd CPU per order|%.0f/s, %.0f us|\n", clients, plain_rate,
              us_per(cpu1 - cpu0, plain));
  std::printf("RESULT|escrow orders decided by the hub: orders/s, ratio to plain, hubd CPU per order|%.0f/s, %.2f, %.0f us|%s\n", escrow_rate,
              escrow_rate / std::max(1.0, plain_rate), us_per(cpu2 - cpu1, escrow),
              min_rate > 0 ? (">= " + std::to_string(static_cast<int>(min_rate)) + "/s").c_str() : "");
  const bool exact = escrow.hub_decided == escrow.ok && escrow.errors == 0;
  if (!exact) return 2;
  if (min_rate > 0 && escrow_rate < min_rate) {
    std::printf("MISSED|escrow orders %.0f/s < %.0f/s\n", escrow_rate, min_rate);
    return 3;
  }
  return 0;
}
