// Ingest: the site's MQTT broker into the EdgeStore, through the intake journal.
//
// Two stages (docs/architecture.md, "Intake journal"):
//   1. Paho's message callback (Paho C, edge/mqtt_subscriber.h) appends the message to the intake
//      journal (edge/intake_journal.h) and returns. Paho C sends the PUBACK only after the
//      callback returns, so every acknowledged message is already in the journal: write()
//      returned (survives kill -9, like SQLite WAL with synchronous=NORMAL), and under
//      durability = strict fdatasync too. When the journal cannot be written (disk full, I/O
//      error) the callback does NOT return: it retries in place with backoff, holding the
//      message; if a shutdown is requested meanwhile the process exits with status 75
//      (EX_TEMPFAIL) from inside the callback, so that PUBACK is never sent.
//   2. The applier thread takes journal entries in order and applies them in large
//      transactions (EdgeStore::BeginBatch/ApplyInBatch/CommitBatch, up to kMaxBatch
//      messages), recording the last journal index applied in the same transaction. A crash
//      replays exactly the entries after that index; dedupe keys make any re-application
//      harmless. A message that is refused (decode error, rule conflict) is dead-lettered in
//      the batch. A store failure (kIOError) rolls the batch back and retries it with backoff.
//      Only after a batch commits does the applier publish what it produced, in message order:
//      events, alerts, retained order states, dead-letter notifications (also those of orders
//      the stock ledger refused, EdgeStore::Outcome::kRefused, which count as refused).
// Backpressure: while more than kMaxUnappliedEntries (or kMaxUnappliedBytes) are in the
// journal and not yet applied, the callback waits for the applier, but never longer than
// half the MQTT keepalive (a longer stall would get the client dropped); then it appends
// anyway and counts an overrun.
//
// Three clients. Two subscribe, each with its own persistent session, and both feed the one
// journal: the main client (mqtt.client_id) takes stock, orders and anything unknown; the
// telemetry client (mqtt.client_id + "-telemetry") takes GPS and climate. So telemetry can be
// paused on its own (PauseTelemetry, the disk quota's last resort, edge/disk_quota.h): its
// client disconnects, the broker keeps queueing its session's messages (up to
// max_queued_messages), and ResumeTelemetry reconnects for the redelivery, while stock and
// orders keep flowing. Paho runs all clients' callbacks on one receive thread, so Accept is
// serial (and serialised by append_mu_ anyway). The third client (mqtt.client_id + "-out",
// clean session) subscribes to nothing and publishes what the applier produced (events,
// alerts, order states, dead-letter notifications): with the subscribers publishing too, Paho
// 1.3.12 sent a malformed packet on reconnect after a broker restart.
//
// Thread-safety: Start/Stop/PauseTelemetry/ResumeTelemetry from controlling threads (not from
// the callback). Accept() is called by Paho's receive thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/config.h"
#include "common/status.h"
#include "edge/intake_journal.h"
#include "edge/message_types.h"
#include "edge/publication_queue.h"
#include "edge/store.h"
#include "wire/routes.h"

namespace mqtt {
class async_client;
class message;
}  // namespace mqtt

namespace freshsync::edge {

struct IngestCounters {
  std::atomic<int64_t> applied{0};
  std::atomic<int64_t> duplicates{0};
  std::atomic<int64_t> refused{0};       // dead letters
  std::atomic<int64_t> ignored{0};       // our own output topics echoed back by {root}/#
  std::atomic<int64_t> store_retries{0}; // commits retried after an environment error
  std::atomic<int64_t> deadletter_publish_failures{0};
  std::atomic<int64_t> event_publish_failures{0};  // geofence events, alerts, order states
  // Applied messages by message type (a kMessageTypes row, edge/message_types.h), for metrics.
  std::atomic<int64_t> applied_by_kind[kMessageTypeCount]{};
  // Dead letters by code: 0 invalid, 1 conflict, 2 internal (DeadLetter::code), for metrics.
  std::atomic<int64_t> refused_by_code[3]{};
  // steady_clock ms at which the message now in the callback arrived; 0 between messages.
  // The watchdog (edge/service.h) reads it to tell a wedged ingest from an idle one.
  // Set by the applier around each batch (including its retries of a failing store).
  std::atomic<int64_t> busy_since_ms{0};
  // The same for the callback while it cannot write the journal (the message is held).
  std::atomic<int64_t> intake_busy_since_ms{0};
  // Intake journal: last index appended, last index committed in the store (lag = the
  // difference), batches committed, appends retried after a disk error, and callbacks that
  // waited for the applier (backpressure) / gave up waiting after the keepalive budget.
  std::atomic<int64_t> journal_last_index{0};
  std::atomic<int64_t> journal_applied_index{0};
  std::atomic<int64_t> batches{0};
  std::atomic<int64_t> journal_retries{0};
  std::atomic<int64_t> backpressure_waits{0};
  std::atomic<int64_t> backpressure_overruns{0};
  // Notifications (events, alerts, order states, dead letters) dropped because the publication
  // queue was full: the broker or Paho could not take them as fast as the applier made them.
  // The outbox and dead_letters still hold what they announce.
  std::atomic<int64_t> publications_dropped{0};
  // steady_clock ms of the applier's last sign of progress: a batch committed, or the journal
  // found empty. With journal entries unapplied and this older than the stuck limit, the
  // applier is not making progress (IngestProgressing, edge/service.h: /readyz, watchdog).
  std::atomic<int64_t> applier_progress_ms{0};
  // Journal entries written sealed (privacy key) or redacted/withheld (no key) because their
  // payload may carry personal data (docs/security.md, "Personal data").
  std::atomic<int64_t> journal_sealed{0};
  std::atomic<int64_t> journal_redacted{0};
  // Entries the journal dropped as a torn tail when it was opened (never acknowledged: the
  // broker redelivers them).
  std::atomic<int64_t> journal_torn_dropped{0};
};

// Process-wide settings for the ingest path, made once at the very start of the process, before
// SQLite is initialised or the first thread allocates: edged's main and the ingest benchmarks.
//   - glibc trims the Paho receive thread's malloc arena with madvise(MADV_DONTNEED) whenever
//     its top chunk passes the trim threshold; every madvise is a TLB shootdown across CPUs,
//     and profiling showed that alone costing about a quarter of the per-message CPU. Freed
//     memory stays in the arena instead (bounded: the working set per message is small).
//   - SQLite's memory statistics take a process-wide mutex around every allocation it makes
//     (several per statement); nothing here reads them.
void TuneProcessForIngest();

class Ingest {
 public:
  // Per transaction. Each commit writes every page it dirtied to the WAL, and a GPS batch
  // dirties ~20 leaves per index (one per vehicle) whatever its size: 2048 rather than 512 cut
  // the WAL page writes by ~40 % and edged's own CPU by ~0.7 us per fix (docs/benchmarks.md),
  // at ~10 ms of work per full batch.
  static constexpr size_t kMaxBatch = 2048;
  static constexpr uint64_t kMaxUnappliedEntries = 20000;
  static constexpr uint64_t kMaxUnappliedBytes = 16u << 20;
  // The publication queue between the applier and the publication thread; beyond either bound
  // a notification is dropped (and counted), never waited for; dead-letter notifications first
  // (edge/publication_queue.h).
  static constexpr size_t kMaxQueuedPublications = 10000;
  static constexpr size_t kMaxQueuedPublicationBytes = 8u << 20;

  // `store` must outlive the Ingest. Nothing happens before Start().
  Ingest(const EdgeConfig& config, EdgeStore& store, Clock& clock = SystemClock());
  ~Ingest();
  Ingest(const Ingest&) = delete;
  Ingest& operator=(const Ingest&) = delete;

  // Creates the clients, StartIntake(), then starts connecting in the background
  // (retrying with backoff until the broker answers; Paho reconnects automatically
  // afterwards). kInvalidArgument for a bad mqtt.* setting, kIOError for the journal.
  Status Start();
  // Opens the intake journal at JournalDir(store path) (entries after the store's recorded
  // position are queued for the applier) and starts the applier. Start() calls it; tests and
  // the benchmark call it alone to drive Accept()/HandleMessage() without a broker.
  Status StartIntake();
  // Disconnects the subscribers (waits up to a few seconds), lets the applier drain the
  // journal into the store (bounded by kMaxUnappliedEntries) and stops it, deletes the then
  // fully applied journal (IntakeJournal::RemoveIfAllApplied), and disconnects the publisher.
  // Messages not yet acknowledged are redelivered to the next run by the broker (persistent
  // sessions). False if the store failed during the drain: the rest stays in the journal for
  // the next start.
  bool Stop();

  // Main client subscribed, and the telemetry client too unless telemetry is paused.
  bool subscribed() const { return subscribed_.load() && (telemetry_subscribed_.load() || telemetry_paused_.load()); }
  // Disconnects the telemetry client: nothing more is acknowledged on gps/climate topics, the
  // broker keeps them. Waits up to a few seconds. Idempotent.
  void PauseTelemetry();
  // Reconnects it (in the background); the broker redelivers what it kept. Idempotent.
  void ResumeTelemetry();
  bool telemetry_paused() const { return telemetry_paused_.load(); }
  const IngestCounters& counters() const { return counters_; }

  // The callback's work: journal the message (own output topics are only counted); when it
  // returns, the message may be acknowledged. Returns its journal index (0: ignored).
  uint64_t Accept(std::string_view topic, std::string_view payload);
  // Blocks until the applier has committed (or dead-lettered) journal entry `index`.
  void WaitApplied(uint64_t index);
  // Queues notifications of a transaction another writer committed (the downstream applier,
  // edge/downstream.h) for the publication thread: never waits, drops and counts when full.
  // Any thread.
  void PublishCommitted(std::vector<Publication> pubs) { Publish(std::move(pubs)); }
  // Accept + WaitApplied, for tests and the benchmark (after StartIntake()).
  void HandleMessage(const std::string& topic, std::string_view payload);

  // Where the journal of the store at `store_path` lives: "<store_path>.intake".
  static std::string JournalDir(const std::string& store_path) { return IntakeJournalDir(store_path); }

  // Test hooks (edged reads them from FRESHSYNC_*_FOR_TEST, see edged_main.cc). Before Start.
  // Journal appends fail (as on a full disk) when `fault` says so.
  void SetJournalFaultForTest(std::function<Status()> fault) { journal_fault_ = std::move(fault); }
  // The journal writes through `files` (a power-cut simulation) instead of the real disk.
  void SetJournalFilesForTest(JournalFiles* files) { journal_files_ = files; }
  // The applier takes at most max_batch entries per transaction and sleeps delay_ms before
  // each: lets a test make it lag far behind the journal.
  void SetApplierPaceForTest(size_t max_batch, int delay_ms) {
    max_batch_ = max_batch;
    apply_delay_ms_ = delay_ms;
  }

 private:
  // What a batch does once committed: counters and notifications (never before the commit).
  struct AfterCommit;
  // Connects the main or the telemetry client, retrying with backoff, until connected, stopping,
  // or (telemetry) paused.
  void ConnectLoop(bool telemetry, bool publisher = false);
  void Subscribe(bool telemetry);
  void OnConnected();
  void OnTelemetryConnected();
  void OnSubscribed(bool telemetry);
  void ApplierLoop();
  // Applies entries[0..n) in as few transactions as possible; false if it gave up because the
  // store kept failing during shutdown.
  bool ApplyEntries(const std::vector<JournalEntry>& entries);
  // One transaction over entries[begin, end). Ok: committed. Otherwise the status, with
  // *failed_at the entry that failed on its own (a rule refusal, not the environment).
  Status TryBatch(const std::vector<JournalEntry>& entries, size_t begin, size_t end, bool isolate, size_t* failed_at,
                  AfterCommit* after);
  // `payload` is the entry's payload as received ("" when it was not kept).
  Status DeadLetterInBatch(const JournalEntry& e, std::string_view payload, const Status& why, AfterCommit* after);
  void Finish(AfterCommit& after, uint64_t last_index);
  // The payload as received, from a journal entry (opens a sealed one); otherwise the reason it
  // is refused (withheld, or sealed under a key we no longer have).
  Result<std::string> EntryPayload(const JournalEntry& e) const;
  // Hands notifications to the publication thread; never waits (drops and counts when full).
  void Publish(std::vector<Publication> pubs);
  void PublicationLoop();
  // Waits with backoff before retrying a failed append/batch; true if a shutdown interrupted.
  bool Backoff(int* backoff_ms);

  EdgeConfig config_;
  EdgeStore& store_;
  Clock& clock_;
  // The subscribers (edge/mqtt_subscriber.h, Paho's C API); the publisher stays on Paho C++.
  std::unique_ptr<class MqttSubscriber> client_;
  std::unique_ptr<class MqttSubscriber> telemetry_;  // gps + climate (see the header comment)
  // Publishes edged's notifications (order state, events, alerts, dead letters) and subscribes
  // to nothing: with the subscribers publishing too, Paho 1.3.12 sent a malformed packet on
  // reconnect after a broker restart and the broker dropped the client in a loop.
  std::unique_ptr<mqtt::async_client> publisher_;
  std::thread publisher_connector_;
  std::thread connector_;
  std::thread telemetry_connector_;
  std::mutex pause_mu_;  // serializes PauseTelemetry/ResumeTelemetry/Stop on telemetry_
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> subscribed_{false};
  std::atomic<bool> stop_applier_{false};
  std::atomic<bool> telemetry_subscribed_{false};
  std::atomic<bool> telemetry_paused_{false};
  std::atomic<bool> subscribed_logged_{false};
  std::atomic<bool> legacy_dropped_{false};  // the pre-split {root}/# subscription, once per process
  IngestCounters counters_;
  std::unique_ptr<IntakeJournal> journal_;
  std::mutex append_mu_;  // one appender at a time, whichever client's callback it is
  std::thread applier_;
  std::atomic<bool> applier_gave_up_{false};
  std::mutex applied_mu_;
  std::condition_variable applied_cv_;
  std::function<Status()> journal_fault_;
  JournalFiles* journal_files_ = nullptr;
  size_t max_batch_ = kMaxBatch;
  int apply_delay_ms_ = 0;
  // Publication: the applier pushes, PublicationLoop pops and calls Paho. pub_mu_ is never held
  // while Paho is called, so the applier never waits on Paho's lock (see ingest.cc, "Who waits
  // on whom").
  std::mutex pub_mu_;
  std::condition_variable pub_cv_;
  PublicationQueue pub_queue_{config_.mqtt.topic_root + wire::kDeadletterSuffix, kMaxQueuedPublications, kMaxQueuedPublicationBytes};
  bool pub_stop_ = false;       // drain what is queued, then exit
  bool pub_abandon_ = false;    // exit now, dropping what is queued
  bool pub_busy_ = false;       // a publish() is in progress
  std::thread publication_thread_;
  int64_t last_drop_log_ms_ = 0;    // under pub_mu_: drops are logged at most every 10 s
  int64_t drops_since_log_ = 0;
  int64_t last_dl_log_ms_ = 0;      // applier only: dead letters logged one by one up to a rate
  int64_t dl_logged_in_window_ = 0, dl_suppressed_ = 0;
};

}  // namespace freshsync::edge
