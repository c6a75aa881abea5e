// A real PostgreSQL 15 for tests: its own cluster in a temporary folder, on a free loopback
// port, started and crashed on demand. Test-only, like the rest of tests/support/.
//
// PostgreSQL refuses to run as root, so when the test runs as root the cluster folder is owned
// by `postgres` and initdb and the postmaster run as that user (setpriv, which execs in place,
// so the ChildProcess pid is the postmaster's own and signals reach it directly).
#pragma once

#include <string>
#include <vector>

#include "tests/support/harness.h"

namespace freshsync::testing {

class PostgresServer {
 public:
  // `dir` must be reachable by the `postgres` user (it is made so: mode 0711 on its parents
  // under $TMPDIR is the caller's business; TempDir's folders are 0700, so pass a subfolder
  // and PostgresServer opens the path up to it).
  // `settings`: extra server settings, "name=value" each, passed as `-c` (a benchmark's tuning).
  explicit PostgresServer(const std::string& dir, std::vector<std::string> settings = {});
  ~PostgresServer();  // immediate shutdown (SIGQUIT), then SIGKILL if it lingers
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // initdb (first call only), then the postmaster on a free port; waits until it accepts
  // connections. Returns false and leaves the reason in the log (log_path()).
  bool Start();
  // What `pg_ctl stop -m immediate` does: SIGQUIT to the postmaster, no checkpoint; the next
  // Start() runs crash recovery from the WAL. The port is kept.
  void Crash();
  // A clean shutdown (SIGINT, "fast").
  void Stop();
  bool Restart() { Stop(); return Start(); }

  // Creates a database owned by the superuser `postgres`; false on failure.
  bool CreateDatabase(const std::string& name);
  // Runs SQL through psql and returns its trimmed, unaligned output ("" on failure).
  std::string Query(const std::string& db, const std::string& sql);
  // The connection options of the client tools (psql, pg_dump, pg_restore, createdb, dropdb)
  // for this cluster: "-h 127.0.0.1 -p PORT -U postgres". They run as any user (trust).
  std::string ClientArgs() const;
  // The path of one of PostgreSQL 15's programs (pg_dump, pg_restore, ...).
  static std::string Bin(const std::string& program);
  // A libpq connection string for `db` over TCP on loopback.
  std::string Url(const std::string& db) const;
  int port() const { return port_; }
  // The postmaster's pid (its backends are its children), as last started.
  pid_t pid() const { return postmaster_.pid(); }
  const std::string& data_dir() const { return data_dir_; }
  std::string log_path() const { return dir_ + "/postgres.log"; }

 private:
  bool InitDb();
  bool WaitAccepting();
  std::string AsPostgres(const std::string& command) const;
  std::string dir_;
  std::string data_dir_;
  std::vector<std::string> settings_;
  int port_ = 0;
  ChildProcess postmaster_;
};

// One cluster per test binary, started on first use and shut down at exit (a test failure
// with its log when it does not start): for tests that need a database each, not a cluster.
PostgresServer& SharedPostgres();
// A fresh database on the shared cluster for `key` (e.g. a test's directory), the same one
// again for the same key (a store reopened, as after a restart); its libpq URL.
std::string SharedPostgresDatabase(const std::string& key);

}  // namespace freshsync::testing
