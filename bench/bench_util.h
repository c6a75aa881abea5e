// Small helpers the benchmarks share: wall and CPU time, and SQL that must not fail.
// CPU seconds (user + system) are printed next to wall-clock rates because on a shared 2-core
// VM the rates move with other work and CPU time per record much less.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace freshsync::bench {

inline double Secs(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

inline double SelfCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// utime + stime of a running process, from /proc/PID/stat (fields 14 and 15); 0 if it is gone.
inline double CpuSecondsOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = all.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(all.substr(close + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// CPU seconds of a process and its children: its own, its reaped children's (cutime + cstime,
// fields 16 and 17) and each live child's (a PostgreSQL postmaster and its backends).
inline double TreeCpuSeconds(pid_t pid) {
  auto fields = [](pid_t p) {
    std::ifstream in("/proc/" + std::to_string(p) + "/stat");
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<long> f(18, 0);  // f[i] = field i (1-based as proc(5)), from field 3 on
    const auto close = all.rfind(')');
    if (close == std::string::npos) return f;
    std::istringstream rest(all.substr(close + 2));
    std::string field;
    for (size_t i = 3; i < f.size() && rest >> field; ++i) f[i] = i == 3 ? 0 : std::stol(field);
    return f;
  };
  const auto own = fields(pid);
  long ticks = own[14] + own[15] + own[16] + own[17];
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const auto f = fields(static_cast<pid_t>(std::stol(name)));
    if (f[4] == pid) ticks += f[14] + f[15];
  }
  return static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// A benchmark's set-up SQL: a failure ends the run with the statement and the reason.
inline void Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::fprintf(stderr, "sqlite: %s: %s\n", sql, err ? err : "?");
    std::exit(1);
  }
}

// The daemons a benchmark starts sit beside it: FRESHSYNC_BIN_DIR (tests/support/harness.h)
// defaults to the benchmark's own directory unless the caller set it.
inline void DefaultBinDirToOwn(const char* argv0) {
  setenv("FRESHSYNC_BIN_DIR", std::filesystem::path(argv0).parent_path().c_str(), /*overwrite=*/0);
}

// Until something accepts TCP connections on 127.0.0.1:port (a daemon that finished starting).
inline bool WaitPort(int port, int timeout_ms) {
  for (int i = 0; i < timeout_ms / 20; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace freshsync::bench
