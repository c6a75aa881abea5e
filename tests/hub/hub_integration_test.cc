// hubd end to end: the real binary on a free loopback port, real mutual TLS with certificates
// made by TestPki, requests through httplib's SSLClient (and raw OpenSSL where a well-behaved
// client cannot express the attack, e.g. a 1 GB Content-Length with no body).
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <regex>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "freshsync.pb.h"
#include "hub/codec.h"
#include "wire/digest.h"
#include "tests/support/harness.h"
#include "tests/support/zstd_bomb.h"
#include "tests/hub/hubd_fixture.h"

namespace freshsync::testing {
namespace {

using nlohmann::json;

long RssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// A TCP socket connected to 127.0.0.1:port whose reads give up after timeout_s; -1 (and the
// socket closed) when the connection is refused.
int ConnectLoopback(int port, int timeout_s) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{timeout_s, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Sends `request` verbatim over TLS and returns what comes back until the peer closes or
// `timeout_s` passes. "" when the TLS handshake fails.
std::string RawTls(int port, const TestPki::Files& client, const std::string& ca, const std::string& request,
                   int timeout_s = 5) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr);
  SSL_CTX_use_certificate_file(ctx, client.cert.c_str(), SSL_FILETYPE_PEM);
  SSL_CTX_use_PrivateKey_file(ctx, client.key.c_str(), SSL_FILETYPE_PEM);
  const int fd = ConnectLoopback(port, timeout_s);
  std::string out;
  if (fd >= 0) {
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) == 1) {
      SSL_write(ssl, request.data(), static_cast<int>(request.size()));
      char buf[4096];
      int n;
      while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0) {
        out.append(buf, n);
        if (out.find("\r\n\r\n") != std::string::npos && out.find("}") != std::string::npos) break;
      }
    }
    SSL_free(ssl);
    close(fd);
  }
  SSL_CTX_free(ctx);
  return out;
}

// What a plain-HTTP client gets from the TLS port: `request` is sent in clear over TCP and
// everything that comes back is read until the peer closes or `timeout_s` passes.
struct PlainAnswer {
  bool connected = false;
  bool closed_by_peer = false;  // EOF or reset before the timeout: the server hung up on us
  std::string bytes;
  double secs = 0;
};
PlainAnswer PlainRequest(int port, const std::string& request, int timeout_s = 5) {
  PlainAnswer a;
  const auto t0 = std::chrono::steady_clock::now();
  const int fd = ConnectLoopback(port, timeout_s);
  if (fd >= 0) {
    a.connected = true;
    if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
      char buf[4096];
      while (true) {
        const ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n > 0) {
          a.bytes.append(buf, static_cast<size_t>(n));
          continue;
        }
        a.closed_by_peer = n == 0 || errno == ECONNRESET;
        break;
      }
    } else {
      a.closed_by_peer = errno == ECONNRESET || errno == EPIPE;
    }
    close(fd);
  }
  a.secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return a;
}


TEST_F(HubdTest, PushedRecordsAppearInFeedAndStateExactlyOnce) {
  auto a = Site(site_a_);
  auto r = Push(*a, "site-a", BatchBody("site-a", 1, 60));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto ack = Ack(r);
  EXPECT_EQ(ack.contiguous_seq(), 60u);
  EXPECT_EQ(ack.expected_seq(), 61u);
  EXPECT_EQ(ack.applied(), 60u);
  auto b = Site(site_b_);
  ASSERT_EQ(Push(*b, "site-b", BatchBody("site-b", 1, 40))->status, 200);
  // Retransmissions of both (a lost ack) change nothing.
  EXPECT_EQ(Ack(Push(*a, "site-a", BatchBody("site-a", 1, 60))).duplicates(), 60u);
  EXPECT_EQ(Ack(Push(*b, "site-b", BatchBody("site-b", 21, 45))).applied(), 5u);

  const auto feed = Feed(17);
  ASSERT_EQ(feed.size(), 105u);
  std::set<std::pair<std::string, uint64_t>> seen;
  uint64_t last_cursor = 0;
  for (const auto& c : feed) {
    EXPECT_TRUE(seen.insert({c["site"].get<std::string>(), c["seq"].get<uint64_t>()}).second) << c.dump();
    EXPECT_GT(c["cursor"].get<uint64_t>(), last_cursor);
    last_cursor = c["cursor"];
    for (const char* k : {"entity", "key", "version", "hlc", "ts", "fields"}) EXPECT_TRUE(c.contains(k)) << k;
  }
  const auto& first = feed.front();
  EXPECT_EQ(first["site"], "site-a");
  EXPECT_EQ(first["entity"], "VEHICLE_POSITION");
  EXPECT_DOUBLE_EQ(first["fields"]["lat"].get<double>(), 31.000001);

  // Protobuf feed on Accept.
  auto hq = Hq(kReaderToken);
  auto pr = hq->Get("/v1/changes?after=0&limit=5", {{"Accept", "application/x-protobuf"}});
  ASSERT_TRUE(pr);
  v1::Feed pf;
  ASSERT_TRUE(pf.ParseFromString(pr->body));
  ASSERT_EQ(pf.changes_size(), 5);
  EXPECT_EQ(pf.changes(0).record().seq(), 1u);
  EXPECT_EQ(pf.next(), pf.changes(4).cursor());

  // Current state.
  json sites = GetJson("/v1/sites");
  ASSERT_EQ(sites["sites"].size(), 2u);
  EXPECT_EQ(sites["sites"][0]["site"], "site-a");
  EXPECT_EQ(sites["sites"][0]["contiguous_seq"], 60);
  EXPECT_EQ(sites["sites"][1]["contiguous_seq"], 45);
  EXPECT_GT(sites["sites"][0]["last_push_ms"].get<int64_t>(), 0);
  json stock = GetJson("/v1/sites/site-a/stock");
  EXPECT_EQ(stock["stock"].size(), 7u);  // sku-0..6
  json orders = GetJson("/v1/sites/site-a/orders");
  EXPECT_EQ(orders["orders"].size(), 15u);  // seq % 4 == 2 in 1..60
  json alerts = GetJson("/v1/sites/site-a/alerts");
  EXPECT_EQ(alerts["alerts"].size(), 15u);
  // Trucks are seen by both sites: the newest device timestamp wins, here site-a's (seq up to
  // 57 against site-b's 45), although site-b pushed later.
  json va = GetJson("/v1/sites/site-a/vehicles");
  json vb = GetJson("/v1/sites/site-b/vehicles");
  EXPECT_EQ(va["vehicles"].size(), 3u);
  EXPECT_TRUE(vb["vehicles"].empty());
  // Track over a time range: positions of truck-1 at site-a are seqs 1, 13, 25, 37, 49.
  const int64_t t0 = 1764000000000;
  json track = GetJson("/v1/sites/site-a/vehicles/truck-1/track?from=" + std::to_string(t0 + 13000) +
                       "&to=" + std::to_string(t0 + 37000));
  ASSERT_EQ(track["track"].size(), 3u);
  EXPECT_EQ(track["track"][0]["seq"], 13);
  json track_rfc = GetJson("/v1/sites/site-a/vehicles/truck-1/track?from=2025-11-24T16:00:13Z&to=2025-11-24T16:00:37.000Z");
  EXPECT_EQ(track_rfc["track"].size(), 3u);
}

// The JSON form of the protobuf answers, by the mapping docs/api.md documents: what HQ gets from
// either form must be the same content.
json PositionItemJson(const v1::PositionItem& p) {
  const auto& v = p.position();
  return {{"vehicle", v.vehicle()},          {"site", p.site()},           {"device_seq", v.device_seq()},
          {"lat", v.lat_e6() / 1e6},         {"lon", v.lon_e6() / 1e6},    {"speed_kmh", v.speed_dkmh() / 10.0},
          {"heading", v.heading_deg()},      {"hdop", v.hdop_d() / 10.0},  {"ts", p.ts_ms()},
          {"hlc", p.hlc()},                  {"seq", p.seq()}};
}

TEST_F(HubdTest, EveryHqReadAnswersProtobufOnAcceptWithTheSameContent) {
  auto a = Site(site_a_);
  ASSERT_EQ(Push(*a, "site-a", BatchBody("site-a", 1, 60))->status, 200);
  // What Record() lacks: an order with lines and sealed customer data, geofence events, an
  // alert with every field set.
  v1::Batch extra;
  extra.set_site("site-a");
  {
    auto r = Record(61);
    r.set_entity(v1::ORDER);
    r.set_key("o-lines");
    r.clear_alert();
    auto* o = r.mutable_order();
    o->set_order_id("o-lines");
    o->set_status("created");
    o->set_actor("terminal-3");
    auto* l = o->add_lines();
    l->set_sku("tomato-5kg");
    l->set_qty(4);
    l = o->add_lines();
    l->set_sku("leek-1kg");
    l->set_qty(12);
    o->set_customer_sealed(std::string("\x00\x01sealed\xff", 9));
    *extra.add_records() = r;
  }
  for (uint64_t seq : {62, 63}) {
    auto r = Record(seq);
    r.set_entity(v1::GEOFENCE_EVENT);
    r.set_key("truck-1");
    r.clear_body();
    auto* g = r.mutable_geofence();
    g->set_vehicle("truck-1");
    g->set_fence("depot");
    g->set_kind("depot");
    g->set_event(seq == 62 ? "enter" : "exit");
    *extra.add_records() = r;
  }
  {
    auto r = Record(64);
    r.set_entity(v1::COLDCHAIN_ALERT);
    r.set_key("al-full");
    r.clear_body();
    auto* al = r.mutable_alert();
    al->set_alert_id("al-full");
    al->set_sensor("cold-2");
    al->set_state("open");
    al->set_kind("excursion");
    al->set_min_c(0.5);
    al->set_max_c(4.25);
    al->set_started_ts_ms(1764000050000);
    *extra.add_records() = r;
  }
  ASSERT_EQ(Push(*a, "site-a", hub::ZstdCompress(extra.SerializeAsString()))->status, 200);

  {  // The change feed: every change, field for field.
    auto [j, p] = GetBoth<v1::Feed>("/v1/changes?after=0&limit=1000");
    ASSERT_EQ(j["changes"].size(), 64u);
    ASSERT_EQ(p.changes_size(), 64);
    for (int i = 0; i < p.changes_size(); ++i) {
      const auto& c = p.changes(i);
      EXPECT_EQ(j["changes"][i], hub::ChangeToJson(c.cursor(), c.site(), c.record())) << i;
    }
    EXPECT_EQ(j["next"], p.next());
  }
  {  // Sites.
    auto [j, p] = GetBoth<v1::SitesReply>("/v1/sites");
    json want = json::array();
    for (const auto& si : p.sites())
      want.push_back({{"site", si.site()}, {"contiguous_seq", si.contiguous_seq()}, {"max_seq", si.max_seq()},
                      {"records", si.records()}, {"last_push_ms", si.last_push_ms()}});
    ASSERT_EQ(want.size(), 1u);
    EXPECT_EQ(j["sites"], want);
  }
  {  // Stock.
    auto [j, p] = GetBoth<v1::StockReply>("/v1/sites/site-a/stock");
    EXPECT_EQ(p.site(), "site-a");
    json want = json::array();
    for (const auto& r : p.stock())
      want.push_back({{"sku", r.sku()}, {"on_hand", r.on_hand()}, {"reserved", r.reserved()}, {"version", r.version()},
                      {"hlc", r.hlc()}, {"ts", r.ts_ms()}, {"seq", r.seq()}});
    ASSERT_EQ(want.size(), 7u);
    EXPECT_EQ(j["stock"], want);
    EXPECT_EQ(j["site"], "site-a");
  }
  {  // Orders, with lines and the sealed blob.
    auto [j, p] = GetBoth<v1::OrdersReply>("/v1/sites/site-a/orders");
    EXPECT_EQ(p.site(), "site-a");
    json want = json::array();
    bool saw_lines = false;
    for (const auto& o : p.orders()) {
      json lines = json::array();
      for (const auto& l : o.lines()) lines.push_back({{"sku", l.sku()}, {"qty", l.qty()}});
      json w = {{"order_id", o.order_id()}, {"site", o.site()}, {"status", o.status()}, {"actor", o.actor()},
                {"lines", lines},           {"version", o.version()}, {"hlc", o.hlc()}, {"ts", o.ts_ms()},
                {"seq", o.seq()}};
      if (!o.customer_sealed().empty()) w["customer_sealed"] = hub::Base64(o.customer_sealed());
      if (o.order_id() == "o-lines") {
        saw_lines = true;
        EXPECT_EQ(o.lines_size(), 2);
        EXPECT_EQ(o.customer_sealed(), std::string("\x00\x01sealed\xff", 9));
        EXPECT_EQ(o.actor(), "terminal-3");
      }
      want.push_back(std::move(w));
    }
    EXPECT_TRUE(saw_lines);
    ASSERT_EQ(want.size(), 16u);
    EXPECT_EQ(j["orders"], want);
  }
  {  // Latest vehicle positions.
    auto [j, p] = GetBoth<v1::VehiclesReply>("/v1/sites/site-a/vehicles");
    EXPECT_EQ(p.site(), "site-a");
    json want = json::array();
    for (const auto& v : p.vehicles()) want.push_back(PositionItemJson(v));
    ASSERT_EQ(want.size(), 3u);
    EXPECT_EQ(j["vehicles"], want);
  }
  {  // Open alerts.
    auto [j, p] = GetBoth<v1::AlertsReply>("/v1/sites/site-a/alerts");
    EXPECT_EQ(p.site(), "site-a");
    json want = json::array();
    for (const auto& it : p.alerts()) {
      const auto& al = it.alert();
      EXPECT_EQ(al.ended_ts_ms(), 0);
      want.push_back({{"alert_id", al.alert_id()}, {"sensor", al.sensor()}, {"state", al.state()},
                      {"kind", al.kind()},         {"min_c", al.min_c()},   {"max_c", al.max_c()},
                      {"started_ts", al.started_ts_ms()}, {"version", it.version()}, {"seq", it.seq()}});
    }
    ASSERT_EQ(want.size(), 16u);
    EXPECT_EQ(j["alerts"], want);
    EXPECT_NE(j["alerts"].dump().find("\"max_c\":4.25"), std::string::npos);
  }
  {  // Geofence events over a time range.
    auto [j, p] = GetBoth<v1::GeofenceReply>("/v1/sites/site-a/geofence?from=0&to=2025-11-25T00:00:00Z");
    EXPECT_EQ(p.site(), "site-a");
    json want = json::array();
    for (const auto& e : p.events())
      want.push_back({{"seq", e.seq()},           {"vehicle", e.event().vehicle()}, {"fence", e.event().fence()},
                      {"kind", e.event().kind()}, {"event", e.event().event()},     {"ts", e.ts_ms()}});
    ASSERT_EQ(want.size(), 2u);
    EXPECT_EQ(j["events"], want);
  }
  {  // A vehicle's track over a time range: truck-1 at seqs 13, 25, 37.
    const int64_t t0 = 1764000000000;
    auto [j, p] = GetBoth<v1::TrackReply>("/v1/sites/site-a/vehicles/truck-1/track?from=" + std::to_string(t0 + 13000) +
                                          "&to=" + std::to_string(t0 + 37000));
    EXPECT_EQ(p.site(), "site-a");
    json want = json::array();
    for (const auto& v : p.track()) want.push_back(PositionItemJson(v));
    ASSERT_EQ(want.size(), 3u);
    EXPECT_EQ(j["track"], want);
    EXPECT_EQ(p.track(0).seq(), 13u);
    EXPECT_EQ(p.track(0).position().lat_e6(), 31000013);
  }
  {  // The audit log (admin). Every pull adds a row, so the protobuf fetch asks for as many as
     // the JSON one got.
    json first = GetJson("/v1/audit?limit=1000", kAdminToken);
    const size_t n = first["entries"].size();
    ASSERT_GT(n, 8u);
    auto [j, p] = GetBoth<v1::AuditReply>("/v1/audit?limit=" + std::to_string(n), kAdminToken);
    json want = json::array();
    for (const auto& e : p.entries())
      want.push_back({{"id", e.id()},         {"ts_ms", e.ts_ms()},   {"kind", e.kind()},   {"actor", e.actor()},
                      {"path", e.path()},     {"seq_from", e.seq_from()}, {"seq_to", e.seq_to()}, {"count", e.count()},
                      {"status", e.status()}, {"detail", e.detail()}});
    ASSERT_EQ(want.size(), n);
    EXPECT_EQ(j["entries"], want);
    EXPECT_EQ(j["next"], p.next());
  }

  // Negotiation: wildcards and JSON preferred by q get JSON; errors are JSON whatever was asked.
  auto hq = Hq(kReaderToken);
  for (const char* accept : {"*/*", "application/json", "application/x-protobuf;q=0.5, application/json"}) {
    auto r = hq->Get("/v1/sites/site-a/stock", {{"Accept", accept}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->get_header_value("Content-Type"), "application/json") << accept;
  }
  auto r = hq->Get("/v1/sites/site-a/vehicles/truck-1/track?from=yesterday", {{"Accept", "application/x-protobuf"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  EXPECT_EQ(json::parse(r->body, nullptr, false)["parameter"], "from");
}

TEST_F(HubdTest, GapIsRefusedWithTheExpectedSeq) {
  auto a = Site(site_a_);
  ASSERT_EQ(Push(*a, "site-a", BatchBody("site-a", 1, 10))->status, 200);
  auto r = Push(*a, "site-a", BatchBody("site-a", 15, 20));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 409);
  auto ack = Ack(r);
  EXPECT_EQ(ack.expected_seq(), 11u);
  EXPECT_EQ(ack.contiguous_seq(), 10u);
  // JSON on Accept.
  r = Push(*a, "site-a", BatchBody("site-a", 15, 20), true);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 409);
  EXPECT_EQ(json::parse(r->body)["expected_seq"], 11);
  EXPECT_EQ(Feed(100).size(), 10u);
}

TEST_F(HubdTest, UrgentBatchOvertakesWithoutMovingContiguous) {
  auto a = Site(site_a_);
  ASSERT_EQ(Push(*a, "site-a", BatchBody("site-a", 1, 4))->status, 200);
  auto ack = Ack(Push(*a, "site-a", BatchBody("site-a", 10, 10, true)));
  EXPECT_EQ(ack.contiguous_seq(), 4u);
  EXPECT_EQ(ack.applied(), 1u);
  EXPECT_EQ(Feed(100).size(), 5u);
  ack = Ack(Push(*a, "site-a", BatchBody("site-a", 5, 12)));
  EXPECT_EQ(ack.contiguous_seq(), 12u);
  EXPECT_EQ(ack.applied(), 7u);
  EXPECT_EQ(ack.duplicates(), 1u);
  EXPECT_EQ(Feed(100).size(), 12u);
}

TEST_F(HubdTest, DigestMatchesTheSharedLibrary) {
  auto a = Site(site_a_);
  ASSERT_EQ(Push(*a, "site-a", BatchBody("site-a", 1, 50))->status, 200);
  auto r = a->Get("/v1/sites/site-a/digest?from=1&to=64&buckets=4");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  v1::DigestReply d;
  ASSERT_TRUE(d.ParseFromString(r->body));
  EXPECT_EQ(d.contiguous_seq(), 50u);
  ASSERT_EQ(d.ranges_size(), 4);
  digest::RangeDigester want;
  for (uint64_t s = 17; s <= 32; ++s) {
    const auto rec = Record(s);
    want.Add(s, rec.entity(), rec.version(), rec.key());
  }
  EXPECT_EQ(d.ranges(1).from_seq(), 17u);
  EXPECT_EQ(d.ranges(1).count(), 16u);
  EXPECT_EQ(d.ranges(1).digest(), want.FinishAsString());
  EXPECT_EQ(d.ranges(3).count(), 2u);
  // Another site's digest is not ours to read.
  EXPECT_EQ(a->Get("/v1/sites/site-b/digest?from=1&to=2&buckets=1")->status, 403);
  r = a->Get("/v1/sites/site-a/digest?from=1&to=2&buckets=5000");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(json::parse(r->body)["parameter"], "buckets");
}

TEST_F(HubdTest, StateDigestAndRebuildStateForTheSiteOnly) {
  auto a = Site(site_a_);
  ASSERT_EQ(Push(*a, "site-a", BatchBody("site-a", 1, 50))->status, 200);
  // Expected: per sku the STOCK record with the highest version (Record(): every 4th seq).
  std::map<std::string, std::pair<int64_t, uint64_t>> stock;
  for (uint64_t s = 1; s <= 50; ++s) {
    const auto rec = Record(s);
    if (rec.entity() != v1::STOCK) continue;
    auto& row = stock[rec.key()];
    if (rec.version() > row.second) row = {rec.stock().on_hand(), rec.version()};
  }
  digest::StateDigester want;
  for (const auto& [sku, row] : stock) want.AddStock(sku, row.first, 0, row.second);
  const std::string want_digest = want.FinishAsString();

  auto r = a->Get("/v1/sites/site-a/state-digest");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  v1::StateDigestReply d;
  ASSERT_TRUE(d.ParseFromString(r->body));
  EXPECT_EQ(d.digest(), want_digest);
  EXPECT_EQ(d.skus(), stock.size());
  EXPECT_EQ(d.contiguous_seq(), 50u);
  r = a->Get("/v1/sites/site-a/state-digest", {{"Accept", "application/json"}});
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(r->body)["digest"], digest::Hex(want_digest));

  // Rebuild with nothing to repair: same digest, nothing changed, audited.
  r = a->Post("/v1/sites/site-a/rebuild-state", {{"Accept", "application/json"}}, "", "application/octet-stream");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["changed"], 0);
  EXPECT_EQ(json::parse(r->body)["digest"], digest::Hex(want_digest));

  // Another site's state is not ours to read or rebuild.
  EXPECT_EQ(a->Get("/v1/sites/site-b/state-digest")->status, 403);
  EXPECT_EQ(a->Post("/v1/sites/site-b/rebuild-state", "", "application/octet-stream")->status, 403);
  // HQ tokens are not site certificates.
  auto hq = Hq(kReaderToken);
  auto h = hq->Get("/v1/sites/site-a/state-digest");
  ASSERT_TRUE(h);
  EXPECT_NE(h->status, 200);
}

TEST_F(HubdTest, RefusesWrongIdentities) {
  const std::string body = BatchBody("site-a", 1, 3);
  // Another site's certificate.
  auto b = Site(site_b_);
  auto r = Push(*b, "site-a", body);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  // The right certificate, but Batch.site names another site.
  auto a = Site(site_a_);
  r = Push(*a, "site-a", BatchBody("site-b", 1, 3));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  // No certificate at all.
  auto none = Hq("");
  r = Push(*none, "site-a", body);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  // Expired and untrusted certificates fail the handshake: no HTTP answer at all.
  auto expired = Site(pki_.Client("site-a", -1));
  r = Push(*expired, "site-a", body);
  EXPECT_FALSE(r && r->status == 200);
  EXPECT_FALSE(r) << r->status;
  auto stranger = Site(pki_.Untrusted("site-a"));
  r = Push(*stranger, "site-a", body);
  EXPECT_FALSE(r) << r->status;
  // Plain HTTP is refused by the TLS layer. OpenSSL sees an HTTP request where a ClientHello
  // should be and ends the handshake: the connection is accepted, then closed at once with
  // nothing sent (at most a TLS alert record, content type 21), so no HTTP status comes back.
  // A 400 from the TLS server would also be a refusal. Anything else fails: a 200, any other
  // status, or a server that holds the connection open until the client gives up.
  for (const std::string& request :
       {std::string("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
        "POST /v1/sites/site-a/batches HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
        "Content-Encoding: zstd\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body}) {
    const PlainAnswer pa = PlainRequest(port_, request);
    const std::string what = request.substr(0, request.find('\r'));
    ASSERT_TRUE(pa.connected) << what;
    EXPECT_TRUE(pa.closed_by_peer) << what << ": connection held open for " << pa.secs << " s";
    EXPECT_LT(pa.secs, 3.0) << what;
    const bool tls_refusal = pa.bytes.empty() || static_cast<unsigned char>(pa.bytes[0]) == 0x15;
    const bool http_400 = pa.bytes.rfind("HTTP/1.1 400 ", 0) == 0 || pa.bytes.rfind("HTTP/1.0 400 ", 0) == 0;
    EXPECT_TRUE(tls_refusal || http_400) << what << ": got " << pa.bytes.size() << " bytes: " << pa.bytes;
  }
  // The same through an HTTP client: the read fails (the peer closed without an answer), or 400.
  {
    httplib::Client plain("127.0.0.1", port_);
    plain.set_read_timeout(5);
    auto pr = plain.Get("/healthz");
    if (pr) {
      EXPECT_EQ(pr->status, 400) << pr->body;
    } else {
      EXPECT_EQ(pr.error(), httplib::Error::Read) << httplib::to_string(pr.error());
    }
  }
  EXPECT_TRUE(Feed(100).empty());

  // HQ tokens.
  GetJson("/v1/changes", "", 401);
  GetJson("/v1/changes", "not-a-token", 401);
  GetJson("/v1/changes", digest::Sha256Hex(kReaderToken), 401);  // the hash is not the token
  GetJson("/v1/audit", kReaderToken, 403);
  json audit = GetJson("/v1/audit?limit=1000", kAdminToken, 200);
  ASSERT_TRUE(audit.is_object());
  int pushes_refused = 0, pulls = 0;
  for (const auto& e : audit["entries"]) {
    if (e["kind"] == "push" && e["status"] == 403) ++pushes_refused;
    if (e["kind"] == "pull") ++pulls;
  }
  // Audited: site-b's certificate on site-a's URL, and site-a's batch naming site-b. Not
  // audited (logged only): the push without any certificate, and the HQ calls without a valid
  // token. The reader's refused admin call is audited.
  EXPECT_EQ(pushes_refused, 2);
  bool reader_refused = false;
  for (const auto& e : audit["entries"]) {
    if (e["kind"] == "pull" && e["actor"] == "hq-analytics" && e["status"] == 403) reader_refused = true;
    EXPECT_NE(e["status"], 401) << e.dump();
  }
  EXPECT_TRUE(reader_refused);
  EXPECT_GE(pulls, 1);
  // The audit file mirrors the table.
  EXPECT_NE(ReadFile(dir_.File("audit.jsonl")).find("\"hq-analytics\""), std::string::npos);
  EXPECT_TRUE(hubd_.Running());
}

TEST_F(HubdTest, BadInputGetsFourXxAndCostsNoMemory) {
  auto a = Site(site_a_);
  ASSERT_EQ(Push(*a, "site-a", BatchBody("site-a", 1, 5))->status, 200);
  const long rss_before = RssKb(hubd_.pid());
  ASSERT_GT(rss_before, 0);

  // zstd bomb: 256 MiB of zeros in about 10 KB, without a declared size.
  {
    const std::string bomb = ZstdBombOfZeros(64, 19);
    ASSERT_LT(bomb.size(), 1u << 20);
    for (int i = 0; i < 3; ++i) {
      auto r = Push(*a, "site-a", bomb);
      ASSERT_TRUE(r);
      EXPECT_EQ(r->status, 413) << r->body;
    }
  }
  // Truncated protobuf inside a valid zstd frame.
  {
    v1::Batch b;
    b.set_site("site-a");
    for (uint64_t s = 6; s <= 20; ++s) *b.add_records() = Record(s);
    std::string raw = b.SerializeAsString();
    raw.resize(raw.size() - 7);
    auto r = Push(*a, "site-a", hub::ZstdCompress(raw));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << r->body;
    // And a truncated zstd frame.
    const std::string z = BatchBody("site-a", 6, 20);
    r = Push(*a, "site-a", z.substr(0, z.size() / 2));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
  }
  // A claimed 1 GB body: answered 413 at once, without reading it.
  {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string resp =
        RawTls(port_, site_a_, pki_.ca_cert(),
               "POST /v1/sites/site-a/batches HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
               "Content-Encoding: zstd\r\nContent-Length: 1073741824\r\n\r\n");
    EXPECT_EQ(resp.rfind("HTTP/1.1 413", 0), 0u) << resp;
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
    // Chunked bodies would dodge the length check: refused too.
    const std::string chunked =
        RawTls(port_, site_a_, pki_.ca_cert(),
               "POST /v1/sites/site-a/batches HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    EXPECT_EQ(chunked.rfind("HTTP/1.1 411", 0), 0u) << chunked;
    // So would a POST without any length, read until the peer closes.
    const std::string nolength = RawTls(port_, site_a_, pki_.ca_cert(),
                                        "POST /v1/sites/site-a/batches HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nabc");
    EXPECT_EQ(nolength.rfind("HTTP/1.1 411", 0), 0u) << nolength;
  }
  // Too many records.
  {
    v1::Batch b;
    b.set_site("site-a");
    for (uint64_t s = 6; s <= 20010; ++s) *b.add_records() = Record(s);
    auto r = Push(*a, "site-a", hub::ZstdCompress(b.SerializeAsString()));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 413) << r->body;
  }
  // Bad query parameters name themselves.
  for (const auto& [path, param] : std::vector<std::pair<std::string, std::string>>{
           {"/v1/changes?after=-1", "after"},
           {"/v1/changes?limit=0", "limit"},
           {"/v1/changes?limit=abc", "limit"},
           {"/v1/sites/site-a/vehicles/truck-1/track?from=yesterday", "from"},
           {"/v1/sites/site-a/vehicles/truck-1/track?from=10&to=5", "to"}}) {
    json j = GetJson(path, kReaderToken, 400);
    EXPECT_EQ(j["parameter"], param) << path;
  }

  EXPECT_TRUE(hubd_.Running());
  auto ok = Push(*a, "site-a", BatchBody("site-a", 6, 8));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(Feed(100).size(), 8u);
  const long rss_after = RssKb(hubd_.pid());
  std::printf("hubd VmRSS %ld kB -> %ld kB\n", rss_before, rss_after);
#if defined(__SANITIZE_ADDRESS__)
  // ASan keeps freed memory in its quarantine (256 MB by default), so RSS says nothing here.
  GTEST_SKIP() << "RSS bound not meaningful under AddressSanitizer";
#else
  // The decompression cap is 8 MB; allow for it, the records batch and allocator slack,
  // but not for a 2 GB bomb or a 1 GB body.
  EXPECT_LT(rss_after - rss_before, 48 * 1024) << rss_before << " -> " << rss_after;
#endif
}

// The web console's files (hub/console.h) through the real transport: no token needed, their
// content types and revalidation, and nothing else reachable under /console/, however the
// path is spelled on the wire.
TEST_F(HubdTest, ServesTheConsoleWithoutATokenAndNothingElseUnderIt) {
  auto c = Hq("");
  auto page = c->Get("/console/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(page->body.find("<script type=\"module\" src=\"app.js\">"), std::string::npos);
  EXPECT_NE(page->get_header_value("Content-Security-Policy").find("script-src 'self'"), std::string::npos);
  auto js = c->Get("/console/app.js");
  ASSERT_TRUE(js);
  EXPECT_EQ(js->status, 200);
  EXPECT_EQ(js->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  auto again = c->Get("/console/app.js", {{"If-None-Match", js->get_header_value("ETag")}});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 304);
  EXPECT_TRUE(again->body.empty());
  auto bare = c->Get("/console");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->status, 301);
  EXPECT_EQ(bare->get_header_value("Location"), "/console/");
  for (const char* target : {"/console/../v1/audit", "/console/%2e%2e/v1/audit", "/console/..%2fhub.db", "/console//etc/passwd",
                             "/console/nope.js"}) {
    const std::string resp = RawTls(port_, site_a_, pki_.ca_cert(),
                                    std::string("GET ") + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(resp.rfind("HTTP/1.1 404", 0), 0u) << target << ": " << resp;
  }
  // The data routes still want the token.
  auto data = c->Get("/v1/sites");
  ASSERT_TRUE(data);
  EXPECT_EQ(data->status, 401);
}

TEST_F(HubdTest, KillAndRestartKeepsEverything) {
  auto a = Site(site_a_);
  ASSERT_EQ(Push(*a, "site-a", BatchBody("site-a", 1, 30))->status, 200);
  ASSERT_EQ(Push(*a, "site-a", BatchBody("site-a", 40, 41, true))->status, 200);
  hubd_.Kill();
  StartHubd();
  auto a2 = Site(site_a_);
  auto ack = Ack(Push(*a2, "site-a", BatchBody("site-a", 25, 45)));
  EXPECT_EQ(ack.contiguous_seq(), 45u);
  EXPECT_EQ(ack.applied(), 13u);     // 31..39 and 42..45
  EXPECT_EQ(ack.duplicates(), 8u);   // 25..30, 40, 41
  EXPECT_EQ(Feed(7).size(), 45u);
  // SIGTERM is a clean stop.
  EXPECT_EQ(hubd_.Stop(), 0);
}

// The nice value of each of hubd's threads, from /proc (field 19 of a task's stat).
std::map<pid_t, int> ThreadNiceValues(pid_t pid) {
  std::map<pid_t, int> out;
  for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    const std::string stat = ReadFile(task.path().string() + "/stat");
    const size_t close = stat.rfind(')');  // the thread's name may hold spaces
    if (close == std::string::npos) continue;
    std::istringstream fields(stat.substr(close + 2));
    std::string field;
    for (int i = 3; i <= 19 && fields >> field; ++i) {
      if (i == 19) out[std::stoi(task.path().filename().string())] = std::stoi(field);
    }
  }
  return out;
}

// [limits] handshake_nice: the TLS handshake threads (as many as the I/O threads: 4 with
// threads = 4) run that much nicer than hubd itself, and at 0 as the rest; every other thread
// keeps hubd's own. Handshakes on them still complete (a site pushes after each start).
TEST_F(HubdTest, HandshakeThreadsRunAtTheConfiguredNiceIncrement) {
  const std::string config = ReadFile(dir_.File("hubd.toml"));
  for (int increment : {-1, 3, 0}) {  // -1: the key absent, the default of 10
    if (increment >= 0) {
      hubd_.Kill();
      std::string text = config;
      text.replace(text.find("[limits]\n"), 9, "[limits]\nhandshake_nice = " + std::to_string(increment) + "\n");
      WriteFile(dir_.File("hubd.toml"), text);
      StartHubd();
    }
    const int want = increment < 0 ? 10 : increment;
    auto a = Site(site_a_);
    auto r = Push(*a, "site-a", BatchBody("site-a", 1, 2));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    const auto nice = ThreadNiceValues(hubd_.pid());
    ASSERT_TRUE(nice.count(hubd_.pid()));
    const int own = nice.at(hubd_.pid());
    int lowered = 0;
    for (const auto& [tid, value] : nice) {
      if (value == own) continue;
      EXPECT_EQ(value, std::min(19, own + want)) << "thread " << tid;
      ++lowered;
    }
    EXPECT_EQ(lowered, want == 0 ? 0 : 4) << "handshake_nice = " << want;
  }
}

TEST_F(HubdTest, SighupReloadsTokens) {
  GetJson("/v1/sites", kReaderToken, 200);
  GetJson("/v1/sites", "brand-new-token", 401);
  // Replace the reader's token; the admin stays.
  std::string text = ReadFile(dir_.File("hubd.toml"));
  const std::string old_hash = digest::Sha256Hex(kReaderToken);
  text.replace(text.find(old_hash), old_hash.size(), digest::Sha256Hex("brand-new-token"));
  WriteFile(dir_.File("hubd.toml"), text);
  hubd_.Signal(SIGHUP);
  EXPECT_TRUE(WaitFor(
      [&] {
        auto c = Hq("brand-new-token");
        auto r = c->Get("/v1/sites");
        return r && r->status == 200;
      },
      std::chrono::seconds(5)));
  GetJson("/v1/sites", kReaderToken, 401);
  GetJson("/v1/audit", kAdminToken, 200);
  // A broken file on SIGHUP keeps the running config.
  WriteFile(dir_.File("hubd.toml"), "listen = 5\n");
  hubd_.Signal(SIGHUP);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(hubd_.Running());
  GetJson("/v1/sites", "brand-new-token", 200);
}

TEST_F(HubdTest, ReadsTheKeyFromSystemdCredentials) {
  hubd_.Kill();
  // The config names a key path the service cannot read; the unit hands the key over as a
  // credential with the same file name.
  const std::string creds = dir_.File("creds");
  std::filesystem::create_directories(creds);
  std::filesystem::copy_file(pki_.server().key, creds + "/" + std::filesystem::path(pki_.server().key).filename().string());
  std::string text = ReadFile(dir_.File("hubd.toml"));
  text.replace(text.find(pki_.server().key), pki_.server().key.size(),
               "/nonexistent/" + std::filesystem::path(pki_.server().key).filename().string());
  WriteFile(dir_.File("hubd.toml"), text);
  hubd_ = ChildProcess({BinDir() + "/hubd", "--config", dir_.File("hubd.toml")}, dir_.File("hubd2.log"),
                       {{"CREDENTIALS_DIRECTORY", creds}});
  ASSERT_TRUE(hubd_.Start());
  EXPECT_TRUE(WaitFor(
      [&] {
        auto r = Hq("")->Get("/healthz");
        return r && r->status == 200;
      },
      std::chrono::seconds(20)))
      << ReadFile(dir_.File("hubd2.log"));
}

TEST_F(HubdTest, NotifiesSystemdReadyAndFeedsTheWatchdog) {
  hubd_.Kill();
  const std::string sock_path = dir_.File("notify.sock");
  const int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(sock_path.size(), sizeof(addr.sun_path));
  std::strcpy(addr.sun_path, sock_path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  timeval tv{0, 200000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  hubd_ = ChildProcess({BinDir() + "/hubd", "--config", dir_.File("hubd.toml")}, dir_.File("hubd3.log"),
                       {{"NOTIFY_SOCKET", sock_path}, {"WATCHDOG_USEC", "200000"}});
  ASSERT_TRUE(hubd_.Start());
  bool ready = false;
  int pings = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline && !(ready && pings >= 3)) {
    char buf[256];
    const ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0) continue;
    const std::string msg(buf, static_cast<size_t>(n));
    if (msg.find("READY=1") != std::string::npos) ready = true;
    if (msg.find("WATCHDOG=1") != std::string::npos) ++pings;
  }
  close(fd);
  EXPECT_TRUE(ready);
  EXPECT_GE(pings, 3);
  EXPECT_EQ(hubd_.Stop(), 0);
}

TEST(HubdConfigTest, CheckConfigNamesTheKey) {
  TempDir dir;
  TestPki pki(dir.File("pki"));
  ASSERT_TRUE(pki.Init());
  const std::string good = "listen = \"127.0.0.1:1\"\n[tls]\nca = \"" + pki.ca_cert() + "\"\ncert = \"" +
                           pki.server().cert + "\"\nkey = \"" + pki.server().key + "\"\n[store]\npath = \"" +
                           dir.File("h.db") + "\"\n";
  WriteFile(dir.File("good.toml"), good);
  EXPECT_EQ(RunShell("'" + BinDir() + "/hubd' --check-config --config '" + dir.File("good.toml") + "'"), 0);
  auto check = [&](const std::string& text, const std::string& key) {
    WriteFile(dir.File("bad.toml"), text);
    const std::string log = dir.File("check.log");
    const int rc = RunShell("'" + BinDir() + "/hubd' --check-config --config '" + dir.File("bad.toml") + "'", log);
    EXPECT_EQ(rc, 2);  // RunShell returns the exit code
    EXPECT_NE(ReadFile(log).find(key), std::string::npos) << ReadFile(log);
  };
  check(good + "threads = 0\n", "threads");
  check(good + "[limits]\nmax_body_bytes = 10\n", "limits.max_body_bytes");
  check(good + "[[tokens]]\nname = \"x\"\nrole = \"root\"\nsha256 = \"00\"\n", "tokens[0].role");
  std::string missing = good;
  missing.replace(missing.find(pki.server().key), pki.server().key.size(), dir.File("nope.key"));
  check(missing, "tls.key");
}

// ---------- slow ----------

TEST_F(HubdTest, SlowManyBatchesWithRestartsAndRetries) {
  // 200k records in 2,000-record batches, hubd SIGKILLed every 25 batches; the pusher retries
  // and rewinds like the agent does. Afterwards every seq is held exactly once.
  constexpr uint64_t kTotal = 200000, kBatch = 2000;
  uint64_t next = 1;
  int batches = 0;
  auto a = Site(site_a_);
  const auto t0 = std::chrono::steady_clock::now();
  while (next <= kTotal) {
    const uint64_t last = std::min(kTotal, next + kBatch - 1);
    auto r = Push(*a, "site-a", BatchBody("site-a", next, last));
    if (!r || r->status >= 500) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      a = Site(site_a_);
      continue;
    }
    auto ack = Ack(r);
    ASSERT_TRUE(r->status == 200 || r->status == 409) << r->status << " " << r->body;
    next = ack.expected_seq();
    if (++batches % 25 == 0) {
      hubd_.Kill();
      // Resend the last batch after the restart: its ack may be what was lost.
      next = next > kBatch ? next - kBatch : 1;
      StartHubd();
      a = Site(site_a_);
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("pushed %llu records in %.2fs including restarts (%.0f records/s)\n", (unsigned long long)kTotal, secs,
              kTotal / secs);
  json sites = GetJson("/v1/sites");
  EXPECT_EQ(sites["sites"][0]["contiguous_seq"], kTotal);
  EXPECT_EQ(sites["sites"][0]["records"], kTotal);
  const auto feed = Feed(10000);
  ASSERT_EQ(feed.size(), kTotal);
  for (uint64_t i = 0; i < kTotal; ++i) ASSERT_EQ(feed[i]["seq"].get<uint64_t>(), i + 1);
}

TEST_F(HubdTest, SlowHttpsPushRate) {
  // Pre-encoded 5,000-record batches over one kept-alive connection: the hub's HTTPS ingest
  // rate (TLS + zstd + protobuf + apply + fsync), without client-side encoding cost.
  constexpr uint64_t kTotal = 300000, kBatch = 5000;
  std::vector<std::string> bodies;
  for (uint64_t s = 1; s <= kTotal; s += kBatch) bodies.push_back(BatchBody("site-a", s, s + kBatch - 1));
  size_t bytes = 0;
  for (const auto& b : bodies) bytes += b.size();
  auto a = Site(site_a_);
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& body : bodies) {
    auto r = Push(*a, "site-a", body);
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("HTTPS push: %llu records in %.2fs = %.0f records/s, %.1f bytes/record on the wire\n",
              (unsigned long long)kTotal, secs, kTotal / secs, double(bytes) / kTotal);
  EXPECT_EQ(GetJson("/v1/sites")["sites"][0]["contiguous_seq"], kTotal);
}

}  // namespace
}  // namespace freshsync::testing

namespace freshsync::testing {
namespace {

// The value of the series `name_and_labels` (exactly as written, labels in their order) in a
// Prometheus text; -1 when absent.
double Series(const std::string& text, const std::string& name_and_labels) {
  const std::string key = "\n" + name_and_labels + " ";
  const size_t at = ("\n" + text).find(key);
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + key.size() - 1));
}

// docs/operations.md, "Hub metrics": what an operator watches, counted by the real hubd.
TEST_F(HubdTest, MetricsCountRequestsBatchesStoreCallsAndSites) {
  auto site_a = Site(site_a_);
  for (uint64_t b = 0; b < 3; ++b) EXPECT_EQ(Ack(Push(*site_a, "site-a", BatchBody("site-a", b * 10 + 1, b * 10 + 10))).contiguous_seq(), b * 10 + 10);
  EXPECT_EQ(Ack(Push(*site_a, "site-a", BatchBody("site-a", 21, 30))).duplicates(), 10u);  // a resend
  GetJson("/v1/changes?after=0&limit=5");
  GetJson("/v1/sites/site-a/stock");
  GetJson("/v1/no-such-route", kReaderToken, 404);

  auto r = Hq("")->Get("/metrics");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  const std::string& m = r->body;
  EXPECT_EQ(Series(m, R"(freshsync_hub_requests_total{method="POST",route="/v1/sites/{site}/batches",status="200"})"), 4) << m;
  EXPECT_EQ(Series(m, R"(freshsync_hub_requests_total{method="GET",route="/v1/changes",status="200"})"), 1) << m;
  EXPECT_EQ(Series(m, R"(freshsync_hub_requests_total{method="GET",route="/v1/sites/{site}/stock",status="200"})"), 1) << m;
  EXPECT_EQ(Series(m, R"(freshsync_hub_requests_total{method="GET",route="unmatched",status="404"})"), 1) << m;
  EXPECT_EQ(Series(m, R"(freshsync_hub_request_duration_seconds_count{method="POST",route="/v1/sites/{site}/batches"})"), 4) << m;
  EXPECT_EQ(Series(m, "freshsync_hub_batches_applied_total"), 4) << m;
  EXPECT_EQ(Series(m, R"(freshsync_hub_records_total{outcome="applied"})"), 30) << m;
  EXPECT_EQ(Series(m, R"(freshsync_hub_records_total{outcome="duplicate"})"), 10) << m;
  EXPECT_EQ(Series(m, R"(freshsync_hub_store_duration_seconds_count{op="apply_batch"})"), 4) << m;
  EXPECT_EQ(Series(m, R"(freshsync_hub_store_duration_seconds_count{op="changes"})"), 1) << m;
  EXPECT_EQ(Series(m, R"(freshsync_hub_store_duration_seconds_count{op="read"})"), 1) << m;
  EXPECT_EQ(Series(m, R"(freshsync_hub_store_errors_total{op="apply_batch"})"), -1) << "no store error happened";
  EXPECT_EQ(Series(m, R"(freshsync_hub_site_contiguous_seq{site="site-a"})"), 30) << m;
  const double age = Series(m, R"(freshsync_hub_site_last_seen_age_seconds{site="site-a"})");
  EXPECT_GE(age, 0) << m;
  EXPECT_LT(age, 60) << m;

  // Every hub series the shipped Grafana dashboard plots is one hubd exports.
  const std::string dashboard = ReadFile(std::string(FRESHSYNC_SOURCE_DIR) + "/packaging/grafana-dashboard.json");
  const std::regex hub_series("freshsync_hub_[a-z_]+");
  int plotted = 0;
  for (auto it = std::sregex_iterator(dashboard.begin(), dashboard.end(), hub_series); it != std::sregex_iterator(); ++it, ++plotted)
{
    const std::string family = std::regex_replace(it->str(), std::regex("_(bucket|sum|count)$"), "");
    // The relay's series exist only with [fanout.amqp], which this hubd has not:
    // tests/ops/prometheus_test.cc checks the Relay row against a hubd that has it.
    if (family.rfind("freshsync_hub_relay_", 0) == 0) continue;
    EXPECT_NE(m.find("# TYPE " + family + " "), std::string::npos) << "the dashboard plots " << it->str() << ", which hubd does not export";
  }
  EXPECT_GE(plotted, 10) << "the dashboard lost its hub panels";

  // The whole exposition as Prometheus reads it (promtool, from Debian's prometheus package).
  if (std::system("command -v promtool >/dev/null 2>&1") == 0) {
    WriteFile(dir_.File("metrics.txt"), m);
    EXPECT_EQ(RunShell("promtool check metrics < '" + dir_.File("metrics.txt") + "'", dir_.File("promtool.log")), 0)
        << ReadFile(dir_.File("promtool.log"));
  }
}

}  // namespace
}  // namespace freshsync::testing
