// The shipped example config must stay valid as the config grows.
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "common/config.h"
#include "hub/notify/webhook.h"

namespace freshsync {
namespace {

TEST(HubConfigExampleTest, ExampleParses) {
  auto c = LoadHubConfig(std::string(HUB_SOURCE_DIR) + "/hubd.example.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->listen, "0.0.0.0:8443");
  EXPECT_EQ(c->threads, 8);
  ASSERT_EQ(c->tokens.size(), 1u);
  EXPECT_EQ(c->tokens[0].role, "reader");
  EXPECT_EQ(c->max_decompressed_bytes, 64 << 20);
  // The transport's keys, at their defaults.
  const HubConfig defaults;
  EXPECT_EQ(c->max_header_bytes, defaults.max_header_bytes);
  EXPECT_EQ(c->max_header_count, defaults.max_header_count);
  EXPECT_EQ(c->max_connections, defaults.max_connections);
  EXPECT_EQ(c->max_connections_per_address, defaults.max_connections_per_address);
  EXPECT_EQ(c->handshake_nice, defaults.handshake_nice);
  EXPECT_EQ(c->handshake_timeout_ms, defaults.handshake_timeout_ms);
  EXPECT_EQ(c->head_timeout_ms, defaults.head_timeout_ms);
  EXPECT_EQ(c->body_timeout_ms, defaults.body_timeout_ms);
  EXPECT_EQ(c->idle_timeout_ms, defaults.idle_timeout_ms);
  EXPECT_EQ(c->write_timeout_ms, defaults.write_timeout_ms);
}

TEST(HubConfigExampleTest, TransportLimitsAreValidated) {
  const std::string base =
      "listen = \"127.0.0.1:1\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n[store]\npath = \"d\"\n[limits]\n";
  auto ok = ParseHubConfig(base + "head_timeout_s = 0.5\nmax_connections_per_address = 3\nhandshake_nice = 0\n");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->head_timeout_ms, 500);
  EXPECT_EQ(ok->max_connections_per_address, 3);
  EXPECT_EQ(ok->handshake_nice, 0);
  for (const auto& [line, key] : std::vector<std::pair<std::string, std::string>>{
           {"head_timeout_s = 0\n", "limits.head_timeout_s"},
           {"idle_timeout_s = -1\n", "limits.idle_timeout_s"},
           {"max_header_bytes = 100\n", "limits.max_header_bytes"},
           {"max_header_count = 1\n", "limits.max_header_count"},
           {"max_connections = 0\n", "limits.max_connections"},
           {"handshake_nice = -1\n", "limits.handshake_nice"},
           {"handshake_nice = 20\n", "limits.handshake_nice"},
           {"max_connections = 10\nmax_connections_per_address = 11\n", "limits.max_connections_per_address"}}) {
    auto bad = ParseHubConfig(base + line);
    ASSERT_FALSE(bad.ok()) << line;
    EXPECT_NE(bad.status().message().find(key), std::string::npos) << bad.status().message();
  }
}

// [fanout.amqp] (../shared/design.md "HQ integrations"): url required, exchange defaulted.
TEST(HubConfigExampleTest, FanoutAmqpIsOptionalAndValidated) {
  const std::string base = "listen = \"127.0.0.1:1\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n[store]\npath = \"d\"\n";
  auto none = ParseHubConfig(base);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(none->amqp_url, "");
  auto ok = ParseHubConfig(base + "[fanout.amqp]\nurl = \"amqp://u:p@mq:5672/\"\n");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->amqp_url, "amqp://u:p@mq:5672/");
  EXPECT_EQ(ok->amqp_exchange, "freshsync.changes");
  auto named = ParseHubConfig(base + "[fanout.amqp]\nurl = \"amqp://mq\"\nexchange = \"hq.x\"\n");
  ASSERT_TRUE(named.ok()) << named.status().ToString();
  EXPECT_EQ(named->amqp_exchange, "hq.x");
  auto tls = ParseHubConfig(base + "[fanout.amqp]\nurl = \"amqps://mq:5671/\"\nca_file = \"ca\"\ncert_file = \"c\"\nkey_file = \"k\"\n");
  ASSERT_TRUE(tls.ok()) << tls.status().ToString();
  EXPECT_EQ(tls->amqp_ca_file, "ca");
  EXPECT_EQ(tls->amqp_cert_file, "c");
  EXPECT_EQ(tls->amqp_key_file, "k");
  for (const auto& [table, key] : std::vector<std::pair<std::string, std::string>>{
           {"[fanout.amqp]\nexchange = \"x\"\n", "fanout.amqp.url"},
           {"[fanout.amqp]\nurl = \"http://mq\"\n", "fanout.amqp.url"},
           {"[fanout.amqp]\nurl = \"amqp://mq\"\nexchange = \"\"\n", "fanout.amqp.exchange"},
           {"[fanout.amqp]\nurl = \"amqp://mq\"\nqueue = \"q\"\n", "fanout.amqp.queue"},
           {"[fanout.amqp]\nurl = \"amqps://mq\"\n", "fanout.amqp.ca_file"},
           {"[fanout.amqp]\nurl = \"amqp://mq\"\nca_file = \"ca\"\n", "fanout.amqp.ca_file"},
           {"[fanout.amqp]\nurl = \"amqps://mq\"\nca_file = \"ca\"\ncert_file = \"c\"\n", "fanout.amqp.key_file"},
           {"[fanout.amqp]\nurl = \"amqps://mq\"\nca_file = \"ca\"\nkey_file = \"k\"\n", "fanout.amqp.cert_file"},
           {"[fanout.kafka]\nurl = \"x\"\n", "fanout.kafka"}}) {
    auto bad = ParseHubConfig(base + table);
    ASSERT_FALSE(bad.ok()) << table;
    EXPECT_NE(bad.status().message().find(key), std::string::npos) << bad.status().message();
  }
}

// [notify] and [[notify.webhook]] (../shared/design.md "HQ integrations"); the event names and the
// URL rule are hub::CheckWebhook's, at hubd's start.
TEST(HubConfigExampleTest, NotifyWebhooksAreValidated) {
  const std::string base = "listen = \"127.0.0.1:1\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n[store]\npath = \"d\"\n";
  const std::string hook = "[[notify.webhook]]\nname = \"ops\"\nurl = \"https://ops.example/h\"\nsecret = \"s\"\n";
  auto ok = ParseHubConfig(base + "[notify]\noffline_after_s = 60\nbacklog_age_s = 120\n" + hook +
                           "events = [\"coldchain.open\", \"site.offline\"]\n"
                           "[[notify.webhook]]\nname = \"sms\"\nurl = \"http://127.0.0.1:9/sms\"\nsecret = \"t\"\n"
                           "events = [\"order.refused\"]\nmax_attempts = 3\nca_file = \"ca.pem\"\n");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  ASSERT_EQ(ok->webhooks.size(), 2u);
  EXPECT_EQ(ok->notify_offline_after_s, 60);
  EXPECT_EQ(ok->notify_backlog_age_s, 120);
  EXPECT_EQ(ok->webhooks[0].events, (std::vector<std::string>{"coldchain.open", "site.offline"}));
  EXPECT_EQ(ok->webhooks[1].max_attempts, 3);
  EXPECT_EQ(ok->webhooks[1].ca_file, "ca.pem");
  for (const HubWebhook& h : ok->webhooks) EXPECT_TRUE(hub::CheckWebhook(h).ok()) << hub::CheckWebhook(h).ToString();
  for (const auto& [table, key] : std::vector<std::pair<std::string, std::string>>{
           {"[[notify.webhook]]\nname = \"x\"\nurl = \"https://a/\"\nevents = []\n", "secret"},
           {"[[notify.webhook]]\nname = \"x\"\nurl = \"https://a/\"\nsecret = \"s\"\n", "events"},
           {hook + "events = [\"site.offline\"]\n" + hook + "events = [\"site.offline\"]\n", "used twice"},
           {hook + "events = [\"site.offline\"]\nmax_attempts = 0\n", "max_attempts"},
           {"[notify]\noffline_after_s = 0\n", "notify.offline_after_s"},
           {"[notify]\nretry_min_ms = 10\nretry_max_ms = 5\n", "notify.retry_min_ms"},
           {"[notify]\nsms = 1\n", "notify.sms"}}) {
    auto bad = ParseHubConfig(base + table);
    ASSERT_FALSE(bad.ok()) << table;
    EXPECT_NE(bad.status().message().find(key), std::string::npos) << bad.status().message();
  }
  HubWebhook h{"ops", "http://ops.example/h", {"coldchain.open"}, "s", "", 10, 60, 1000};
  EXPECT_NE(hub::CheckWebhook(h).message().find("http:// only"), std::string::npos);  // clear text off this host
  for (const char* url : {"http://localhost:8080/h", "http://[::1]:80/h", "http://127.0.0.1/h", "https://ops.example/h"}) {
    h.url = url;
    EXPECT_TRUE(hub::CheckWebhook(h).ok()) << url;
  }
  h.url = "http://127.0.0.1.evil.example/h";
  EXPECT_FALSE(hub::CheckWebhook(h).ok());
  h.url = "ftp://a/";
  EXPECT_FALSE(hub::CheckWebhook(h).ok());
  h.url = "https://a/";
  h.events = {"coldchain.opened"};
  EXPECT_NE(hub::CheckWebhook(h).message().find("unknown event"), std::string::npos);
}

// [stream] and [customer_stream] (docs/api.md, "GET /v1/stream").
TEST(HubConfigExampleTest, StreamTablesAreValidated) {
  const std::string base = "listen = \"127.0.0.1:1\"\n[tls]\nca = \"a\"\ncert = \"b\"\nkey = \"c\"\n[store]\npath = \"d\"\n";
  auto none = ParseHubConfig(base);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(none->stream_heartbeat_ms, 15000);
  EXPECT_EQ(none->customer_stream_key_file, "");
  auto ok = ParseHubConfig(base + "[stream]\nheartbeat_s = 0.5\nbuffer_bytes = 65536\npoll_s = 0.05\n"
                                  "[customer_stream]\nkey_file = \"k\"\ntoken_ttl_s = 60\n");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->stream_heartbeat_ms, 500);
  EXPECT_EQ(ok->stream_buffer_bytes, 65536);
  EXPECT_EQ(ok->stream_poll_ms, 50);
  EXPECT_EQ(ok->customer_stream_key_file, "k");
  EXPECT_EQ(ok->customer_stream_token_ttl_ms, 60000);
  for (const auto& [table, key] : std::vector<std::pair<std::string, std::string>>{
           {"[stream]\nheartbeat_s = 16\n", "stream.heartbeat_s"},  // the contract: at least every 15 s
           {"[stream]\nbuffer_bytes = 10\n", "stream.buffer_bytes"},
           {"[stream]\npoll_s = 0\n", "stream.poll_s"},
           {"[stream]\nstall_s = 0\n", "stream.stall_s"},
           {"[stream]\nmax_clients = 0\n", "stream.max_clients"},
           {"[customer_stream]\ntoken_ttl_s = 60\n", "customer_stream.key_file"},
           {"[customer_stream]\nkey_file = \"k\"\ntoken_ttl_s = 0\n", "customer_stream.token_ttl_s"}}) {
    auto bad = ParseHubConfig(base + table);
    ASSERT_FALSE(bad.ok()) << table;
    EXPECT_NE(bad.status().message().find(key), std::string::npos) << bad.status().message();
  }
}

}  // namespace
}  // namespace freshsync
