#include "edge/rebuild.h"

#include <filesystem>
#include <map>

#include <nlohmann/json.hpp>

#include "cloud-sync/outbox_schema.h"
#include "cloud-sync/transport.h"
#include "edge/admin.h"
#include "edge/message_types.h"
#include "edge/migrations.h"
#include "edge/stock_ledger.h"
#include "edge/store.h"
#include "sqlite/db.h"
#include "sqlite/migrate.h"
#include "wire/routes.h"

namespace freshsync::edge {
namespace {

constexpr char kRebuildMovementId[] = "rebuild-from-hub";

// A store "has content" when it holds anything a site wrote or was sent: refusing to seed over
// it keeps an operator from wiping a live site's store by a slip.
Result<bool> HasContent(const std::string& store_path) {
  if (!std::filesystem::exists(store_path)) return false;
  sqlite::OpenOptions o;
  o.read_only = true;
  auto db = sqlite::Db::Open(store_path, o);
  if (!db.ok()) return db.status();
  auto tables = db->QueryInt("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('outbox', 'stock', 'orders')");
  if (!tables.ok()) return tables.status();
  if (*tables < 3) return *tables > 0;  // not (or not yet) an edge store: content unless empty
  auto rows = db->QueryInt(
      "SELECT (SELECT count(*) FROM outbox) + (SELECT count(*) FROM stock) + (SELECT count(*) FROM orders) + "
      "(SELECT count(*) FROM sync_state WHERE value <> 0)");
  if (!rows.ok()) return rows.status();
  return *rows > 0;
}

struct Seeder {
  sqlite::Db& db;
  int64_t now_ms;
  RebuildSummary& out;

  Status Run(const char* sql, const std::function<void(sqlite::Stmt&)>& bind, const char* what) {
    auto st = db.Prepare(sql);
    if (!st.ok()) return st.status();
    bind(*st);
    return st->Run(what);
  }
  Status SetState(const char* name, int64_t value) {
    return Run("INSERT INTO sync_state(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
               [&](sqlite::Stmt& s) { s.Bind(1, name).Bind(2, value); }, "sync_state");
  }
  Status SetMeta(const char* name, int64_t value) {
    return Run("INSERT INTO edge_meta(name, value) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
               [&](sqlite::Stmt& s) { s.Bind(1, name).Bind(2, value); }, "edge_meta");
  }
  Status MarkApplied(const std::string& command_id, uint64_t down_seq, v1::DownKind kind) {
    ++out.commands_marked;
    return Run("INSERT OR IGNORE INTO down_applied(command_id, down_seq, kind, applied_ms) VALUES (?1, ?2, ?3, ?4)",
               [&](sqlite::Stmt& s) { s.Bind(1, command_id).Bind(2, down_seq).Bind(3, wire::kDownKindNames[kind]).Bind(4, now_ms); },
               "down_applied");
  }
  Status Dedupe(TopicKind kind, const std::string& key) {
    ++out.dedupe_keys;
    return Run("INSERT OR IGNORE INTO dedupe(kind, key, seen_ms) VALUES (?1, ?2, ?3)",
               [&](sqlite::Stmt& s) { s.Bind(1, MessageTypeOf(kind).dedupe_kind).Bind(2, key).Bind(3, now_ms); }, "dedupe");
  }

  Status Stock(const v1::RebuildSnapshot& snap) {
    StockLedger ledger(db.get());
    if (Status s = ledger.Prepare(); !s.ok()) return s;
    for (const auto& lot : snap.lots()) {
      StockMovement m;
      m.id = kRebuildMovementId;
      m.sku = lot.sku();
      m.delta = lot.on_hand();
      m.reason = "receive";
      m.lot = lot.lot();
      m.expiry = lot.expiry();
      if (m.delta <= 0) continue;
      if (auto r = ledger.Move(m, lot.expiry()); !r.ok()) return r.status();
      ++out.lots;
    }
    // The escrow allotment first: HQ may already have sold against it.
    for (const auto& e : snap.escrow()) {
      if (e.held() <= 0) continue;
      auto got = ledger.ReserveUpTo(EdgeStore::kEscrowHolder, e.sku(), e.held());
      if (!got.ok()) return got.status();
      if (*got < e.held())
        out.warnings.push_back("escrow " + e.sku() + ": holds " + std::to_string(*got) + " of the " +
                               std::to_string(e.held()) + " the hub's record says");
    }
    std::map<std::string, std::vector<OrderLine>> by_order;
    for (const auto& r : snap.reservations()) by_order[r.order_id()].push_back({r.sku(), r.qty()});
    for (const auto& [order_id, lines] : by_order) {
      auto r = ledger.Reserve(order_id, lines);
      if (!r.ok() && r.status().code() != StatusCode::kConflict) return r.status();
      if (!r.ok()) {
        out.warnings.push_back("order " + order_id + ": its reservation could not be placed: " + r.status().message());
        continue;
      }
      ++out.reservations;
    }
    for (const auto& item : snap.stock()) {
      auto level = ledger.Level(item.sku());
      if (!level.ok()) return level.status();
      if (level->on_hand != item.on_hand() || level->reserved != item.reserved())
        out.warnings.push_back("sku " + item.sku() + ": seeded on_hand/reserved " + std::to_string(level->on_hand) + "/" +
                               std::to_string(level->reserved) + ", the hub's " + std::to_string(item.on_hand()) + "/" +
                               std::to_string(item.reserved()));
      if (Status s = ledger.PutSku(*level, static_cast<int64_t>(item.version()), now_ms); !s.ok()) return s;
      ++out.skus;
    }
    return Status::Ok();
  }

  Status Orders(const v1::RebuildSnapshot& snap) {
    for (const auto& ro : snap.orders()) {
      const v1::OrderState& o = ro.order();
      if (o.down_seq() > 0) {
        // The HQ command that made or last changed the order took effect here: pulled again
        // (it may sit above down_applied_seq), it must change nothing.
        if (Status s = MarkApplied(std::string(wire::kDownKindNames[v1::DOWN_ORDER]) + ":" + o.order_id(), o.down_seq(),
                                   v1::DOWN_ORDER);
            !s.ok())
          return s;
        if (o.status() == "cancelled")
          if (Status s = MarkApplied(std::string(wire::kDownKindNames[v1::DOWN_CANCEL]) + ":" + o.order_id(), o.down_seq(),
                                     v1::DOWN_CANCEL);
              !s.ok())
            return s;
      }
      if (!ro.open()) continue;
      nlohmann::json lines = nlohmann::json::array();
      for (const auto& l : o.lines()) lines.push_back({{"sku", l.sku()}, {"qty", l.qty()}});
      Status s = Run(
          "INSERT INTO orders(order_id, status, version, lines, customer_sealed, actor, created_ts_ms, updated_ts_ms, reason, "
          "down_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
          [&](sqlite::Stmt& st) {
            st.Bind(1, o.order_id()).Bind(2, o.status()).Bind(3, ro.version()).Bind(4, lines.dump());
            if (o.customer_sealed().empty()) st.BindNull(5);
            else st.BindBlob(5, o.customer_sealed());
            st.BindTextOrNull(6, o.actor()).Bind(7, ro.created_ts_ms()).Bind(8, ro.updated_ts_ms());
            st.BindTextOrNull(9, o.reason());
            if (o.down_seq() > 0) st.Bind(10, o.down_seq());
            else st.BindNull(10);
          },
          "order");
      if (!s.ok()) return s;
      ++out.open_orders;
    }
    return Status::Ok();
  }

  Status Downstream(const v1::RebuildSnapshot& snap) {
    for (const auto& c : snap.catalog()) {
      Status s = Run(
          "INSERT INTO catalog(sku, name, unit, price_cents, temp_min_c, temp_max_c, shelf_life_h, version, updated_ms) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
          [&](sqlite::Stmt& st) {
            st.Bind(1, c.sku()).Bind(2, c.name()).Bind(3, c.unit()).Bind(4, c.price_cents());
            if (c.has_temp_min_c()) st.Bind(5, c.temp_min_c());
            if (c.has_temp_max_c()) st.Bind(6, c.temp_max_c());
            if (c.has_shelf_life_h()) st.Bind(7, c.shelf_life_h());
            st.Bind(8, c.version()).Bind(9, now_ms);
          },
          "catalog");
      if (!s.ok()) return s;
      ++out.catalog;
    }
    auto rule_set = [&](v1::DownKind kind, uint64_t version, const std::string& body) {
      return Run("INSERT INTO hq_rule_sets(kind, version, body, updated_ms) VALUES (?1, ?2, ?3, ?4)",
                 [&](sqlite::Stmt& st) { st.Bind(1, wire::kDownKindNames[kind]).Bind(2, version).BindBlob(3, body).Bind(4, now_ms); },
                 "hq rule set");
    };
    if (snap.has_fences()) {
      if (Status s = rule_set(v1::DOWN_FENCES, snap.fences().version(), snap.fences().SerializeAsString()); !s.ok()) return s;
      out.fences_version = snap.fences().version();
    }
    if (snap.has_rules()) {
      if (Status s = rule_set(v1::DOWN_COLDCHAIN_RULES, snap.rules().version(), snap.rules().SerializeAsString()); !s.ok())
        return s;
      out.rules_version = snap.rules().version();
    }
    for (const auto& e : snap.escrow()) {
      // config_target stays NULL: edged applies its [escrow] at start as a change.
      Status s = Run(
          "INSERT INTO escrow(sku, target, given, returned_applied, consumed_applied) VALUES (?1, ?2, ?3, ?4, ?5)",
          [&](sqlite::Stmt& st) {
            st.Bind(1, e.sku()).Bind(2, e.target()).Bind(3, e.given()).Bind(4, e.returned_applied()).Bind(5, e.consumed_applied());
          },
          "escrow");
      if (!s.ok()) return s;
      ++out.escrow;
    }
    return Status::Ok();
  }
};

}  // namespace

Result<v1::RebuildSnapshot> FetchRebuildSnapshot(const EdgeConfig& config, sync::Transport& transport) {
  if (!config.hub) return Status::InvalidArgument("no [hub] in the config: there is no hub to rebuild from");
  std::string url = config.hub->url;
  while (!url.empty() && url.back() == '/') url.pop_back();
  sync::HttpRequest req;
  req.method = "GET";
  req.url = url + wire::kSitesPrefix + config.site + wire::kRebuildSnapshotSuffix;
  req.headers.push_back({"Accept", wire::kContentTypeProtobuf});
  auto res = transport.Send(req);
  if (!res.ok()) return res.status();
  if (res->status != 200)
    return Status::Unavailable("hub answered " + std::to_string(res->status) + " for " + req.url + ": " + res->body);
  v1::RebuildSnapshot snap;
  if (!snap.ParseFromString(res->body)) return Status::InvalidArgument("the hub's answer is not a RebuildSnapshot");
  if (snap.site() != config.site)
    return Status::InvalidArgument("the hub's snapshot is of site '" + snap.site() + "', not '" + config.site + "'");
  return snap;
}

Result<RebuildSummary> SeedStoreFromSnapshot(const std::string& store_path, const v1::RebuildSnapshot& snap, bool force,
                                             int64_t now_ms) {
  auto lock = StoreLock::Acquire(store_path);
  if (!lock.ok()) return lock.status();
  RebuildSummary out;
  auto content = HasContent(store_path);
  // With --force even a file that is no database (what a failed disk may leave) is set aside.
  if (!content.ok() && !force) return content.status();
  if (!content.ok()) content = true;
  if (*content && !force)
    return Status::Conflict(store_path + " exists and holds data: move it away, or pass --force to keep it as " + store_path +
                            ".pre-rebuild");
  if (Status s = SetStoreAside(store_path, ".pre-rebuild"); !s.ok()) return s;
  if (*content) out.set_aside = store_path + ".pre-rebuild";

  sqlite::OpenOptions o;
  o.create = true;
  o.pragmas = {"PRAGMA journal_mode=WAL"};
  auto db = sqlite::Db::Open(store_path, o);
  if (!db.ok()) return db.status();
  sqlite::MigrateOptions mo;
  mo.database = store_path;
  mo.program = "edgectl";
  if (auto v = sqlite::Migrate(db->get(), StoreMigrations(), mo); !v.ok()) return v.status();

  out.seq_floor = snap.seq_floor();
  out.hub_max_seq = snap.max_seq();
  out.delivered_seq = snap.delivered_seq();
  out.down_applied_seq = snap.records_down_seq();
  if (snap.max_seq() > snap.seq_floor())
    out.warnings.push_back("the hub holds records up to seq " + std::to_string(snap.max_seq()) + " above its contiguous seq " +
                           std::to_string(snap.seq_floor()) +
                           " (urgent records of the dead edge): new records at those seqs are taken by the hub as repeats");
  if (snap.delivered_seq() > snap.records_down_seq())
    out.warnings.push_back("commands " + std::to_string(snap.records_down_seq() + 1) + ".." +
                           std::to_string(snap.delivered_seq()) +
                           " were acknowledged by the dead edge but no record of their effect reached the hub: they are "
                           "pulled and applied again");

  Seeder seed{*db, now_ms, out};
  if (Status s = db->Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  auto body = [&]() -> Status {
    if (Status s = seed.Stock(snap); !s.ok()) return s;
    if (Status s = seed.Orders(snap); !s.ok()) return s;
    if (Status s = seed.Downstream(snap); !s.ok()) return s;
    for (const auto& v : snap.versions()) {
      Status s = seed.Run("INSERT INTO entity_versions(entity, key, version) VALUES (?1, ?2, ?3) "
                          "ON CONFLICT(entity, key) DO UPDATE SET version = max(version, excluded.version)",
                          [&](sqlite::Stmt& st) { st.Bind(1, static_cast<int>(v.entity())).Bind(2, v.key()).Bind(3, v.version()); },
                          "entity_versions");
      if (!s.ok()) return s;
    }
    for (const auto& id : snap.movement_ids())
      if (Status s = seed.Dedupe(TopicKind::kStockMovements, id); !s.ok()) return s;
    for (const auto& key : snap.order_status_keys())
      if (Status s = seed.Dedupe(TopicKind::kOrderStatus, key); !s.ok()) return s;
    const auto floor = static_cast<int64_t>(snap.seq_floor());
    if (Status s = seed.SetState(sync::kStateAckedSeq, floor); !s.ok()) return s;
    if (Status s = seed.SetState(sync::kStateSeqFloor, floor); !s.ok()) return s;
    if (Status s = seed.SetState(sync::kStateDownAppliedSeq, static_cast<int64_t>(out.down_applied_seq)); !s.ok()) return s;
    if (Status s = seed.SetMeta("hlc_last", static_cast<int64_t>(snap.max_hlc())); !s.ok()) return s;
    if (Status s = seed.SetMeta(kMetaRebuiltFromHubMs, now_ms); !s.ok()) return s;
    return seed.SetMeta(kMetaRebuiltSeqFloor, floor);
  }();
  if (!body.ok()) {
    (void)db->Exec("ROLLBACK");
    return body;
  }
  if (Status s = db->Exec("COMMIT"); !s.ok()) return s;
  return out;
}

}  // namespace freshsync::edge
