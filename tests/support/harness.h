// Test harness: real components for integration tests. Temp dirs, child processes, a real
// Mosquitto on a free loopback port, and real TLS certificates made with the openssl CLI.
//
// Everything here is test-only. Fakes live beside it: sync_fakes.h (FakeClock, an in-memory hub
// behind Transport), fault_vfs.h (a failing disk and power cuts under SQLite), power_cut_files.h
// (power cuts under the intake journal), fault_proxy.h (a flaky link).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace freshsync::testing {

// A fresh directory under $TMPDIR, removed with its contents on destruction
// (kept when FRESHSYNC_KEEP_TMP is set, for post-mortems).
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, const std::string& content);
std::string ReadFile(const std::string& path);

// A loopback TCP port that was free a moment ago, drawn below the kernel's ephemeral range so
// that no outgoing connection takes it before the server binds it (see harness.cc). Callers
// that cannot bind port 0 themselves (Mosquitto) must still retry on a bind failure.
int PickFreePort();

// Polls `cond` every 20 ms until it is true or `timeout` passes. Returns the last result.
bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout);

// Damage tests draw their faults from fixed seeds, so that CI does the same damage every run.
// scripts/soak.sh runs them again and again with other faults: $FRESHSYNC_DAMAGE_SEED is mixed
// into each fixed seed (unset: the fixed seed itself), and $FRESHSYNC_DAMAGE_SCALE multiplies a
// damage loop's round count (unset: 1). Both print what they used to stderr, so that a failure
// in a soak names the variables that repeat it.
uint32_t DamageSeed(uint32_t fixed);
int DamageRounds(int fixed);

// Directory of the test's own build outputs (edged, hubd, ...): $FRESHSYNC_BIN_DIR.
std::string BinDir();

// A child process with stdout and stderr appended to `log_path`.
class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(std::vector<std::string> argv, std::string log_path, std::map<std::string, std::string> env = {});
  ~ChildProcess();  // SIGKILL and reap if still running
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;

  bool Start();
  bool Running();
  void Signal(int sig);
  // Sends SIGKILL and reaps. Safe to call when not running.
  void Kill();
  // Waits for exit up to `timeout`; returns the exit status as from waitpid, or -1 on timeout.
  int Wait(std::chrono::milliseconds timeout);
  // SIGTERM, wait up to `timeout`, then SIGKILL.
  int Stop(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }

 private:
  std::vector<std::string> argv_;
  std::string log_path_;
  std::map<std::string, std::string> env_;
  pid_t pid_ = -1;
};

// A real mosquitto on 127.0.0.1, with persistence in its own dir so that restarts keep
// sessions, as the shipped config does. Restart() keeps the port.
class MosquittoBroker {
 public:
  // `extra_conf` is appended to the generated mosquitto.conf.
  explicit MosquittoBroker(const std::string& dir, std::string extra_conf = "");
  ~MosquittoBroker();
  bool Start();
  void Stop();   // SIGTERM: mosquitto writes its persistence file
  void Kill();   // SIGKILL: only the last autosave survives
  bool Restart();
  int port() const { return port_; }
  std::string Uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

 private:
  bool WaitListening();
  std::string dir_;
  std::string extra_conf_;
  int port_ = 0;
  ChildProcess proc_;
};

// A throw-away PKI made with the openssl CLI: a CA, a server certificate for 127.0.0.1 and
// localhost, and client certificates whose CN is a site id.
class TestPki {
 public:
  explicit TestPki(const std::string& dir);
  // Creates the CA and a server certificate; returns false (and logs) if openssl fails.
  bool Init();
  struct Files {
    std::string cert;
    std::string key;
  };
  // A client certificate with CN = `cn`, signed by this CA. `days` < 0 makes it already expired.
  Files Client(const std::string& cn, int days = 30);
  // A client certificate signed by a different, untrusted CA.
  Files Untrusted(const std::string& cn);
  std::string ca_cert() const { return dir_ + "/ca.crt"; }
  Files server() const { return {dir_ + "/server.crt", dir_ + "/server.key"}; }

 private:
  std::string dir_;
};

// Runs a shell command, returns its exit status; output goes to `log` if given.
int RunShell(const std::string& command, const std::string& log = "");

}  // namespace freshsync::testing
