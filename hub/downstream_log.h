// DownstreamLog: the per-site downstream logs, HQ to sites (docs/sync-protocol.md,
// "Downstream: HQ to sites"), kept in any HubStore through its generic write transaction
// (HubStore::Write) and reads (HubStore::Read). So both stores run the same rules from the
// same code; only the SQL text differs where the dialects do (the lane lock).
//
// Tables (migration 6 of both stores; docs/architecture-hub.md "Downstream log"):
//   down_lanes     one row per site: last_seq, delivered_seq (the site's last `after`),
//                  whether its first pull seeded the catalog, fences/rules version + digest
//   down_commands  (site, down_seq) -> the command (a serialized v1::DownCommand), its
//                  idempotency id (unique per site) and the digest of the HQ call's body;
//                  an order's customer is kept apart, sealed (`sealed`)
//   catalog_items  sku -> the current version and body
//   down_current   (site, kind) -> the current version and command of the versioned kinds
//                  (fences, coldchain-rules), kept past retention (migration 8)
// Every append locks the site's lane row (FOR UPDATE on PostgreSQL; SQLite has one writer),
// so down_seq is dense per site across replicas.
//
// Thread-safety: as the HubStore; the object itself holds nothing mutable.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "freshsync.pb.h"
#include "hub/store.h"

namespace freshsync::hub {

// The idempotency ids (docs/sync-protocol.md): "order:{id}", "cancel:{id}",
// "catalog:{sku}:{version}", "fences:{version}", "coldchain-rules:{version}",
// "escrow-return:{sku}:{returned}", "escrow-target:{sku}:{version}" (docs/escrow.md).
std::string DownCommandId(v1::DownKind kind, const std::string& key, uint64_t version = 0);
// The kind's name in the pull's `kinds` ("order", "cancel", "catalog", "fences",
// "coldchain-rules", "escrow-return", "escrow-target"); nullopt for another name.
std::optional<v1::DownKind> DownKindByName(std::string_view name);
const char* DownKindName(v1::DownKind kind);

struct DownAppend {
  bool conflict = false;   // the id is in the log with another body: nothing appended (409)
  bool repeated = false;   // the id is in the log with this body: the first call's answer
  uint64_t down_seq = 0;   // the command's (0 when a repeat's command was trimmed since)
  uint64_t version = 0;    // fences / rules: the version the body is
  bool escrow = false;     // an order the hub accepted against the site's allotment (also on a repeat)
  bool audited = false;    // the HQ call's audit row committed with it (OrderAppend::audit)
  std::string command_id;
};

struct CatalogPut {
  uint64_t version = 0;
  bool unchanged = false;  // the body equals the current version's: nothing appended
  std::string command_id;
  std::vector<std::pair<std::string, uint64_t>> sites;  // (site, down_seq) holding the command
};

struct LaneState {
  uint64_t last_seq = 0;
  uint64_t delivered_seq = 0;
  uint64_t pending = 0;            // commands above delivered_seq
  int64_t oldest_pending_ms = 0;   // issued_ms of the oldest of them (0: none)
};

// One command as stored: the v1::DownCommand (down_seq, kind, id, issued_*, body; an order
// without its customer) and the order's customer, sealed ("" if none).
struct StoredDownCommand {
  v1::DownCommand command;
  std::string sealed_customer;
};

// A site's current command of a versioned kind (fences, coldchain-rules): what HQ last set,
// whether or not retention has trimmed its command from the log since.
struct CurrentCommand {
  uint64_t version = 0;
  v1::DownCommand command;  // kind, command_id, issued_*, the body (fences / rules); down_seq 0
  int64_t updated_ms = 0;   // when HQ set this version (the command's issued_ms)
};

class DownstreamLog {
 public:
  explicit DownstreamLog(HubStore& store) : store_(store) {}

  // Appends `command` (kind, command_id and body set; down_seq assigned here) to `site`'s log,
  // unless its id is there already (repeat or conflict, by `digest`).
  Result<DownAppend> Append(const std::string& site, v1::DownCommand command, const std::string& digest,
                            const std::string& sealed_customer);
  // An HQ order (command.order() set): as Append, and in the same transaction the hub's
  // escrow decision (hub/escrow.h TakeEscrow), which marks the stored order `escrow`. A repeat
  // answers the first call's decision.
  Result<DownAppend> AppendOrder(const std::string& site, v1::DownCommand command, const std::string& digest,
                                 const std::string& sealed_customer);
  // Several orders, each as AppendOrder, in ONE transaction (one commit for all: the hub's
  // group commit of concurrent HQ calls, Downstream::PostOrder). Lanes are locked in site
  // order, so two such batches never wait on each other in a cycle. The answers are in the
  // input's order; a store error fails them all (nothing is appended).
  //
  // `audit`: the HQ call's audit row (ts_ms, kind, actor, path), inserted in the same
  // transaction unless the order conflicts, with seq_from = seq_to = down_seq, count 1,
  // status 202 and the command id as detail: the row HubServer's DownWrite would write, but
  // without a transaction and an fsync of its own per order (docs/benchmarks.md, "Escrow
  // orders": that second commit was half of hubd's time per order).
  struct OrderAppend {
    std::string site;
    v1::DownCommand command;
    std::string digest, sealed_customer;
    std::optional<AuditEntry> audit;
  };
  Result<std::vector<DownAppend>> AppendOrders(const std::vector<OrderAppend>& orders);
  // A command whose every call is new (escrow-target): its id is DownCommandId(kind, key,
  // down_seq), so it never repeats.
  Result<DownAppend> AppendNumbered(const std::string& site, v1::DownCommand command, const std::string& key);
  // Hands back the site's allotment above its target (hub/escrow.h ReturnExcess), each SKU's
  // new total as an escrow-return command in the same transaction. Returns how many commands
  // were appended; reads only when nothing is to be handed back.
  Result<int> ReturnEscrow(const std::string& site, int64_t now_ms);
  // Fences or rules: a body whose digest equals the lane's current version is a repeat of it;
  // otherwise the next version. `set_version` puts the version into the command's body before
  // it is stored (the command_id is set here). A new version also becomes the site's current
  // command of its kind (Current), in the same transaction.
  Result<DownAppend> AppendVersioned(const std::string& site, v1::DownCommand command, const std::string& digest,
                                     const std::function<void(v1::DownCommand&, uint64_t)>& set_version);
  // A catalog item (version unset) for every site the hub knows (the `sites` table or a lane):
  // the next version unless `digest` equals the current one's.
  Result<CatalogPut> PutCatalog(v1::CatalogItem item, const std::string& digest, int64_t now_ms,
                                const std::string& issued_by);
  Result<std::vector<v1::CatalogItem>> Catalog();

  // The pull's bookkeeping: `after` becomes delivered_seq (also when lower), last_seq moves up
  // to `after` when it is below, and the site's first pull seeds its log with the current
  // version of every catalog item. Writes only when something changes.
  Result<LaneState> Acknowledge(const std::string& site, uint64_t after, int64_t now_ms);
  // Up to `limit` commands with down_seq > after, oldest first.
  Result<std::vector<StoredDownCommand>> Commands(const std::string& site, uint64_t after, int limit);
  // The site's current command of `kind` (DOWN_FENCES or DOWN_COLDCHAIN_RULES); nullopt when
  // HQ never set one. Survives Trim: HQ's reads (GET .../fences) and a site's rebuild use it.
  Result<std::optional<CurrentCommand>> Current(const std::string& site, v1::DownKind kind);
  // The lane's state; a site without a lane has all zeros.
  Result<LaneState> Lane(const std::string& site);
  // last_seq and delivered_seq of every lane (the waiters' recheck, the metrics).
  Result<std::vector<std::pair<std::string, LaneState>>> Lanes();
  // Deletes commands at or below their lane's delivered_seq issued before `cutoff_ms`.
  Status Trim(int64_t cutoff_ms);

 private:
  HubStore& store_;
};

}  // namespace freshsync::hub
