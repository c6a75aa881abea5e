// Issue 5, "runs like a real service": metrics, systemd notifications, signals, edgectl
// backup/restore/verify, dead-letter replay. Real edged, edgectl and Mosquitto on loopback.
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "tests/ingest/site.h"

namespace freshsync::testing {
namespace {

using namespace std::chrono_literals;

Msg Movement(const std::string& id, const std::string& sku, int64_t delta, const std::string& reason = "receive") {
  return {"fs/stock/movements", "{\"id\":\"" + id + "\",\"sku\":\"" + sku + "\",\"delta\":" + std::to_string(delta) +
                                    ",\"reason\":\"" + reason + "\",\"ts\":1764000000000}"};
}

std::string MetricsToml(int port) { return "[metrics]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\n"; }

struct Http {
  int status = 0;
  std::string body;
};

Http Get(int port, const std::string& path) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(5, 0);
  auto r = c.Get(path);
  if (!r) return {};
  return {r->status, r->body};
}

// Value of the sample whose name (with labels) is exactly `series`; -1 when absent.
double Sample(const std::string& body, const std::string& series) {
  std::istringstream in(body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 && line[series.size()] == ' ')
      return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

// Runs edgectl with `args`; returns the exit code, output in *out.
int Ctl(const std::string& config, const std::string& args, std::string* out = nullptr, const std::string& dir = "/tmp") {
  const std::string file = dir + "/edgectl." + std::to_string(::getpid()) + ".out";
  const int rc = RunShell("'" + BinDir() + "/edgectl' --config '" + config + "' " + args + " > '" + file + "' 2>&1");
  const std::string text = ReadFile(file);
  if (out) *out = text;
  std::remove(file.c_str());
  return rc;
}

void Sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

TEST(Metrics, ScrapeMovesWithTrafficAndReadiness) {
  const int port = PickFreePort();
  Site site(MetricsToml(port));
  ASSERT_TRUE(site.StartEdged());
  ASSERT_TRUE(WaitFor([&] { return Get(port, "/healthz").status == 200; }, 10s));
  ASSERT_TRUE(WaitFor([&] { return Get(port, "/readyz").status == 200; }, 10s)) << Get(port, "/readyz").body;
  Http m = Get(port, "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(Sample(m.body, "freshsync_ingest_applied_total{kind=\"stock_movement\"}"), 0);
  EXPECT_EQ(Sample(m.body, "freshsync_outbox_backlog"), 0);
  EXPECT_EQ(Sample(m.body, "freshsync_coldchain_open_alerts"), 0);
  EXPECT_NE(m.body.find("# TYPE freshsync_ingest_applied_total counter"), std::string::npos);

  auto pub = site.NewPublisher("metrics-pub");
  for (int i = 0; i < 40; ++i) pub->Publish(Movement("m" + std::to_string(i), "apple", 2));
  pub->Publish(Movement("m0", "apple", 2));                       // duplicate
  pub->Publish({"fs/stock/movements", "{\"id\":\"bad\",\"sku\":"});  // invalid
  pub->Publish(Movement("over", "apple", -1000, "pick"));          // conflict: stock below zero
  pub->Publish({"fs/vehicles/t1/gps", R"({"seq":1,"lat":31.2,"lon":121.5,"ts":1764000000000})"});
  pub->Flush();
  ASSERT_TRUE(WaitFor(
      [&] {
        const std::string b = Get(port, "/metrics").body;
        return Sample(b, "freshsync_ingest_applied_total{kind=\"stock_movement\"}") == 40 &&
               Sample(b, "freshsync_ingest_applied_total{kind=\"gps\"}") == 1 &&
               Sample(b, "freshsync_ingest_dead_letters_total{code=\"conflict\"}") == 1;
      },
      30s))
      << Get(port, "/metrics").body;
  m = Get(port, "/metrics");
  EXPECT_EQ(Sample(m.body, "freshsync_ingest_duplicates_total"), 1);
  EXPECT_EQ(Sample(m.body, "freshsync_ingest_dead_letters_total{code=\"invalid\"}"), 1);
  EXPECT_EQ(Sample(m.body, "freshsync_dead_letters_stored{code=\"invalid\"}"), 1);
  EXPECT_EQ(Sample(m.body, "freshsync_dead_letters_stored{code=\"conflict\"}"), 1);
  // No hub configured: nothing is acknowledged, every change record is backlog.
  EXPECT_EQ(Sample(m.body, "freshsync_outbox_backlog"), site.Int("SELECT count(*) FROM outbox"));
  EXPECT_GE(Sample(m.body, "freshsync_outbox_backlog"), 41);
  EXPECT_GE(Sample(m.body, "freshsync_outbox_oldest_unacked_age_seconds"), 0);
  EXPECT_EQ(Sample(m.body, "freshsync_sync_enabled"), 0);
  EXPECT_EQ(Sample(m.body, "freshsync_ingest_connected"), 1);
  // Counted in the journal and the store, exported here (no privacy key, no torn tail).
  EXPECT_NE(m.body.find("# HELP freshsync_ingest_journal_torn_dropped_total "), std::string::npos);
  EXPECT_EQ(Sample(m.body, "freshsync_ingest_journal_torn_dropped_total"), 0);
  EXPECT_NE(m.body.find("# HELP freshsync_privacy_customers_dropped_total "), std::string::npos);
  EXPECT_EQ(Sample(m.body, "freshsync_privacy_customers_dropped_total"), 0);

  // Open cold-chain alerts come from the cold-chain engine's snapshots in rule_state (schema
  // v3 of the site-rules work; created here if this build's schema predates it).
  Sql(site.db_path(),
      "CREATE TABLE IF NOT EXISTS rule_state(engine TEXT NOT NULL, entity TEXT NOT NULL, blob TEXT NOT NULL, "
      "updated_ms INTEGER NOT NULL, PRIMARY KEY (engine, entity)) WITHOUT ROWID;"
      "INSERT INTO rule_state VALUES ('coldchain', 'cold-1', '{\"v\":1,\"exc\":[1,5.5,7.0,1,0]}', 1),"
      "('coldchain', 'cold-2', '{\"v\":1,\"off\":1764000000000}', 1), ('coldchain', 'cold-3', '{\"v\":1}', 1),"
      "('geofence', 'truck-1', '{\"exc\":1}', 1);");
  EXPECT_EQ(Sample(Get(port, "/metrics").body, "freshsync_coldchain_open_alerts"), 2);

  // Broker gone: not ready (ingest not subscribed), still alive.
  site.broker().Stop();
  EXPECT_TRUE(WaitFor([&] { return Get(port, "/readyz").status == 503; }, 30s));
  EXPECT_EQ(Get(port, "/healthz").status, 200);
  EXPECT_EQ(site.StopEdged(), 0);
}

// A unix datagram socket standing in for systemd's notify socket.
class NotifySocket {
 public:
  explicit NotifySocket(std::string path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path_.c_str());
    ok_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    timeval tv{0, 100000};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    reader_ = std::thread([this] {
      char buf[4096];
      while (!stop_) {
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) continue;
        std::lock_guard<std::mutex> l(mu_);
        msgs_.emplace_back(buf, static_cast<size_t>(n));
      }
    });
  }
  ~NotifySocket() {
    stop_ = true;
    reader_.join();
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  bool ok() const { return ok_; }
  // Datagrams containing `line` (e.g. "WATCHDOG=1", "STATUS=").
  int Count(const std::string& line) {
    std::lock_guard<std::mutex> l(mu_);
    int n = 0;
    for (const auto& m : msgs_) {
      std::istringstream in(m);
      std::string x;
      while (std::getline(in, x))
        if (x.rfind(line, 0) == 0) ++n;
    }
    return n;
  }
  std::string Last(const std::string& prefix) {
    std::lock_guard<std::mutex> l(mu_);
    std::string last;
    for (const auto& m : msgs_) {
      std::istringstream in(m);
      std::string x;
      while (std::getline(in, x))
        if (x.rfind(prefix, 0) == 0) last = x;
    }
    return last;
  }

 private:
  std::string path_;
  int fd_ = -1;
  bool ok_ = false;
  std::atomic<bool> stop_{false};
  std::thread reader_;
  std::mutex mu_;
  std::vector<std::string> msgs_;
};

TEST(Systemd, NotifyReadyStatusWatchdogReloadStopping) {
  Site site;
  TempDir dir;
  NotifySocket sock(dir.File("notify.sock"));
  ASSERT_TRUE(sock.ok());
  ChildProcess edged({BinDir() + "/edged", "--config", site.config_path()}, dir.File("edged.log"),
                     {{"NOTIFY_SOCKET", dir.File("notify.sock")}, {"WATCHDOG_USEC", "600000"}});
  ASSERT_TRUE(edged.Start());
  ASSERT_TRUE(WaitFor([&] { return sock.Count("READY=1") >= 1; }, 20s));
  ASSERT_TRUE(WaitFor([&] { return sock.Count("WATCHDOG=1") >= 5; }, 10s)) << sock.Count("WATCHDOG=1");
  ASSERT_TRUE(WaitFor([&] { return sock.Last("STATUS=").find("broker connected") != std::string::npos; }, 10s))
      << sock.Last("STATUS=");
  EXPECT_NE(sock.Last("STATUS=").find("backlog 0"), std::string::npos) << sock.Last("STATUS=");

  auto pub = site.NewPublisher("notify-pub");
  for (int i = 0; i < 5; ++i) pub->Publish(Movement("n" + std::to_string(i), "pear", 1));
  pub->Flush();
  EXPECT_TRUE(WaitFor([&] { return sock.Last("STATUS=").find("backlog 5") != std::string::npos; }, 15s)) << sock.Last("STATUS=");

  // SIGHUP: reload (log level) without exiting.
  WriteFile(site.config_path(), ReadFile(site.config_path()) + "[log]\nlevel = \"debug\"\n");
  edged.Signal(SIGHUP);
  EXPECT_TRUE(WaitFor([&] { return ReadFile(dir.File("edged.log")).find("reload: log level debug") != std::string::npos; }, 10s))
      << ReadFile(dir.File("edged.log"));
  EXPECT_TRUE(edged.Running());

  edged.Signal(SIGTERM);
  const int st = edged.Wait(30s);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << st;
  EXPECT_GE(sock.Count("STOPPING=1"), 1);
}

TEST(Systemd, WatchdogWithheldWhileIngestIsStuck) {
  Site site;
  TempDir dir;
  NotifySocket sock(dir.File("notify.sock"));
  // Every commit fails (a dead disk): ingest holds the message and retries in place.
  ChildProcess edged({BinDir() + "/edged", "--config", site.config_path()}, dir.File("edged.log"),
                     {{"NOTIFY_SOCKET", dir.File("notify.sock")},
                      {"WATCHDOG_USEC", "600000"},
                      {"FRESHSYNC_FAIL_COMMITS_FOR_TEST", "0:-1"},
                      {"FRESHSYNC_INGEST_STUCK_MS_FOR_TEST", "1500"}});
  ASSERT_TRUE(edged.Start());
  ASSERT_TRUE(WaitFor([&] { return sock.Count("WATCHDOG=1") >= 3; }, 20s));
  ASSERT_TRUE(WaitFor([&] { return sock.Last("STATUS=").find("broker connected") != std::string::npos; }, 20s));
  auto pub = site.NewPublisher("stuck-pub");
  pub->Publish(Movement("stuck", "plum", 1));
  pub->Flush();
  ASSERT_TRUE(WaitFor([&] { return sock.Last("STATUS=").find("unhealthy: ingest stuck") != std::string::npos; }, 20s))
      << sock.Last("STATUS=");
  const int before = sock.Count("WATCHDOG=1");
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(sock.Count("WATCHDOG=1"), before) << "WATCHDOG=1 kept coming while ingest was stuck";
  EXPECT_EQ(site.Int("SELECT count(*) FROM stock_movements"), 0);
  edged.Signal(SIGTERM);
  const int st = edged.Wait(30s);
  // Shutdown while the store fails: exit 75 without acknowledging the message (ingest.h).
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 75) << st;
}

TEST(Systemd, SigtermUnderLoadLosesNothing) {
  Site site;
  ASSERT_TRUE(site.StartEdged());
  // The publisher keeps going until edged has stopped and then sends kAfterStop more, so the
  // SIGTERM always lands mid-stream however fast edged drains (with the intake journal a fixed
  // burst could be fully taken, and applied at the clean stop, before the signal arrived).
  constexpr int kAfterStop = 200;
  constexpr int kMaxMessages = 200000;  // bounds the loop should edged never reach 300
  auto pub = site.NewPublisher("sigterm-pub");
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    WaitFor([&] { return site.Int("SELECT count(*) FROM stock_movements") >= 300; }, 60s);
    EXPECT_EQ(site.StopEdged(), 0);  // SIGTERM, wait for a clean exit
    stopped = true;
  });
  int published = 0;
  int after_stop = 0;
  while (published < kMaxMessages && after_stop < kAfterStop) {
    const bool was_stopped = stopped.load();
    pub->Publish(Movement("t" + std::to_string(published), "load", 1));
    ++published;
    if (was_stopped) ++after_stop;
    if (published % 50 == 0) std::this_thread::sleep_for(2ms);  // steady load, not one burst
  }
  pub->Flush();
  stopper.join();
  ASSERT_EQ(after_stop, kAfterStop) << "edged was never stopped";
  const int64_t before = site.Int("SELECT count(*) FROM stock_movements");
  EXPECT_LE(before, published - kAfterStop) << "messages published after the stop were applied";
  ASSERT_TRUE(site.StartEdged());
  EXPECT_TRUE(site.WaitInt("SELECT count(*) FROM stock_movements", published, 120s));
  EXPECT_EQ(site.Int("SELECT on_hand FROM stock WHERE sku = 'load'"), published);  // exactly once
  EXPECT_EQ(site.Int("SELECT count(*) FROM dead_letters"), 0);
  EXPECT_EQ(site.StopEdged(), 0);
  ExpectDenseOutbox(site);
}

TEST(Edgectl, BackupUnderLoadRestoresAndVerifies) {
  Site site;
  TempDir dir;
  ASSERT_TRUE(site.StartEdged());
  auto pub = site.NewPublisher("backup-pub");
  constexpr int kN = 4000;
  std::thread load([&] {
    for (int i = 0; i < kN; ++i) pub->Publish(Movement("b" + std::to_string(i), "sku" + std::to_string(i % 17), 3));
    pub->Flush();
  });
  ASSERT_TRUE(site.WaitInt("SELECT count(*) > 200 FROM stock_movements", 1, 60s));
  std::string out;
  const std::string backup = dir.File("backup.db");
  ASSERT_EQ(Ctl(site.config_path(), "backup '" + backup + "'", &out), 0) << out;
  const int64_t during = site.Int("SELECT count(*) FROM stock_movements");
  load.join();
  ASSERT_TRUE(site.WaitInt("SELECT count(*) FROM stock_movements", kN, 120s));

  // Restore refuses while edged runs (it holds <store>.lock).
  EXPECT_NE(Ctl(site.config_path(), "restore '" + backup + "'", &out), 0);
  EXPECT_NE(out.find("edged is running"), std::string::npos) << out;

  EXPECT_EQ(site.StopEdged(), 0);
  ASSERT_EQ(Ctl(site.config_path(), "restore '" + backup + "'", &out), 0) << out;
  // The intake journal went aside with the old store: nothing of it is replayed into the copy.
  EXPECT_FALSE(std::filesystem::exists(site.db_path() + ".intake"));
  EXPECT_TRUE(std::filesystem::exists(site.db_path() + ".pre-restore.intake"));
  EXPECT_EQ(Ctl(site.config_path(), "verify", &out), 0) << out;
  const int64_t restored = site.Int("SELECT count(*) FROM stock_movements");
  EXPECT_GT(restored, 0);
  EXPECT_LT(restored, kN);
  (void)during;
  // The snapshot is consistent: every movement has its stock effect and its change record.
  EXPECT_EQ(site.Int("SELECT sum(on_hand) FROM stock"), 3 * restored);
  EXPECT_EQ(site.Int("SELECT count(*) FROM outbox"), site.Int("SELECT max(seq) FROM outbox"));

  // edged starts on the restored store; the broker had acknowledged everything, so the rest
  // is not redelivered, but new traffic applies on top.
  ASSERT_TRUE(site.StartEdged());
  pub->Publish(Movement("after-restore", "sku0", 1));
  pub->Flush();
  EXPECT_TRUE(site.WaitInt("SELECT count(*) FROM stock_movements WHERE id = 'after-restore'", 1, 30s));
  EXPECT_EQ(site.StopEdged(), 0);
  EXPECT_EQ(Ctl(site.config_path(), "verify", &out), 0) << out;

  // A corrupted invariant injected with sqlite3 is found (the schema's CHECK (reserved <=
  // on_hand) refuses such an update since store v4, so the injection switches CHECKs off, as a
  // foreign tool might).
  Sql(site.db_path(),
      "PRAGMA ignore_check_constraints = ON; UPDATE stock SET reserved = on_hand + 5 WHERE sku = 'sku1'; DELETE FROM outbox WHERE seq = 7;");
  EXPECT_EQ(Ctl(site.config_path(), "verify", &out), 1) << out;
  EXPECT_NE(out.find("stock sku1: reserved"), std::string::npos) << out;
  EXPECT_NE(out.find("outbox seq not dense"), std::string::npos) << out;

  // Restore refuses a file that is not a store.
  WriteFile(dir.File("junk.db"), "this is not sqlite");
  EXPECT_NE(Ctl(site.config_path(), "restore '" + dir.File("junk.db") + "'", &out), 0);
}

TEST(Edgectl, BacklogByLane) {
  // No [hub]: nothing is ever acknowledged, so every change record is backlog.
  Site site;
  ASSERT_TRUE(site.StartEdged());
  auto pub = site.NewPublisher("backlog-pub");
  for (int i = 0; i < 5; ++i) pub->Publish(Movement("bl" + std::to_string(i), "carrot", 2));
  for (int i = 1; i <= 7; ++i)
    pub->Publish({"fs/vehicles/truck-9/gps", "{\"seq\":" + std::to_string(i) +
                                                 ",\"lat\":31.2,\"lon\":121.5,\"ts\":" + std::to_string(1764000000000 + i * 1000) + "}"});
  pub->Flush();
  ASSERT_TRUE(site.WaitInt("SELECT count(*) FROM outbox", 12, 30s));
  ASSERT_EQ(site.StopEdged(), 0);  // nothing moves while we compare
  const int64_t lane1 = site.Int("SELECT count(*) FROM outbox WHERE priority = 1");
  const int64_t lane0 = site.Int("SELECT count(*) FROM outbox WHERE priority = 0");
  EXPECT_EQ(lane1, 5);
  EXPECT_EQ(lane0, 7);

  std::string out;
  ASSERT_EQ(Ctl(site.config_path(), "backlog --json", &out), 0) << out;
  auto j = nlohmann::json::parse(out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << out;
  EXPECT_EQ(j["backlog"], 12);
  EXPECT_EQ(j["last_seq"], 12);
  EXPECT_EQ(j["acked_seq"], 0);
  EXPECT_EQ(j["lanes"]["priority"], lane1);
  EXPECT_EQ(j["lanes"]["bulk"], lane0);
  EXPECT_EQ(j["oldest_created_ms"], site.Int("SELECT MIN(created_ms) FROM outbox"));
  // The same number as status's outbox.backlog.
  std::string status;
  ASSERT_EQ(Ctl(site.config_path(), "status --json", &status), 0) << status;
  EXPECT_EQ(nlohmann::json::parse(status, nullptr, false)["outbox"]["backlog"], j["backlog"]) << status;

  // The hub acknowledges the first 6 records (what the sync agent would write): 6 are left,
  // split by the lanes of the records above seq 6.
  Sql(site.db_path(), "INSERT OR REPLACE INTO sync_state(name, value) VALUES('acked_seq', 6)");
  ASSERT_EQ(Ctl(site.config_path(), "backlog --json", &out), 0) << out;
  j = nlohmann::json::parse(out, nullptr, false);
  EXPECT_EQ(j["backlog"], 6);
  EXPECT_EQ(j["acked_seq"], 6);
  EXPECT_EQ(j["lanes"]["priority"], site.Int("SELECT count(*) FROM outbox WHERE seq > 6 AND priority = 1"));
  EXPECT_EQ(j["lanes"]["bulk"], site.Int("SELECT count(*) FROM outbox WHERE seq > 6 AND priority = 0"));

  // Text form for people.
  ASSERT_EQ(Ctl(site.config_path(), "backlog", &out), 0) << out;
  EXPECT_NE(out.find("backlog       6 change records not acknowledged by the hub (seq 7..12)"), std::string::npos) << out;
  EXPECT_NE(out.find("priority"), std::string::npos) << out;
  EXPECT_NE(out.find("oldest"), std::string::npos) << out;

  // All acknowledged: an empty backlog, no oldest record.
  Sql(site.db_path(), "UPDATE sync_state SET value = 12 WHERE name = 'acked_seq'");
  ASSERT_EQ(Ctl(site.config_path(), "backlog --json", &out), 0) << out;
  j = nlohmann::json::parse(out, nullptr, false);
  EXPECT_EQ(j["backlog"], 0);
  EXPECT_TRUE(j["oldest_created_ms"].is_null()) << out;
}

TEST(Edgectl, DeadLetterShowAndReplayAfterFix) {
  Site site;
  ASSERT_TRUE(site.StartEdged());
  auto pub = site.NewPublisher("replay-pub");
  pub->Publish(Movement("pick-kale", "kale", -5, "pick"));
  pub->Flush();
  ASSERT_TRUE(site.WaitInt("SELECT count(*) FROM dead_letters", 1, 30s));
  const int64_t id = site.Int("SELECT id FROM dead_letters");
  std::string out;
  ASSERT_EQ(Ctl(site.config_path(), "dead-letters show " + std::to_string(id), &out), 0) << out;
  EXPECT_NE(out.find("pick-kale"), std::string::npos) << out;
  EXPECT_NE(out.find("conflict"), std::string::npos) << out;

  // The operator fixes the cause (a receive makes stock available), then replays.
  pub->Publish(Movement("recv-kale", "kale", 10));
  pub->Flush();
  ASSERT_TRUE(site.WaitInt("SELECT on_hand FROM stock WHERE sku = 'kale'", 10, 30s));
  ASSERT_EQ(Ctl(site.config_path(), "dead-letters replay " + std::to_string(id), &out), 0) << out;
  EXPECT_TRUE(site.WaitInt("SELECT on_hand FROM stock WHERE sku = 'kale'", 5, 30s));
  // Replaying again has no second effect (dedupe on the movement id).
  ASSERT_EQ(Ctl(site.config_path(), "dead-letters replay --all", &out), 0) << out;
  std::this_thread::sleep_for(1s);
  EXPECT_TRUE(site.WaitInt("SELECT count(*) FROM stock_movements WHERE id = 'pick-kale'", 1, 10s));
  EXPECT_EQ(site.Int("SELECT on_hand FROM stock WHERE sku = 'kale'"), 5);
  EXPECT_EQ(site.Int("SELECT count(*) FROM dead_letters"), 1);

  // Usage errors are refused, not crashes.
  EXPECT_NE(Ctl(site.config_path(), "dead-letters replay", &out), 0) << out;
  EXPECT_NE(Ctl(site.config_path(), "dead-letters replay abc", &out), 0) << out;
  EXPECT_NE(Ctl(site.config_path(), "dead-letters show 999999", &out), 0) << out;

  // reconcile without a [hub] says so.
  EXPECT_NE(Ctl(site.config_path(), "reconcile", &out), 0);
  EXPECT_EQ(site.StopEdged(), 0);
}

}  // namespace
}  // namespace freshsync::testing
