#include "edge/ingest.h"
#include "edge/mqtt_login.h"
#include "edge/mqtt_subscriber.h"
#include "wire/routes.h"

#include <dirent.h>
#include <malloc.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <utility>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace freshsync::edge {

namespace {
int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A withheld journal entry (kJournalWithheld) holds the original size (u32 LE) and the reason.
std::string WithheldForm(size_t original_size, std::string_view reason) {
  const auto n = static_cast<uint32_t>(std::min<size_t>(original_size, UINT32_MAX));
  std::string out;
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));  // little-endian
  out.append(reason);
  return out;
}

// Paho C 1.3's receive thread (one per process, named "MQTTAsync_rcv") sleeps 100 ms after
// every cycle that finds no socket ready (MQTTAsync_cycle), and its very first cycle usually
// runs before the send thread has created the first client's socket: strace of edged's start
// shows the three connect() calls, then that thread in clock_nanosleep(100 ms) while the broker
// has long answered, so each start lost ~0.1 s before the first message (docs/benchmarks.md,
// "Ingest drain"). There is no option for it, so while a connect is in progress we end that
// sleep: if the thread is in clock_nanosleep (/proc/self/task/TID/syscall), a signal with an
// empty handler interrupts it and the thread goes on to poll its sockets. Only then: a signal
// landing in its poll() instead (the thread moved on in between) costs nothing but that cycle
// (Paho treats EINTR there as "no socket ready"). Without /proc, nothing happens.
int PahoWakeSignal() { return SIGRTMIN + 6; }
void IgnoreSignal(int) {}

bool IsPahoReceiveThread(const std::string& tid) {
  std::ifstream comm("/proc/self/task/" + tid + "/comm");
  std::string name;
  return std::getline(comm, name) && name == "MQTTAsync_rcv";
}

pid_t PahoReceiveThread() {
  // The thread lives as long as a client is connected: look it up once, check it still is.
  static std::atomic<pid_t> known{0};
  if (const pid_t tid = known.load(); tid != 0 && IsPahoReceiveThread(std::to_string(tid))) return tid;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return 0;
  pid_t found = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    if (IsPahoReceiveThread(e->d_name)) {
      found = static_cast<pid_t>(std::atoi(e->d_name));
      break;
    }
  }
  closedir(d);
  known.store(found);
  return found;
}

void WakePahoReceiveThread() {
  static const bool installed = [] {
    struct sigaction sa {};
    sa.sa_handler = IgnoreSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: ending the sleep is the point
    return sigaction(PahoWakeSignal(), &sa, nullptr) == 0;
  }();
  if (!installed) return;
  // Three clients connect at once: one look (and at most one signal) per millisecond will do.
  static std::atomic<int64_t> last_us{0};
  const int64_t now_us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
  int64_t before = last_us.load();
  if (now_us - before < 1000 || !last_us.compare_exchange_strong(before, now_us)) return;
  const pid_t tid = PahoReceiveThread();
  if (tid == 0) return;
  std::ifstream in("/proc/self/task/" + std::to_string(tid) + "/syscall");
  long nr = -1;
  if (!(in >> nr) || (nr != SYS_clock_nanosleep && nr != SYS_nanosleep)) return;
  syscall(SYS_tgkill, getpid(), tid, PahoWakeSignal());
}

// Until this version the main client subscribed to {root}/#. Its persistent session keeps
// that subscription, so it is dropped once the telemetry client holds its own (not before:
// telemetry published in between would be queued for nobody).
std::string LegacyFilter(const std::string& root) { return root + "/#"; }
std::string Joined(const std::vector<std::string>& filters) {
  std::string out;
  for (const std::string& f : filters) out += (out.empty() ? "" : ", ") + f;
  return out;
}

// Each message type's filter (kMessageTypes, edge/message_types.h), on the client it names.
// The filters are "{segment}/#" rather than the exact patterns, so that a malformed topic next
// to a type's own is still received and dead-lettered.
std::vector<std::string> FiltersOf(const std::string& root, IngestClient client) {
  std::vector<std::string> filters;
  for (const MessageType& type : kMessageTypes)
    if (type.client == client) filters.push_back(root + "/" + std::string(type.filter));
  return filters;
}
// Telemetry topics ({root}/vehicles/#, {root}/sensors/#): the telemetry client's.
std::vector<std::string> TelemetryFilters(const std::string& root) { return FiltersOf(root, IngestClient::kTelemetry); }
// Everything else edged consumes: the main client's. {root}/+ keeps single-level unknown
// topics dead-lettered; own outputs ({root}/events/#, {root}/alerts/#) are no longer echoed.
std::vector<std::string> MainFilters(const std::string& root) {
  std::vector<std::string> filters = FiltersOf(root, IngestClient::kMain);
  filters.push_back(root + "/+");
  return filters;
}
}  // namespace

void TuneProcessForIngest() {
  mallopt(M_TRIM_THRESHOLD, 64 << 20);
  mallopt(M_MMAP_THRESHOLD, 4 << 20);
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);  // must precede sqlite3_initialize
}

Ingest::Ingest(const EdgeConfig& config, EdgeStore& store, Clock& clock)
    : config_(config), store_(store), clock_(clock) {}

Ingest::~Ingest() {
  Stop();
  // Destroy the Paho clients while everything their callbacks reach still exists:
  // MQTTAsync_destroy fails the commands still pending (a SUBSCRIBE sent during a telemetry
  // resume, say) and calls their listeners, which are members declared after the clients and
  // so, by default, destroyed first (edged segfaulted at exit 1 run in 6 of quota_test).
  publisher_.reset();
  telemetry_.reset();
  client_.reset();
}

Status Ingest::StartIntake() {
  if (journal_) return Status::Ok();
  auto applied = store_.IntakePosition();
  if (!applied.ok()) return applied.status();
  IntakeJournalOptions jo;
  jo.dir = JournalDir(config_.store.path);
  jo.sync_each_append = config_.store.durability == Durability::kStrict;
  jo.files = journal_files_;
  auto j = IntakeJournal::Open(jo, static_cast<uint64_t>(*applied));
  if (!j.ok()) return j.status();
  journal_ = std::move(*j);
  if (journal_fault_) journal_->SetAppendFaultForTest(journal_fault_);
  counters_.journal_last_index = static_cast<int64_t>(journal_->last_index());
  counters_.journal_torn_dropped = static_cast<int64_t>(journal_->torn_entries_dropped());
  counters_.applier_progress_ms = SteadyMs();
  counters_.journal_applied_index = *applied;
  if (const uint64_t pending = journal_->UnappliedEntries(); pending > 0)
    spdlog::info("ingest: {} journal entries after index {} not yet in the store; applying them first", pending, *applied);
  applier_ = std::thread([this] { ApplierLoop(); });
  return Status::Ok();
}

Status Ingest::Start() {
  const auto& m = config_.mqtt;
  try {
    // Offline buffering is for our own notifications (dead letters) only, and bounded.
    auto create = mqtt::create_options_builder()
                      .mqtt_version(MQTTVERSION_3_1_1)
                      .send_while_disconnected(true, true)
                      .max_buffered_messages(10000)
                      .delete_oldest_messages(true)
                      .finalize();
    publisher_ = std::make_unique<mqtt::async_client>(m.uri, m.client_id + "-out", create, nullptr);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("mqtt.uri: ") + e.what());
  }
  // The subscribers on Paho's C API (edge/mqtt_subscriber.h): Accept gets Paho's buffers.
  auto client = MqttSubscriber::Create(m.uri, m.client_id);
  if (!client.ok()) return Status::InvalidArgument("mqtt.uri: " + client.status().message());
  auto telemetry = MqttSubscriber::Create(m.uri, m.client_id + "-telemetry");
  if (!telemetry.ok()) return Status::InvalidArgument("mqtt.uri: " + telemetry.status().message());
  client_ = std::move(*client);
  telemetry_ = std::move(*telemetry);
  auto on_message = [this](std::string_view topic, std::string_view payload) { Accept(topic, payload); };
  client_->set_message_handler(on_message);
  telemetry_->set_message_handler(on_message);
  client_->set_connected_handler([this] { OnConnected(); });
  telemetry_->set_connected_handler([this] { OnTelemetryConnected(); });
  client_->set_connection_lost_handler([this](const std::string& cause) {
    subscribed_ = false;
    subscribed_logged_ = false;
    spdlog::warn("ingest: connection to {} lost ({}); reconnecting", config_.mqtt.uri, cause.empty() ? "no reason given" : cause);
  });
  telemetry_->set_connection_lost_handler([this](const std::string& cause) {
    telemetry_subscribed_ = false;
    subscribed_logged_ = false;
    spdlog::warn("ingest: telemetry connection to {} lost ({}); reconnecting", config_.mqtt.uri,
                 cause.empty() ? "no reason given" : cause);
  });
  // Only now the applier: it may publish at once (entries a crash left in the journal), so
  // the clients must exist before its thread does (TSan caught it reading publisher_ while
  // this thread assigned it). Publishing before the connection is up is buffered by Paho.
  publication_thread_ = std::thread([this] { PublicationLoop(); });
  if (Status s = StartIntake(); !s.ok()) return s;
  connector_ = std::thread([this] { ConnectLoop(false); });
  publisher_connector_ = std::thread([this] { ConnectLoop(false, /*publisher=*/true); });
  telemetry_connector_ = std::thread([this] { ConnectLoop(true); });
  return Status::Ok();
}

void Ingest::ConnectLoop(bool telemetry, bool publisher) {
  const auto& m = config_.mqtt;
  auto stop = [&] { return stopping_.load() || (telemetry && telemetry_paused_.load()); };
  auto b = mqtt::connect_options_builder()
               // Paho C++ 1.2 can silently fall back to 3.1 after a socket error: pin the version.
               .mqtt_version(MQTTVERSION_3_1_1)
               // Persistent sessions for the subscribers: the broker queues while we are down.
               // The publisher's notifications are best effort (the outbox is the record), and
               // a clean session keeps stale in-flight publishes from being resent on reconnect.
               .clean_session(publisher)
               .keep_alive_interval(std::chrono::seconds(m.keepalive_s))
               .connect_timeout(std::chrono::seconds(5))
               .automatic_reconnect(std::chrono::seconds(1), std::chrono::seconds(30));
  SetBrokerLogin(b, m);
  const auto opts = b.finalize();
  // Paho's automatic reconnect only starts after a first success; until then we retry here.
  int backoff_ms = 200;
  // One attempt: true once connected. For the first 200 ms, every 2 ms, Paho's receive thread
  // may be asleep (see above).
  auto attempt = [&]() -> bool {
    if (!publisher) {
      MqttSubscriber& client = telemetry ? *telemetry_ : *client_;
      auto pending = client.Connect(m);
      if (!pending) return false;
      bool done = false;
      for (int i = 0; i < 100 && !(done = pending->WaitFor(2)); ++i) WakePahoReceiveThread();
      if ((done || pending->WaitFor(10000)) && client.is_connected()) return true;
      spdlog::warn("ingest: {} client cannot connect to {}; retrying in {} ms", telemetry ? "telemetry" : "main", m.uri, backoff_ms);
      return false;
    }
    try {
      auto tok = publisher_->connect(opts);
      bool done = false;
      for (int i = 0; i < 100 && !(done = tok->wait_for(std::chrono::milliseconds(2))); ++i) WakePahoReceiveThread();
      return (done || tok->wait_for(std::chrono::seconds(10))) && publisher_->is_connected();
    } catch (const std::exception& e) {
      spdlog::warn("ingest: publisher cannot connect to {}: {}; retrying in {} ms", m.uri, e.what(), backoff_ms);
      return false;
    }
  };
  while (!stop()) {
    if (attempt()) return;
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), stop);
    backoff_ms = std::min(backoff_ms * 2, 10000);
  }
}

// Re-subscribing is harmless with a persistent session and covers a broker that lost it.
// {root}/orders/# also brings back the order states we publish; Accept skips those topics
// (MQTT 3.1.1 has no no-local option). Completion marks the client subscribed: readiness for
// logs, tests and sd_notify.
void Ingest::Subscribe(bool telemetry) {
  MqttSubscriber& client = telemetry ? *telemetry_ : *client_;
  client.Subscribe(telemetry ? TelemetryFilters(config_.mqtt.topic_root) : MainFilters(config_.mqtt.topic_root),
                   [this, telemetry](bool ok, int rc) {
                     if (ok) {
                       OnSubscribed(telemetry);
                       return;
                     }
                     spdlog::error("ingest: {} subscription under {}/ refused (rc {})", telemetry ? "telemetry" : "main",
                                   config_.mqtt.topic_root, rc);
                   });
}

void Ingest::OnConnected() { Subscribe(false); }

void Ingest::OnTelemetryConnected() {
  if (telemetry_paused_) {
    // Paho's automatic reconnect came back while we are paused (the link was down when
    // PauseTelemetry ran, so there was no connection to close): close this one.
    telemetry_->Disconnect(0, 0);  // from Paho's thread: start it, do not wait for it
    return;
  }
  Subscribe(true);
}

void Ingest::OnSubscribed(bool telemetry) {
  (telemetry ? telemetry_subscribed_ : subscribed_) = true;
  if (telemetry_subscribed_ && subscribed_ && !legacy_dropped_.exchange(true)) {
    if (!client_->Unsubscribe({LegacyFilter(config_.mqtt.topic_root)})) legacy_dropped_ = false;
  }
  // One "subscribed to" line per time both are up: tests and operators wait for it.
  if (subscribed() && !subscribed_logged_.exchange(true))
    spdlog::info("ingest: subscribed to {} and, {}, {} (QoS 1)", Joined(MainFilters(config_.mqtt.topic_root)),
                 telemetry_paused_ ? "paused by the disk quota" : "as " + config_.mqtt.client_id + "-telemetry",
                 Joined(TelemetryFilters(config_.mqtt.topic_root)));
}

void Ingest::PauseTelemetry() {
  std::lock_guard<std::mutex> guard(pause_mu_);
  if (stopping_ || telemetry_paused_.exchange(true) || !telemetry_) return;
  cv_.notify_all();  // a connect loop in progress gives up
  if (telemetry_connector_.joinable()) telemetry_connector_.join();
  telemetry_subscribed_ = false;
  // The session stays (clean_session=false): the broker queues gps/climate for it.
  telemetry_->Disconnect(2000, 5000);
  spdlog::warn("ingest: telemetry paused: gps and climate are no longer acknowledged; the broker keeps them");
}

void Ingest::ResumeTelemetry() {
  std::lock_guard<std::mutex> guard(pause_mu_);
  if (stopping_ || !telemetry_paused_.exchange(false) || !telemetry_) return;
  if (telemetry_connector_.joinable()) telemetry_connector_.join();
  telemetry_connector_ = std::thread([this] { ConnectLoop(true); });
  spdlog::info("ingest: telemetry resumed: reconnecting for what the broker kept");
}

bool Ingest::Stop() {
  std::lock_guard<std::mutex> guard(pause_mu_);
  if (stopping_.exchange(true)) return !applier_gave_up_;
  cv_.notify_all();
  // The callback may be waiting for room in the journal while holding Paho's lock, which the
  // disconnects below need: from now on it appends without waiting (see "Who waits on whom").
  if (journal_) journal_->CancelRoomWaits();
  if (connector_.joinable()) connector_.join();
  if (telemetry_connector_.joinable()) telemetry_connector_.join();
  if (publisher_connector_.joinable()) publisher_connector_.join();
  auto disconnect = [](mqtt::async_client* c) {
    if (!c) return;
    try {
      if (c->is_connected()) c->disconnect(std::chrono::milliseconds(2000))->wait_for(std::chrono::seconds(5));
    } catch (const std::exception& e) {
      spdlog::warn("ingest: disconnect: {}", e.what());
    }
  };
  // The subscribers first: once they are gone, nothing more is appended or acknowledged.
  if (telemetry_) telemetry_->Disconnect(2000, 5000);
  if (client_) client_->Disconnect(2000, 5000);
  // Let the applier empty the journal into the store, then stop.
  stop_applier_ = true;
  if (journal_) journal_->Interrupt();
  if (applier_.joinable()) applier_.join();
  if (journal_) {
    // append_mu_: a callback Paho still had in flight must not append meanwhile.
    std::lock_guard<std::mutex> lock(append_mu_);
    if (!journal_->RemoveIfAllApplied())
      spdlog::warn("ingest: {} journal entries not applied (store failing); they are applied at the next start",
                   journal_->UnappliedEntries());
  }
  // The publication thread: what the drained batches produced still goes out, for at most a
  // few seconds (TimeoutStopSec), then the rest is dropped and counted.
  if (publication_thread_.joinable()) {
    std::unique_lock<std::mutex> lock(pub_mu_);
    pub_stop_ = true;
    pub_cv_.notify_all();
    if (!pub_cv_.wait_for(lock, std::chrono::seconds(3), [&] { return pub_queue_.empty() && !pub_busy_; })) {
      spdlog::warn("ingest: {} notifications not published at shutdown (the outbox and dead_letters have them)", pub_queue_.size());
      pub_abandon_ = true;
      pub_cv_.notify_all();
    }
    lock.unlock();
    publication_thread_.join();
  }
  // The publisher last, so that the notifications of the drained batches still go out.
  disconnect(publisher_.get());
  return !applier_gave_up_;
}

bool Ingest::Backoff(int* backoff_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(*backoff_ms), [&] { return stopping_.load(); });
  *backoff_ms = std::min(*backoff_ms * 2, 5000);
  return stopping_;
}

uint64_t Ingest::Accept(std::string_view topic, std::string_view payload) {
  const int64_t received_ms = clock_.NowMs();
  const TopicKind kind = ClassifyTopic(config_.mqtt.topic_root, topic).kind;
  if (kind == TopicKind::kOwnOutput) {
    ++counters_.ignored;
    return 0;
  }
  // Personal data never reaches the disk in clear, whatever the topic (docs/security.md,
  // "Personal data"). A byte scan decides first (a GPS fix pays only that); a payload that
  // may carry a customer is sealed with the site's key, so the applier gets it back whole;
  // without a key it is journaled redacted (the store would drop the customer anyway, and the
  // redacted form decodes to the same outcome), or, when it cannot even be parsed, only the
  // reason it is refused is kept.
  std::string kept;
  uint8_t flags = 0;
  if (MayCarryPersonalData(kind, payload)) {
    if (const auto& sealer = store_.sealer()) {
      kept = sealer->Seal(payload);
      flags = kJournalSealed;
      ++counters_.journal_sealed;
    } else if (auto redacted = RedactPersonalData(kind, payload)) {
      kept = std::move(*redacted);
      ++counters_.journal_redacted;
    } else {
      auto decoded = Decode(config_.mqtt.topic_root, topic, payload);
      kept = WithheldForm(payload.size(), decoded.ok() ? "payload withheld: it may carry personal data and cannot be redacted"
                                                       : decoded.status().message());
      flags = kJournalWithheld;
      ++counters_.journal_redacted;
    }
    payload = kept;
  }
  std::lock_guard<std::mutex> lock(append_mu_);
  // Backpressure: let the applier catch up, within the keepalive budget. Never once a stop
  // began: Stop() needs Paho's lock, which Paho holds while we are in this callback.
  const int budget_ms = std::max(1, config_.mqtt.keepalive_s) * 500;
  if (!stopping_ && (journal_->UnappliedEntries() >= kMaxUnappliedEntries || journal_->UnappliedBytes() >= kMaxUnappliedBytes)) {
    ++counters_.backpressure_waits;
    if (!journal_->WaitForRoom(kMaxUnappliedEntries, kMaxUnappliedBytes, budget_ms)) ++counters_.backpressure_overruns;
  }
  int backoff_ms = 50;
  while (true) {
    auto index = journal_->Append(topic, payload, received_ms, flags);
    if (index.ok()) {
      counters_.intake_busy_since_ms.store(0, std::memory_order_relaxed);
      counters_.journal_last_index.store(static_cast<int64_t>(*index), std::memory_order_relaxed);
      return *index;  // durable: Paho may acknowledge once we return
    }
    if (index.status().code() != StatusCode::kIOError) {
      // Cannot be journaled at all (a topic over 64 KiB): nothing to apply, so let it go.
      spdlog::error("ingest: {} not journaled: {}", topic.substr(0, 200), index.status().ToString());
      ++counters_.refused;
      return 0;
    }
    // Not durable, so we must not return (returning acks it).
    ++counters_.journal_retries;
    if (counters_.intake_busy_since_ms.load(std::memory_order_relaxed) == 0)
      counters_.intake_busy_since_ms.store(SteadyMs(), std::memory_order_relaxed);
    spdlog::error("ingest: intake journal failed ({}); holding the message unacknowledged, retry in {} ms", index.status().ToString(),
                  backoff_ms);
    if (Backoff(&backoff_ms)) {
      spdlog::critical("ingest: shutdown requested while the journal is failing; exiting without acknowledging the message");
      spdlog::default_logger()->flush();
      std::_Exit(75);  // EX_TEMPFAIL; no PUBACK can go out for a message we did not journal
    }
  }
}

void Ingest::WaitApplied(uint64_t index) {
  std::unique_lock<std::mutex> lock(applied_mu_);
  applied_cv_.wait(lock, [&] {
    return static_cast<uint64_t>(counters_.journal_applied_index.load()) >= index || applier_gave_up_.load();
  });
}

void Ingest::HandleMessage(const std::string& topic, std::string_view payload) {
  const uint64_t index = Accept(topic, payload);
  if (index != 0) WaitApplied(index);
}

struct Ingest::AfterCommit {
  int64_t applied = 0, duplicates = 0, refused = 0;
  int64_t applied_by_kind[kMessageTypeCount] = {};
  int64_t refused_by_code[3] = {};
  struct DeadLetterNote {
    std::string topic, reason;
  };
  std::vector<DeadLetterNote> dead_letters;  // for the log; the notifications are in the store's publications
  void Clear() { *this = AfterCommit(); }
};

void Ingest::ApplierLoop() {
  std::vector<JournalEntry> batch;
  while (true) {
    batch.clear();
    if (!journal_->Take(max_batch_, 200, &batch)) {
      // Nothing to do is progress too: the watchdog must not blame an idle applier.
      counters_.applier_progress_ms.store(SteadyMs(), std::memory_order_relaxed);
      if (stop_applier_) break;  // drained
      continue;
    }
    if (apply_delay_ms_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(apply_delay_ms_));
    counters_.busy_since_ms.store(SteadyMs(), std::memory_order_relaxed);
    const bool ok = ApplyEntries(batch);
    counters_.busy_since_ms.store(0, std::memory_order_relaxed);
    if (!ok) {
      applier_gave_up_ = true;
      applied_cv_.notify_all();
      break;
    }
  }
}

bool Ingest::ApplyEntries(const std::vector<JournalEntry>& entries) {
  AfterCommit after;
  size_t begin = 0;
  int backoff_ms = 50, failures_while_stopping = 0;
  auto wait_retry = [&] {
    if (!stopping_) {
      Backoff(&backoff_ms);
      return true;
    }
    // Draining for a shutdown: a few seconds for a transient failure (a lock), then leave the
    // rest in the journal for the next start rather than outlive TimeoutStopSec.
    if (++failures_while_stopping > 20) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    return true;
  };
  while (begin < entries.size()) {
    size_t failed_at = entries.size();
    after.Clear();
    Status s = TryBatch(entries, begin, entries.size(), false, &failed_at, &after);
    if (s.ok()) {
      Finish(after, entries.back().index);
      return true;
    }
    if (s.code() == StatusCode::kIOError) {
      // Nothing of the batch stayed. The messages are safe in the journal; retry.
      ++counters_.store_retries;
      spdlog::error("ingest: store failed ({}); holding {} journaled messages, retry in {} ms", s.ToString(), entries.size() - begin,
                    backoff_ms);
      if (!wait_retry()) return false;
      continue;
    }
    // One message failed on its own (a rule refused it, or a bug): its partial writes went
    // with the rolled-back batch. Commit the ones before it, then that one alone.
    if (failed_at > begin) {
      size_t again = entries.size();
      after.Clear();
      s = TryBatch(entries, begin, failed_at, false, &again, &after);
      if (!s.ok()) continue;  // the environment (retried above next time round) or not deterministic
      Finish(after, entries[failed_at - 1].index);
    }
    after.Clear();
    size_t unused = 0;
    s = TryBatch(entries, failed_at, failed_at + 1, true, &unused, &after);
    if (!s.ok()) {
      // The environment, or not even its dead letter could be written (a bug): either way it
      // stays unapplied and is retried; a lasting failure trips the watchdog (busy_since_ms).
      if (s.code() != StatusCode::kIOError)
        spdlog::critical("ingest: cannot apply or dead-letter {}: {}", entries[failed_at].topic, s.ToString());
      begin = failed_at;
      if (!wait_retry()) return false;
      continue;
    }
    Finish(after, entries[failed_at].index);
    begin = failed_at + 1;
    backoff_ms = 50;
  }
  return true;
}

Status Ingest::TryBatch(const std::vector<JournalEntry>& entries, size_t begin, size_t end, bool isolate, size_t* failed_at,
                        AfterCommit* after) {
  const std::string& root = config_.mqtt.topic_root;
  Status s = store_.BeginBatch();
  if (!s.ok()) return s;
  for (size_t i = begin; i < end; ++i) {
    const JournalEntry& e = entries[i];
    auto payload = EntryPayload(e);
    if (!payload.ok()) {  // withheld at intake, or sealed under a key we no longer hold
      s = DeadLetterInBatch(e, "", payload.status(), after);
      if (!s.ok()) break;
      continue;
    }
    auto decoded = Decode(root, e.topic, *payload);
    if (!decoded.ok()) {
      s = DeadLetterInBatch(e, *payload, decoded.status(), after);
      if (!s.ok()) break;
      continue;
    }
    // The device-clock check uses the time the message reached us (journaled with it), so a
    // replay after a crash judges it exactly as the first attempt did.
    if (Status skew = CheckDeviceClock(*decoded, e.received_ms, config_.max_clock_skew_s); !skew.ok()) {
      s = DeadLetterInBatch(e, *payload, skew, after);
      if (!s.ok()) break;
      continue;
    }
    auto applied = store_.ApplyInBatch(*decoded, e.received_ms);
    if (applied.ok()) {
      switch (*applied) {
        case EdgeStore::Outcome::kApplied:
          ++after->applied;
          ++after->applied_by_kind[decoded->index()];  // the variant index is the kMessageTypes row
          if (const auto* o = std::get_if<OrderStatus>(&*decoded)) {
            // The order's current state, retained, for terminals that connect later. Only an
            // applied transition gets here, and transitions only move forward, so the retained
            // message never goes back. No customer data: the state names the order, nobody else.
            // Queued in the store so that it leaves only if the batch commits, in message order.
            store_.QueuePublication(publish::OrderState(root, *o, o->status));
          }
          break;
        case EdgeStore::Outcome::kRefused:
          // An order stock cannot cover: the store committed its refusal (dead letter, order
          // `refused`, ORDER record) and queued its notifications (dead letter, retained
          // `refused` state, order event). A dead letter like any other for the counters.
          ++after->refused;
          ++after->refused_by_code[1];  // conflict
          break;
        case EdgeStore::Outcome::kDuplicate:
          ++after->duplicates;
          break;
      }
      continue;
    }
    s = applied.status();
    if (s.code() == StatusCode::kIOError) break;
    // kConflict (a rule) or kInternal (a bug, e.g. a constraint we did not expect): this one
    // message cannot be applied and must not stall the pipeline.
    if (!isolate) {
      *failed_at = i;
      break;
    }
    if (s.code() == StatusCode::kInternal) spdlog::error("ingest: internal error on {}: {}", e.topic, s.ToString());
    store_.RollbackBatch();  // its partial writes
    s = store_.BeginBatch();
    if (s.ok()) s = DeadLetterInBatch(e, *payload, applied.status(), after);
    if (!s.ok()) break;
  }
  if (s.ok()) s = store_.SetIntakePosition(static_cast<int64_t>(entries[end - 1].index));
  if (!s.ok()) {
    store_.RollbackBatch();
    return s;
  }
  return store_.CommitBatch();  // rolled back if it fails
}

Result<std::string> Ingest::EntryPayload(const JournalEntry& e) const {
  if (e.flags & kJournalWithheld) {
    // Only the reason was kept (see Accept).
    return Status::InvalidArgument(e.payload.size() > 4 ? e.payload.substr(4) : std::string("payload withheld"));
  }
  if (e.flags & kJournalSealed) {
    const auto& sealer = store_.sealer();
    if (!sealer) return Status::InvalidArgument("journal entry sealed with a privacy key that is no longer configured");
    auto opened = sealer->Open(e.payload);
    if (!opened.ok()) return Status::InvalidArgument("journal entry sealed with a privacy key that is no longer configured");
    return std::move(*opened);
  }
  return e.payload;
}

Status Ingest::DeadLetterInBatch(const JournalEntry& e, std::string_view payload, const Status& why, AfterCommit* after) {
  DeadLetter dl;
  dl.topic = e.topic;
  // Decode's reasons name fields and limits and never quote payload bytes (edge/decode.h).
  dl.reason = why.message();
  dl.code = why.code() == StatusCode::kConflict ? "conflict" : why.code() == StatusCode::kInternal ? "internal" : "invalid";
  dl.payload_bytes = static_cast<int64_t>(payload.size());
  if ((e.flags & kJournalWithheld) && e.payload.size() >= 4) {
    uint32_t n = 0;
    for (int i = 3; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(e.payload[static_cast<size_t>(i)]);
    dl.payload_bytes = n;
  }
  dl.received_ms = e.received_ms;
  // A customer block may come on any topic and in any payload: the decision is on the bytes
  // (MayCarryPersonalData), not the topic. Kept only once redacted, not at all when too
  // broken to redact.
  const TopicKind kind = ClassifyTopic(config_.mqtt.topic_root, e.topic).kind;
  if (!MayCarryPersonalData(kind, payload)) {
    dl.payload = std::string(payload.substr(0, EdgeStore::kMaxDeadLetterPayload));
  } else if (auto redacted = RedactPersonalData(kind, payload)) {
    dl.payload = std::move(*redacted);
  }
  Status s = store_.AddDeadLetter(dl);
  if (!s.ok()) return s;
  ++after->refused;
  ++after->refused_by_code[dl.code == "invalid" ? 0 : dl.code == "conflict" ? 1 : 2];
  after->dead_letters.push_back({dl.topic, dl.reason});
  // The notification goes with the batch's other publications, after COMMIT, in message order.
  store_.QueuePublication(publish::DeadLetterNotice(config_.mqtt.topic_root, dl.topic, dl.reason, dl.code, e.received_ms));
  return Status::Ok();
}

void Ingest::Finish(AfterCommit& after, uint64_t last_index) {
  // Committed: counters first (WaitApplied callers read them), then the journal may forget.
  counters_.applied += after.applied;
  counters_.duplicates += after.duplicates;
  counters_.refused += after.refused;
  for (size_t i = 0; i < kMessageTypeCount; ++i) counters_.applied_by_kind[i].fetch_add(after.applied_by_kind[i], std::memory_order_relaxed);
  for (int i = 0; i < 3; ++i) counters_.refused_by_code[i].fetch_add(after.refused_by_code[i], std::memory_order_relaxed);
  ++counters_.batches;
  journal_->Release(last_index);
  {
    std::lock_guard<std::mutex> lock(applied_mu_);
    counters_.journal_applied_index.store(static_cast<int64_t>(last_index));
  }
  applied_cv_.notify_all();
  counters_.applier_progress_ms.store(SteadyMs(), std::memory_order_relaxed);
  // One line per dead letter, but at most 100 per 10 s: a flood of bad messages must not turn
  // into a flood of log lines (a full log pipe would block the applier). The rest is counted.
  const int64_t now = SteadyMs();
  if (now - last_dl_log_ms_ >= 10'000) {
    if (dl_suppressed_ > 0) spdlog::warn("ingest: {} more dead letters in the last 10 s not logged one by one", dl_suppressed_);
    last_dl_log_ms_ = now;
    dl_logged_in_window_ = 0;
    dl_suppressed_ = 0;
  }
  for (const auto& d : after.dead_letters) {
    if (dl_logged_in_window_++ < 100) spdlog::info("ingest: dead letter on {}: {}", d.topic, d.reason);
    else ++dl_suppressed_;
  }
  // What the committed transactions produced, in message order: events, alerts, order states,
  // dead-letter notifications (the store holds back those of rolled-back ones).
  Publish(store_.TakePublications());
}

// Who waits on whom (docs/architecture.md, "Who waits on whom"). The rule: a thread that must
// make progress never waits on a thread that may be waiting on it.
//   - Paho's receive thread runs our callback (Accept) holding Paho's library mutex, and
//     Accept may wait for the applier (backpressure, WaitForRoom).
//   - So the applier must never wait for Paho's mutex: MQTTAsync_send (publish) takes it.
//     It once did, in Finish: the callback waited for room, the applier waited in publish
//     for the mutex the callback's thread held, Paho's send thread waited for it too, and
//     only the keepalive/2 budget of each callback let one message through now and then
//     (20,000 bad 60 KB messages wedged edged for good). Now the applier only
//     pushes into pub_queue_ (pub_mu_ is never held across a Paho call) and this thread
//     calls Paho; when it is blocked, the queue fills and notifications are dropped and
//     counted (publications_dropped), never waited for. The outbox and dead_letters are the
//     record; notifications are best effort.
//   - Stop() needs Paho's mutex to disconnect: it first cancels the callback's room waits
//     (CancelRoomWaits), so the callback returns within one append.
//   - The callback's other wait, a failing journal, exits the process on stop (_Exit(75)).
void Ingest::Publish(std::vector<Publication> pubs) {
  if (pubs.empty() || !publisher_) return;  // driven without a broker (tests, bench): nothing to send
  int64_t dropped = 0;
  int64_t report = 0;
  {
    // Under the lock, drop accounting too: the downstream applier publishes from its own thread.
    std::lock_guard<std::mutex> lock(pub_mu_);
    for (auto& p : pubs) dropped += static_cast<int64_t>(pub_queue_.Push(std::move(p)));
    if (dropped > 0) {  // the clock only when something was dropped: every commit passes here
      drops_since_log_ += dropped;
      const int64_t now = SteadyMs();
      if (now - last_drop_log_ms_ >= 10'000) {
        report = std::exchange(drops_since_log_, 0);
        last_drop_log_ms_ = now;
      }
    }
  }
  pub_cv_.notify_one();
  if (dropped == 0) return;
  counters_.publications_dropped.fetch_add(dropped, std::memory_order_relaxed);
  if (report > 0)
    spdlog::warn("ingest: publication queue full; {} notifications dropped since the last report (the outbox and dead_letters have them)",
                 report);
}

void Ingest::PublicationLoop() {
  const std::string deadletter_topic = config_.mqtt.topic_root + wire::kDeadletterSuffix;
  std::unique_lock<std::mutex> lock(pub_mu_);
  while (true) {
    pub_cv_.wait(lock, [&] { return !pub_queue_.empty() || pub_stop_ || pub_abandon_; });
    if (pub_abandon_) {
      counters_.publications_dropped.fetch_add(static_cast<int64_t>(pub_queue_.Clear()), std::memory_order_relaxed);
      break;
    }
    if (pub_queue_.empty()) {
      if (pub_stop_) break;
      continue;
    }
    Publication p = pub_queue_.Pop();
    pub_busy_ = true;
    lock.unlock();
    // May wait for Paho's mutex (held while the receive thread is in our callback): only this
    // thread waits, the applier goes on.
    try {
      publisher_->publish(p.topic, p.payload.data(), p.payload.size(), 1, p.retained);
    } catch (const std::exception& e) {
      ++(p.topic == deadletter_topic ? counters_.deadletter_publish_failures : counters_.event_publish_failures);
      spdlog::warn("ingest: {} not published (the outbox or dead_letters has it): {}", p.topic, e.what());
    }
    lock.lock();
    pub_busy_ = false;
    if (pub_queue_.empty()) pub_cv_.notify_all();  // Stop() waits for the drain
  }
  pub_cv_.notify_all();
}

}  // namespace freshsync::edge
