// Webhook notifications (HQ integrations issue, item 2) against the real hubd: a receiver on
// loopback (cpp-httplib) that answers 500 for a while, stalls past the timeout, has its
// connections reset and refused (tests/support/fault_proxy.h), then recovers; site batches with
// cold-chain alerts, refused orders and geofence events; a site that goes silent; an HQ command
// its site never fetches. Checks: every listed event arrives, signatures verify with the secret,
// each Idempotency-Key belongs to one event (its repeats carry the same body), unlisted events
// are not sent, a receiver that never recovers fills the dead-letter list, an admin lists and
// replays it (a reader gets 403), and two replicas on one PostgreSQL deliver each event once.
#include <openssl/hmac.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "tests/hub/hubd_fixture.h"
#include "tests/support/fault_proxy.h"
#include "tests/support/postgres.h"

namespace freshsync::testing {
namespace {

using json = nlohmann::json;

constexpr char kSecret[] = "webhook-secret-for-the-test";

// Independent of the hub's code: OpenSSL's HMAC, hex by hand.
std::string ExpectedSignature(const std::string& body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), kSecret, static_cast<int>(sizeof kSecret - 1), reinterpret_cast<const unsigned char*>(body.data()),
       body.size(), mac, &len);
  static const char* hex = "0123456789abcdef";
  std::string out = "sha256=";
  for (unsigned i = 0; i < len; ++i) {
    out += hex[mac[i] >> 4];
    out += hex[mac[i] & 15];
  }
  return out;
}

// What the receiver saw of one request.
struct Seen {
  std::string path, event, key, signature, content_type, body;
  int status = 0;  // what it answered
};

// The receiver: /ops answers by `mode`, /dead answers 500 until `dead_ok`.
class Receiver {
 public:
  enum Mode { kOk, kFail, kStall };
  std::atomic<int> mode{kOk};
  std::atomic<bool> dead_ok{false};

  // With `tls`: https with that certificate (cpp-httplib's SSLServer), else plain http.
  explicit Receiver(const TestPki::Files* tls = nullptr)
      : server_(tls ? std::make_unique<httplib::SSLServer>(tls->cert.c_str(), tls->key.c_str())
                    : std::make_unique<httplib::Server>()) {
    auto handle = [this](const httplib::Request& req, httplib::Response& res) {
      Seen s{req.path, req.get_header_value("X-FreshSync-Event"), req.get_header_value("Idempotency-Key"),
             req.get_header_value("X-FreshSync-Signature"), req.get_header_value("Content-Type"), req.body, 200};
      if (req.path == "/dead") {
        s.status = dead_ok ? 204 : 500;
      } else if (mode == kFail) {
        s.status = 500;
      } else if (mode == kStall) {
        // Past the webhook's timeout (1 s): the hub has given up on this attempt by then.
        std::this_thread::sleep_for(std::chrono::milliseconds(1600));
        s.status = 503;
      }
      res.status = s.status;
      res.set_content(s.status < 300 ? "" : "down for the test", "text/plain");
      std::lock_guard<std::mutex> l(mu_);
      seen_.push_back(std::move(s));
    };
    server_->Post("/ops", handle);
    server_->Post("/dead", handle);
    port_ = server_->bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ~Receiver() {
    server_->stop();
    thread_.join();
  }
  int port() const { return port_; }
  std::vector<Seen> seen() {
    std::lock_guard<std::mutex> l(mu_);
    return seen_;
  }
  // Requests to `path`, optionally only those answered with 2xx.
  std::vector<Seen> To(const std::string& path, bool delivered_only) {
    std::vector<Seen> out;
    for (Seen& s : seen()) {
      if (s.path == path && (!delivered_only || (s.status >= 200 && s.status < 300))) out.push_back(std::move(s));
    }
    return out;
  }
  size_t Count(const std::string& path, int status) {
    size_t n = 0;
    for (const Seen& s : seen()) n += s.path == path && s.status == status;
    return n;
  }

 private:
  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<Seen> seen_;
};

v1::ChangeRecord Event(uint64_t seq, v1::Entity entity, const std::string& key) {
  v1::ChangeRecord r;
  r.set_seq(seq);
  r.set_version(1);
  r.set_entity(entity);
  r.set_key(key);
  r.set_hlc((uint64_t{1764000000000} + seq) << 16);
  r.set_ts_ms(1764000000000 + static_cast<int64_t>(seq) * 1000);
  return r;
}

// seq 1 cold-chain open, 2 an order created (no event), 3 geofence enter, 4 geofence exit (not
// listed by "ops"), 5 an order refused, 6 cold-chain closed, 7 stock (no event). `first`
// shifts the seqs, so a site can send the mix twice.
std::string EventBatch(const std::string& site, uint64_t first) {
  v1::Batch b;
  b.set_site(site);
  const uint64_t s = first - 1;
  auto alert = [&](uint64_t seq, const char* state) {
    auto r = Event(seq, v1::COLDCHAIN_ALERT, "al-" + std::to_string(first));
    r.set_version(std::string(state) == "open" ? 1 : 2);
    r.mutable_alert()->set_alert_id(r.key());
    r.mutable_alert()->set_sensor("cold-1");
    r.mutable_alert()->set_state(state);
    r.mutable_alert()->set_min_c(0);
    r.mutable_alert()->set_max_c(4);
    r.mutable_alert()->set_started_ts_ms(1764000000000);
    return r;
  };
  auto order = [&](uint64_t seq, const std::string& id, const char* status) {
    auto r = Event(seq, v1::ORDER, id);
    r.mutable_order()->set_order_id(id);
    r.mutable_order()->set_status(status);
    if (std::string(status) == "refused") r.mutable_order()->set_reason("sku apple: not enough stock");
    return r;
  };
  auto fence = [&](uint64_t seq, const char* event) {
    auto r = Event(seq, v1::GEOFENCE_EVENT, "truck-1");
    r.set_version(seq);
    r.mutable_geofence()->set_vehicle("truck-1");
    r.mutable_geofence()->set_fence("dock");
    r.mutable_geofence()->set_kind("depot");
    r.mutable_geofence()->set_event(event);
    return r;
  };
  *b.add_records() = alert(s + 1, "open");
  *b.add_records() = order(s + 2, "o-" + std::to_string(first), "created");
  *b.add_records() = fence(s + 3, "enter");
  *b.add_records() = fence(s + 4, "exit");
  *b.add_records() = order(s + 5, "o-r" + std::to_string(first), "refused");
  *b.add_records() = alert(s + 6, "closed");
  auto stock = Event(s + 7, v1::STOCK, "apple");
  stock.mutable_stock()->set_sku("apple");
  stock.mutable_stock()->set_on_hand(5);
  *b.add_records() = stock;
  return hub::ZstdCompress(b.SerializeAsString(), 1);
}

class WebhookTest : public HubdTest {
 protected:
  void SetUp() override {
    proxy_ = std::make_unique<FaultProxy>("127.0.0.1", receiver_.port());
    ASSERT_TRUE(proxy_->Start());
    HubdTest::SetUp();
  }
  void TearDown() override {
    HubdTest::TearDown();
    proxy_->Stop();
  }
  std::string MoreTables() override {
    std::ostringstream t;
    t << "[notify]\noffline_after_s = 2\nbacklog_age_s = 1\nretry_min_ms = 100\nretry_max_ms = 400\npoll_ms = 100\n"
      // Everything but geofence.exit, through the fault proxy; never dead-lettered in this test.
      << "[[notify.webhook]]\nname = \"ops\"\nurl = \"http://127.0.0.1:" << proxy_->port() << "/ops\"\n"
      << "events = [\"coldchain.open\", \"coldchain.closed\", \"order.refused\", \"geofence.enter\", \"site.offline\", "
         "\"site.backlog\"]\n"
      << "secret = \"" << kSecret << "\"\nmax_attempts = 1000\ntimeout_ms = 1000\n"
      // A receiver that fails until the test lets it: two attempts, then the dead-letter list.
      << "[[notify.webhook]]\nname = \"dead\"\nurl = \"http://127.0.0.1:" << receiver_.port() << "/dead\"\n"
      << "events = [\"coldchain.open\", \"coldchain.closed\"]\nsecret = \"" << kSecret << "\"\nmax_attempts = 2\n";
    return t.str();
  }

  // Every request to `path` is signed, carries the headers, and its key names one event whose
  // body never changes between repeats.
  void CheckRequests(const std::string& path) {
    std::map<std::string, std::string> body_of_key;
    for (const Seen& s : receiver_.To(path, false)) {
      EXPECT_EQ(s.signature, ExpectedSignature(s.body)) << s.key;
      EXPECT_EQ(s.content_type, "application/json");
      json j = json::parse(s.body, nullptr, false);
      ASSERT_TRUE(j.is_object()) << s.body;
      EXPECT_EQ(j["event"], s.event);
      auto [it, fresh] = body_of_key.emplace(s.key, s.body);
      if (!fresh) {
        EXPECT_EQ(it->second, s.body) << "key " << s.key << " carried two bodies";
      }
    }
  }
  // Keys answered 2xx at `path`, with how many times.
  std::map<std::string, int> Delivered(const std::string& path) {
    std::map<std::string, int> out;
    for (const Seen& s : receiver_.To(path, true)) ++out[s.key];
    return out;
  }
  json DeadLetters(const std::string& token = kAdminToken, int want = 200) {
    return GetJson("/v1/webhooks/deadletters?webhook=dead", token, want);
  }

  Receiver receiver_;
  std::unique_ptr<FaultProxy> proxy_;
};

TEST_F(WebhookTest, DeliversListedEventsThroughFailuresAndDeadLettersTheRest) {
  receiver_.mode = Receiver::kFail;
  auto site = Site(site_a_);
  ASSERT_EQ(Ack(Push(*site, "site-a", EventBatch("site-a", 1))).contiguous_seq(), 7u);
  // An HQ order that site-c never fetches: site.backlog once it is a second old.
  auto hq = Hq(kWriterToken);
  auto order = hq->Post("/v1/sites/site-c/orders", R"({"order_id":"hq-1","lines":[{"sku":"apple","qty":1}]})", "application/json");
  ASSERT_TRUE(order);
  ASSERT_EQ(order->status, 202) << order->body;

  // 500s, then stalls past the timeout, then a reset connection and a refused one.
  ASSERT_TRUE(WaitFor([&] { return receiver_.Count("/ops", 500) >= 3; }, std::chrono::seconds(20)));
  receiver_.mode = Receiver::kStall;
  ASSERT_TRUE(WaitFor([&] { return receiver_.Count("/ops", 503) >= 2; }, std::chrono::seconds(20)));
  proxy_->ResetAfterBytes(1);
  receiver_.mode = Receiver::kOk;
  ASSERT_TRUE(WaitFor([&] { return proxy_->resets() >= 1; }, std::chrono::seconds(20)));
  proxy_->Cut();
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  proxy_->Pass();

  // Recovered: every listed event arrives; site-a is offline 2 s after its batch.
  const std::set<std::string> feed_keys = {"site-a:1", "site-a:3", "site-a:5", "site-a:6"};
  ASSERT_TRUE(WaitFor([&] {
    auto d = Delivered("/ops");
    size_t offline = 0, backlog = 0;
    for (const auto& [k, n] : d) {
      offline += k.rfind("site-a:offline:", 0) == 0;
      backlog += k.rfind("site-c:backlog:", 0) == 0;
    }
    return std::all_of(feed_keys.begin(), feed_keys.end(), [&](const std::string& k) { return d.count(k) > 0; }) &&
           offline == 1 && backlog == 1;
  }, std::chrono::seconds(30))) << ReadFile(dir_.File("hubd.log"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // no second offline or backlog event
  CheckRequests("/ops");
  std::map<std::string, std::string> events;
  for (const Seen& s : receiver_.To("/ops", true)) events[s.key] = s.event;
  std::map<std::string, int> delivered = Delivered("/ops");
  EXPECT_EQ(delivered.size(), 6u);
  for (const auto& [k, n] : delivered) EXPECT_EQ(n, 1) << k << " delivered " << n << " times";
  EXPECT_EQ(events["site-a:1"], "coldchain.open");
  EXPECT_EQ(events["site-a:3"], "geofence.enter");
  EXPECT_EQ(events["site-a:5"], "order.refused");
  EXPECT_EQ(events["site-a:6"], "coldchain.closed");
  // Unlisted (geofence.exit) and non-events (an order created, stock) were never sent.
  for (const Seen& s : receiver_.To("/ops", false)) {
    EXPECT_NE(s.event, "geofence.exit");
    EXPECT_TRUE(s.key != "site-a:2" && s.key != "site-a:4" && s.key != "site-a:7") << s.key;
  }
  // The failed attempts were all of the first event, in feed order: nothing overtook it.
  const auto all = receiver_.To("/ops", false);
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front().key, "site-a:1");
  // The body: {event, site, seq, ts, item}, item the feed item.
  for (const Seen& s : receiver_.To("/ops", true)) {
    json j = json::parse(s.body);
    if (s.key == "site-a:5") {
      EXPECT_EQ(j["site"], "site-a");
      EXPECT_EQ(j["seq"], 5);
      EXPECT_EQ(j["ts"], 1764000005000);
      EXPECT_EQ(j["item"]["site"], "site-a");
      EXPECT_EQ(j["item"]["seq"], 5);
      EXPECT_EQ(j["item"]["fields"]["status"], "refused") << j.dump();
    }
    if (s.event == "site.offline") {
      EXPECT_TRUE(j["seq"].is_null());
      EXPECT_EQ(s.key, "site-a:offline:" + std::to_string(j["item"]["last_push_ms"].get<int64_t>()));
    }
    if (s.event == "site.backlog") {
      EXPECT_EQ(j["item"]["pending"], 1);
      EXPECT_EQ(s.key, "site-c:backlog:" + std::to_string(j["item"]["oldest_pending_ms"].get<int64_t>()));
    }
  }

  // "dead" never recovered: both of its events are in the dead-letter list, with the error.
  ASSERT_TRUE(WaitFor([&] { return DeadLetters()["deadletters"].size() == 2; }, std::chrono::seconds(20)));
  DeadLetters(kReaderToken, 403);
  json list = DeadLetters();
  ASSERT_EQ(list["deadletters"].size(), 2u);
  const json first = list["deadletters"][0];
  EXPECT_EQ(first["idempotency_key"], "site-a:1");
  EXPECT_EQ(first["event"], "coldchain.open");
  EXPECT_EQ(first["attempts"], 2);
  EXPECT_NE(first["last_error"].get<std::string>().find("HTTP 500"), std::string::npos) << first.dump();
  EXPECT_EQ(list["deadletters"][1]["idempotency_key"], "site-a:6");
  EXPECT_EQ(GetJson("/v1/webhooks/deadletters?webhook=ops", kAdminToken)["deadletters"].size(), 0u);
  const size_t dead_attempts = receiver_.To("/dead", false).size();
  EXPECT_EQ(dead_attempts, 4u);
  // A reader may not replay.
  auto reader = Hq(kReaderToken);
  const std::string one = "/v1/webhooks/deadletters/" + std::to_string(first["id"].get<uint64_t>()) + "/replay";
  auto r = reader->Post(one.c_str(), "", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  r = reader->Post("/v1/webhooks/deadletters/replay?webhook=dead", "", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_EQ(receiver_.To("/dead", false).size(), dead_attempts);

  // The receiver is back; an admin replays one, then all: same key, same body.
  receiver_.dead_ok = true;
  auto admin = Hq(kAdminToken);
  r = admin->Post(one.c_str(), "", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202) << r->body;
  r = admin->Post("/v1/webhooks/deadletters/999999/replay", "", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  ASSERT_TRUE(WaitFor([&] { return Delivered("/dead").count("site-a:1") == 1; }, std::chrono::seconds(10)));
  ASSERT_TRUE(WaitFor([&] { return DeadLetters()["deadletters"].size() == 1; }, std::chrono::seconds(10)));
  r = admin->Post("/v1/webhooks/deadletters/replay?webhook=dead", "", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 202) << r->body;
  EXPECT_EQ(json::parse(r->body)["queued"], 1);
  ASSERT_TRUE(WaitFor([&] { return Delivered("/dead").count("site-a:6") == 1; }, std::chrono::seconds(10)));
  ASSERT_TRUE(WaitFor([&] { return DeadLetters()["deadletters"].empty(); }, std::chrono::seconds(10)));
  CheckRequests("/dead");
  for (const Seen& s : receiver_.To("/dead", true)) {
    EXPECT_EQ(s.body, s.key == "site-a:1" ? first["body"].dump() : list["deadletters"][1]["body"].dump());
  }
  // Audited like other admin calls; and the series are exported.
  const std::string audit = ReadFile(dir_.File("audit.jsonl"));
  EXPECT_NE(audit.find("\"kind\":\"webhook-replay\""), std::string::npos);
  auto m = Hq("")->Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("freshsync_hub_webhook_delivered_total{webhook=\"ops\",event=\"coldchain.open\"} 1"), std::string::npos);
  EXPECT_NE(m->body.find("freshsync_hub_webhook_dead_letters_total{webhook=\"dead\"} 2"), std::string::npos);
  EXPECT_NE(m->body.find("freshsync_hub_webhook_dead_letters_pending{webhook=\"dead\"} 0"), std::string::npos) << m->body;
  EXPECT_NE(m->body.find("freshsync_hub_webhook_active{webhook=\"ops\"} 1"), std::string::npos);
}

// https: the receiver's certificate is verified against the webhook's ca_file; without it
// (the system's CAs) the handshake fails, nothing reaches the receiver, and the delivery ends
// in the dead-letter list with the TLS error.
class WebhookHttpsTest : public HubdTest {
 protected:
  void SetUp() override {
    ASSERT_TRUE(receiver_pki_.Init());
    receiver_ = std::make_unique<Receiver>(&tls_);
    HubdTest::SetUp();
  }
  std::string MoreTables() override {
    std::ostringstream t;
    t << "[notify]\nretry_min_ms = 100\nretry_max_ms = 400\npoll_ms = 100\n"
      << "[[notify.webhook]]\nname = \"tls\"\nurl = \"https://127.0.0.1:" << receiver_->port() << "/ops\"\n"
      << "events = [\"coldchain.open\"]\nsecret = \"" << kSecret << "\"\nca_file = \"" << receiver_pki_.ca_cert() << "\"\n"
      << "[[notify.webhook]]\nname = \"untrusted\"\nurl = \"https://127.0.0.1:" << receiver_->port() << "/dead\"\n"
      << "events = [\"coldchain.open\"]\nsecret = \"" << kSecret << "\"\nmax_attempts = 2\n";
    return t.str();
  }
  TestPki receiver_pki_{dir_.File("receiver-pki")};
  TestPki::Files tls_ = receiver_pki_.server();
  std::unique_ptr<Receiver> receiver_;
};

TEST_F(WebhookHttpsTest, VerifiesTheReceiverWithTheCaFile) {
  ASSERT_EQ(Ack(Push(*Site(site_a_), "site-a", EventBatch("site-a", 1))).contiguous_seq(), 7u);
  ASSERT_TRUE(WaitFor([&] { return !receiver_->To("/ops", true).empty(); }, std::chrono::seconds(20)))
      << ReadFile(dir_.File("hubd.log"));
  const auto got = receiver_->To("/ops", true);
  EXPECT_EQ(got[0].key, "site-a:1");
  EXPECT_EQ(got[0].signature, ExpectedSignature(got[0].body));
  json list;
  ASSERT_TRUE(WaitFor([&] {
    list = GetJson("/v1/webhooks/deadletters?webhook=untrusted", kAdminToken);
    return list["deadletters"].size() == 1;
  }, std::chrono::seconds(20)));
  const std::string error = list["deadletters"][0]["last_error"];
  EXPECT_NE(error.find("certificate"), std::string::npos) << error;
  EXPECT_TRUE(receiver_->To("/dead", false).empty());
}

// Two replicas on one PostgreSQL: one lease per webhook, so each event is delivered once
// whichever replica took the batch.
class WebhookReplicasTest : public HubdTest {
 protected:
  bool OnPostgres() const override { return true; }
  void SetUp() override {
    HubdTest::SetUp();
    // The second replica: the same config on another port.
    const int first = port_;
    port_ = second_port_ = PickFreePort();
    WriteConfig();
    std::rename(dir_.File("hubd.toml").c_str(), dir_.File("hubd2.toml").c_str());
    second_ = ChildProcess({BinDir() + "/hubd", "--config", dir_.File("hubd2.toml")}, dir_.File("hubd2.log"));
    ASSERT_TRUE(second_.Start());
    WaitHealthy(dir_.File("hubd2.log"));
    port_ = first;
    WriteConfig();
  }
  void TearDown() override {
    second_.Kill();
    HubdTest::TearDown();
  }
  std::string MoreTables() override {
    std::ostringstream t;
    t << "[notify]\nretry_min_ms = 100\nretry_max_ms = 400\npoll_ms = 100\n"
      << "[[notify.webhook]]\nname = \"ops\"\nurl = \"http://127.0.0.1:" << receiver_.port() << "/ops\"\n"
      << "events = [\"coldchain.open\", \"coldchain.closed\", \"order.refused\", \"geofence.enter\", \"geofence.exit\"]\n"
      << "secret = \"" << kSecret << "\"\n";
    return t.str();
  }
  Receiver receiver_;
  int second_port_ = 0;
  ChildProcess second_;
};

TEST_F(WebhookReplicasTest, EachEventIsDeliveredOnce) {
  auto delivered = [&] {
    std::map<std::string, int> out;
    for (const Seen& s : receiver_.To("/ops", true)) ++out[s.key];
    return out;
  };
  std::set<std::string> want;
  auto round = [&](uint64_t first, bool both) {
    if (!both) port_ = second_port_;  // the first replica is gone: everything through the second
    ASSERT_EQ(Ack(Push(*Site(site_a_), "site-a", EventBatch("site-a", first))).contiguous_seq(), first + 6);
    const int mine = port_;
    port_ = second_port_;
    ASSERT_EQ(Ack(Push(*Site(site_b_), "site-b", EventBatch("site-b", first))).contiguous_seq(), first + 6);
    port_ = mine;
    for (const char* site : {"site-a", "site-b"}) {
      for (uint64_t off : {0, 2, 3, 4, 5}) want.insert(std::string(site) + ":" + std::to_string(first + off));
    }
  };
  // site-a through the first replica, site-b through the second.
  round(1, true);
  ASSERT_TRUE(WaitFor([&] { return delivered().size() >= want.size(); }, std::chrono::seconds(30)))
      << delivered().size() << " of " << want.size();
  // The delivering replica stops (SIGTERM hands its leases back); the other goes on from the
  // stored cursor: nothing lost, nothing sent twice.
  ASSERT_EQ(hubd_.Stop(), 0);
  const int first_port = port_;
  round(8, false);
  round(15, false);
  port_ = first_port;
  ASSERT_TRUE(WaitFor([&] { return delivered().size() >= want.size(); }, std::chrono::seconds(40)))
      << delivered().size() << " of " << want.size() << "\n" << ReadFile(dir_.File("hubd2.log"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // a second deliverer would show by now
  auto got = delivered();
  EXPECT_EQ(got.size(), want.size());
  for (const std::string& k : want) EXPECT_EQ(got[k], 1) << k;
  for (const Seen& s : receiver_.seen()) EXPECT_EQ(s.signature, ExpectedSignature(s.body));
  EXPECT_NE(ReadFile(dir_.File("hubd2.log")).find("webhook ops: lease taken"), std::string::npos);
}

}  // namespace
}  // namespace freshsync::testing
