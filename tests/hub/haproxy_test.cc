// The documented deployment's load balancer, for real: HAProxy (Debian's) in TCP mode runs
// packaging/haproxy/freshsync-hub.cfg, with only its bind and server addresses replaced, in front
// of the real hubd. TLS passes through, so the site's client certificate reaches hubd (a site may
// push its own batches and no other site's), HQ's bearer token works through it, and a replica
// that is down costs a request nothing (redispatch, then the health check).
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

#include "tests/hub/hubd_fixture.h"

namespace freshsync::testing {
namespace {

std::string ShippedConfig() {
  std::ifstream in(std::string(FRESHSYNC_SOURCE_DIR) + "/packaging/haproxy/freshsync-hub.cfg");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class HaproxyTest : public HubdTest {
 protected:
  // Starts HAProxy with the shipped file in front of `backends` (host:port), and points the
  // fixture's site and HQ clients at HAProxy.
  void StartHaproxy(const std::vector<std::string>& backends) {
    std::string cfg = ShippedConfig();
    ASSERT_NE(cfg.find("mode tcp"), std::string::npos) << "the shipped config no longer passes TLS through";
    hub_port_ = port_;
    front_port_ = PickFreePort();
    cfg = std::regex_replace(cfg, std::regex("bind :8443"), "bind 127.0.0.1:" + std::to_string(front_port_));
    cfg = std::regex_replace(cfg, std::regex("\n *server hub[^\n]*"), "");
    for (size_t i = 0; i < backends.size(); ++i) cfg += "    server test" + std::to_string(i) + " " + backends[i] + "\n";
    WriteFile(dir_.File("haproxy.cfg"), cfg);
    haproxy_ = ChildProcess({"haproxy", "-db", "-f", dir_.File("haproxy.cfg")}, dir_.File("haproxy.log"));
    ASSERT_TRUE(haproxy_.Start());
    port_ = front_port_;  // from here on the fixture's clients go through HAProxy
    ASSERT_TRUE(WaitFor(
        [&] {
          auto r = Hq("")->Get("/healthz");
          return r && r->status == 200;
        },
        std::chrono::seconds(20)))
        << ReadFile(dir_.File("haproxy.log"));
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- haproxy log\n" << ReadFile(dir_.File("haproxy.log")) << "\n";
    haproxy_.Kill();
    HubdTest::TearDown();
  }

  int hub_port_ = 0;
  int front_port_ = 0;
  ChildProcess haproxy_;
};

TEST_F(HaproxyTest, TheSiteCertificatePassesThroughToHubd) {
  StartHaproxy({"127.0.0.1:" + std::to_string(port_)});

  auto site_a = Site(site_a_);
  v1::BatchAck ack = Ack(Push(*site_a, "site-a", BatchBody("site-a", 1, 20)));
  EXPECT_EQ(ack.contiguous_seq(), 20u) << ack.error();

  // hubd saw site-a's certificate, not HAProxy: site-a may not push for site-b.
  auto refused = Push(*site_a, "site-b", BatchBody("site-b", 1, 5));
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 403) << refused->body;

  // HQ's bearer token works through it, and reads what site-a pushed.
  json sites = GetJson("/v1/sites");
  ASSERT_TRUE(sites.is_object()) << sites.dump();
  bool found = false;
  for (const auto& s : sites["sites"]) found |= s["site"] == "site-a" && s["contiguous_seq"] == 20;
  EXPECT_TRUE(found) << sites.dump();
  GetJson("/v1/sites", "not-a-token", 401);

  // The audit log names the site from its certificate.
  EXPECT_TRUE(WaitFor([&] { return ReadFile(dir_.File("audit.jsonl")).find("\"actor\":\"site-a\"") != std::string::npos; },
                      std::chrono::seconds(5)))
      << ReadFile(dir_.File("audit.jsonl"));
}

TEST_F(HaproxyTest, AReplicaThatIsDownCostsNoRequest) {
  // The second replica is down from the start (nothing listens there): connections refused by
  // it are redispatched to the live one, and the health check then takes it out.
  StartHaproxy({"127.0.0.1:" + std::to_string(PickFreePort()), "127.0.0.1:" + std::to_string(port_)});
  auto site_a = Site(site_a_);
  for (uint64_t batch = 0; batch < 20; ++batch) {
    site_a = Site(site_a_);  // a new connection each time, so that each one is balanced anew
    v1::BatchAck ack = Ack(Push(*site_a, "site-a", BatchBody("site-a", batch * 10 + 1, batch * 10 + 10)));
    EXPECT_EQ(ack.contiguous_seq(), batch * 10 + 10) << "batch " << batch << ": " << ack.error();
  }
}

}  // namespace
}  // namespace freshsync::testing
