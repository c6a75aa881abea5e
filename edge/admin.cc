#include "edge/admin.h"

#include "cloud-sync/outbox_schema.h"
#include "edge/intake_journal.h"
#include "edge/mqtt_login.h"
#include "edge/outbox_writer.h"
#include "sqlite/db.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include <mqtt/async_client.h>

namespace freshsync::edge {
namespace {

constexpr int kBackupPagesPerStep = 256;  // 1 MiB at 4 KiB pages
constexpr int kBackupSleepMs = 2;
constexpr int kBusyTimeoutMs = 5000;

struct Db {
  sqlite3* db = nullptr;
  ~Db() {
    if (db != nullptr) sqlite3_close(db);
  }
};

// The one mapping, sqlite/status.h.
Status SqlError(sqlite3* db, const std::string& what) { return sqlite::LastError(db, what); }

Status OpenDb(const std::string& path, int flags, Db* out) {
  if (!std::filesystem::exists(path)) return Status::NotFound(path + ": no such file");
  if (sqlite3_open_v2(path.c_str(), &out->db, flags, nullptr) != SQLITE_OK) return SqlError(out->db, "opening " + path);
  sqlite3_busy_timeout(out->db, kBusyTimeoutMs);
  return Status::Ok();
}

// Read-only, through the store's reader; a missing file is kNotFound "<path>: no such file",
// as for the actions that write.
Result<StoreReader> OpenReader(const std::string& path) {
  if (!std::filesystem::exists(path)) return Status::NotFound(path + ": no such file");
  return StoreReader::Open(path, kBusyTimeoutMs);
}

Status Exec(sqlite3* db, const char* sql) { return sqlite::ExecOn(db, sql); }

Status FsyncPath(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::IOError("open " + path + ": " + std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return Status::IOError("fsync " + path + ": " + std::strerror(errno));
  return Status::Ok();
}

std::string DirOf(const std::string& path) {
  auto p = std::filesystem::path(path).parent_path();
  return p.empty() ? "." : p.string();
}

// Copies the database behind `src` (consistent snapshot) into a new file `dest_path`.
Status CopyDatabase(sqlite3* src, const std::string& dest_path) {
  std::error_code ec;
  std::filesystem::remove(dest_path, ec);
  Db dest;
  if (sqlite3_open_v2(dest_path.c_str(), &dest.db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) != SQLITE_OK)
    return SqlError(dest.db, "creating " + dest_path);
  // One read transaction on the source for the whole copy: every step reads the same WAL
  // snapshot, so the copy is consistent and never restarts, and writers are not blocked.
  if (Status s = Exec(src, "BEGIN"); !s.ok()) return s;
  if (Status s = Exec(src, "SELECT count(*) FROM sqlite_master"); !s.ok()) return s;
  sqlite3_backup* b = sqlite3_backup_init(dest.db, "main", src, "main");
  if (b == nullptr) {
    (void)Exec(src, "ROLLBACK");
    return SqlError(dest.db, "backup init");
  }
  int rc;
  while ((rc = sqlite3_backup_step(b, kBackupPagesPerStep)) == SQLITE_OK || rc == SQLITE_BUSY || rc == SQLITE_LOCKED) {
    sqlite3_sleep(kBackupSleepMs);
  }
  sqlite3_backup_finish(b);
  (void)Exec(src, "ROLLBACK");
  if (rc != SQLITE_DONE) return sqlite::StatusFor(rc, "backup step");
  if (Status s = Exec(dest.db, "PRAGMA journal_mode=DELETE"); !s.ok()) return s;  // one self-contained file
  sqlite3_close(dest.db);
  dest.db = nullptr;
  return FsyncPath(dest_path);
}

}  // namespace

Result<StoreLock> StoreLock::Acquire(const std::string& store_path) {
  const std::string p = store_path + ".lock";
  // Read-only is enough for flock(2), and lets edged (its own user) lock a file root created.
  const int fd = ::open(p.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return Status::IOError("lock file " + p + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    ::close(fd);
    if (e == EWOULDBLOCK) return Status::Conflict(p + " is held: edged is running on this store");
    return Status::IOError("flock " + p + ": " + std::strerror(e));
  }
  return StoreLock(fd);
}

StoreLock::~StoreLock() {
  if (fd_ >= 0) ::close(fd_);
}

Status BackupStore(const std::string& store_path, const std::string& out_path) {
  auto src = OpenReader(store_path);
  if (!src.ok()) return src.status();
  const std::string tmp = out_path + ".tmp";
  if (Status s = CopyDatabase(src->handle(), tmp); !s.ok()) return s;
  if (std::rename(tmp.c_str(), out_path.c_str()) != 0) return Status::IOError("rename " + tmp + ": " + std::strerror(errno));
  return FsyncPath(DirOf(out_path));
}

Status SetStoreAside(const std::string& store_path, const std::string& suffix) {
  const std::string aside_path = store_path + suffix;
  std::error_code ec;
  if (std::filesystem::exists(store_path)) {
    // Fold the old store's WAL into it, then keep it aside: an operator can still go back.
    {
      Db old;
      if (OpenDb(store_path, SQLITE_OPEN_READWRITE, &old).ok()) (void)Exec(old.db, "PRAGMA wal_checkpoint(TRUNCATE)");
    }
    if (std::rename(store_path.c_str(), aside_path.c_str()) != 0)
      return Status::IOError("rename " + store_path + ": " + std::strerror(errno));
  }
  // The intake journal goes with the old store: its entries after the new store's position
  // were applied to that store (or, after a crash, acknowledged for it), and replaying them
  // into another store would number new records with seqs the hub may already hold for other
  // content. Kept beside the set-aside store, so the pair can be put back together.
  const std::string journal = IntakeJournalDir(store_path);
  if (std::filesystem::exists(journal, ec)) {
    const std::string aside = IntakeJournalDir(aside_path);
    std::filesystem::remove_all(aside, ec);
    if (std::rename(journal.c_str(), aside.c_str()) != 0)
      return Status::IOError("rename " + journal + ": " + std::strerror(errno));
  }
  // Stale -wal/-shm must go before a new file takes the name: SQLite would otherwise apply
  // the old store's WAL frames to it.
  std::filesystem::remove(store_path + "-wal", ec);
  std::filesystem::remove(store_path + "-shm", ec);
  std::filesystem::remove(store_path + "-journal", ec);
  return Status::Ok();
}

Status RestoreStore(const std::string& in_path, const std::string& store_path) {
  auto lock = StoreLock::Acquire(store_path);
  if (!lock.ok()) return lock.status();
  auto in = OpenReader(in_path);
  if (!in.ok()) return in.status();
  std::vector<std::string> findings;
  if (Status s = in->IntegrityCheck(&findings); !s.ok())
    return Status::InvalidArgument(in_path + ": not a readable SQLite database: " + s.message());
  if (!in->IsEdgeStore()) findings.push_back("not an edge store (tables outbox, sync_state, stock missing)");
  if (!findings.empty()) return Status::InvalidArgument(in_path + ": " + findings.front());

  const std::string tmp = store_path + ".restore.tmp";
  if (Status s = CopyDatabase(in->handle(), tmp); !s.ok()) return s;
  // An operator restores as root; edged runs as its own user. The new file takes the old
  // store's owner and mode (best effort: without privileges the caller already owns both).
  struct stat old_st {};
  if (::stat(store_path.c_str(), &old_st) == 0) {
    if (::chown(tmp.c_str(), old_st.st_uid, old_st.st_gid) != 0 && errno != EPERM)
      return Status::IOError("chown " + tmp + ": " + std::strerror(errno));
    (void)::chmod(tmp.c_str(), old_st.st_mode & 07777);
  }
  if (Status s = SetStoreAside(store_path, ".pre-restore"); !s.ok()) return s;
  if (std::rename(tmp.c_str(), store_path.c_str()) != 0) return Status::IOError("rename " + tmp + ": " + std::strerror(errno));
  if (Status s = FsyncPath(DirOf(store_path)); !s.ok()) return s;
  // edged runs in WAL mode; set it now so the first open does not have to.
  Db fresh;
  if (Status s = OpenDb(store_path, SQLITE_OPEN_READWRITE, &fresh); !s.ok()) return s;
  if (Status s = Exec(fresh.db, "PRAGMA journal_mode=WAL"); !s.ok()) return s;
  // The copy's last allocated seq. The hub may hold later seqs from the timeline this backup
  // lost: the sync agent sends nothing until it has moved whatever edged writes from now on
  // above them (cloud-sync/outbox_schema.h, kStateRestoredLastSeq).
  const std::string mark = std::string("INSERT INTO sync_state(name, value) SELECT '") + freshsync::sync::kStateRestoredLastSeq +
                           "', " + kLastIssuedSeqSql + " WHERE true ON CONFLICT(name) DO UPDATE SET value = excluded.value";
  return Exec(fresh.db, mark.c_str());
}

Status VerifyStore(const std::string& store_path, std::vector<std::string>* findings) {
  auto db = OpenReader(store_path);
  if (!db.ok()) return db.status();
  if (Status s = db->IntegrityCheck(findings); !s.ok()) return s;
  return db->Verify(findings);
}

Result<DeadLetterFull> ReadDeadLetter(const std::string& store_path, int64_t id) {
  auto db = OpenReader(store_path);
  if (!db.ok()) return db.status();
  return db->DeadLetter(id);
}

Result<std::vector<DeadLetterFull>> ReadReplayableDeadLetters(const std::string& store_path) {
  auto db = OpenReader(store_path);
  if (!db.ok()) return db.status();
  return db->ReplayableDeadLetters();
}

Result<int64_t> ReplayDeadLetters(const EdgeConfig& config, const std::vector<DeadLetterFull>& letters) {
  const auto& m = config.mqtt;
  int64_t n = 0;
  try {
    mqtt::async_client client(m.uri, "edgectl-replay-" + std::to_string(::getpid()),
                              mqtt::create_options_builder().mqtt_version(MQTTVERSION_3_1_1).finalize(), nullptr);
    auto b = mqtt::connect_options_builder().mqtt_version(MQTTVERSION_3_1_1).clean_session(true).connect_timeout(
        std::chrono::seconds(5));
    SetBrokerLogin(b, m);
    client.connect(b.finalize())->wait();
    for (const auto& d : letters) {
      if (d.payload.empty()) continue;  // nothing kept (unredactable order payload)
      client.publish(d.topic, d.payload.data(), d.payload.size(), 1, false)->wait();
      ++n;
    }
    client.disconnect()->wait();
  } catch (const std::exception& e) {
    return Status::Unavailable(std::string("broker ") + m.uri + ": " + e.what() + " (" + std::to_string(n) + " published)");
  }
  return n;
}

Status RequestReconcile(const std::string& store_path) {
  Db db;
  if (Status s = OpenDb(store_path, SQLITE_OPEN_READWRITE, &db); !s.ok()) return s;
  return Exec(db.db,
              "INSERT INTO sync_state(name, value) VALUES ('reconcile_requested', 1) "
              "ON CONFLICT(name) DO UPDATE SET value = 1");
}

}  // namespace freshsync::edge
