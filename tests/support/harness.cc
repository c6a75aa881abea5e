#include "tests/support/harness.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

namespace freshsync::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base && *base ? base : "/tmp") + "/freshsync-test-XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (mkdtemp(buf.data()) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  path_ = buf.data();
}

TempDir::~TempDir() {
  if (std::getenv("FRESHSYNC_KEEP_TMP") != nullptr) {
    std::cerr << "kept " << path_ << "\n";
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

namespace {

// The lowest port of the kernel's ephemeral range, where outgoing connections take their
// local ports.
int EphemeralLow() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int lo = 32768;
  in >> lo;
  return lo;
}

bool CanBind(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

}  // namespace

// A port the kernel hands out for bind(port 0) lies in the ephemeral range, which is also where
// every outgoing connection takes its local port. Between this pick and the server's bind, any
// client on the machine (another test's thousand connections, a sync push) could take it, and
// the server would not start; CI saw an edged run "without metrics" that way. So the port is
// drawn at random below the ephemeral range, where only an explicit bind can take it, and never
// handed out twice by one process. Two test processes drawing the same port before either binds
// is a one in ~20,000 chance per pick, not the ephemeral range's steady traffic.
int PickFreePort() {
  static std::mutex mu;
  static std::set<int> given;
  static std::mt19937 rng(std::random_device{}());
  const int eph_lo = EphemeralLow();
  constexpr int kLowest = 10000;
  std::lock_guard<std::mutex> lock(mu);
  if (eph_lo - kLowest >= 1000) {
    std::uniform_int_distribution<int> pick(kLowest, eph_lo - 1);
    for (int attempt = 0; attempt < 200; ++attempt) {
      const int port = pick(rng);
      if (given.count(port) || !CanBind(port)) continue;
      given.insert(port);
      return port;
    }
  }
  // An unusual ephemeral range leaves no room below it: the kernel's pick, as before.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    socklen_t len = sizeof(addr);
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
  }
  close(fd);
  given.insert(port);
  return port;
}

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (cond()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return cond();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

namespace {

// A positive integer from the environment, or 0 when unset or not a number.
uint64_t EnvNumber(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return 0;
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v, &end, 10);
  return *end == '\0' ? n : 0;
}

}  // namespace

uint32_t DamageSeed(uint32_t fixed) {
  const uint64_t soak = EnvNumber("FRESHSYNC_DAMAGE_SEED");
  if (soak == 0) return fixed;
  // Mixed rather than replaced: a test with several fixed seeds keeps them distinct.
  const auto seed = static_cast<uint32_t>(fixed ^ (soak * 0x9E3779B97F4A7C15ull >> 32));
  std::cerr << "damage seed " << seed << " (fixed " << fixed << ", FRESHSYNC_DAMAGE_SEED=" << soak << ")\n";
  return seed;
}

int DamageRounds(int fixed) {
  const uint64_t scale = EnvNumber("FRESHSYNC_DAMAGE_SCALE");
  if (scale <= 1) return fixed;
  const int rounds = static_cast<int>(std::min<uint64_t>(static_cast<uint64_t>(fixed) * scale, 1000000));
  std::cerr << "damage rounds " << rounds << " (" << fixed << " x FRESHSYNC_DAMAGE_SCALE=" << scale << ")\n";
  return rounds;
}

std::string BinDir() {
  const char* dir = std::getenv("FRESHSYNC_BIN_DIR");
  return dir ? dir : ".";
}

ChildProcess::ChildProcess(std::vector<std::string> argv, std::string log_path, std::map<std::string, std::string> env)
    : argv_(std::move(argv)), log_path_(std::move(log_path)), env_(std::move(env)) {}

ChildProcess::~ChildProcess() { Kill(); }

ChildProcess::ChildProcess(ChildProcess&& other) noexcept { *this = std::move(other); }

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    Kill();
    argv_ = std::move(other.argv_);
    log_path_ = std::move(other.log_path_);
    env_ = std::move(other.env_);
    pid_ = other.pid_;
    other.pid_ = -1;
  }
  return *this;
}

bool ChildProcess::Start() {
  if (Running()) return true;
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    int fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    for (const auto& [k, v] : env_) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> args;
    for (auto& a : argv_) args.push_back(a.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    std::perror("execvp");
    _exit(127);
  }
  pid_ = pid;
  return true;
}

bool ChildProcess::Running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

void ChildProcess::Signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

void ChildProcess::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

int ChildProcess::Wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      return status;
    }
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

int ChildProcess::Stop(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  Signal(SIGTERM);
  int status = Wait(timeout);
  if (status == -1) Kill();
  return status;
}

MosquittoBroker::MosquittoBroker(const std::string& dir, std::string extra_conf) : dir_(dir), extra_conf_(std::move(extra_conf)) {
  std::filesystem::create_directories(dir_);
}

MosquittoBroker::~MosquittoBroker() { Kill(); }

bool MosquittoBroker::WaitListening() {
  return WaitFor(
      [&] {
        if (!proc_.Running()) return false;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(static_cast<uint16_t>(port_));
        bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
        close(fd);
        return ok;
      },
      std::chrono::seconds(5));
}

bool MosquittoBroker::Start() {
  // Mosquitto cannot bind port 0: pick one that was free and retry on a race.
  for (int attempt = 0; attempt < 10; ++attempt) {
    if (port_ == 0 || attempt > 0) port_ = PickFreePort();
    std::ostringstream conf;
    conf << "listener " << port_ << " 127.0.0.1\n"
         // Started as root, mosquitto drops to user "mosquitto", which cannot write our 0700 temp dirs.
         << (geteuid() == 0 ? "user root\n" : "")
         << "allow_anonymous true\n"
         << "persistence true\n"
         << "persistence_location " << dir_ << "/\n"
         << "autosave_interval 1\n"
         << "max_queued_messages 1000000\n"
         << "max_inflight_messages 1000\n"
         << "log_dest file " << dir_ << "/mosquitto.log\n"
         << extra_conf_ << "\n";
    WriteFile(dir_ + "/mosquitto.conf", conf.str());
    proc_ = ChildProcess({"mosquitto", "-c", dir_ + "/mosquitto.conf"}, dir_ + "/mosquitto.stdout");
    if (!proc_.Start()) return false;
    if (WaitListening()) return true;
    proc_.Kill();
  }
  return false;
}

void MosquittoBroker::Stop() { proc_.Stop(std::chrono::seconds(5)); }
void MosquittoBroker::Kill() { proc_.Kill(); }

bool MosquittoBroker::Restart() {
  Stop();
  for (int attempt = 0; attempt < 50; ++attempt) {  // same port: wait for it to be released
    proc_ = ChildProcess({"mosquitto", "-c", dir_ + "/mosquitto.conf"}, dir_ + "/mosquitto.stdout");
    if (proc_.Start() && WaitListening()) return true;
    proc_.Kill();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

int RunShell(const std::string& command, const std::string& log) {
  std::string cmd = command;
  if (!log.empty()) cmd += " >>'" + log + "' 2>&1";
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TestPki::TestPki(const std::string& dir) : dir_(dir) { std::filesystem::create_directories(dir_); }

bool TestPki::Init() {
  const std::string d = dir_;
  const std::string log = d + "/openssl.log";
  WriteFile(d + "/server.ext", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  WriteFile(d + "/client.ext", "extendedKeyUsage=clientAuth\n");
  int rc = RunShell("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj '/CN=FreshSync Test CA' "
                    "-keyout '" + d + "/ca.key' -out '" + d + "/ca.crt'", log);
  rc |= RunShell("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj '/CN=localhost' "
                 "-keyout '" + d + "/server.key' -out '" + d + "/server.csr'", log);
  rc |= RunShell("openssl x509 -req -in '" + d + "/server.csr' -CA '" + d + "/ca.crt' -CAkey '" + d +
                 "/ca.key' -CAcreateserial -days 30 -extfile '" + d + "/server.ext' -out '" + d + "/server.crt'", log);
  return rc == 0;
}

TestPki::Files TestPki::Client(const std::string& cn, int days) {
  const std::string d = dir_;
  const std::string log = d + "/openssl.log";
  const std::string base = d + "/client-" + cn + (days < 0 ? "-expired" : "");
  RunShell("openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj '/CN=" + cn + "' -keyout '" + base +
               ".key' -out '" + base + ".csr'", log);
  if (days >= 0) {
    RunShell("openssl x509 -req -in '" + base + ".csr' -CA '" + d + "/ca.crt' -CAkey '" + d + "/ca.key' -CAcreateserial -days " +
                 std::to_string(days) + " -extfile '" + d + "/client.ext' -out '" + base + ".crt'", log);
  } else {
    // An already expired certificate: `openssl ca` accepts explicit start and end dates.
    RunShell("mkdir -p '" + d + "/ca-db' && : > '" + d + "/ca-db/index.txt' && (test -f '" + d + "/ca-db/serial' || echo 1000 > '" + d +
                 "/ca-db/serial')", log);
    WriteFile(d + "/ca.cnf", "[ca]\ndefault_ca=test\n[test]\ndir=" + d + "/ca-db\ndatabase=$dir/index.txt\nserial=$dir/serial\n"
                             "new_certs_dir=$dir\ndefault_md=sha256\npolicy=any\nunique_subject=no\n[any]\ncommonName=supplied\n");
    RunShell("openssl ca -batch -config '" + d + "/ca.cnf' -cert '" + d + "/ca.crt' -keyfile '" + d + "/ca.key' -startdate 20200101000000Z "
             "-enddate 20200201000000Z -extfile '" + d + "/client.ext' -in '" + base + ".csr' -out '" + base + ".crt'", log);
  }
  return {base + ".crt", base + ".key"};
}

TestPki::Files TestPki::Untrusted(const std::string& cn) {
  const std::string d = dir_;
  const std::string log = d + "/openssl.log";
  const std::string base = d + "/untrusted-" + cn;
  RunShell("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj '/CN=" + cn + "' -keyout '" + base +
               ".key' -out '" + base + ".crt'", log);
  return {base + ".crt", base + ".key"};
}

}  // namespace freshsync::testing
