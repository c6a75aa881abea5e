// Power loss under edged's whole intake path. power_loss_test cuts the power
// under the store alone; here messages go through Ingest::Accept, whose return is the PUBACK
// (edge/ingest.h), into the intake journal (through PowerCutFiles) and on to the store
// (through FaultVfs) by the real batch applier. Each cycle runs in a forked child: a cut
// leaves ingest's threads retrying in place, as edged does on a dead disk, so the child cuts
// the power at a random journal or store operation, rolls both back to what a disk holds after
// a cut, and dies like the machine. The parent plays the broker: it hears of each PUBACK
// through a pipe, and the next child starts at the first message without one (redelivery).
// After every cut a copy of the files is recovered with the real disk (journal replay into the
// store, as edged does at start) and checked:
//   strict: every acknowledged message is in the store, once; at the end exactly the workload;
//   normal: a lost message is one whose journal entry was not yet committed to the store when
//           the store's WAL was last synced (the bound docs/reliability.md states), and the
//           run does lose some, so the two modes are told apart;
//   both:   PRAGMA integrity_check is ok and the store's invariants hold.
// Figures for docs/reliability.md are printed as "FIGURES ..." lines.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <thread>

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "edge/ingest.h"
#include "tests/damage/store_damage.h"
#include "tests/support/fault_vfs.h"
#include "tests/support/harness.h"
#include "tests/support/power_cut_files.h"

namespace freshsync::testing {
namespace {

namespace fs = std::filesystem;
using edge::EdgeStore;
using edge::Ingest;
using edge::IntakeJournalDir;
using namespace std::chrono_literals;

// What the child tells the parent; one write(2) each, well under PIPE_BUF, so atomic.
struct Report {
  // kAck: message a, journal index b. kFloor: journal index a is durable in the store (b = 2
  // when a WAL sync said so). kArmed: the cut is armed in the journal (a = 1) or the store.
  // kCut: journal bytes dropped << 1 | torn, journal bytes kept, store writes dropped.
  enum Kind : int32_t { kAck, kFloor, kArmed, kCut, kError } kind;
  int64_t a = 0, b = 0, c = 0;
};

struct CutRun {
  Durability durability;
  int cycles;               // at least this many cuts
  int64_t max_journal_ops;  // a journal cut lands uniformly in [1, max] journal calls
  int64_t max_store_ops;    // a store cut lands uniformly in [1, max] VFS writes/syncs
  uint32_t seed;
};

struct Figures {
  int cuts = 0, torn_cuts = 0, journal_cuts = 0, store_cuts = 0;
  int64_t acked = 0, lost = 0, max_lost_in_one_cut = 0, holes = 0, wal_syncs = 0;
  int64_t recovered_from_journal = 0;  // entries the checks replayed from the journal, summed over cuts
  int64_t journal_bytes_dropped = 0, journal_bytes_kept = 0, store_writes_dropped = 0;
};

void Send(int fd, const Report& r) {
  if (::write(fd, &r, sizeof(r)) != static_cast<ssize_t>(sizeof(r))) ::_exit(4);
}

EdgeConfig ConfigFor(const std::string& path, Durability durability) {
  EdgeConfig c;
  c.site = "power-site";
  c.mqtt.uri = "tcp://127.0.0.1:1";  // never connected: Accept is driven directly
  c.store.path = path;
  c.store.durability = durability;
  return c;
}

// The child: opens the store and ingest on the damaged disk and accepts msgs[next..] until the
// power goes. Never returns.
[[noreturn]] void Child(const CutRun& run, const std::string& path, const std::vector<Msg>& msgs, size_t next, int cycle,
                        int out) {
  spdlog::set_level(spdlog::level::off);  // a dead disk makes ingest log every retry
  std::mt19937 rng(run.seed + static_cast<uint32_t>(cycle) * 7919u);
  const bool torn = rng() % 2 == 0;
  FaultVfs vfs("jpl-" + std::to_string(cycle));
  PowerCutFiles files;
  std::atomic<bool> cut_once{false};
  std::atomic<Ingest*> ingest_seen{nullptr};
  auto cut = [&] {
    if (cut_once.exchange(true)) return;
    files.PowerOffNow();
    vfs.PowerOffNow();
    // A store write that passed the VFS's gate just before (its undo already recorded) lands
    // now; nothing passes the gates any more. Journal writes run under PowerCutFiles' lock.
    std::this_thread::sleep_for(50ms);
    const auto fr = files.RestoreAfterPowerCut(torn ? &rng : nullptr);
    const auto vr = vfs.RestoreAfterPowerCut(torn ? &rng : nullptr);
    Send(out, {Report::kCut, (fr.bytes_dropped << 1) | (torn ? 1 : 0), fr.bytes_kept, vr.writes_dropped});
    ::_exit(0);
  };
  files.SetCutListener(cut);
  vfs.SetCutListener(cut);
  const bool journal_cut = rng() % 2 == 0;
  if (journal_cut) files.ArmPowerCut(1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(run.max_journal_ops)));
  else vfs.ArmPowerCut(1 + static_cast<int64_t>(rng() % static_cast<uint64_t>(run.max_store_ops)));
  Send(out, {Report::kArmed, journal_cut ? 1 : 0, 0, 0});
  if (run.durability == Durability::kNormal) {
    // Everything committed when the WAL is synced is durable: the applier's position then is
    // the floor below which nothing may be lost.
    vfs.SetSyncListener([&](const std::string& p) {
      Ingest* in = ingest_seen.load();
      if (in && p.size() > 4 && p.compare(p.size() - 4, 4, "-wal") == 0)
        Send(out, {Report::kFloor, in->counters().journal_applied_index.load(), 2, 0});
    });
  }

  edge::StoreOptions so;
  so.path = path;
  so.durability = run.durability;
  so.vfs_name = vfs.name();
  auto store = EdgeStore::Open(so);  // a cut in here exits through `cut`
  if (!store.ok()) {
    Send(out, {Report::kError, 1, 0, 0});
    ::_exit(3);
  }
  // What the store holds at power-on survived the last cut: durable.
  if (auto pos = (*store)->IntakePosition(); pos.ok()) Send(out, {Report::kFloor, *pos, 0, 0});
  auto ingest = std::make_unique<Ingest>(ConfigFor(path, run.durability), **store);
  ingest->SetJournalFilesForTest(&files);
  if (!ingest->StartIntake().ok()) {
    Send(out, {Report::kError, 2, 0, 0});
    ::_exit(3);
  }
  ingest_seen = ingest.get();
  for (size_t i = next; i < msgs.size(); ++i) {
    const uint64_t index = ingest->Accept(msgs[i].topic, msgs[i].payload);
    Send(out, {Report::kAck, static_cast<int64_t>(i), static_cast<int64_t>(index), 0});  // the PUBACK
  }
  cut();  // the last cut comes right after the last acknowledgement
  ::_exit(5);
}

// Recovers a copy of the files as edged's start would (journal replay into the store) with the
// real disk, and returns the dedupe keys the store then holds.
std::set<std::pair<int, std::string>> RecoverCopy(const std::string& path, Durability durability, const std::string& scratch,
                                                  int64_t* replayed, const std::string& when) {
  fs::remove_all(scratch);
  fs::create_directories(scratch);
  const std::string copy = scratch + "/edge.db";
  for (const char* suffix : {"", "-wal"})
    if (fs::exists(path + suffix)) fs::copy_file(path + suffix, copy + suffix);
  if (fs::exists(IntakeJournalDir(path))) fs::copy(IntakeJournalDir(path), IntakeJournalDir(copy));
  {
    edge::StoreOptions so;
    so.path = copy;
    so.durability = durability;
    auto store = EdgeStore::Open(so);
    EXPECT_TRUE(store.ok()) << when << ": " << store.status().ToString();
    if (!store.ok()) return {};
    Ingest ingest(ConfigFor(copy, durability), **store);
    EXPECT_TRUE(ingest.StartIntake().ok()) << when;
    const int64_t last = ingest.counters().journal_last_index.load();
    const int64_t applied = ingest.counters().journal_applied_index.load();
    if (last > applied) ingest.WaitApplied(static_cast<uint64_t>(last));
    *replayed += last - applied;
  }
  StoreFile db(copy);
  db.ExpectConsistent(when);
  return db.HasSchema() ? db.DedupeKeys() : std::set<std::pair<int, std::string>>{};
}

void RunCuts(const CutRun& run, const std::vector<Msg>& msgs, const std::string& tag, Figures& fig, const Expected* exact) {
  TempDir dir;
  const std::string path = dir.File("edge.db");
  std::vector<std::pair<int, std::string>> identity;
  for (const auto& m : DecodeAll(msgs)) identity.push_back(DedupeIdentity(m));
  ASSERT_EQ(identity.size(), msgs.size());

  size_t next = 0;                              // the first message without a PUBACK
  std::vector<int64_t> index_of(msgs.size(), 0);  // journal index it was acknowledged under
  std::vector<bool> acked(msgs.size(), false), lost(msgs.size(), false);
  for (int cycle = 0; cycle < run.cycles || next < msgs.size(); ++cycle) {
    ASSERT_LT(cycle, run.cycles * 20) << "no progress: " << next << " of " << msgs.size() << " messages through";
    SCOPED_TRACE(tag + " cycle " + std::to_string(cycle));
    int pipefd[2];
    ASSERT_EQ(::pipe(pipefd), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(pipefd[0]);
      Child(run, path, msgs, next, cycle, pipefd[1]);
    }
    ::close(pipefd[1]);
    int64_t floor = 0;
    bool cut_seen = false;
    Report r;
    while (::read(pipefd[0], &r, sizeof(r)) == static_cast<ssize_t>(sizeof(r))) {
      switch (r.kind) {
        case Report::kAck:
          acked[r.a] = true;
          index_of[r.a] = r.b;
          next = static_cast<size_t>(r.a) + 1;
          ++fig.acked;
          break;
        case Report::kArmed:
          (r.a ? fig.journal_cuts : fig.store_cuts)++;
          break;
        case Report::kFloor:
          floor = std::max(floor, r.a);
          if (r.b == 2) ++fig.wal_syncs;
          break;
        case Report::kCut:
          cut_seen = true;
          fig.torn_cuts += static_cast<int>(r.a & 1);
          fig.journal_bytes_dropped += r.a >> 1;
          fig.journal_bytes_kept += r.b;
          fig.store_writes_dropped += r.c;
          break;
        case Report::kError:
          ADD_FAILURE() << "child failed at step " << r.a << " without a power cut";
          break;
      }
    }
    ::close(pipefd[0]);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
    ASSERT_TRUE(cut_seen);
    ++fig.cuts;

    const auto keys = RecoverCopy(path, run.durability, dir.File("check"), &fig.recovered_from_journal,
                                  tag + " after cut " + std::to_string(cycle));
    int64_t lost_now = 0, below_floor = 0, present_after_lost = 0;
    for (size_t i = 0; i < msgs.size(); ++i) {
      if (!acked[i] || lost[i]) continue;
      if (keys.count(identity[i])) {
        if (lost_now > 0) ++present_after_lost;
        continue;
      }
      lost[i] = true;
      ++lost_now;
      if (index_of[i] <= floor) ++below_floor;
    }
    fig.lost += lost_now;
    fig.holes += present_after_lost > 0;
    fig.max_lost_in_one_cut = std::max(fig.max_lost_in_one_cut, lost_now);
    if (run.durability == Durability::kStrict) {
      ASSERT_EQ(lost_now, 0) << "acknowledged messages lost at a power cut in strict mode";
    } else {
      ASSERT_EQ(below_floor, 0) << "lost a message committed before the store's WAL was last synced (floor " << floor << ")";
    }
  }
  if (exact) {
    (void)RecoverCopy(path, run.durability, dir.File("final"), &fig.recovered_from_journal, tag + " final");
    StoreFile db(dir.File("final") + "/edge.db");
    ExpectExactly(db, *exact);
  }
}

void Print(const std::string& name, const CutRun& run, const Figures& f) {
  std::cerr << "FIGURES " << name << " cycles=" << run.cycles << " cuts=" << f.cuts << " journal_cuts=" << f.journal_cuts
            << " store_cuts=" << f.store_cuts << " torn_cuts=" << f.torn_cuts << " acked=" << f.acked << " lost=" << f.lost
            << " max_lost_in_one_cut=" << f.max_lost_in_one_cut << " cuts_with_a_hole=" << f.holes
            << " journal_entries_replayed_by_checks=" << f.recovered_from_journal << " wal_syncs=" << f.wal_syncs
            << " journal_bytes_dropped=" << f.journal_bytes_dropped << " journal_bytes_kept=" << f.journal_bytes_kept
            << " store_writes_dropped=" << f.store_writes_dropped << "\n";
}

TEST(JournalPowerLossTest, StrictLosesNothingAcknowledged) {
  const CutRun run{Durability::kStrict, DamageRounds(120), 600, 400, DamageSeed(20261205)};
  Expected exp;
  const auto msgs = MixedWorkload(4000, "jpls", exp, run.seed);
  Figures f;
  RunCuts(run, msgs, "strict", f, &exp);
  Print("journal_power_loss_strict", run, f);
  EXPECT_EQ(f.lost, 0);
  EXPECT_GE(f.cuts, run.cycles);
  EXPECT_GT(f.journal_cuts, 0);
  EXPECT_GT(f.store_cuts, 0);
  EXPECT_GT(f.journal_bytes_dropped + f.store_writes_dropped, 0);  // the cuts really threw writes away
  EXPECT_GT(f.recovered_from_journal, 0);  // acknowledged entries that only the journal held
}

// Receipts and GPS fixes only: nothing here can be refused after a loss, so every acknowledged
// message missing from the store is a loss.
std::vector<Msg> UnrefusableWorkload(size_t n) {
  std::vector<Msg> out;
  for (size_t i = 0; i < n; ++i) {
    if (i % 2 == 0) {
      out.push_back({"fs/stock/movements", "{\"id\":\"jpn-" + std::to_string(i) + "\",\"sku\":\"sku-" + std::to_string(i % 13) +
                                               "\",\"delta\":3,\"reason\":\"receive\",\"ts\":1764000000000}"});
    } else {
      out.push_back({"fs/vehicles/truck-" + std::to_string(i % 5) + "/gps",
                     "{\"seq\":" + std::to_string(i) + ",\"lat\":31.2,\"lon\":121.5,\"ts\":" + std::to_string(1764000000000 + i) + "}"});
    }
  }
  return out;
}

// Normal mode: no fdatasync of the journal, synchronous=NORMAL in the store. A cut takes back
// what was not yet committed before the WAL's last sync, and no more.
TEST(JournalPowerLossTest, NormalLosesOnlyWhatTheWalHadNotSynced) {
  const CutRun run{Durability::kNormal, DamageRounds(30), 20000, 20000, DamageSeed(20261206)};
  const auto msgs = UnrefusableWorkload(150000);
  Figures f;
  RunCuts(run, msgs, "normal", f, nullptr);
  Print("journal_power_loss_normal", run, f);
  EXPECT_GE(f.cuts, run.cycles);
  EXPECT_GT(f.lost, 0) << "normal mode lost nothing: the cuts never caught unsynced data";
  EXPECT_GT(f.wal_syncs, 0) << "no WAL sync in the run: the floor was never tested above a cycle's start";
}

}  // namespace
}  // namespace freshsync::testing
