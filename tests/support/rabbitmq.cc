#include "tests/support/rabbitmq.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <thread>
#include <vector>

namespace freshsync::testing {
namespace {

bool RunningAsRoot() { return geteuid() == 0; }

}  // namespace

RabbitMqServer::RabbitMqServer(const std::string& dir) : dir_(dir) {
  port_ = PickFreePort();
  dist_port_ = PickFreePort();
  epmd_port_ = PickFreePort();
  node_ = "rabbit-test-" + std::to_string(port_) + "@localhost";
  std::filesystem::create_directories(dir_ + "/mnesia");
  std::filesystem::create_directories(dir_ + "/log");
  WriteFile(dir_ + "/enabled_plugins", "[].\n");
  if (RunningAsRoot()) {
    const std::string parent = std::filesystem::path(dir_).parent_path().string();
    chmod(parent.c_str(), 0711);
    if (const passwd* pw = getpwnam("rabbitmq")) {
      for (const auto& p : std::filesystem::recursive_directory_iterator(dir_))
        if (chown(p.path().c_str(), pw->pw_uid, pw->pw_gid) != 0) std::perror("chown rabbitmq dir");
      if (chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) std::perror("chown rabbitmq dir");
    }
    chmod(dir_.c_str(), 0700);
  }
}

RabbitMqServer::~RabbitMqServer() {
  Kill();
  // The epmd this node started (ERL_EPMD_PORT is ours alone): ask it to stop.
  (void)RunShell(AsRabbit("epmd -port " + std::to_string(epmd_port_) + " -kill"), log_path());
}

// A shell command as the rabbitmq user (when root), with the environment both the node and
// rabbitmqctl need: the same HOME (the Erlang cookie is there), node name and epmd. The
// assignments come first, so the shell exports them to setpriv, which keeps them.
std::string RabbitMqServer::AsRabbit(const std::string& command) const {
  const std::string environment =
      "HOME='" + dir_ + "' ERL_EPMD_PORT=" + std::to_string(epmd_port_) + " RABBITMQ_NODENAME=" + node_ + " ";
  if (!RunningAsRoot()) return environment + command;
  return environment + "setpriv --reuid=rabbitmq --regid=rabbitmq --clear-groups " + command;
}

bool RabbitMqServer::Start() {
  if (node_process_.Running()) return true;
  std::vector<std::string> argv;
  if (RunningAsRoot()) argv = {"setpriv", "--reuid=rabbitmq", "--regid=rabbitmq", "--clear-groups"};
  argv.push_back("/usr/lib/rabbitmq/bin/rabbitmq-server");
  const std::map<std::string, std::string> environment = {
      {"HOME", dir_},
      {"RABBITMQ_NODENAME", node_},
      {"RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1"},
      {"RABBITMQ_NODE_PORT", std::to_string(port_)},
      {"RABBITMQ_DIST_PORT", std::to_string(dist_port_)},
      {"ERL_EPMD_PORT", std::to_string(epmd_port_)},
      {"RABBITMQ_MNESIA_BASE", dir_ + "/mnesia"},
      {"RABBITMQ_LOG_BASE", dir_ + "/log"},
      {"RABBITMQ_ENABLED_PLUGINS_FILE", dir_ + "/enabled_plugins"},
      {"RABBITMQ_CONFIG_FILE", dir_ + "/rabbitmq"},  // none there: the defaults, not /etc's
      {"RABBITMQ_ADVANCED_CONFIG_FILE", dir_ + "/advanced.config"},
      {"RABBITMQ_CONF_ENV_FILE", dir_ + "/rabbitmq-env.conf"},
      // Makes rabbitmq-server exec the VM in place (see rabbitmq.h); no NOTIFY_SOCKET is set.
      {"RUNNING_UNDER_SYSTEMD", "true"},
  };
  node_process_ = ChildProcess(argv, log_path(), environment);
  if (!node_process_.Start()) return false;
  // await_startup returns once the node has booted (listeners open); it fails at once while
  // the node is not yet reachable, so retry until the deadline.
  const std::string await = AsRabbit("/usr/lib/rabbitmq/bin/rabbitmqctl -q -n " + node_ + " await_startup --timeout 60");
  const bool up = WaitFor(
      [&] {
        if (!node_process_.Running()) return true;
        if (RunShell(await, dir_ + "/rabbitmqctl.log") == 0) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        return false;
      },
      std::chrono::seconds(90));
  return up && node_process_.Running();
}

void RabbitMqServer::Kill() { node_process_.Kill(); }

std::string RabbitMqServer::Url() const { return "amqp://guest:guest@127.0.0.1:" + std::to_string(port_) + "/"; }

void RabbitMqServer::EnableTls(const std::string& ca, const std::string& cert, const std::string& key) {
  tls_port_ = PickFreePort();
  const std::string tls = dir_ + "/tls";
  std::filesystem::create_directories(tls);
  std::filesystem::copy_file(ca, tls + "/ca.crt", std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(cert, tls + "/server.crt", std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(key, tls + "/server.key", std::filesystem::copy_options::overwrite_existing);
  // The new-style config file that RABBITMQ_CONFIG_FILE (dir_/rabbitmq) names with ".conf".
  WriteFile(dir_ + "/rabbitmq.conf",
            "listeners.ssl.1 = 127.0.0.1:" + std::to_string(tls_port_) + "\n" +
                "ssl_options.cacertfile = " + tls + "/ca.crt\n" + "ssl_options.certfile = " + tls + "/server.crt\n" +
                "ssl_options.keyfile = " + tls + "/server.key\n" + "ssl_options.verify = verify_peer\n" +
                "ssl_options.fail_if_no_peer_cert = true\n");
  if (RunningAsRoot()) {
    if (const passwd* pw = getpwnam("rabbitmq")) {
      for (const std::string& p : {tls, tls + "/ca.crt", tls + "/server.crt", tls + "/server.key", dir_ + "/rabbitmq.conf"})
        if (chown(p.c_str(), pw->pw_uid, pw->pw_gid) != 0) std::perror("chown rabbitmq tls");
    }
  }
}

std::string RabbitMqServer::TlsUrl() const {
  return "amqps://guest:guest@localhost:" + std::to_string(tls_port_) + "/";
}

namespace {

std::string Str(amqp_bytes_t b) { return std::string(static_cast<const char*>(b.bytes), b.len); }
bool RpcOk(amqp_connection_state_t c) { return amqp_get_rpc_reply(c).reply_type == AMQP_RESPONSE_NORMAL; }

}  // namespace

AmqpConsumer::AmqpConsumer(std::string url, std::string exchange, std::string queue)
    : url_(std::move(url)), exchange_(std::move(exchange)), queue_(std::move(queue)) {
  thread_ = std::thread([this] { Run(); });
}

AmqpConsumer::~AmqpConsumer() {
  stop_ = true;
  thread_.join();
}

std::vector<AmqpDelivered> AmqpConsumer::Messages() {
  std::lock_guard<std::mutex> l(mu_);
  return messages_;
}

size_t AmqpConsumer::count() {
  std::lock_guard<std::mutex> l(mu_);
  return messages_.size();
}

void AmqpConsumer::Run() {
  while (!stop_) {
    amqp_connection_state_t c = amqp_new_connection();
    Session(c);
    amqp_destroy_connection(c);
    if (!stop_) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
}

void AmqpConsumer::Session(void* connection) {
  auto c = static_cast<amqp_connection_state_t>(connection);
  std::string copy = url_;
  amqp_connection_info info;
  if (amqp_parse_url(copy.data(), &info) != AMQP_STATUS_OK) return;
  amqp_socket_t* s = amqp_tcp_socket_new(c);
  timeval tv{2, 0};
  if (amqp_socket_open_noblock(s, info.host, info.port, &tv) != AMQP_STATUS_OK) return;
  if (amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type != AMQP_RESPONSE_NORMAL) return;
  amqp_channel_open(c, 1);
  if (!RpcOk(c)) return;
  amqp_exchange_declare(c, 1, amqp_cstring_bytes(exchange_.c_str()), amqp_cstring_bytes("topic"), 0, 1, 0, 0, amqp_empty_table);
  if (!RpcOk(c)) return;
  amqp_queue_declare(c, 1, amqp_cstring_bytes(queue_.c_str()), 0, /*durable=*/1, 0, 0, amqp_empty_table);
  if (!RpcOk(c)) return;
  amqp_queue_bind(c, 1, amqp_cstring_bytes(queue_.c_str()), amqp_cstring_bytes(exchange_.c_str()), amqp_cstring_bytes("#"),
                  amqp_empty_table);
  if (!RpcOk(c)) return;
  amqp_basic_qos(c, 1, 0, 500, 0);
  amqp_basic_consume(c, 1, amqp_cstring_bytes(queue_.c_str()), amqp_empty_bytes, 0, /*no_ack=*/0, 0, amqp_empty_table);
  if (!RpcOk(c)) return;
  bound_ = true;
  while (!stop_) {
    amqp_maybe_release_buffers(c);
    amqp_envelope_t envelope;
    timeval wait{0, 200000};
    amqp_rpc_reply_t r = amqp_consume_message(c, &envelope, &wait, 0);
    const auto& [kind, method, client_status] = r;  // rabbitmq-c's own status code last
    if (kind != AMQP_RESPONSE_NORMAL) {
      // rabbitmq-c's timeout: nothing arrived within the wait. Anything else: the broker is
      // gone or closed the channel, so reconnect.
      if (kind != AMQP_RESPONSE_SERVER_EXCEPTION && client_status == AMQP_STATUS_TIMEOUT) continue;
      return;
    }
    AmqpDelivered d;
    d.received = std::chrono::steady_clock::now();
    d.routing_key = Str(envelope.routing_key);
    const amqp_basic_properties_t& p = envelope.message.properties;
    if (p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) d.message_id = Str(p.message_id);
    if (p._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) d.content_type = Str(p.content_type);
    if (p._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) d.delivery_mode = p.delivery_mode;
    d.body = Str(envelope.message.body);
    {
      std::lock_guard<std::mutex> l(mu_);
      messages_.push_back(std::move(d));
    }
    const int ack = amqp_basic_ack(c, 1, envelope.delivery_tag, 0);
    amqp_destroy_envelope(&envelope);
    if (ack != AMQP_STATUS_OK) return;
  }
}

}  // namespace freshsync::testing
