// AmqpRelay: relays the hub's change feed (HubStore::Changes, the feed of GET /v1/changes) to a
// RabbitMQ topic exchange, for HQ systems that consume a broker rather than poll the API.
// Contract (../shared/design.md "HQ integrations", docs/formats.md "RabbitMQ messages"):
//   exchange     durable, type topic, declared on every connect
//   routing key  {site}.{entity}, the entity's feed name in lower case ("sh-01.stock")
//   properties   delivery_mode 2 (persistent), content_type application/json,
//                message_id {site}:{seq}
//   body         the feed item, exactly as GET /v1/changes writes it (hub::ChangeToJson)
//
// Delivery is at least once. The channel is in confirm mode; the relay publishes a page of the
// feed, waits until the broker has confirmed every message of it, and only then stores its
// cursor (HubStore::SetRelayCursor). Any AMQP error, a nack or a confirm that does not come in
// time closes the connection; after a capped, jittered backoff the relay reconnects and
// publishes again from the stored cursor, so an unconfirmed message is sent again with the same
// message_id and body. Consumers deduplicate on message_id.
//
// One relay is active across the hub replicas that share a store: the relay publishes only
// while it holds the store's lease `name` (hub/feed_lease.h, as each webhook notifier does), renewed every ttl/3; a replica
// that cannot renew it stops publishing and disconnects, and another takes over once it expires.
//
// Thread-safety: Start() and Stop() from one thread; the relay runs on its own thread and
// reports through RelayMetrics (hub_metrics.h). Ownership: borrows the store, the clock and the
// metrics, which must outlive it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/clock.h"
#include "common/status.h"
#include "hub/hub_metrics.h"
#include "hub/store.h"

namespace freshsync::hub {

struct AmqpRelayOptions {
  std::string url;                          // amqp://user:password@host:port/vhost ([fanout.amqp] url)
  std::string exchange = "freshsync.changes";
  // amqps:// (TLS 1.2 or later): the broker's certificate must chain to ca_file and name the
  // URL's host; cert_file/key_file ("" = none) answer a broker that asks for a client one.
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string name = "amqp";                // the store's lease and cursor name
  std::string holder;                       // this replica in the lease; "" = hostname:pid
  int64_t lease_ttl_ms = 30000;             // > 3 x timeout_ms: a slow round must not outlive it
  int page = 500;                           // feed items per publish-and-confirm round
  int64_t poll_ms = 100;                    // feed polling interval once caught up
  int64_t backoff_min_ms = 250;             // after an error; doubles, capped, jittered
  int64_t backoff_max_ms = 10000;
  int64_t timeout_ms = 10000;               // connect, login, declare, and a page's confirms
};

// The AMQP message of one feed item, as the relay publishes it (tests check against it).
struct AmqpMessage {
  std::string routing_key;
  std::string message_id;
  std::string body;
};
AmqpMessage MakeAmqpMessage(const FeedEntry& entry);

// kInvalidArgument when `url` is not an amqp:// or amqps:// URL rabbitmq-c can parse (config check).
Status CheckAmqpUrl(const std::string& url);

class AmqpRelay {
 public:
  AmqpRelay(AmqpRelayOptions options, HubStore& store, Clock& clock, RelayMetrics& metrics);
  ~AmqpRelay();  // Stop()
  AmqpRelay(const AmqpRelay&) = delete;
  AmqpRelay& operator=(const AmqpRelay&) = delete;

  void Start();
  // Stops the thread (an AMQP call in progress ends within timeout_ms) and hands the lease
  // back, so that another replica takes over at once instead of after the ttl.
  void Stop();

 private:
  struct Conn;
  void Run();
  bool Sleep(int64_t ms);  // false when stopping
  AmqpRelayOptions options_;
  HubStore& store_;
  Clock& clock_;
  RelayMetrics& metrics_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace freshsync::hub
