// Relay fan-in (docs/benchmarks.md, "Relay fan-in"): 100 sites' batches applied to a hub store
// while the RabbitMQ relay (hub/relay/amqp_relay.h) publishes the feed to a real rabbitmq-server;
// the lag of a record is the time from when its batch was due to its arrival at a consumer
// (the store's commit, synchronous=FULL as in production, included). The
// baseline, same run, same broker and schedule: a bare rabbitmq-c publisher with confirms that
// publishes each batch's messages when the batch is due, measured the same way.
#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <thread>

#include <CLI/CLI.hpp>

#include "common/clock.h"
#include "hub/relay/amqp_relay.h"
#include "hub/sqlite_store.h"
#include "tests/support/rabbitmq.h"

namespace {

using Steady = std::chrono::steady_clock;
using namespace freshsync;

v1::ChangeRecord Stock(uint64_t seq) {
  v1::ChangeRecord r;
  r.set_seq(seq);
  r.set_entity(v1::STOCK);
  r.set_key("sku-" + std::to_string(seq % 50));
  r.set_version(seq);
  r.set_hlc((uint64_t{1764000000000} + seq) << 16);
  r.set_ts_ms(1764000000000 + static_cast<int64_t>(seq));
  r.mutable_stock()->set_sku(r.key());
  r.mutable_stock()->set_on_hand(static_cast<int64_t>(seq % 1000));
  return r;
}

struct Schedule {
  int sites = 100;
  int batch = 10;
  double seconds = 20;
  double rate = 5000;  // records/s over all sites
  // Batch n of site s is due at start + (n * sites + s) * interval.
  std::chrono::nanoseconds interval() const { return std::chrono::nanoseconds(static_cast<int64_t>(1e9 * batch / rate)); }
  int batches() const { return static_cast<int>(seconds * rate / batch); }
};

std::string SiteName(int s) { return "site-" + std::to_string(s); }

void Report(const char* name, const std::map<std::string, Steady::time_point>& sent, freshsync::testing::AmqpConsumer& consumer,
            double seconds) {
  std::map<std::string, Steady::time_point> first;
  for (const auto& d : consumer.Messages()) first.emplace(d.message_id, d.received);
  std::vector<double> lags;
  for (const auto& [id, t] : sent) {
    auto it = first.find(id);
    if (it != first.end()) lags.push_back(std::chrono::duration<double, std::milli>(it->second - t).count());
  }
  std::sort(lags.begin(), lags.end());
  auto pct = [&](double p) { return lags.empty() ? -1.0 : lags[static_cast<size_t>(p * static_cast<double>(lags.size() - 1))]; };
  std::printf("%-6s records %zu delivered %zu in %.1f s: lag ms p50 %.1f p99 %.1f max %.1f\n", name, sent.size(), lags.size(),
              seconds, pct(0.5), pct(0.99), lags.empty() ? -1.0 : lags.back());
}

// Waits until the consumer has `n` distinct message ids or `timeout` passes.
void Drain(freshsync::testing::AmqpConsumer& c, size_t n, std::chrono::seconds timeout) {
  const auto end = Steady::now() + timeout;
  while (Steady::now() < end && c.count() < n) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

bool Ok(amqp_connection_state_t c) { return amqp_get_rpc_reply(c).reply_type == AMQP_RESPONSE_NORMAL; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"relay fan-in: hub relay vs a bare rabbitmq-c publisher with confirms"};
  Schedule sch;
  app.add_option("--sites", sch.sites);
  app.add_option("--rate", sch.rate, "records/s over all sites");
  app.add_option("--seconds", sch.seconds);
  app.add_option("--batch", sch.batch, "records per site batch");
  CLI11_PARSE(app, argc, argv);
  freshsync::testing::TempDir dir;
  freshsync::testing::RabbitMqServer rabbit(dir.File("rabbitmq"));
  if (!rabbit.Start()) {
    std::fprintf(stderr, "rabbitmq did not start: %s\n", rabbit.log_path().c_str());
    return 1;
  }
  const int batches = sch.batches();

  // Baseline: the bare publisher, each batch's messages published and confirmed when due.
  {
    freshsync::testing::AmqpConsumer consumer(rabbit.Url(), "bench.bare", "bench-bare");
    while (!consumer.bound()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t* s = amqp_tcp_socket_new(c);
    if (amqp_socket_open(s, "127.0.0.1", rabbit.port()) != AMQP_STATUS_OK) return 1;
    if (amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type != AMQP_RESPONSE_NORMAL) return 1;
    amqp_channel_open(c, 1);
    amqp_confirm_select(c, 1);
    if (!Ok(c)) return 1;
    std::map<std::string, Steady::time_point> sent;
    std::vector<uint64_t> seq(static_cast<size_t>(sch.sites), 0);
    uint64_t tag = 0, cursor = 0;
    const auto start = Steady::now();
    int n = 0;
    while (n < batches) {
      // Lag counts from when a batch was due, so a publisher that falls behind the schedule
      // pays for it as the relay would. Every batch due by now goes in one round of publishes
      // and confirms, as the relay takes what the feed holds in one page.
      std::this_thread::sleep_until(start + sch.interval() * n);
      const auto now = Steady::now();
      do {
        const int site = n % sch.sites;
        const auto due = start + sch.interval() * n;
        for (int i = 0; i < sch.batch; ++i) {
          hub::FeedEntry e{++cursor, SiteName(site), Stock(++seq[static_cast<size_t>(site)])};
          const hub::AmqpMessage m = hub::MakeAmqpMessage(e);
          amqp_basic_properties_t p{};
          p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
          p.content_type = amqp_cstring_bytes("application/json");
          p.delivery_mode = AMQP_DELIVERY_PERSISTENT;
          p.message_id = amqp_cstring_bytes(m.message_id.c_str());
          amqp_basic_publish(c, 1, amqp_cstring_bytes("bench.bare"), amqp_cstring_bytes(m.routing_key.c_str()), 0, 0, &p,
                             amqp_bytes_t{m.body.size(), const_cast<char*>(m.body.data())});
          sent.emplace(m.message_id, due);
          ++tag;
        }
        ++n;
      } while (n < batches && start + sch.interval() * n <= now);
      uint64_t acked = 0;  // RabbitMQ acks in order: wait for the round's last tag
      while (acked < tag) {
        amqp_frame_t f;
        if (amqp_simple_wait_frame(c, &f) != AMQP_STATUS_OK) return 1;
        if (f.frame_type == AMQP_FRAME_METHOD && f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
          const auto* a = static_cast<const amqp_basic_ack_t*>(f.payload.method.decoded);
          acked = std::max(acked, a->delivery_tag);
        }
      }
    }
    const double secs = std::chrono::duration<double>(Steady::now() - start).count();
    Drain(consumer, sent.size(), std::chrono::seconds(60));
    amqp_connection_close(c, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(c);
    Report("bare", sent, consumer, secs);
  }

  // The relay: batches applied to the store on schedule; hubd's relay thread publishes the feed.
  {
    freshsync::testing::AmqpConsumer consumer(rabbit.Url(), "bench.relay", "bench-relay");
    while (!consumer.bound()) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto store = hub::SqliteHubStore::Open({dir.File("hub.db"), 2, /*synchronous_full=*/true});
    if (!store.ok()) return 1;
    hub::AmqpRelayOptions o;
    o.url = rabbit.Url();
    o.exchange = "bench.relay";
    hub::RelayMetrics metrics;
    hub::AmqpRelay relay(o, **store, freshsync::SystemClock(), metrics);
    relay.Start();
    std::map<std::string, Steady::time_point> sent;
    std::vector<uint64_t> seq(static_cast<size_t>(sch.sites), 0);
    const auto start = Steady::now();
    for (int n = 0; n < batches; ++n) {
      const int site = n % sch.sites;
      std::this_thread::sleep_until(start + sch.interval() * n);
      v1::Batch b;
      b.set_site(SiteName(site));
      std::vector<std::string> ids;
      for (int i = 0; i < sch.batch; ++i) {
        *b.add_records() = Stock(++seq[static_cast<size_t>(site)]);
        ids.push_back(SiteName(site) + ":" + std::to_string(seq[static_cast<size_t>(site)]));
      }
      const auto due = start + sch.interval() * n;
      auto r = (*store)->ApplyBatch(SiteName(site), b, freshsync::SystemClock().NowMs());
      if (!r.ok()) return 1;
      for (auto& id : ids) sent.emplace(id, due);
    }
    const double secs = std::chrono::duration<double>(Steady::now() - start).count();
    Drain(consumer, sent.size(), std::chrono::seconds(60));
    relay.Stop();
    Report("relay", sent, consumer, secs);
    std::printf("relay published %llu, errors %llu\n", static_cast<unsigned long long>(metrics.published.load()),
                static_cast<unsigned long long>(metrics.errors.load()));
  }
  return 0;
}
