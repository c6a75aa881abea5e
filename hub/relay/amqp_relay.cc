#include "hub/relay/amqp_relay.h"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <random>
#include <vector>

#include <spdlog/spdlog.h>

#include "hub/codec.h"
#include "hub/feed_lease.h"

namespace freshsync::hub {
namespace {

constexpr amqp_channel_t kChannel = 1;

timeval ToTimeval(int64_t ms) {
  ms = std::max<int64_t>(ms, 1);
  return timeval{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
}

std::string ReplyError(const amqp_rpc_reply_t& r, const char* what) {
  // rabbitmq-c's reply: its kind, the broker's method, and rabbitmq-c's own status code.
  const auto& [kind, method, client_status] = r;
  if (kind == AMQP_RESPONSE_NORMAL) return "";
  if (kind == AMQP_RESPONSE_NONE) return std::string(what) + ": no reply";
  if (kind == AMQP_RESPONSE_SERVER_EXCEPTION) {
    if (method.id == AMQP_CONNECTION_CLOSE_METHOD || method.id == AMQP_CHANNEL_CLOSE_METHOD) {
      const auto* m = static_cast<const amqp_connection_close_t*>(method.decoded);
      return std::string(what) + ": closed by the broker: " +
             std::string(static_cast<const char*>(m->reply_text.bytes), m->reply_text.len);
    }
    return std::string(what) + ": server exception";
  }
  // The rest are rabbitmq-c's own failures (socket, timeout, protocol).
  return std::string(what) + ": " + amqp_error_string2(client_status);
}

}  // namespace

AmqpMessage MakeAmqpMessage(const FeedEntry& e) {
  std::string entity = EntityName(e.record.entity());
  std::transform(entity.begin(), entity.end(), entity.begin(), [](unsigned char c) { return std::tolower(c); });
  return AmqpMessage{e.site + "." + entity, e.site + ":" + std::to_string(e.record.seq()),
                     ChangeToJson(e.cursor, e.site, e.record).dump()};
}

Status CheckAmqpUrl(const std::string& url) {
  std::string copy = url;
  amqp_connection_info info;
  if (amqp_parse_url(copy.data(), &info) != AMQP_STATUS_OK)
    return Status::InvalidArgument("must be amqp:// or amqps://user:password@host:port/vhost");
  return Status::Ok();
}

// One connection with one channel in confirm mode. Every failure is a Status; the caller then
// destroys the Conn (which closes the socket) and reconnects after a backoff.
struct AmqpRelay::Conn {
  amqp_connection_state_t state = amqp_new_connection();
  uint64_t next_tag = 1;  // delivery tags count from 1 per channel after confirm.select

  ~Conn() {
    // Best effort: a broker that is gone makes these fail at once (the socket is closed).
    amqp_channel_close(state, kChannel, AMQP_REPLY_SUCCESS);
    amqp_connection_close(state, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(state);
  }

  Status Open(const AmqpRelayOptions& o) {
    std::string copy = o.url;
    amqp_connection_info info;
    if (amqp_parse_url(copy.data(), &info) != AMQP_STATUS_OK) return Status::InvalidArgument("fanout.amqp.url: unparsable");
    amqp_socket_t* socket = info.ssl ? amqp_ssl_socket_new(state) : amqp_tcp_socket_new(state);
    if (socket == nullptr) return Status::Internal("amqp: cannot create a socket");
    if (info.ssl) {
      // The broker proves who it is: its chain to ca_file and the URL's host in its certificate
      // (rabbitmq-c's defaults, set here so that no version's default can turn them off).
      amqp_ssl_socket_set_verify_peer(socket, 1);
      amqp_ssl_socket_set_verify_hostname(socket, 1);
      if (amqp_ssl_socket_set_ssl_versions(socket, AMQP_TLSv1_2, AMQP_TLSvLATEST) != AMQP_STATUS_OK)
        return Status::Internal("amqps: cannot require TLS 1.2 or later");
      if (int rc = amqp_ssl_socket_set_cacert(socket, o.ca_file.c_str()); rc != AMQP_STATUS_OK)
        return Status::InvalidArgument("fanout.amqp.ca_file: cannot load " + o.ca_file + ": " + amqp_error_string2(rc));
      if (!o.cert_file.empty()) {
        if (int rc = amqp_ssl_socket_set_key(socket, o.cert_file.c_str(), o.key_file.c_str()); rc != AMQP_STATUS_OK)
          return Status::InvalidArgument("fanout.amqp.cert_file/key_file: cannot load " + o.cert_file + ", " + o.key_file +
                                         ": " + amqp_error_string2(rc));
      }
    }
    timeval tv = ToTimeval(o.timeout_ms);
    amqp_set_handshake_timeout(state, &tv);
    amqp_set_rpc_timeout(state, &tv);
    if (int rc = amqp_socket_open_noblock(socket, info.host, info.port, &tv); rc != AMQP_STATUS_OK)
      return Status::Unavailable(std::string("amqp connect ") + info.host + ":" + std::to_string(info.port) + ": " + amqp_error_string2(rc));
    // Heartbeats let the broker and rabbitmq-c notice a dead peer while the relay is idle.
    // "amqp://host:5672/" names the vhost "" by the URI spec, which RabbitMQ does not have; the
    // contract's example URL is written that way, so it means the default vhost "/".
    const char* vhost = (info.vhost == nullptr || *info.vhost == '\0') ? "/" : info.vhost;
    amqp_rpc_reply_t r = amqp_login(state, vhost, 0, 131072, 30, AMQP_SASL_METHOD_PLAIN, info.user, info.password);
    if (auto e = ReplyError(r, "amqp login"); !e.empty()) return Status::Unavailable(e);
    amqp_channel_open(state, kChannel);
    if (auto e = ReplyError(amqp_get_rpc_reply(state), "amqp channel.open"); !e.empty()) return Status::Unavailable(e);
    amqp_exchange_declare(state, kChannel, amqp_cstring_bytes(o.exchange.c_str()), amqp_cstring_bytes("topic"),
                          /*passive=*/0, /*durable=*/1, /*auto_delete=*/0, /*internal=*/0, amqp_empty_table);
    if (auto e = ReplyError(amqp_get_rpc_reply(state), "amqp exchange.declare"); !e.empty()) return Status::Unavailable(e);
    amqp_confirm_select(state, kChannel);
    if (auto e = ReplyError(amqp_get_rpc_reply(state), "amqp confirm.select"); !e.empty()) return Status::Unavailable(e);
    return Status::Ok();
  }

  // Publishes every entry, then reads frames until the broker has acked all of them. A nack,
  // a closed channel or connection, or no confirm within timeout_ms is an error.
  Status PublishConfirmed(const AmqpRelayOptions& o, const std::vector<FeedEntry>& page, RelayMetrics& metrics) {
    const uint64_t first = next_tag;
    for (const FeedEntry& e : page) {
      const AmqpMessage m = MakeAmqpMessage(e);
      amqp_basic_properties_t props{};
      props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
      props.content_type = amqp_cstring_bytes("application/json");
      props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
      props.message_id = amqp_cstring_bytes(m.message_id.c_str());
      const int rc = amqp_basic_publish(state, kChannel, amqp_cstring_bytes(o.exchange.c_str()),
                                        amqp_cstring_bytes(m.routing_key.c_str()), 0, 0, &props,
                                        amqp_bytes_t{m.body.size(), const_cast<char*>(m.body.data())});
      if (rc != AMQP_STATUS_OK) return Status::Unavailable(std::string("amqp publish: ") + amqp_error_string2(rc));
      ++next_tag;
      metrics.published.fetch_add(1, std::memory_order_relaxed);
    }
    // Acks may be single or `multiple` (all tags up to it); RabbitMQ sends them in order, but
    // a set per tag costs little and assumes nothing.
    std::vector<bool> acked(page.size(), false);
    size_t missing = page.size();
    auto mark = [&](uint64_t tag) {
      if (tag < first || tag >= next_tag || acked[tag - first]) return;
      acked[tag - first] = true;
      --missing;
    };
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(o.timeout_ms);
    while (missing > 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) return Status::Unavailable("amqp: confirms did not come within the timeout");
      timeval tv = ToTimeval(left);
      amqp_frame_t frame;
      const int rc = amqp_simple_wait_frame_noblock(state, &frame, &tv);
      if (rc == AMQP_STATUS_TIMEOUT) continue;
      if (rc != AMQP_STATUS_OK) return Status::Unavailable(std::string("amqp wait for confirms: ") + amqp_error_string2(rc));
      if (frame.frame_type != AMQP_FRAME_METHOD) continue;
      switch (frame.payload.method.id) {
        case AMQP_BASIC_ACK_METHOD: {
          const auto* ack = static_cast<const amqp_basic_ack_t*>(frame.payload.method.decoded);
          if (ack->multiple) {
            for (uint64_t t = first; t <= std::min(ack->delivery_tag, next_tag - 1); ++t) mark(t);
          } else {
            mark(ack->delivery_tag);
          }
          break;
        }
        case AMQP_BASIC_NACK_METHOD:
          return Status::Unavailable("amqp: the broker nacked a message");
        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD: {
          const auto* m = static_cast<const amqp_channel_close_t*>(frame.payload.method.decoded);
          return Status::Unavailable("amqp: closed by the broker: " +
                                     std::string(static_cast<const char*>(m->reply_text.bytes), m->reply_text.len));
        }
        default:
          break;  // basic.return cannot come (not mandatory); anything else is not ours
      }
    }
    metrics.confirmed.fetch_add(page.size(), std::memory_order_relaxed);
    return Status::Ok();
  }
};

AmqpRelay::AmqpRelay(AmqpRelayOptions options, HubStore& store, Clock& clock, RelayMetrics& metrics)
    : options_(std::move(options)), store_(store), clock_(clock), metrics_(metrics) {
  if (options_.holder.empty()) options_.holder = DefaultLeaseHolder();
  metrics_.enabled = true;
}

AmqpRelay::~AmqpRelay() { Stop(); }

void AmqpRelay::Start() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { Run(); });
}

void AmqpRelay::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool AmqpRelay::Sleep(int64_t ms) {
  std::unique_lock<std::mutex> l(mu_);
  return !cv_.wait_for(l, std::chrono::milliseconds(std::max<int64_t>(ms, 0)), [this] { return stopping_; });
}

void AmqpRelay::Run() {
  std::mt19937_64 rng(std::random_device{}());
  int64_t backoff = options_.backoff_min_ms;
  // Full backoff grows to the cap; the wait is drawn in [backoff/2, backoff] so that replicas
  // and relays restarted together do not hammer a returning broker in step.
  auto back_off = [&] {
    metrics_.errors.fetch_add(1, std::memory_order_relaxed);
    const int64_t wait = backoff / 2 + static_cast<int64_t>(rng() % static_cast<uint64_t>(backoff / 2 + 1));
    backoff = std::min(backoff * 2, options_.backoff_max_ms);
    return Sleep(wait);
  };
  std::unique_ptr<Conn> conn;
  auto disconnect = [&] {
    conn.reset();
    metrics_.connected = false;
  };
  FeedLease lease(store_, clock_, options_.name, options_.holder, options_.lease_ttl_ms);
  bool have_cursor = false;   // read from the store since the lease was taken
  int64_t pending_since = 0;  // monotonic ms when the oldest unconfirmed item was first read; 0: none
  uint64_t cursor = 0;
  while (true) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopping_) break;
    }
    const int64_t mono = clock_.MonotonicMs();
    const bool was_active = lease.held();
    const FeedLease::Outcome held = lease.Keep();
    if (held == FeedLease::Outcome::kOther || held == FeedLease::Outcome::kError) {
      if (was_active) spdlog::warn("relay {}: lease lost ({}); stopping publishing", options_.name,
                                   held == FeedLease::Outcome::kOther ? "held by another replica" : lease.error().ToString());
      have_cursor = false;
      metrics_.active = false;
      disconnect();
      if (held == FeedLease::Outcome::kError ? !back_off() : !Sleep(lease.RetryMs())) break;
      continue;
    }
    if (held == FeedLease::Outcome::kTaken) have_cursor = false;
    if (!have_cursor) {
      // The previous holder may have moved the cursor: start from the store's.
      auto c = store_.RelayCursor(options_.name);
      if (!c.ok()) {
        spdlog::warn("relay {}: read cursor: {}", options_.name, c.status().ToString());
        if (!back_off()) break;
        continue;
      }
      cursor = *c;
      spdlog::info("relay {}: lease taken by {}, from cursor {}", options_.name, options_.holder, cursor);
      have_cursor = true;
      metrics_.active = true;
      metrics_.cursor = cursor;
    }
    if (!conn) {
      auto fresh = std::make_unique<Conn>();
      if (Status s = fresh->Open(options_); !s.ok()) {
        spdlog::warn("relay {}: {}", options_.name, s.ToString());
        if (!back_off()) break;
        continue;
      }
      conn = std::move(fresh);
      metrics_.connected = true;
      backoff = options_.backoff_min_ms;
      // Whatever was published and not confirmed before goes again, with the same message_id.
      if (auto c = store_.RelayCursor(options_.name); c.ok()) cursor = *c;
      spdlog::info("relay {}: connected to the broker, exchange {}, from cursor {}", options_.name, options_.exchange, cursor);
    }
    auto page = store_.Changes(cursor, options_.page);
    if (!page.ok()) {
      spdlog::warn("relay {}: read feed: {}", options_.name, page.status().ToString());
      if (!back_off()) break;
      continue;
    }
    if (page->empty()) {
      pending_since = 0;
      metrics_.lag_records = 0;
      metrics_.lag_seconds = 0.0;
      if (!Sleep(options_.poll_ms)) break;
      continue;
    }
    if (pending_since == 0) pending_since = mono;
    metrics_.lag_records = page->size();
    metrics_.lag_seconds = static_cast<double>(clock_.MonotonicMs() - pending_since) / 1000.0;
    if (Status s = conn->PublishConfirmed(options_, *page, metrics_); !s.ok()) {
      spdlog::warn("relay {}: {}; reconnecting", options_.name, s.ToString());
      disconnect();
      if (!back_off()) break;
      continue;
    }
    // Confirmed: the cursor may move. Should the store not take it, the relay goes on from its
    // own copy; a restart then repeats some messages, which at least once allows.
    cursor = page->back().cursor;
    if (Status s = store_.SetRelayCursor(options_.name, cursor); !s.ok()) {
      metrics_.errors.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("relay {}: store cursor: {}", options_.name, s.ToString());
    }
    metrics_.cursor = cursor;
    if (static_cast<int>(page->size()) < options_.page) {
      pending_since = 0;
      metrics_.lag_records = 0;
      metrics_.lag_seconds = 0.0;
    }
  }
  disconnect();
  metrics_.active = false;
  // Hand the lease back (expires now) so that another replica need not wait out the ttl.
  lease.Release();
}

}  // namespace freshsync::hub
