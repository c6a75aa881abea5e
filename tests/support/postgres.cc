#include "tests/support/postgres.h"

#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace freshsync::testing {
namespace {

// Debian installs the server binaries outside PATH; FRESHSYNC_PG_BIN points elsewhere if needed.
std::string PgBin(const std::string& tool) {
  const char* dir = std::getenv("FRESHSYNC_PG_BIN");
  return std::string(dir && *dir ? dir : "/usr/lib/postgresql/15/bin") + "/" + tool;
}

bool RunningAsRoot() { return geteuid() == 0; }

}  // namespace

PostgresServer::PostgresServer(const std::string& dir, std::vector<std::string> settings)
    : dir_(dir), data_dir_(dir + "/data"), settings_(std::move(settings)) {
  std::filesystem::create_directories(dir_);
  if (RunningAsRoot()) {
    // The postgres user must reach its folder: let it through the (0700) test folder above.
    const std::string parent = std::filesystem::path(dir_).parent_path().string();
    chmod(parent.c_str(), 0711);
    if (const passwd* pw = getpwnam("postgres")) {
      if (chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) std::perror("chown postgres dir");
    }
    chmod(dir_.c_str(), 0700);
  }
}

PostgresServer::~PostgresServer() { Crash(); }

std::string PostgresServer::AsPostgres(const std::string& command) const {
  if (!RunningAsRoot()) return command;
  return "setpriv --reuid=postgres --regid=postgres --clear-groups " + command;
}

bool PostgresServer::InitDb() {
  if (std::filesystem::exists(data_dir_ + "/PG_VERSION")) return true;
  // trust on loopback: the tests' cluster lives and dies with the test. --no-sync only skips
  // initdb's own final flush; the server itself runs with fsync on, as in production, so that
  // Crash() tests recovery for real.
  return RunShell(AsPostgres(PgBin("initdb") + " -D '" + data_dir_ + "' -A trust -U postgres -E UTF8 --no-sync"), log_path()) == 0;
}

bool PostgresServer::WaitAccepting() {
  const std::string probe = PgBin("pg_isready") + " -q -h 127.0.0.1 -p " + std::to_string(port_);
  return WaitFor(
      [&] { return postmaster_.Running() && std::system(probe.c_str()) == 0; }, std::chrono::seconds(60));
}

bool PostgresServer::Start() {
  if (postmaster_.Running()) return true;
  if (!InitDb()) return false;
  // The port is picked once and kept across restarts (clients keep their URL); a port taken
  // in the meantime by someone else gets a new one on the first start only.
  const bool first_start = port_ == 0;
  for (int attempt = 0; attempt < (first_start ? 5 : 50); ++attempt) {
    if (first_start) port_ = PickFreePort();
    std::vector<std::string> argv;
    if (RunningAsRoot()) argv = {"setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups"};
    for (const std::string& a : {PgBin("postgres"), std::string("-D"), data_dir_, std::string("-p"), std::to_string(port_),
                                 std::string("-k"), dir_, std::string("-c"), std::string("listen_addresses=127.0.0.1"),
                                 std::string("-c"), std::string("max_connections=300")})
      argv.push_back(a);
    for (const std::string& kv : settings_) {
      argv.push_back("-c");
      argv.push_back(kv);
    }
    postmaster_ = ChildProcess(argv, log_path());
    if (!postmaster_.Start()) return false;
    if (WaitAccepting()) return true;
    postmaster_.Kill();
    if (!first_start) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

void PostgresServer::Crash() {
  if (!postmaster_.Running()) return;
  postmaster_.Signal(SIGQUIT);
  if (postmaster_.Wait(std::chrono::seconds(15)) == -1) postmaster_.Kill();
}

void PostgresServer::Stop() {
  if (!postmaster_.Running()) return;
  postmaster_.Signal(SIGINT);
  if (postmaster_.Wait(std::chrono::seconds(30)) == -1) Crash();
}

std::string PostgresServer::Query(const std::string& db, const std::string& sql) {
  const std::string sql_file = dir_ + "/query.sql";
  WriteFile(sql_file, sql);
  const std::string cmd = "psql -X -A -t -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p " + std::to_string(port_) +
                          " -U postgres -d '" + db + "' -f '" + sql_file + "' 2>>'" + log_path() + "'";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) return "";
  std::string out;
  std::array<char, 4096> buf{};
  while (size_t n = fread(buf.data(), 1, buf.size(), pipe.get())) out.append(buf.data(), n);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

bool PostgresServer::CreateDatabase(const std::string& name) {
  return RunShell(PgBin("createdb") + " -h 127.0.0.1 -p " + std::to_string(port_) + " -U postgres '" + name + "'", log_path()) == 0;
}

std::string PostgresServer::ClientArgs() const { return "-h 127.0.0.1 -p " + std::to_string(port_) + " -U postgres"; }

std::string PostgresServer::Bin(const std::string& program) { return PgBin(program); }

std::string PostgresServer::Url(const std::string& db) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + db;
}

PostgresServer& SharedPostgres() {
  static TempDir* dir = new TempDir();  // outlives the server: destroyed in that order at exit
  static PostgresServer server(dir->File("pg"));
  static const bool started = server.Start();
  EXPECT_TRUE(started) << ReadFile(server.log_path());
  return server;
}

std::string SharedPostgresDatabase(const std::string& key) {
  static std::mutex mu;
  static std::map<std::string, std::string> dbs;
  std::lock_guard<std::mutex> l(mu);
  auto it = dbs.find(key);
  if (it != dbs.end()) return it->second;
  auto& pg = SharedPostgres();
  const std::string name = "t" + std::to_string(dbs.size());
  EXPECT_TRUE(pg.CreateDatabase(name)) << name;
  return dbs.emplace(key, pg.Url(name)).first->second;
}

}  // namespace freshsync::testing
