#include "edge/store.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "edge/message_types.h"
#include "edge/migrations.h"
#include "edge/outbox_writer.h"
#include "sqlite/db.h"
#include "freshsync.pb.h"
#include "wire/routes.h"
#include "wire/scales.h"

namespace freshsync::edge {

namespace {

// A prepared statement, reset after each use: the toolkit's Stmt, prepared once at Open.
// Reset also clears the bindings (some statements bind a column only in one branch).
class PreparedStmt : public sqlite::Stmt {
 public:
  PreparedStmt(sqlite3* db, const char* sql) {
    sqlite3_stmt* s = nullptr;
    rc_ = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    static_cast<sqlite::Stmt&>(*this) = sqlite::Stmt(s);
  }
  int prepare_rc() const { return rc_; }
  void Reset() {
    sqlite::Stmt::Reset();
    ClearBindings();
  }

 private:
  int rc_ = SQLITE_OK;
};

}  // namespace

struct EdgeStore::Statements {
  std::vector<std::unique_ptr<PreparedStmt>> all;  // owns every pointer below
  PreparedStmt *begin = nullptr, *commit = nullptr, *rollback = nullptr, *claim = nullptr, *dead_letter = nullptr,
               *intake_put = nullptr, *intake_get = nullptr;
  // Per message type (ApplyOne).
  PreparedStmt *movement_put = nullptr, *order_get = nullptr, *order_put = nullptr, *order_update = nullptr,
               *gps_put = nullptr, *climate_put = nullptr, *dock_scan_put = nullptr;
  // Downstream (ApplyDownCommand).
  PreparedStmt *down_claim = nullptr, *down_pos_put = nullptr, *down_pos_get = nullptr, *order_mark = nullptr,
               *catalog_version = nullptr, *catalog_put = nullptr, *rule_set_version = nullptr, *rule_set_put = nullptr;
  // Escrow.
  PreparedStmt *escrow_get = nullptr, *escrow_put = nullptr, *escrow_all = nullptr;
};

namespace {

// The Entity enum values of proto/freshsync.proto, as stored in outbox.entity.
constexpr int kEntityStock = v1::STOCK;
constexpr int kEntityOrder = v1::ORDER;
constexpr int kEntityPosition = v1::VEHICLE_POSITION;
constexpr int kEntityClimate = v1::CLIMATE;
constexpr int kEntityDockScan = v1::DOCK_SCAN;
constexpr int kEntityEscrow = v1::ESCROW;

nlohmann::json LinesArray(const std::vector<OrderLine>& lines) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& l : lines) a.push_back({{"sku", l.sku}, {"qty", l.qty}});
  return a;
}
std::string LinesJson(const std::vector<OrderLine>& lines) { return LinesArray(lines).dump(); }

std::vector<OrderLine> ParseLinesJson(const std::string& text) {
  std::vector<OrderLine> out;
  auto a = nlohmann::json::parse(text, nullptr, false);
  if (!a.is_array()) return out;
  for (const auto& l : a) {
    if (l.is_object() && l.contains("sku") && l.contains("qty")) out.push_back({l["sku"].get<std::string>(), l["qty"].get<int64_t>()});
  }
  return out;
}

}  // namespace

// kIOError for the environment, kConflict for a CHECK the input broke, kInternal otherwise:
// the one mapping, sqlite/status.h.
Status EdgeStore::Error(const char* what) { return sqlite::LastError(db_, what); }

EdgeStore::EdgeStore(StoreOptions options, sqlite3* db)
    : options_(std::move(options)), clock_(options_.clock ? *options_.clock : SystemClock()), db_(db) {}

EdgeStore::~EdgeStore() {
  sql_.reset();  // finalize before close
  ledger_.reset();
  outbox_.reset();
  if (db_) sqlite3_close_v2(db_);
}

Status EdgeStore::Exec(const char* sql) { return sqlite::ExecOn(db_, sql); }

Result<std::unique_ptr<EdgeStore>> EdgeStore::Open(StoreOptions options) {
  sqlite::OpenOptions open;
  open.create = true;
  open.vfs = options.vfs_name;
  open.busy_timeout_ms = options.busy_timeout_ms;
  open.pragmas = {
      // WAL: readers (edgectl, the sync agent) never block the writer. NORMAL syncs the WAL
      // only at checkpoints (survives a process crash, not a power cut); FULL syncs every commit.
      "PRAGMA journal_mode=WAL",
      options.durability == Durability::kStrict ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
      // Checkpoint every ~4000 pages (16 MB of WAL) rather than 1000: a checkpoint copies each
      // hot page (outbox tail, dedupe and index leaves) once however often it changed, and under
      // NORMAL it is where the fsyncs happen, so fewer checkpoints mean fewer writes and syncs.
      "PRAGMA wal_autocheckpoint=4000",
  };
  auto conn = sqlite::Db::Open(options.path, open);
  if (!conn.ok()) return Status(conn.status().code(), "store.path: " + conn.status().message());
  sqlite3* db = conn->Release();
  std::unique_ptr<EdgeStore> store(new EdgeStore(std::move(options), db));
  Status s;

  // Migrations, each in its own transaction together with its user_version bump
  // (sqlite/migrate.h). kInternal if the file is newer than this binary.
  sqlite::MigrateOptions migrate;
  migrate.database = "store";
  migrate.program = "edged";
  migrate.on_applied = [](const sqlite::Migration& m) {
    spdlog::info("store: migrated to schema version {} ({})", m.version, m.description);
  };
  if (auto v = sqlite::Migrate(db, StoreMigrations(), migrate); !v.ok()) return v.status();
  // Database files may hold sealed customer data and sync state: owner only.
  chmod(store->options_.path.c_str(), 0600);

  s = store->Prepare();
  if (!s.ok()) return s;
  // The writer recovers the HLC from what is persisted (edge/outbox_writer.h); a failed read
  // fails the open: an HLC below a persisted one must never be issued.
  auto writer = OutboxWriter::Open(db, store->clock_);
  if (!writer.ok()) return writer.status();
  store->outbox_ = std::move(*writer);
  if (store->options_.signing_key) store->outbox_->SetSigningKey(&*store->options_.signing_key);
  return store;
}

Status EdgeStore::Prepare() {
  sql_ = std::make_unique<Statements>();
  auto make = [&](const char* sql) -> PreparedStmt* {
    sql_->all.push_back(std::make_unique<PreparedStmt>(db_, sql));
    return sql_->all.back()->prepare_rc() == SQLITE_OK ? sql_->all.back().get() : nullptr;
  };
  sql_->begin = make("BEGIN IMMEDIATE");
  sql_->commit = make("COMMIT");
  sql_->rollback = make("ROLLBACK");
  sql_->claim = make("INSERT OR IGNORE INTO dedupe(kind, key, seen_ms) VALUES (?1, ?2, ?3)");
  sql_->movement_put = make(
      "INSERT INTO stock_movements(id, sku, delta, reason, order_id, lot, ts_ms, seq, expiry) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)");
  sql_->order_get = make("SELECT status, lines, customer_sealed, actor FROM orders WHERE order_id = ?1");
  sql_->order_put = make(
      "INSERT INTO orders(order_id, status, version, lines, customer_sealed, actor, created_ts_ms, updated_ts_ms) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)");
  sql_->order_update = make("UPDATE orders SET status = ?2, version = ?3, actor = ?4, updated_ts_ms = ?5 WHERE order_id = ?1");
  // outbox_seq: the quota touches a raw row only once the hub has acknowledged its record.
  sql_->gps_put = make(
      "INSERT INTO vehicle_positions(vehicle, seq, ts_ms, lat, lon, speed_kmh, heading, hdop, outbox_seq) "
      "VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)");
  sql_->climate_put = make("INSERT INTO climate_readings(sensor, seq, ts_ms, temp_c, rh, battery, outbox_seq) VALUES (?1,?2,?3,?4,?5,?6,?7)");
  sql_->dock_scan_put = make(
      "INSERT INTO dock_scans(scan_id, door, pallet_id, sku, lot, qty, direction, ts_ms, outbox_seq) "
      "VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)");
  // The intake journal's applied position (edge/intake_journal.h), written in each batch.
  sql_->intake_put = make(
      "INSERT INTO edge_meta(name, value) VALUES ('intake_applied', ?1) ON CONFLICT(name) DO UPDATE SET value = excluded.value");
  sql_->intake_get = make("SELECT value FROM edge_meta WHERE name = 'intake_applied'");
  sql_->dead_letter = make(
      "INSERT INTO dead_letters(received_ms, topic, reason, payload, payload_bytes, code) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
  // Downstream: the dedupe row by command_id, the applied position (never moved down), the
  // order's reason/down_seq, and HQ's versioned catalog items and rule sets.
  sql_->down_claim = make("INSERT OR IGNORE INTO down_applied(command_id, down_seq, kind, applied_ms) VALUES (?1, ?2, ?3, ?4)");
  sql_->down_pos_put = make(
      "INSERT INTO sync_state(name, value) VALUES ('down_applied_seq', ?1) "
      "ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)");
  sql_->down_pos_get = make("SELECT value FROM sync_state WHERE name = 'down_applied_seq'");
  sql_->order_mark = make("UPDATE orders SET version = ?2, reason = ?3, down_seq = ?4 WHERE order_id = ?1");
  sql_->catalog_version = make("SELECT version FROM catalog WHERE sku = ?1");
  sql_->catalog_put = make(
      "INSERT INTO catalog(sku, name, unit, price_cents, temp_min_c, temp_max_c, shelf_life_h, version, updated_ms) "
      "VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9) ON CONFLICT(sku) DO UPDATE SET name = excluded.name, unit = excluded.unit, "
      "price_cents = excluded.price_cents, temp_min_c = excluded.temp_min_c, temp_max_c = excluded.temp_max_c, "
      "shelf_life_h = excluded.shelf_life_h, version = excluded.version, updated_ms = excluded.updated_ms");
  sql_->rule_set_version = make("SELECT version, body FROM hq_rule_sets WHERE kind = ?1");
  sql_->rule_set_put = make(
      "INSERT INTO hq_rule_sets(kind, version, body, updated_ms) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(kind) DO UPDATE SET "
      "version = excluded.version, body = excluded.body, updated_ms = excluded.updated_ms");
  sql_->escrow_get = make(
      "SELECT target, config_target, given, returned_applied, consumed_applied FROM escrow WHERE sku = ?1");
  sql_->escrow_put = make(
      "INSERT INTO escrow(sku, target, config_target, given, returned_applied, consumed_applied) VALUES (?1,?2,?3,?4,?5,?6) "
      "ON CONFLICT(sku) DO UPDATE SET target = excluded.target, config_target = excluded.config_target, "
      "given = excluded.given, returned_applied = excluded.returned_applied, consumed_applied = excluded.consumed_applied");
  sql_->escrow_all = make("SELECT sku, target, given, returned_applied, consumed_applied FROM escrow ORDER BY sku");
  for (auto& s : sql_->all)
    if (s->prepare_rc() != SQLITE_OK) return Error("prepare");
  ledger_ = std::make_unique<StockLedger>(db_);
  return ledger_->Prepare();
}

uint64_t EdgeStore::last_hlc() const { return outbox_->last_hlc(); }

Status EdgeStore::Begin() {
  outbox_->NewTransaction();  // other connections (the quota) may have appended since
  const int rc = sql_->begin->Step();
  sql_->begin->Reset();
  return rc == SQLITE_DONE ? Status::Ok() : Error("begin");
}

Status EdgeStore::Commit() {
  if (commit_fault_) {
    Status f = commit_fault_();
    if (!f.ok()) return f;
  }
  const bool appended = outbox_->appended();
  outbox_->NewTransaction();
  const int rc = sql_->commit->Step();
  sql_->commit->Reset();
  if (rc != SQLITE_DONE) return Error("commit");
  if (appended && on_outbox_commit_) on_outbox_commit_();
  return Status::Ok();
}

void EdgeStore::Rollback() {
  outbox_->NewTransaction();
  if (sqlite3_get_autocommit(db_)) return;  // SQLite already rolled back (e.g. on SQLITE_FULL)
  sql_->rollback->Step();
  sql_->rollback->Reset();
}

Result<bool> EdgeStore::Claim(TopicKind kind, const std::string& key, int64_t now_ms) {
  const int rc = sql_->claim->Bind(1, static_cast<int64_t>(MessageTypeOf(kind).dedupe_kind)).Bind(2, key).Bind(3, now_ms).Step();
  sql_->claim->Reset();
  if (rc != SQLITE_DONE) return Error("dedupe");
  return sqlite3_changes(db_) == 1;
}

Result<EdgeStore::Outcome> EdgeStore::Apply(const Message& message, int64_t received_ms) {
  Status s = BeginBatch();
  if (!s.ok()) return s;
  Result<Outcome> r = ApplyInBatch(message, received_ms);
  if (!r.ok() || *r == Outcome::kDuplicate) {  // a duplicate wrote nothing
    RollbackBatch();
    return r;
  }
  s = CommitBatch();
  if (!s.ok()) return s;
  return r;
}

Status EdgeStore::BeginBatch() {
  Status s = Begin();
  pending_pubs_.clear();
  batch_hooked_ = false;
  return s;
}

void EdgeStore::RollbackBatch() {
  Rollback();
  pending_pubs_.clear();
  if (batch_hooked_) hook_->OnRolledBack();
  batch_hooked_ = false;
}

Status EdgeStore::CommitBatch() {
  Status s = Commit();
  if (!s.ok()) {
    RollbackBatch();
    return s;
  }
  // Committed: only now may the events leave the process (commit, then ack, then publish).
  for (auto& p : pending_pubs_) ready_pubs_.push_back(std::move(p));
  pending_pubs_.clear();
  // Bounded if nobody takes them (a caller driving Apply without publishing): they are
  // notifications, the events themselves are in the outbox.
  if (ready_pubs_.size() > kMaxReadyPublications)
    ready_pubs_.erase(ready_pubs_.begin(), ready_pubs_.end() - static_cast<std::ptrdiff_t>(kMaxReadyPublications));
  if (batch_hooked_) hook_->OnCommitted();
  batch_hooked_ = false;
  return Status::Ok();
}

Status EdgeStore::SetIntakePosition(int64_t index) {
  const int rc = sql_->intake_put->Bind(1, index).Step();
  sql_->intake_put->Reset();
  return rc == SQLITE_DONE ? Status::Ok() : Error("intake position");
}

Result<int64_t> EdgeStore::IntakePosition() {
  const int rc = sql_->intake_get->Step();
  const int64_t v = rc == SQLITE_ROW ? sql_->intake_get->Int(0) : 0;
  sql_->intake_get->Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("intake position");
  return v;
}

Result<int64_t> EdgeStore::AppendChange(int entity, const std::string& key, int priority, int64_t ts_ms, v1::ChangeRecord& record,
                                        int64_t now_ms) {
  return outbox_->AppendNext(entity, key, priority, ts_ms, record, now_ms);
}

std::string EdgeStore::SealCustomer(const std::optional<Customer>& customer) {
  if (!customer) return {};
  if (options_.sealer) {
    nlohmann::json c = {{"name", customer->name}, {"phone", customer->phone}, {"address", customer->address}};
    return options_.sealer->Seal(c.dump());
  }
  // No key: the data is dropped, never stored in clear. Count it so operators notice.
  if (const int64_t n = ++customers_dropped_; n % 1000 == 1)
    spdlog::warn("privacy: no privacy.key_file configured; customer data dropped from {} orders so far", n);
  return {};
}

// Movement: claim the id; the ledger applies it to the lots (refusing it whole if it needs
// more than the free stock, or more than an order's reservation plus free stock for a pick
// with order_id); then the SKU's stock row, one STOCK change record carrying the new on_hand
// and reserved with the movement, and the movement row.
template <>
Result<EdgeStore::Outcome> EdgeStore::ApplyOne<StockMovement>(const StockMovement& m, int64_t now_ms) {
  auto claimed = Claim(TopicKind::kStockMovements, m.id, now_ms);
  if (!claimed.ok()) return claimed.status();
  if (!*claimed) return Outcome::kDuplicate;

  auto level = ledger_->Move(m, m.delta > 0 ? m.expiry : std::string());
  // More than the free stock (the ledger wrote nothing): the escrow allotment gives way only
  // now that nothing else is left, and stays lower by the shortfall (docs/escrow.md,
  // "Spoilage"). Released whole and taken again from what is left, so FEFO still decides.
  bool escrow_shrunk = false;
  if (!level.ok() && level.status().code() == StatusCode::kConflict && m.delta < 0) {
    auto held = ledger_->Held(kEscrowHolder, m.sku);
    if (!held.ok()) return held.status();
    if (*held > 0) {
      if (auto r = ledger_->ReleaseUpTo(kEscrowHolder, m.sku, *held); !r.ok()) return r.status();
      level = ledger_->Move(m, std::string());
      if (!level.ok()) return level.status();
      if (auto r = ledger_->ReserveUpTo(kEscrowHolder, m.sku, *held); !r.ok()) return r.status();
      spdlog::warn("escrow: movement {} took from the allotment of sku {}", m.id, m.sku);
      escrow_shrunk = true;
      level = ledger_->Level(m.sku);
    }
  }
  if (!level.ok()) return level.status();
  if (m.delta > 0 || escrow_shrunk)
    if (Status st = EscrowAfterStock(*level, now_ms, escrow_shrunk); !st.ok()) return st;
  const int64_t ts = m.ts_ms.value_or(now_ms);
  int64_t seq = 0;
  if (Status st = PutStock(*level, &m, m.reason, m.order_id, ts, now_ms, &seq); !st.ok()) return st;

  const int rc = sql_->movement_put->Bind(1, m.id)
                     .Bind(2, m.sku)
                     .Bind(3, m.delta)
                     .Bind(4, m.reason)
                     .BindTextOrNull(5, m.order_id)
                     .BindTextOrNull(6, m.lot)
                     .Bind(7, ts)
                     .Bind(8, seq)
                     .BindTextOrNull(9, m.expiry)
                     .Step();
  sql_->movement_put->Reset();
  if (rc != SQLITE_DONE) return Error("movement write");
  return Outcome::kApplied;
}

Status EdgeStore::PutStock(const SkuLevel& level, const StockMovement* m, const std::string& reason, const std::string& order_id,
                           int64_t ts_ms, int64_t now_ms, int64_t* seq_out) {
  // The stock row and the record share the version, so the state digest (sku, on_hand,
  // reserved, version) of the edge equals the hub's once the record is applied there.
  auto version = outbox_->NextVersion(kEntityStock, level.sku);
  if (!version.ok()) return version.status();
  if (Status st = ledger_->PutSku(level, *version, now_ms); !st.ok()) return st;
  v1::ChangeRecord rec;
  auto* st = rec.mutable_stock();
  st->set_sku(level.sku);
  st->set_on_hand(level.on_hand);
  st->set_reserved(level.reserved);
  if (m) {
    st->set_movement_id(m->id);
    st->set_delta(m->delta);
    st->set_lot(m->lot);
    st->set_expiry(m->expiry);  // lets the hub rebuild the lots in FEFO order (hub/rebuild_snapshot.h)
  }
  st->set_reason(reason);
  st->set_order_id(order_id);
  auto seq = outbox_->Append(kEntityStock, level.sku, *version, kPriorityLane, ts_ms, rec, now_ms);
  if (!seq.ok()) return seq.status();
  if (seq_out) *seq_out = *seq;
  return Status::Ok();
}

template <>
Result<EdgeStore::Outcome> EdgeStore::ApplyOne<OrderStatus>(const OrderStatus& o, int64_t now_ms) {
  auto claimed = Claim(TopicKind::kOrderStatus, o.order_id + "#" + o.status, now_ms);
  if (!claimed.ok()) return claimed.status();
  if (!*claimed) return Outcome::kDuplicate;

  std::string from, lines_json, sealed;
  int rc = sql_->order_get->Bind(1, o.order_id).Step();
  if (rc == SQLITE_ROW) {
    from = sql_->order_get->Text(0);
    lines_json = sql_->order_get->Text(1);
    sealed = sql_->order_get->Text(2);
  }
  sql_->order_get->Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("order read");
  if (!IsLegalOrderTransition(from, o.status)) {
    if (from.empty()) return Status::Conflict("illegal order transition: order " + o.order_id + " is unknown, cannot become " + o.status);
    return Status::Conflict("illegal order transition: order " + o.order_id + " " + from + " -> " + o.status);
  }
  // Reservations (docs/rules.md, "Stock"): taken on created, all or nothing; what is left is
  // returned on cancelled, and on dispatched (lines shipped short, or picked without order_id).
  std::vector<SkuLevel> touched;
  std::string refusal;  // non-empty: stock cannot cover the created order
  if (o.status == "created") {
    // A savepoint, so that a shortfall on the second SKU also undoes the first one's
    // reservation while the refusal itself still commits.
    if (Status st = Exec("SAVEPOINT reserve"); !st.ok()) return st;
    auto reserved = ledger_->Reserve(o.order_id, o.lines);
    if (!reserved.ok()) {
      const Status why = reserved.status();
      if (Status st = Exec("ROLLBACK TO reserve; RELEASE reserve"); !st.ok()) return st;
      if (why.code() != StatusCode::kConflict) return why;
      refusal = why.message();
    } else {
      if (Status st = Exec("RELEASE reserve"); !st.ok()) return st;
      touched = std::move(*reserved);
    }
  } else if (o.status == "cancelled" || o.status == "dispatched") {
    auto released = ledger_->Release(o.order_id);
    if (!released.ok()) return released.status();
    touched = std::move(*released);
    for (auto& level : touched)
      if (Status st = EscrowAfterStock(level, now_ms); !st.ok()) return st;
  }
  const std::string stock_reason = o.status == "created" ? "reserve" : "release";
  for (const auto& level : touched)
    if (Status st = PutStock(level, nullptr, stock_reason, o.order_id, o.ts_ms, now_ms); !st.ok()) return st;

  // A refused order is kept as `refused` (terminal: no transition leaves it), so HQ sees it and
  // a redelivery or a later status for it changes nothing.
  const std::string status = refusal.empty() ? o.status : "refused";
  auto version = outbox_->NextVersion(kEntityOrder, o.order_id);
  if (!version.ok()) return version.status();
  std::vector<OrderLine> lines;
  if (from.empty()) {
    lines = o.lines;
    lines_json = LinesJson(lines);
    sealed = SealCustomer(o.customer);
    sql_->order_put->Bind(1, o.order_id).Bind(2, status).Bind(3, *version).Bind(4, lines_json);
    if (sealed.empty()) sql_->order_put->BindTextOrNull(5, sealed);
    else sql_->order_put->BindBlob(5, sealed);
    rc = sql_->order_put->BindTextOrNull(6, o.actor).Bind(7, o.ts_ms).Step();
    sql_->order_put->Reset();
  } else {
    lines = ParseLinesJson(lines_json);
    rc = sql_->order_update->Bind(1, o.order_id).Bind(2, o.status).Bind(3, *version).BindTextOrNull(4, o.actor).Bind(5, o.ts_ms).Step();
    sql_->order_update->Reset();
  }
  if (rc != SQLITE_DONE) return Error("order write");

  v1::ChangeRecord rec;
  auto* os = rec.mutable_order();
  os->set_order_id(o.order_id);
  os->set_status(status);
  os->set_actor(o.actor);
  for (const auto& l : lines) {
    auto* pl = os->add_lines();
    pl->set_sku(l.sku);
    pl->set_qty(l.qty);
  }
  os->set_customer_sealed(sealed);
  auto seq = outbox_->Append(kEntityOrder, o.order_id, *version, kPriorityLane, o.ts_ms, rec, now_ms);
  if (!seq.ok()) return seq.status();
  if (refusal.empty()) return Outcome::kApplied;
  return RefuseOrder(o, refusal, now_ms);
}

// The rest of a refusal, in the same transaction: the dead letter (so operators find it where
// every refused message is), and, once committed, the dead-letter notification, the order's
// retained state and an order event for terminals (docs/formats.md, "Refused orders"), their
// topics and payloads built by edge/publications.h.
Result<EdgeStore::Outcome> EdgeStore::RefuseOrder(const OrderStatus& o, const std::string& why, int64_t now_ms) {
  const std::string& root = options_.topic_root;
  // The message without its customer data (never kept in clear), as ingest keeps order payloads.
  nlohmann::json kept = {{"order_id", o.order_id}, {"status", o.status}, {"ts", o.ts_ms}, {"lines", LinesArray(o.lines)}};
  if (!o.actor.empty()) kept["actor"] = o.actor;
  DeadLetter dl;
  dl.topic = InboundTopic(TopicKind::kOrderStatus, root);
  dl.reason = why;
  dl.code = "conflict";
  dl.payload = kept.dump();
  dl.payload_bytes = static_cast<int64_t>(dl.payload.size());
  dl.received_ms = now_ms;
  if (Status st = AddDeadLetter(dl); !st.ok()) return st;
  spdlog::info("store: order {} refused: {}", o.order_id, why);
  pending_pubs_.push_back(publish::DeadLetterNotice(root, dl.topic, why, dl.code, now_ms));
  pending_pubs_.push_back(publish::OrderState(root, o, "refused", why));
  pending_pubs_.push_back(publish::OrderEvent(root, o, "refused", why));
  return Outcome::kRefused;
}

using wire::FixedPoint;

template <>
Result<EdgeStore::Outcome> EdgeStore::ApplyOne<GpsFix>(const GpsFix& g, int64_t now_ms) {
  auto claimed = Claim(TopicKind::kGps, g.vehicle + "#" + std::to_string(g.seq), now_ms);
  if (!claimed.ok()) return claimed.status();
  if (!*claimed) return Outcome::kDuplicate;
  auto version = outbox_->NextVersion(kEntityPosition, g.vehicle);
  if (!version.ok()) return version.status();
  v1::ChangeRecord rec;
  auto* p = rec.mutable_position();
  p->set_vehicle(g.vehicle);
  p->set_device_seq(g.seq);
  p->set_lat_e6(FixedPoint(g.lat, wire::kLatLonScale));
  p->set_lon_e6(FixedPoint(g.lon, wire::kLatLonScale));
  if (g.speed_kmh) p->set_speed_dkmh(static_cast<uint32_t>(FixedPoint(*g.speed_kmh, wire::kSpeedScale)));
  if (g.heading) p->set_heading_deg(static_cast<uint32_t>(FixedPoint(*g.heading, wire::kHeadingScale)));
  if (g.hdop) p->set_hdop_d(static_cast<uint32_t>(FixedPoint(*g.hdop, wire::kHdopScale)));
  auto seq = outbox_->Append(kEntityPosition, g.vehicle, *version, kBulkLane, g.ts_ms, rec, now_ms);
  if (!seq.ok()) return seq.status();
  const int rc = sql_->gps_put->Bind(1, g.vehicle)
                     .Bind(2, static_cast<int64_t>(g.seq))
                     .Bind(3, g.ts_ms)
                     .BindDouble(4, g.lat)
                     .BindDouble(5, g.lon)
                     .BindOptional(6, g.speed_kmh)
                     .BindOptional(7, g.heading)
                     .BindOptional(8, g.hdop)
                     .Bind(9, *seq)
                     .Step();
  sql_->gps_put->Reset();
  if (rc != SQLITE_DONE) return Error("position write");
  return Outcome::kApplied;
}

template <>
Result<EdgeStore::Outcome> EdgeStore::ApplyOne<ClimateSample>(const ClimateSample& c, int64_t now_ms) {
  auto claimed = Claim(TopicKind::kClimate, c.sensor + "#" + std::to_string(c.seq), now_ms);
  if (!claimed.ok()) return claimed.status();
  if (!*claimed) return Outcome::kDuplicate;
  auto version = outbox_->NextVersion(kEntityClimate, c.sensor);
  if (!version.ok()) return version.status();
  v1::ChangeRecord rec;
  auto* p = rec.mutable_climate();
  p->set_sensor(c.sensor);
  p->set_device_seq(c.seq);
  p->set_temp_dc(FixedPoint(c.temp_c, wire::kTempScale));
  if (c.rh) p->set_rh_d(static_cast<uint32_t>(FixedPoint(*c.rh, wire::kHumidityScale)));
  if (c.battery) p->set_battery_d(static_cast<uint32_t>(FixedPoint(*c.battery, wire::kBatteryScale)));
  auto seq = outbox_->Append(kEntityClimate, c.sensor, *version, kBulkLane, c.ts_ms, rec, now_ms);
  if (!seq.ok()) return seq.status();
  const int rc = sql_->climate_put->Bind(1, c.sensor)
                     .Bind(2, static_cast<int64_t>(c.seq))
                     .Bind(3, c.ts_ms)
                     .BindDouble(4, c.temp_c)
                     .BindOptional(5, c.rh)
                     .BindOptional(6, c.battery)
                     .Bind(7, *seq)
                     .Step();
  sql_->climate_put->Reset();
  if (rc != SQLITE_DONE) return Error("climate write");
  return Outcome::kApplied;
}

Status EdgeStore::AddDeadLetter(const DeadLetter& dl) {
  const std::string payload = dl.payload.substr(0, kMaxDeadLetterPayload);
  const std::string topic = dl.topic.substr(0, 512);
  sql_->dead_letter->Bind(1, dl.received_ms).Bind(2, topic).Bind(3, dl.reason);
  if (payload.empty()) sql_->dead_letter->BindTextOrNull(4, payload);
  else sql_->dead_letter->BindBlob(4, payload);
  const int rc = sql_->dead_letter->Bind(5, dl.payload_bytes).Bind(6, dl.code.empty() ? std::string("invalid") : dl.code).Step();
  sql_->dead_letter->Reset();
  return rc == SQLITE_DONE ? Status::Ok() : Error("dead letter");
}

Status EdgeStore::ResetLinkState() {
  return Exec("INSERT INTO sync_state(name, value) VALUES ('link_up', 0) ON CONFLICT(name) DO UPDATE SET value = 0");
}

// Dock scan: claim the scan id, one DOCK_SCAN change record (priority lane: a business record,
// few per minute, wanted at HQ soon like geofence events) and the scan row. A record only: the
// stock ledger is not touched, receipts and picks come as stock movements of their own.
template <>
Result<EdgeStore::Outcome> EdgeStore::ApplyOne<DockScan>(const DockScan& d, int64_t now_ms) {
  auto claimed = Claim(TopicKind::kDockScans, d.scan_id, now_ms);
  if (!claimed.ok()) return claimed.status();
  if (!*claimed) return Outcome::kDuplicate;
  auto version = outbox_->NextVersion(kEntityDockScan, d.scan_id);
  if (!version.ok()) return version.status();
  v1::ChangeRecord rec;
  auto* p = rec.mutable_dock_scan();
  p->set_scan_id(d.scan_id);
  p->set_door(d.door);
  p->set_pallet_id(d.pallet_id);
  p->set_sku(d.sku);
  p->set_lot(d.lot);
  p->set_qty(d.qty);
  p->set_direction(d.direction);
  auto seq = outbox_->Append(kEntityDockScan, d.scan_id, *version, kPriorityLane, d.ts_ms, rec, now_ms);
  if (!seq.ok()) return seq.status();
  const int rc = sql_->dock_scan_put->Bind(1, d.scan_id)
                     .Bind(2, d.door)
                     .Bind(3, d.pallet_id)
                     .Bind(4, d.sku)
                     .Bind(5, d.lot)
                     .Bind(6, d.qty)
                     .Bind(7, d.direction)
                     .Bind(8, d.ts_ms)
                     .Bind(9, *seq)
                     .Step();
  sql_->dock_scan_put->Reset();
  if (rc != SQLITE_DONE) return Error("dock scan write");
  return Outcome::kApplied;
}

// A type without an ApplyOne specialisation above lands here and fails to compile: every
// edge::Message alternative (edge/message_types.h) must be applied.
template <class T>
Result<EdgeStore::Outcome> EdgeStore::ApplyOne(const T&, int64_t) {
  static_assert(!sizeof(T), "EdgeStore: add an ApplyOne specialisation for this edge::Message alternative");
  return Status::Internal("unreachable");  // only -Wreturn-type reads this: the assert stops the build first
}

// After every ApplyOne specialisation: it instantiates ApplyOne for each alternative.
Result<EdgeStore::Outcome> EdgeStore::ApplyInBatch(const Message& message, int64_t received_ms) {
  Result<Outcome> applied = std::visit([&](const auto& m) { return ApplyOne(m, received_ms); }, message);
  if (!applied.ok() || *applied != Outcome::kApplied || !hook_) return applied;
  // The site rules (edge/site_rules.h) follow positions and climate samples.
  Status hooked;
  if (const auto* g = std::get_if<GpsFix>(&message)) {
    batch_hooked_ = true;
    hooked = hook_->OnGps(*this, *g, received_ms);
  } else if (const auto* c = std::get_if<ClimateSample>(&message)) {
    batch_hooked_ = true;
    hooked = hook_->OnClimate(*this, *c, received_ms);
  }
  if (!hooked.ok()) return hooked;
  return applied;
}

// ---------------------------------------------------------------------------------------------
// Downstream: HQ's commands (docs/sync-protocol.md "At the site"; who wins: docs/conflicts.md).

Result<uint64_t> EdgeStore::DownAppliedSeq() {
  const int rc = sql_->down_pos_get->Step();
  const uint64_t v = rc == SQLITE_ROW ? sql_->down_pos_get->UInt(0) : 0;
  sql_->down_pos_get->Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("down position read");
  return v;
}

Status EdgeStore::AdvanceDownPosition(uint64_t seq) {
  auto current = DownAppliedSeq();
  if (!current.ok()) return current.status();
  if (seq <= *current) return Status::Ok();  // nothing to write: no transaction at all
  if (Status s = BeginBatch(); !s.ok()) return s;
  const int rc = sql_->down_pos_put->Bind(1, seq).Step();
  sql_->down_pos_put->Reset();
  if (rc != SQLITE_DONE) {
    Status e = Error("down position write");
    RollbackBatch();
    return e;
  }
  return CommitBatch();
}

Result<EdgeStore::HqRuleSet> EdgeStore::LoadHqRuleSet(const std::string& kind) {
  HqRuleSet set;
  const int rc = sql_->rule_set_version->Bind(1, kind).Step();
  if (rc == SQLITE_ROW) {
    set.version = sql_->rule_set_version->UInt(0);
    set.body = sql_->rule_set_version->Text(1);
  }
  sql_->rule_set_version->Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("hq rule set read");
  return set;
}

Result<EdgeStore::DownResult> EdgeStore::ApplyDownCommand(const v1::DownCommand& c, int64_t now_ms, const std::string& reject) {
  DownBatchResult r = ApplyDownCommands({DownInput{&c, reject}}, 0, now_ms);
  if (!r.status.ok()) return r.status;
  return r.results.front();
}

// One transaction (one fsync) for the whole batch: per-command transactions capped the drain of
// a backlog at ~6,400 commands/s (docs/benchmarks.md, "Downstream"). Each command still takes
// effect whole or not at all: it runs under a savepoint of its own.
EdgeStore::DownBatchResult EdgeStore::ApplyDownCommands(const std::vector<DownInput>& commands, uint64_t through_seq,
                                                        int64_t now_ms) {
  DownBatchResult out;
  if (Status s = BeginBatch(); !s.ok()) {
    out.status = s;
    return out;
  }
  for (const DownInput& in : commands) {
    if (Status s = Exec("SAVEPOINT down_command"); !s.ok()) {
      out.status = s;
      break;
    }
    const size_t pubs = pending_pubs_.size();
    Result<DownResult> r = ApplyDownInTransaction(*in.command, now_ms, in.reject);
    if (r.ok()) {
      if (Status s = Exec("RELEASE down_command"); !s.ok()) {
        out.status = s;
        break;
      }
      out.results.push_back(std::move(*r));
      continue;
    }
    out.status = r.status();
    pending_pubs_.resize(pubs);
    if (sqlite3_get_autocommit(db_)) break;  // SQLite rolled back the whole transaction (SQLITE_FULL, ...)
    if (Status s = Exec("ROLLBACK TO down_command; RELEASE down_command"); !s.ok()) out.status = s;
    // The command's records are gone: count the next seq again from what the transaction holds.
    outbox_->Rewind();
    break;
  }
  if (sqlite3_get_autocommit(db_)) {  // nothing of the batch is left to commit
    RollbackBatch();
    out.results.clear();
    return out;
  }
  // through_seq also covers the kinds this site did not ask for; only when every command applied.
  if (out.status.ok() && through_seq > 0) {
    const int rc = sql_->down_pos_put->Bind(1, through_seq).Step();
    sql_->down_pos_put->Reset();
    if (rc != SQLITE_DONE) out.status = Error("down position write");
  }
  if (!out.status.ok() && out.results.empty()) {
    RollbackBatch();
    return out;
  }
  // What applied before a failing command commits: it counts, and the puller reads the position.
  if (Status s = CommitBatch(); !s.ok()) {
    out.results.clear();
    out.status = s;
  }
  return out;
}

Result<EdgeStore::DownResult> EdgeStore::ApplyDownInTransaction(const v1::DownCommand& c, int64_t now_ms,
                                                                const std::string& reject) {
  Result<DownResult> r = [&]() -> Result<DownResult> {
    auto position = DownAppliedSeq();
    if (!position.ok()) return position.status();
    if (c.down_seq() <= *position) return DownResult{};  // applied before: nothing to do
    const int kind = c.kind();
    const char* kind_name = kind > 0 && kind < wire::kDownKindCount ? wire::kDownKindNames[kind] : "unknown";
    int rc = sql_->down_claim->Bind(1, c.command_id()).Bind(2, c.down_seq()).Bind(3, std::string(kind_name)).Bind(4, now_ms).Step();
    sql_->down_claim->Reset();
    if (rc != SQLITE_DONE) return Error("down dedupe");
    // The same command again under a new down_seq (a hub restored from an older backup re-issues
    // HQ's retried calls): its effect happened once already, only the position moves.
    if (sqlite3_changes(db_) == 0) return DownResult{};
    if (!reject.empty()) return DownResult{DownResult::Effect::kRefused, reject};
    switch (c.body_case()) {
      case v1::DownCommand::kOrder: return DownOrder(c, now_ms);
      case v1::DownCommand::kCancel: return DownCancel(c, now_ms);
      case v1::DownCommand::kCatalog: return DownCatalog(c, now_ms);
      case v1::DownCommand::kFences:
      case v1::DownCommand::kRules: return DownRuleSet(c, now_ms);
      case v1::DownCommand::kEscrowReturn:
      case v1::DownCommand::kEscrowTarget: return DownEscrow(c, now_ms);
      default: return DownResult{DownResult::Effect::kRefused, "command without a body this release knows"};
    }
  }();
  if (!r.ok()) return r;
  const int rc = sql_->down_pos_put->Bind(1, c.down_seq()).Step();
  sql_->down_pos_put->Reset();
  if (rc != SQLITE_DONE) return Error("down position write");
  return r;
}

namespace {
// The ORDER change record of a downstream effect: what local order changes send, plus the
// reason and the command's down_seq.
void FillOrderRecord(v1::ChangeRecord& rec, const std::string& order_id, const std::string& status, const std::string& actor,
                     const std::vector<OrderLine>& lines, const std::string& sealed, const std::string& reason, uint64_t down_seq) {
  auto* os = rec.mutable_order();
  os->set_order_id(order_id);
  os->set_status(status);
  os->set_actor(actor);
  for (const auto& l : lines) {
    auto* pl = os->add_lines();
    pl->set_sku(l.sku);
    pl->set_qty(l.qty);
  }
  os->set_customer_sealed(sealed);
  os->set_reason(reason);
  os->set_down_seq(down_seq);
}
}  // namespace

// An HQ order: the stock ledger's Reserve, as for a local `created` (all or nothing, FEFO).
Result<EdgeStore::DownResult> EdgeStore::DownOrder(const v1::DownCommand& c, int64_t now_ms) {
  const v1::HqOrder& h = c.order();
  OrderStatus o;
  o.order_id = h.order_id();
  o.actor = "hq";
  o.ts_ms = h.ts_ms() > 0 ? h.ts_ms() : (c.issued_ms() > 0 ? c.issued_ms() : now_ms);
  for (const auto& l : h.lines()) o.lines.push_back({l.sku(), l.qty()});
  if (h.has_customer()) o.customer = Customer{h.customer().name(), h.customer().phone(), h.customer().address()};
  if (o.order_id.empty()) return DownResult{DownResult::Effect::kRefused, "order without order_id"};

  std::string from, lines_json, sealed, actor;
  int rc = sql_->order_get->Bind(1, o.order_id).Step();
  if (rc == SQLITE_ROW) {
    from = sql_->order_get->Text(0);
    lines_json = sql_->order_get->Text(1);
    sealed = sql_->order_get->Text(2);
    actor = sql_->order_get->Text(3);
  }
  sql_->order_get->Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("order read");

  auto version = outbox_->NextVersion(kEntityOrder, o.order_id);
  if (!version.ok()) return version.status();
  v1::ChangeRecord rec;
  if (!from.empty()) {
    // The site made (or was sent) this order id already: its order stands, nothing is reserved
    // a second time; HQ hears the refusal on a record with the site's own status.
    const std::string why = "order id exists at site";
    rc = sql_->order_mark->Bind(1, o.order_id).Bind(2, *version).Bind(3, why).Bind(4, c.down_seq()).Step();
    sql_->order_mark->Reset();
    if (rc != SQLITE_DONE) return Error("order write");
    FillOrderRecord(rec, o.order_id, from, actor, ParseLinesJson(lines_json), sealed, why, c.down_seq());
    auto seq = outbox_->Append(kEntityOrder, o.order_id, *version, kPriorityLane, now_ms, rec, now_ms);
    if (!seq.ok()) return seq.status();
    spdlog::info("downstream: HQ order {} refused: {}", o.order_id, why);
    return DownResult{DownResult::Effect::kRefused, why};
  }

  std::string refusal;
  bool lines_ok = !o.lines.empty();
  for (const auto& l : o.lines) lines_ok = lines_ok && !l.sku.empty() && l.qty > 0;
  std::vector<SkuLevel> touched;
  // An order the hub accepted against the allotment (docs/escrow.md): its units leave the
  // escrow reservation first, so the reservation below takes exactly them and never free
  // stock that local sales could have had; the counters move even if it comes out short.
  std::map<std::string, int64_t> escrow_skus;
  if (h.escrow() && lines_ok) {
    for (const auto& l : o.lines) escrow_skus[l.sku] += l.qty;
    for (const auto& [sku, qty] : escrow_skus) {
      auto e = EscrowGet(sku);
      if (!e.ok()) return e.status();
      if (auto r = ledger_->ReleaseUpTo(kEscrowHolder, sku, qty); !r.ok()) return r.status();
      if (!e->found) continue;
      e->consumed_applied = std::min(e->consumed_applied + qty, e->given - e->returned_applied);
      if (Status st = EscrowPut(sku, *e, now_ms); !st.ok()) return st;
    }
  }
  if (!lines_ok) {
    refusal = "lines: an order needs at least one line, each with a sku and qty > 0";
  } else {
    // A savepoint, so a shortfall on a later SKU also undoes the earlier ones' reservations.
    if (Status st = Exec("SAVEPOINT reserve"); !st.ok()) return st;
    auto reserved = ledger_->Reserve(o.order_id, o.lines);
    if (!reserved.ok()) {
      const Status why = reserved.status();
      if (Status st = Exec("ROLLBACK TO reserve; RELEASE reserve"); !st.ok()) return st;
      if (why.code() != StatusCode::kConflict) return why;
      refusal = why.message();
      // The one case an accepted order cannot be served: stock behind the allotment was lost
      // (spoiled, picked) after the hub had sold it. Refused, and said so on the record.
      if (h.escrow()) refusal = "escrow order short: stock behind the allotment was lost; " + refusal;
    } else {
      if (Status st = Exec("RELEASE reserve"); !st.ok()) return st;
      touched = std::move(*reserved);
    }
  }
  if (!escrow_skus.empty()) {
    // Released units the order could not take go back to the allotment's target if stock
    // allows; every SKU's stock row is written once, after.
    touched.clear();
    for (const auto& [sku, qty] : escrow_skus) {
      auto level = ledger_->Level(sku);
      if (!level.ok()) return level.status();
      if (!refusal.empty())
        if (Status st = EscrowAfterStock(*level, now_ms); !st.ok()) return st;
      touched.push_back(*level);
    }
  }
  for (const auto& level : touched)
    if (Status st = PutStock(level, nullptr, "reserve", o.order_id, o.ts_ms, now_ms); !st.ok()) return st;

  const std::string status = refusal.empty() ? "accepted" : "refused";
  sealed = SealCustomer(o.customer);
  lines_json = LinesJson(o.lines);
  sql_->order_put->Bind(1, o.order_id).Bind(2, status).Bind(3, *version).Bind(4, lines_json);
  if (sealed.empty()) sql_->order_put->BindTextOrNull(5, sealed);
  else sql_->order_put->BindBlob(5, sealed);
  rc = sql_->order_put->BindTextOrNull(6, o.actor).Bind(7, o.ts_ms).Step();
  sql_->order_put->Reset();
  if (rc != SQLITE_DONE) return Error("order write");
  rc = sql_->order_mark->Bind(1, o.order_id).Bind(2, *version).BindTextOrNull(3, refusal).Bind(4, c.down_seq()).Step();
  sql_->order_mark->Reset();
  if (rc != SQLITE_DONE) return Error("order write");

  FillOrderRecord(rec, o.order_id, status, o.actor, o.lines, sealed, refusal, c.down_seq());
  auto seq = outbox_->Append(kEntityOrder, o.order_id, *version, kPriorityLane, o.ts_ms, rec, now_ms);
  if (!seq.ok()) return seq.status();
  pending_pubs_.push_back(publish::OrderState(options_.topic_root, o, status, refusal));
  if (refusal.empty()) return DownResult{DownResult::Effect::kApplied, {}};
  spdlog::info("downstream: HQ order {} refused: {}", o.order_id, refusal);
  return DownResult{DownResult::Effect::kRefused, refusal};
}

// An HQ cancel: a local `cancelled` while the order is before dispatch (the reservation is
// released); past that, the site's state stands and the refusal goes up on an ORDER record with
// the site's status, which the hub's rule (rank, then HLC) keeps (docs/conflicts.md).
Result<EdgeStore::DownResult> EdgeStore::DownCancel(const v1::DownCommand& c, int64_t now_ms) {
  const std::string& id = c.cancel().order_id();
  std::string from, lines_json, sealed, actor;
  int rc = sql_->order_get->Bind(1, id).Step();
  if (rc == SQLITE_ROW) {
    from = sql_->order_get->Text(0);
    lines_json = sql_->order_get->Text(1);
    sealed = sql_->order_get->Text(2);
    actor = sql_->order_get->Text(3);
  }
  sql_->order_get->Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("order read");
  if (from.empty()) {
    // No order to carry a status up (the hub refuses a record without one): the refusal is
    // counted and logged at the site.
    spdlog::warn("downstream: HQ cancel of order {} refused: unknown at this site", id);
    return DownResult{DownResult::Effect::kRefused, "cancel refused: order unknown at site"};
  }
  OrderStatus o;
  o.order_id = id;
  o.ts_ms = now_ms;
  o.actor = "hq";
  auto version = outbox_->NextVersion(kEntityOrder, id);
  if (!version.ok()) return version.status();
  std::string status = from, reason;
  if (IsLegalOrderTransition(from, "cancelled")) {
    auto released = ledger_->Release(id);
    if (!released.ok()) return released.status();
    for (auto& level : *released) {
      if (Status st = EscrowAfterStock(level, now_ms); !st.ok()) return st;
      if (Status st = PutStock(level, nullptr, "release", id, now_ms, now_ms); !st.ok()) return st;
    }
    status = "cancelled";
    rc = sql_->order_update->Bind(1, id).Bind(2, status).Bind(3, *version).Bind(4, o.actor).Bind(5, now_ms).Step();
    sql_->order_update->Reset();
    if (rc != SQLITE_DONE) return Error("order write");
    actor = o.actor;
  } else {
    reason = "cancel refused: already " + from;
  }
  rc = sql_->order_mark->Bind(1, id).Bind(2, *version).BindTextOrNull(3, reason).Bind(4, c.down_seq()).Step();
  sql_->order_mark->Reset();
  if (rc != SQLITE_DONE) return Error("order write");
  v1::ChangeRecord rec;
  FillOrderRecord(rec, id, status, actor, ParseLinesJson(lines_json), sealed, reason, c.down_seq());
  auto seq = outbox_->Append(kEntityOrder, id, *version, kPriorityLane, now_ms, rec, now_ms);
  if (!seq.ok()) return seq.status();
  if (reason.empty()) {
    pending_pubs_.push_back(publish::OrderState(options_.topic_root, o, status));
    return DownResult{DownResult::Effect::kApplied, {}};
  }
  spdlog::info("downstream: HQ cancel of order {}: {}", id, reason);
  return DownResult{DownResult::Effect::kRefused, reason};
}

// A catalog item: HQ's version decides; an older or equal one changes nothing.
Result<EdgeStore::DownResult> EdgeStore::DownCatalog(const v1::DownCommand& c, int64_t now_ms) {
  const v1::CatalogItem& item = c.catalog();
  if (item.sku().empty()) return DownResult{DownResult::Effect::kRefused, "catalog item without sku"};
  int rc = sql_->catalog_version->Bind(1, item.sku()).Step();
  const uint64_t stored = rc == SQLITE_ROW ? sql_->catalog_version->UInt(0) : 0;
  sql_->catalog_version->Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("catalog read");
  if (item.version() <= stored) return DownResult{};
  auto& put = *sql_->catalog_put;
  put.Bind(1, item.sku()).Bind(2, item.name()).Bind(3, item.unit()).Bind(4, item.price_cents());
  if (item.has_temp_min_c()) put.BindDouble(5, item.temp_min_c());
  if (item.has_temp_max_c()) put.BindDouble(6, item.temp_max_c());
  if (item.has_shelf_life_h()) put.Bind(7, item.shelf_life_h());
  rc = put.Bind(8, item.version()).Bind(9, now_ms).Step();  // unbound columns are NULL
  put.Reset();
  if (rc != SQLITE_DONE) return Error("catalog write");
  pending_pubs_.push_back(publish::CatalogItem(options_.topic_root, item, now_ms));
  return DownResult{DownResult::Effect::kApplied, {}};
}

// HQ's fence set or cold-chain rule set: kept when newer than the stored one. The caller
// (edge/downstream.h) hands the committed set to the site rules.
Result<EdgeStore::DownResult> EdgeStore::DownRuleSet(const v1::DownCommand& c, int64_t now_ms) {
  const bool fences = c.body_case() == v1::DownCommand::kFences;
  const std::string kind = wire::kDownKindNames[fences ? v1::DOWN_FENCES : v1::DOWN_COLDCHAIN_RULES];
  const uint64_t version = fences ? c.fences().version() : c.rules().version();
  auto stored = LoadHqRuleSet(kind);
  if (!stored.ok()) return stored.status();
  if (version <= stored->version) return DownResult{};
  const std::string body = fences ? c.fences().SerializeAsString() : c.rules().SerializeAsString();
  const int rc = sql_->rule_set_put->Bind(1, kind).Bind(2, version).BindBlob(3, body).Bind(4, now_ms).Step();
  sql_->rule_set_put->Reset();
  if (rc != SQLITE_DONE) return Error("hq rule set write");
  return DownResult{DownResult::Effect::kApplied, {}};
}

// ---------------------------------------------------------------------------------------------
// Escrow stock (docs/escrow.md; the rules at kEscrowHolder in store.h).

Result<EdgeStore::EscrowRow> EdgeStore::EscrowGet(const std::string& sku) {
  EscrowRow e;
  auto& q = *sql_->escrow_get;
  const int rc = q.Bind(1, sku).Step();
  if (rc == SQLITE_ROW) {
    e.found = true;
    e.target = q.Int(0);
    if (sqlite3_column_type(q.get(), 1) != SQLITE_NULL) e.config_target = q.Int(1);
    e.given = q.Int(2);
    e.returned_applied = q.Int(3);
    e.consumed_applied = q.Int(4);
  }
  q.Reset();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("escrow read");
  return e;
}

Status EdgeStore::EscrowPut(const std::string& sku, const EscrowRow& e, int64_t now_ms) {
  auto& q = *sql_->escrow_put;
  q.Bind(1, sku).Bind(2, e.target);
  if (e.config_target) q.Bind(3, *e.config_target);  // unbound: NULL
  const int rc = q.Bind(4, e.given).Bind(5, e.returned_applied).Bind(6, e.consumed_applied).Step();
  q.Reset();
  if (rc != SQLITE_DONE) return Error("escrow write");
  auto held = ledger_->Held(kEscrowHolder, sku);
  if (!held.ok()) return held.status();
  v1::ChangeRecord rec;
  auto* g = rec.mutable_escrow();
  g->set_sku(sku);
  g->set_given(e.given);
  g->set_returned_applied(e.returned_applied);
  g->set_consumed_applied(e.consumed_applied);
  g->set_held(*held);
  g->set_target(e.target);
  auto seq = outbox_->AppendNext(kEntityEscrow, sku, kPriorityLane, now_ms, rec, now_ms);
  return seq.ok() ? Status::Ok() : seq.status();
}

Result<bool> EdgeStore::EscrowTopUp(const std::string& sku, EscrowRow& e) {
  auto held = ledger_->Held(kEscrowHolder, sku);
  if (!held.ok()) return held.status();
  // What the site holds counts against the target, including units the hub may have used
  // already without the site knowing: the site never grants more than the target at once.
  if (*held >= e.target) return false;
  auto got = ledger_->ReserveUpTo(kEscrowHolder, sku, e.target - *held);
  if (!got.ok()) return got.status();
  e.given += *got;
  return *got > 0;
}

Status EdgeStore::EscrowAfterStock(SkuLevel& level, int64_t now_ms, bool changed) {
  auto e = EscrowGet(level.sku);
  if (!e.ok()) return e.status();
  if (!e->found) return Status::Ok();
  auto topped = EscrowTopUp(level.sku, *e);
  if (!topped.ok()) return topped.status();
  if (!*topped && !changed) return Status::Ok();
  if (Status st = EscrowPut(level.sku, *e, now_ms); !st.ok()) return st;
  auto now = ledger_->Level(level.sku);
  if (!now.ok()) return now.status();
  level = *now;
  return Status::Ok();
}

// escrow-return: the hub's `returned` total; the reservation shrinks by what is new.
// escrow-target: HQ's request for an allotment; granted now as far as free stock allows.
Result<EdgeStore::DownResult> EdgeStore::DownEscrow(const v1::DownCommand& c, int64_t now_ms) {
  const bool is_return = c.body_case() == v1::DownCommand::kEscrowReturn;
  const std::string& sku = is_return ? c.escrow_return().sku() : c.escrow_target().sku();
  if (sku.empty()) return DownResult{DownResult::Effect::kRefused, "escrow command without sku"};
  auto e = EscrowGet(sku);
  if (!e.ok()) return e.status();
  bool changed = false;
  if (is_return) {
    const int64_t shrink = c.escrow_return().returned() - e->returned_applied;
    if (!e->found || shrink <= 0) return DownResult{};
    if (auto r = ledger_->ReleaseUpTo(kEscrowHolder, sku, shrink); !r.ok()) return r.status();
    e->returned_applied = std::min(c.escrow_return().returned(), e->given - e->consumed_applied);
    changed = true;
  } else {
    const int64_t target = c.escrow_target().target();
    if (target < 0) return DownResult{DownResult::Effect::kRefused, "escrow target below zero"};
    changed = !e->found || e->target != target;
    e->target = target;
    e->found = true;
    auto topped = EscrowTopUp(sku, *e);
    if (!topped.ok()) return topped.status();
    changed = changed || *topped;  // the same target again may still grant more
  }
  if (!changed) return DownResult{};
  if (Status st = EscrowPut(sku, *e, now_ms); !st.ok()) return st;
  auto level = ledger_->Level(sku);
  if (!level.ok()) return level.status();
  // The record's reason is the ledger's (the hub's field rules know reserve and release).
  if (Status st = PutStock(*level, nullptr, is_return ? "release" : "reserve", "", now_ms, now_ms); !st.ok()) return st;
  return DownResult{DownResult::Effect::kApplied, {}};
}

Status EdgeStore::ConfigureEscrow(const std::map<std::string, int64_t>& targets, int64_t now_ms) {
  std::vector<std::string> configured;
  {
    auto& q = *sql_->escrow_all;
    int rc;
    while ((rc = q.Step()) == SQLITE_ROW) configured.push_back(q.Text(0));
    q.Reset();
    if (rc != SQLITE_DONE) return Error("escrow read");
  }
  if (Status s = BeginBatch(); !s.ok()) return s;
  Status s = [&]() -> Status {
    auto apply = [&](const std::string& sku, std::optional<int64_t> value) -> Status {
      auto e = EscrowGet(sku);
      if (!e.ok()) return e.status();
      if (e->config_target == value) return Status::Ok();  // unchanged since the last start
      if (!value && !e->config_target) return Status::Ok();
      e->config_target = value;
      e->target = value.value_or(0);
      auto topped = EscrowTopUp(sku, *e);
      if (!topped.ok()) return topped.status();
      if (Status st = EscrowPut(sku, *e, now_ms); !st.ok()) return st;
      if (!*topped) return Status::Ok();
      auto level = ledger_->Level(sku);
      if (!level.ok()) return level.status();
      return PutStock(*level, nullptr, "reserve", "", now_ms, now_ms);
    };
    for (const auto& [sku, n] : targets)
      if (Status st = apply(sku, n); !st.ok()) return st;
    for (const auto& sku : configured)
      if (!targets.count(sku))
        if (Status st = apply(sku, std::nullopt); !st.ok()) return st;
    return Status::Ok();
  }();
  if (!s.ok()) {
    RollbackBatch();
    return s;
  }
  return CommitBatch();
}

Result<std::vector<EdgeStore::EscrowLevel>> EdgeStore::Escrow() {
  std::vector<EscrowLevel> out;
  auto& q = *sql_->escrow_all;
  int rc;
  while ((rc = q.Step()) == SQLITE_ROW) out.push_back({q.Text(0), q.Int(1), q.Int(2), q.Int(3), q.Int(4), 0});
  q.Reset();
  if (rc != SQLITE_DONE) return Error("escrow read");
  for (auto& l : out) {
    auto held = ledger_->Held(kEscrowHolder, l.sku);
    if (!held.ok()) return held.status();
    l.held = *held;
  }
  return out;
}

}  // namespace freshsync::edge
