// EdgeStore: the site's SQLite store. Every accepted message is applied inside one transaction
// (its own, Apply(), or a batch's, ApplyInBatch()) holding its dedupe key, its domain rows and
// its outbox change record(s). Schema: docs/formats.md.
//
// Ordering invariant (where durability meets acknowledgement): Apply() returns only after
// COMMIT has returned, so a caller that acknowledges after Apply() never acknowledges a
// message that is not in the store. With durability = normal (synchronous=NORMAL, WAL) a
// commit survives a process crash (kill -9) but the last commits may be lost on power loss;
// strict (synchronous=FULL) survives power loss too, at about 1/7 the commit rate.
//
// Status codes from Apply():
//   ok               applied, a duplicate, or an order refused for want of stock (outcome
//                    says which); nothing more to do but publish TakePublications()
//   kConflict        refused by a rule (negative stock, illegal order transition): nothing
//                    was written; the caller dead-letters it
//   kIOError         the disk failed (full, I/O error, locked past busy_timeout): nothing
//                    was written; the caller must NOT acknowledge the message
//   kInternal        a bug or a corrupt database
// Thread-safety: an EdgeStore is used from one thread at a time (ingest's journal applier).
// Other processes (edgectl, sqlite3) may read concurrently: WAL lets them.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "audit/chain.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/status.h"
#include "edge/decode.h"
#include "privacy/sealer.h"
#include "edge/publications.h"
#include "edge/stock_ledger.h"
// The read side (StoreSummary, ReadStoreSummary, ...): its own read-only connection, not the store's.
#include "edge/store_reader.h"

struct sqlite3;

namespace freshsync::v1 {
class ChangeRecord;
class DownCommand;
}

namespace freshsync::edge {

class EdgeStore;
class OutboxWriter;

// Domain rules that run inside a message's transaction (edge/site_rules.h). Called on the
// store's thread only. OnGps/OnClimate may append change records and queue publications
// through the store; a non-ok Status rolls the whole message back (kIOError: retried).
// Exactly one of OnCommitted/OnRolledBack follows every Apply() that reached the hook.
class ApplyHook {
 public:
  virtual ~ApplyHook() = default;
  virtual Status OnGps(EdgeStore& store, const GpsFix& g, int64_t now_ms) = 0;
  virtual Status OnClimate(EdgeStore& store, const ClimateSample& c, int64_t now_ms) = 0;
  virtual void OnCommitted() = 0;
  virtual void OnRolledBack() = 0;
};

struct StoreOptions {
  std::string path;
  Durability durability = Durability::kNormal;
  int busy_timeout_ms = 2000;
  Clock* clock = nullptr;                 // default SystemClock()
  std::optional<Sealer> sealer;           // none: customer data is dropped (and counted)
  // The site's key for the cold-chain audit chain's hourly seals (edge/outbox_writer.h);
  // none: the chain is kept, nothing is sealed.
  std::optional<audit::SigningKey> signing_key;
  std::string topic_root = "fs";          // for the store's own publications (refused orders)
  // SQLite VFS to open the database with; "" = SQLite's default. Tests name a fault-injecting
  // VFS here (tests/support/fault_vfs.h) to simulate power cuts and disk errors.
  std::string vfs_name;
};

struct DeadLetter {
  std::string topic;
  std::string reason;
  std::string code;       // "invalid" (bad input) or "conflict" (refused by a rule)
  std::string payload;    // already redacted; truncated to kMaxDeadLetterPayload by the store
  int64_t payload_bytes = 0;  // original size
  int64_t received_ms = 0;
};

class EdgeStore {
 public:
  static constexpr size_t kMaxDeadLetterPayload = 4096;
  static constexpr size_t kMaxReadyPublications = 10000;
  // kRefused: an order `created` that stock cannot cover. Unlike a kConflict it is committed
  // (docs/rules.md, "Refused orders"): the dedupe claim, the order as `refused`, its ORDER
  // change record and its dead letter, in one transaction; the dead-letter notification, the
  // retained order state and the order event are in TakePublications(). The caller must not
  // dead-letter it again nor publish a `created` state for it.
  enum class Outcome { kApplied, kDuplicate, kRefused };

  // Opens (creating if needed) and migrates the database to LatestStoreVersion().
  // kIOError if it cannot be opened, kInternal if its version is newer than this binary.
  static Result<std::unique_ptr<EdgeStore>> Open(StoreOptions options);
  ~EdgeStore();
  EdgeStore(const EdgeStore&) = delete;
  EdgeStore& operator=(const EdgeStore&) = delete;

  // received_ms: when the message arrived (used as ts for movements without one).
  Result<Outcome> Apply(const Message& message, int64_t received_ms);
  Status AddDeadLetter(const DeadLetter& dl);

  // ---- Batches: many messages in one transaction (edge/ingest.cc's journal applier) ----
  // BeginBatch(), then ApplyInBatch()/AddDeadLetter()/SetIntakePosition() any number of
  // times, then CommitBatch() or RollbackBatch(). Apply() is exactly BeginBatch + ApplyInBatch
  // + CommitBatch (or RollbackBatch when not applied).
  // ApplyInBatch returns what Apply would, but a non-ok result leaves that message's partial
  // writes in the open transaction: the caller must RollbackBatch() (and may re-apply the
  // messages before it, which is deterministic, then handle this one on its own).
  // CommitBatch: kIOError (or another error) means the whole batch was rolled back. The
  // ApplyHook hears one OnCommitted/OnRolledBack per batch that reached it; publications
  // are released (TakePublications) only by a successful CommitBatch.
  Status BeginBatch();
  Result<Outcome> ApplyInBatch(const Message& message, int64_t received_ms);
  Status CommitBatch();
  void RollbackBatch();
  // The intake journal index applied so far (edge_meta 'intake_applied'); 0 if never set.
  // Set inside a batch, so it commits with the messages it covers.
  Status SetIntakePosition(int64_t index);
  Result<int64_t> IntakePosition();

  // Rules run inside Apply()'s transaction; not owned, must outlive the store's use. nullptr: none.
  void SetApplyHook(ApplyHook* hook) { hook_ = hook; }
  // For ApplyHook, inside Apply()'s transaction only: appends a change record for (entity, key)
  // with the entity's next version through the store's outbox writer; returns its seq.
  Result<int64_t> AppendChange(int entity, const std::string& key, int priority, int64_t ts_ms, v1::ChangeRecord& record,
                               int64_t now_ms);
  // Published only if the transaction commits (see TakePublications); built by
  // edge/publications.h.
  void QueuePublication(Publication p) { pending_pubs_.push_back(std::move(p)); }
  // Publications of committed transactions, oldest first; the caller publishes them.
  std::vector<Publication> TakePublications() { return std::exchange(ready_pubs_, {}); }
  // The site's privacy key, if any: ingest seals journal entries that may carry personal data
  // with the same key the store seals customers with.
  const std::optional<Sealer>& sealer() const { return options_.sealer; }
  // The store's connection, for ApplyHook's own prepared statements (same thread only).
  sqlite3* db() { return db_; }

  // Called on the committing thread after every successful commit that appended change
  // records to the outbox (edged wakes the sync agent with it, so the agent need not poll).
  // Must be quick and must not call back into the store. Set before the store is used.
  void SetOutboxListener(std::function<void()> on_outbox_commit) { on_outbox_commit_ = std::move(on_outbox_commit); }

  // ---- Downstream: HQ's commands (docs/sync-protocol.md "At the site", docs/conflicts.md) ----
  // Each command in one transaction of its own: its dedupe row (down_applied), its effect, its
  // outbox records and sync_state 'down_applied_seq' = max(position, down_seq). A command at or
  // below the position, or whose command_id is applied, only moves the position (kSkipped).
  //   order   reserved through the stock ledger like a local `created` (all or nothing, FEFO):
  //           `accepted`, actor "hq"; else `refused` with the reason naming the SKU (committed,
  //           not a dead letter); an order id the site already has: refused, nothing reserved
  //   cancel  like a local `cancelled` (releases the reservation) while the order is before
  //           dispatch; otherwise the site's state stands and the refusal goes up
  //   catalog upserted when its version is newer than the stored one
  //   fences, coldchain-rules  stored when newer than the stored set (hq_rule_sets)
  // Orders' records carry down_seq and reason; order states and catalog items are published
  // after the commit (TakePublications). `reject`: the caller found the body unusable (a fence
  // set that does not parse): dedupe and position only, kRefused with that reason.
  struct DownResult {
    enum class Effect { kApplied, kRefused, kSkipped };
    Effect effect = Effect::kSkipped;
    std::string reason;  // kRefused: why (also in the ORDER record sent up)
  };
  Result<DownResult> ApplyDownCommand(const v1::DownCommand& command, int64_t now_ms, const std::string& reject = {});
  // A pulled batch's commands in ONE transaction, each under a savepoint of its own (so each is
  // still all or nothing), then 'down_applied_seq' = max(position, through_seq). On a failing
  // command what applied before it commits (`results` holds one entry per committed command)
  // and `status` is the error; on a failed commit `results` is empty.
  struct DownInput {
    const v1::DownCommand* command;
    std::string reject;  // as ApplyDownCommand's
  };
  struct DownBatchResult {
    std::vector<DownResult> results;
    Status status;
  };
  DownBatchResult ApplyDownCommands(const std::vector<DownInput>& commands, uint64_t through_seq, int64_t now_ms);
  // Moves 'down_applied_seq' up to `seq` (never down), in its own transaction: a batch's
  // through_seq, which also covers the kinds this site did not ask for.
  Status AdvanceDownPosition(uint64_t seq);
  Result<uint64_t> DownAppliedSeq();
  // HQ's newest set of a kind ("fences", "coldchain-rules"): the serialized proto FenceSet /
  // ColdchainRuleSet; version 0 and an empty body when none was received.
  struct HqRuleSet {
    uint64_t version = 0;
    std::string body;
  };
  Result<HqRuleSet> LoadHqRuleSet(const std::string& kind);

  // ---- Escrow stock (docs/escrow.md) ----
  // The allotment HQ may sell for this site is the ledger reservation of this holder (not a
  // valid order id: ids have no control characters), so local sales cannot take it. Rules:
  //   - the site tops the reservation up towards its target from free stock (FEFO) whenever
  //     it is below and stock allows (at a target change, a receipt, a release), and counts
  //     the units in `given`;
  //   - an escrow order (HqOrder.escrow, accepted by the hub) takes its units out of the
  //     reservation into the order's (never free stock first) and counts them in
  //     consumed_applied; only stock lost behind the allotment can make it short;
  //   - an escrow-return shrinks the reservation by returned - returned_applied;
  //   - a movement that needs more than the free stock takes the reservation only when
  //     nothing else is left, and the reservation stays that much lower (held < given -
  //     returned_applied - consumed_applied tells the hub);
  //   - the reservation never shrinks otherwise: a lower target is a request the hub grants
  //     with an escrow-return.
  // Every change appends one ESCROW record (the counters, held, target).
  static constexpr char kEscrowHolder[] = "\x1f" "escrow";
  // [escrow] of the config: a SKU whose value changed since the last call gets it as its
  // target (HQ's escrow-target commands change it in between; the later one wins); a SKU no
  // longer named gets target 0. One transaction.
  Status ConfigureEscrow(const std::map<std::string, int64_t>& targets, int64_t now_ms);
  struct EscrowLevel {
    std::string sku;
    int64_t target = 0, given = 0, returned_applied = 0, consumed_applied = 0, held = 0;
  };
  Result<std::vector<EscrowLevel>> Escrow();

  // Records that no link to the hub is up (edged start); the sync agent sets it to 1.
  Status ResetLinkState();

  // Customer records dropped because no privacy key is configured, since Open.
  int64_t customers_dropped() const { return customers_dropped_.load(std::memory_order_relaxed); }
  uint64_t last_hlc() const;
  sqlite3* db_for_test() { return db_; }
  // Called before every COMMIT; a non-ok Status makes the transaction roll back with it.
  void SetCommitFaultForTest(std::function<Status()> fault) { commit_fault_ = std::move(fault); }

 private:
  // Every prepared statement, each message type's among them: defined in store.cc only, so a
  // new type's statements need no edit here.
  struct Statements;
  EdgeStore(StoreOptions options, sqlite3* db);
  Status Prepare();
  Status Exec(const char* sql);
  // Applies one message of an edge::Message alternative T inside the open transaction: its
  // dedupe claim, change record(s) and domain rows. Specialised per type in store.cc; a type
  // without a specialisation fails to compile there (ApplyInBatch instantiates it for all).
  template <class T>
  Result<Outcome> ApplyOne(const T& message, int64_t received_ms);
  // Inside a transaction: claims the identity under the type's dedupe kind
  // (edge/message_types.h); false if already seen.
  Result<bool> Claim(TopicKind kind, const std::string& key, int64_t now_ms);
  // One STOCK change record (and the stock row, same version) for a SKU the ledger changed.
  Status PutStock(const SkuLevel& level, const StockMovement* m, const std::string& reason, const std::string& order_id,
                  int64_t ts_ms, int64_t now_ms, int64_t* seq_out = nullptr);
  Result<Outcome> RefuseOrder(const OrderStatus& o, const std::string& why, int64_t now_ms);
  // Downstream, inside ApplyDownCommands' transaction: one command, its dedupe and position.
  Result<DownResult> ApplyDownInTransaction(const v1::DownCommand& c, int64_t now_ms, const std::string& reject);
  Result<DownResult> DownOrder(const v1::DownCommand& c, int64_t now_ms);
  Result<DownResult> DownCancel(const v1::DownCommand& c, int64_t now_ms);
  Result<DownResult> DownCatalog(const v1::DownCommand& c, int64_t now_ms);
  Result<DownResult> DownRuleSet(const v1::DownCommand& c, int64_t now_ms);
  Result<DownResult> DownEscrow(const v1::DownCommand& c, int64_t now_ms);
  // Escrow, inside a transaction (the rules above kEscrowHolder).
  struct EscrowRow {
    bool found = false;
    int64_t target = 0;
    std::optional<int64_t> config_target;
    int64_t given = 0, returned_applied = 0, consumed_applied = 0;
  };
  Result<EscrowRow> EscrowGet(const std::string& sku);
  // Writes the row and its ESCROW record.
  Status EscrowPut(const std::string& sku, const EscrowRow& e, int64_t now_ms);
  // Reserves towards the target from free stock; true when it reserved anything.
  Result<bool> EscrowTopUp(const std::string& sku, EscrowRow& e);
  // After the SKU's stock changed: tops the allotment up; writes the row and record when it
  // did or `changed`; `level` is refreshed when the ledger changed.
  Status EscrowAfterStock(SkuLevel& level, int64_t now_ms, bool changed = false);
  // Seals a customer as local orders are sealed ("" when there is none or no key).
  std::string SealCustomer(const std::optional<Customer>& customer);
  Status Begin();
  Status Commit();
  void Rollback();
  Status Error(const char* what);

  StoreOptions options_;
  Clock& clock_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<Statements> sql_;  // prepared once, at Open
  std::unique_ptr<StockLedger> ledger_;  // on db_, prepared with the statements
  // Assigns every outbox record's seq, version and hlc (edge/outbox_writer.h); on db_.
  std::unique_ptr<OutboxWriter> outbox_;
  std::atomic<int64_t> customers_dropped_{0};  // read by /metrics from its own thread
  std::function<Status()> commit_fault_;
  std::function<void()> on_outbox_commit_;
  ApplyHook* hook_ = nullptr;
  bool batch_hooked_ = false;  // a message of the open batch reached hook_
  std::vector<Publication> pending_pubs_;  // of the open transaction
  std::vector<Publication> ready_pubs_;    // committed, not yet taken
};

}  // namespace freshsync::edge
