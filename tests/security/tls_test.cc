// Every listener speaks TLS 1.2 or later with forward-secret AEAD ciphers only: hubd, edged's
// metrics endpoint (with [metrics] tls_cert/tls_key) and the TLS listeners of the shipped
// Mosquitto config. Probed with the openssl CLI: TLS 1.1 and a non-forward-secret TLS 1.2
// cipher are refused, TLS 1.2 and 1.3 work. A control server that does accept TLS 1.1 proves
// that the probe itself can speak TLS 1.1 (Debian's OpenSSL refuses it by default, which would
// make "refused" pass for the wrong reason).
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "tests/hub/hubd_fixture.h"
#include "tests/ingest/site.h"

namespace freshsync::testing {
namespace {

// Probes 127.0.0.1:port with `openssl s_client` and returns the negotiated protocol
// ("TLSv1.2"), or "" when the handshake failed.
std::string Handshake(int port, const std::string& args, const std::string& log) {
  std::remove(log.c_str());  // RunShell appends
  // s_client's exit status also reports a close after the handshake: read its output instead.
  (void)RunShell("echo | timeout 10 openssl s_client -connect 127.0.0.1:" + std::to_string(port) + " " + args, log);
  const std::string out = ReadFile(log);
  const size_t c = out.find("Cipher is ");
  if (c == std::string::npos || out.compare(c + 10, 6, "(NONE)") == 0) return "";
  const size_t p = out.find("Protocol  : ");
  if (p != std::string::npos) return out.substr(p + 12, out.find('\n', p) - p - 12);
  // With TLS 1.3 the session block waits for a ticket, which a server need not send before
  // the client leaves; the "New, ..." line then names the version (TLS 1.3 suites are 1.3 only).
  if (out.find("New, TLSv1.3, Cipher is ") != std::string::npos) return "TLSv1.3";
  return "?";
}

// Forward secret but CBC with SHA-1/SHA-384 MACs: not in "ECDHE+AESGCM:ECDHE+CHACHA20".
constexpr const char* kCbcCiphers = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:@SECLEVEL=0";

// The expectations every listener must meet.
void ExpectModernTlsOnly(int port, TempDir& dir, const std::string& name) {
  // SECLEVEL=0 lets the client offer TLS 1.1 and legacy ciphers at all.
  EXPECT_EQ(Handshake(port, "-tls1_1 -cipher 'ALL:@SECLEVEL=0'", dir.File(name + "-tls11.log")), "")
      << name << " accepted TLS 1.1:\n" << ReadFile(dir.File(name + "-tls11.log"));
  EXPECT_EQ(Handshake(port, "-tls1 -cipher 'ALL:@SECLEVEL=0'", dir.File(name + "-tls10.log")), "") << name << " accepted TLS 1.0";
  EXPECT_EQ(Handshake(port, "-tls1_2 -cipher '" + std::string(kCbcCiphers) + "'", dir.File(name + "-cbc.log")), "")
      << name << " accepted a TLS 1.2 cipher that is not AEAD";
  EXPECT_EQ(Handshake(port, "-tls1_2", dir.File(name + "-tls12.log")), "TLSv1.2") << ReadFile(dir.File(name + "-tls12.log"));
  EXPECT_EQ(Handshake(port, "-tls1_3", dir.File(name + "-tls13.log")), "TLSv1.3") << ReadFile(dir.File(name + "-tls13.log"));
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    signal(SIGPIPE, SIG_IGN);
    ASSERT_TRUE(pki_.Init());
  }
  TempDir dir_;
  TestPki pki_{dir_.File("pki")};
};

TEST_F(TlsTest, ProbeCanSpeakTls11AndCbc) {
  const int port = PickFreePort();
  // s_server quits when its stdin closes: keep it open until the probe is done.
  ChildProcess server({"sh", "-c",
                       "sleep 20 | openssl s_server -accept 127.0.0.1:" + std::to_string(port) + " -cert " + pki_.server().cert +
                           " -key " + pki_.server().key + " -cipher 'ALL:@SECLEVEL=0' -naccept 2"},
                      dir_.File("s_server.log"));
  ASSERT_TRUE(server.Start());
  ASSERT_TRUE(WaitFor([&] { return ReadFile(dir_.File("s_server.log")).find("ACCEPT") != std::string::npos; },
                      std::chrono::seconds(10)));
  EXPECT_EQ(Handshake(port, "-tls1_1 -cipher 'ALL:@SECLEVEL=0'", dir_.File("control.log")), "TLSv1.1")
      << ReadFile(dir_.File("control.log"));
  EXPECT_EQ(Handshake(port, "-tls1_2 -cipher '" + std::string(kCbcCiphers) + "'", dir_.File("control-cbc.log")), "TLSv1.2")
      << ReadFile(dir_.File("control-cbc.log"));
  server.Kill();
}

// hubd from the shared fixture (tests/hub/hubd_fixture.h): started, answering /healthz over HTTPS.
class TlsHubdTest : public HubdTest {};

TEST_F(TlsHubdTest, Hubd) {
  ExpectModernTlsOnly(port_, dir_, "hubd");
  EXPECT_TRUE(hubd_.Running());
}

TEST_F(TlsTest, EdgedMetricsWithTls) {
  const int port = PickFreePort();
  Site site("[metrics]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\ntls_cert = \"" + pki_.server().cert +
            "\"\ntls_key = \"" + pki_.server().key + "\"\n");
  ASSERT_TRUE(site.StartEdged()) << site.log();
  ASSERT_TRUE(WaitFor([&] { return Handshake(port, "-tls1_2", dir_.File("wait.log")) == "TLSv1.2"; }, std::chrono::seconds(20)))
      << site.log();
  ExpectModernTlsOnly(port, dir_, "metrics");
  // Scrapes work over HTTPS, and plain HTTP gets no answer.
  httplib::SSLClient https("127.0.0.1", port);
  https.set_ca_cert_path(pki_.ca_cert());
  https.enable_server_certificate_verification(true);
  auto r = https.Get("/metrics");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("# TYPE"), std::string::npos);
  httplib::Client plain("127.0.0.1", port);
  plain.set_read_timeout(3);
  auto pr = plain.Get("/metrics");
  EXPECT_FALSE(pr && pr->status == 200);
  EXPECT_NE(site.log().find("on https://127.0.0.1:"), std::string::npos);
}

TEST_F(TlsTest, EdgedRefusesToServeMetricsWithBadTlsMaterial) {
  const int port = PickFreePort();
  WriteFile(dir_.File("not-a-key.pem"), "garbage\n");
  Site site("[metrics]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\ntls_cert = \"" + pki_.server().cert +
            "\"\ntls_key = \"" + dir_.File("not-a-key.pem") + "\"\n");
  ASSERT_TRUE(site.StartEdged()) << site.log();  // ingest goes on without metrics
  EXPECT_NE(site.log().find("metrics.tls_key"), std::string::npos) << site.log();
  httplib::Client plain("127.0.0.1", port);
  plain.set_connection_timeout(2);
  auto pr = plain.Get("/metrics");
  EXPECT_FALSE(pr) << "metrics served in clear after the TLS material failed to load";
}

// The TLS listener blocks of packaging/mosquitto/freshsync.conf, with the test's port and
// certificate paths; every other line (tls_version, ciphers, protocol) as shipped.
std::vector<std::string> ShippedTlsListeners(const std::string& cert, const std::string& key, std::vector<int>* ports) {
  std::ifstream in(std::string(FRESHSYNC_SOURCE_DIR) + "/packaging/mosquitto/freshsync.conf");
  std::vector<std::vector<std::string>> blocks;
  std::string line;
  bool in_listener = false;
  while (std::getline(in, line)) {
    if (line.rfind("listener ", 0) == 0) {
      blocks.emplace_back();
      in_listener = true;
    } else if (line.empty() || line[0] == '#') {
      in_listener = false;
      continue;
    } else if (!in_listener || line.find(' ') == std::string::npos) {
      continue;
    }
    if (in_listener) blocks.back().push_back(line);
  }
  std::vector<std::string> out;
  for (auto& b : blocks) {
    bool tls = false;
    for (const auto& l : b) tls = tls || l.rfind("certfile ", 0) == 0;
    if (!tls) continue;
    std::string conf;
    for (const auto& l : b) {
      if (l.rfind("listener ", 0) == 0) {
        ports->push_back(PickFreePort());
        conf += "listener " + std::to_string(ports->back()) + " 127.0.0.1\n";
      } else if (l.rfind("certfile ", 0) == 0) {
        conf += "certfile " + cert + "\n";
      } else if (l.rfind("keyfile ", 0) == 0) {
        conf += "keyfile " + key + "\n";
      } else {
        conf += l + "\n";
      }
    }
    out.push_back(conf);
  }
  return out;
}

TEST_F(TlsTest, ShippedMosquittoTlsListeners) {
  std::vector<int> ports;
  const auto listeners = ShippedTlsListeners(pki_.server().cert, pki_.server().key, &ports);
  ASSERT_GE(listeners.size(), 2u) << "the shipped config should have TLS listeners for MQTT and websockets";
  std::string extra;
  for (const auto& l : listeners) {
    EXPECT_NE(l.find("tls_version tlsv1.2"), std::string::npos) << l;
    EXPECT_NE(l.find("ciphers "), std::string::npos) << l;
    extra += l;
  }
  MosquittoBroker broker(dir_.File("broker"), extra);
  ASSERT_TRUE(broker.Start()) << ReadFile(dir_.File("broker/mosquitto.log"));
  for (size_t i = 0; i < ports.size(); ++i) {
    ASSERT_TRUE(WaitFor([&] { return Handshake(ports[i], "-tls1_2", dir_.File("wait.log")) == "TLSv1.2"; },
                        std::chrono::seconds(10)))
        << ReadFile(dir_.File("broker/mosquitto.log"));
    ExpectModernTlsOnly(ports[i], dir_, "mosquitto-" + std::to_string(i));
  }
}

}  // namespace
}  // namespace freshsync::testing
