#include "tests/support/rabbitmq.h"

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
  (void)RunShell(AsRabbit(EnvPrefix() + "epmd -port " + std::to_string(epmd_port_) + " -kill"), log_path());
}

std::string RabbitMqServer::AsRabbit(const std::string& command) const {
  if (!RunningAsRoot()) return command;
  return "setpriv --reuid=rabbitmq --regid=rabbitmq --clear-groups " + command;
}

// The environment both the node and rabbitmqctl need: the same HOME (the Erlang cookie is
// there), node name and epmd.
std::string RabbitMqServer::EnvPrefix() const {
  return "env HOME='" + dir_ + "' ERL_EPMD_PORT=" + std::to_string(epmd_port_) + " RABBITMQ_NODENAME=" + node_ + " ";
}

bool RabbitMqServer::Start() {
  if (node_process_.Running()) return true;
  std::vector<std::string> argv;
  if (RunningAsRoot()) argv = {"setpriv", "--reuid=rabbitmq", "--regid=rabbitmq", "--clear-groups"};
  argv.push_back("/usr/lib/rabbitmq/bin/rabbitmq-server");
  const std::map<std::string, std::string> env = {
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
  node_process_ = ChildProcess(argv, log_path(), env);
  if (!node_process_.Start()) return false;
  // await_startup returns once the node has booted (listeners open); it fails at once while
  // the node is not yet reachable, so retry until the deadline.
  const std::string await = AsRabbit(EnvPrefix() + "/usr/lib/rabbitmq/bin/rabbitmqctl -q -n " + node_ + " await_startup --timeout 60");
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

}  // namespace freshsync::testing
