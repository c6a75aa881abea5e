#include "hub/downstream_log.h"

#include <algorithm>
#include <map>
#include <string_view>

#include "hub/escrow.h"
#include "hub/store_sql.h"

namespace freshsync::hub {
namespace {

// Statements valid in both dialects are written once (hub/sql.h); the lane lock differs.
constexpr Sql kEnsureLane{"INSERT INTO down_lanes(site) VALUES(?1) ON CONFLICT(site) DO NOTHING"};
constexpr Sql kLockLane{
    "SELECT last_seq, delivered_seq, seeded, fences_version, fences_digest, rules_version, rules_digest "
    "FROM down_lanes WHERE site = ?1",
    "SELECT last_seq, delivered_seq, seeded, fences_version, fences_digest, rules_version, rules_digest "
    "FROM down_lanes WHERE site = $1 FOR UPDATE"};
constexpr Sql kFindCommand{"SELECT down_seq, digest, body FROM down_commands WHERE site = ?1 AND command_id = ?2"};
constexpr Sql kInsertCommand{
    "INSERT INTO down_commands(site, down_seq, kind, command_id, digest, body, sealed, issued_ms, issued_by) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"};
constexpr Sql kSetLastSeq{"UPDATE down_lanes SET last_seq = ?2 WHERE site = ?1"};
constexpr Sql kSetFences{"UPDATE down_lanes SET fences_version = ?2, fences_digest = ?3 WHERE site = ?1"};
constexpr Sql kSetRules{"UPDATE down_lanes SET rules_version = ?2, rules_digest = ?3 WHERE site = ?1"};
constexpr Sql kPutCurrent{
    "INSERT INTO down_current(site, kind, version, body, updated_ms) VALUES(?1, ?2, ?3, ?4, ?5) "
    "ON CONFLICT(site, kind) DO UPDATE SET version = excluded.version, body = excluded.body, "
    "updated_ms = excluded.updated_ms"};
constexpr Sql kCurrent{"SELECT version, body, updated_ms FROM down_current WHERE site = ?1 AND kind = ?2"};
constexpr Sql kAck{
    "UPDATE down_lanes SET delivered_seq = ?2, delivered_ms = ?3, last_seq = ?4, seeded = 1 WHERE site = ?1"};
constexpr Sql kKnownSites{"SELECT site FROM sites UNION SELECT site FROM down_lanes ORDER BY 1"};
constexpr Sql kCatalogOne{"SELECT version, digest FROM catalog_items WHERE sku = ?1"};
constexpr Sql kCatalogAll{"SELECT version, digest, body FROM catalog_items ORDER BY sku"};
constexpr Sql kPutCatalog{
    "INSERT INTO catalog_items(sku, version, digest, body, updated_ms) VALUES(?1, ?2, ?3, ?4, ?5) "
    "ON CONFLICT(sku) DO UPDATE SET version = excluded.version, digest = excluded.digest, body = excluded.body, "
    "updated_ms = excluded.updated_ms"};
constexpr Sql kSitesHolding{"SELECT site, down_seq FROM down_commands WHERE command_id = ?1 ORDER BY site"};
constexpr Sql kReadLane{"SELECT last_seq, delivered_seq, seeded FROM down_lanes WHERE site = ?1"};
constexpr Sql kCommands{
    "SELECT body, sealed FROM down_commands WHERE site = ?1 AND down_seq > ?2 ORDER BY down_seq LIMIT ?3"};
constexpr Sql kPending{
    "SELECT COUNT(*), COALESCE(MIN(issued_ms), 0) FROM down_commands WHERE site = ?1 AND down_seq > ?2"};
constexpr Sql kUnacked{"SELECT down_seq, body FROM down_commands WHERE site = ?1 AND down_seq > ?2 ORDER BY down_seq"};
constexpr Sql kRenumber{"UPDATE down_commands SET down_seq = ?3, body = ?4 WHERE site = ?1 AND down_seq = ?2"};
constexpr Sql kLanes{"SELECT site, last_seq, delivered_seq FROM down_lanes ORDER BY site"};
constexpr Sql kTrim{
    "DELETE FROM down_commands WHERE issued_ms < ?1 AND down_seq <= "
    "(SELECT l.delivered_seq FROM down_lanes l WHERE l.site = down_commands.site)"};

struct Lane {
  uint64_t last_seq = 0, delivered_seq = 0;
  bool seeded = false;
  uint64_t fences_version = 0, rules_version = 0;
  std::string fences_digest, rules_digest;
};

// Lane is also DownstreamLog's method; members name the row by this.
using LaneRow = Lane;

// Creates the lane if need be and locks it for the rest of the transaction.
Result<Lane> LockLane(SqlTx& tx, const std::string& site) {
  if (Status s = tx.Run(kEnsureLane, [&](SqlParams& p) { p.Text(1, site); }); !s.ok()) return s;
  Lane lane;
  Status s = tx.Run(kLockLane, [&](SqlParams& p) { p.Text(1, site); }, [&](const SqlRow& r) {
    lane.last_seq = r.UInt(0);
    lane.delivered_seq = r.UInt(1);
    lane.seeded = r.Int(2) != 0;
    lane.fences_version = r.UInt(3);
    lane.fences_digest = r.Text(4);
    lane.rules_version = r.UInt(5);
    lane.rules_digest = r.Text(6);
  });
  if (!s.ok()) return s;
  return lane;
}

// The command `id` already in the site's log, as a repeat (same digest) or a conflict;
// nullopt when it is not there.
Result<std::optional<DownAppend>> FindCommand(SqlTx& tx, const std::string& site, const std::string& id, const std::string& digest) {
  std::optional<DownAppend> out;
  Status s = tx.Run(kFindCommand, [&](SqlParams& p) { p.Text(1, site).Text(2, id); }, [&](const SqlRow& r) {
    out.emplace();
    out->command_id = id;
    out->down_seq = r.UInt(0);
    (r.Text(1) == digest ? out->repeated : out->conflict) = true;
    v1::DownCommand stored;
    // The first call's escrow decision, which a repeat answers again.
    if (stored.ParseFromString(r.Text(2)) && stored.has_order()) out->escrow = stored.order().escrow();
  });
  if (!s.ok()) return s;
  return out;
}

// Appends under the lane lock taken by LockLane (`lane` is updated); a command id already in
// the log is a repeat (same digest) or a conflict. `absent`: the caller has just looked for
// the id under this lock (FindCommand) and it is not there.
Result<DownAppend> AppendLocked(SqlTx& tx, const std::string& site, Lane& lane, v1::DownCommand& command,
                                const std::string& digest, const std::string& sealed, bool absent = false) {
  DownAppend out;
  out.command_id = command.command_id();
  if (!absent) {
    auto found = FindCommand(tx, site, command.command_id(), digest);
    if (!found.ok()) return found.status();
    if (*found) return **found;
  }
  out.escrow = command.has_order() && command.order().escrow();
  out.down_seq = lane.last_seq + 1;
  command.set_down_seq(out.down_seq);
  const std::string body = command.SerializeAsString();
  Status s = tx.Run(kInsertCommand, [&](SqlParams& p) {
    p.Text(1, site).UInt(2, out.down_seq).Int(3, command.kind()).Text(4, command.command_id()).Text(5, digest);
    p.Blob(6, body);
    if (sealed.empty()) p.Null(7);
    else p.Blob(7, sealed);
    p.Int(8, command.issued_ms()).Text(9, command.issued_by());
  });
  if (!s.ok()) return s;
  s = tx.Run(kSetLastSeq, [&](SqlParams& p) { p.Text(1, site).UInt(2, out.down_seq); });
  if (!s.ok()) return s;
  lane.last_seq = out.down_seq;
  return out;
}

struct CatalogRow {
  uint64_t version;
  std::string digest, body;
};

Result<std::vector<CatalogRow>> CatalogRows(const std::function<Status(const Sql&, const std::function<void(const SqlRow&)>&)>& run) {
  std::vector<CatalogRow> rows;
  Status s = run(kCatalogAll, [&](const SqlRow& r) { rows.push_back({r.UInt(0), r.Text(1), r.Text(2)}); });
  if (!s.ok()) return s;
  return rows;
}

}  // namespace

std::string DownCommandId(v1::DownKind kind, const std::string& key, uint64_t version) {
  switch (kind) {
    case v1::DOWN_ORDER: return "order:" + key;
    case v1::DOWN_CANCEL: return "cancel:" + key;
    case v1::DOWN_CATALOG: return "catalog:" + key + ":" + std::to_string(version);
    case v1::DOWN_FENCES: return "fences:" + std::to_string(version);
    case v1::DOWN_COLDCHAIN_RULES: return "coldchain-rules:" + std::to_string(version);
    case v1::DOWN_ESCROW_RETURN: return "escrow-return:" + key + ":" + std::to_string(version);
    case v1::DOWN_ESCROW_TARGET: return "escrow-target:" + key + ":" + std::to_string(version);
    default: return "";
  }
}

const char* DownKindName(v1::DownKind kind) {
  switch (kind) {
    case v1::DOWN_ORDER: return "order";
    case v1::DOWN_CANCEL: return "cancel";
    case v1::DOWN_CATALOG: return "catalog";
    case v1::DOWN_FENCES: return "fences";
    case v1::DOWN_COLDCHAIN_RULES: return "coldchain-rules";
    case v1::DOWN_ESCROW_RETURN: return "escrow-return";
    case v1::DOWN_ESCROW_TARGET: return "escrow-target";
    default: return "unspecified";
  }
}

std::optional<v1::DownKind> DownKindByName(std::string_view name) {
  for (v1::DownKind k : {v1::DOWN_ORDER, v1::DOWN_CANCEL, v1::DOWN_CATALOG, v1::DOWN_FENCES, v1::DOWN_COLDCHAIN_RULES,
                         v1::DOWN_ESCROW_RETURN, v1::DOWN_ESCROW_TARGET})
    if (name == DownKindName(k)) return k;
  return std::nullopt;
}

Result<DownAppend> DownstreamLog::Append(const std::string& site, v1::DownCommand command, const std::string& digest,
                                         const std::string& sealed_customer) {
  DownAppend out;
  Status s = store_.Write([&](SqlTx& tx) -> Status {
    auto lane = LockLane(tx, site);
    if (!lane.ok()) return lane.status();
    v1::DownCommand c = command;  // a PostgreSQL retry starts again from the caller's command
    auto r = AppendLocked(tx, site, *lane, c, digest, sealed_customer);
    if (!r.ok()) return r.status();
    out = *r;
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<DownAppend> DownstreamLog::AppendOrder(const std::string& site, v1::DownCommand command,
                                              const std::string& digest, const std::string& sealed_customer) {
  auto r = AppendOrders({{site, std::move(command), digest, sealed_customer, std::nullopt}});
  if (!r.ok()) return r.status();
  return (*r)[0];
}

Result<std::vector<DownAppend>> DownstreamLog::AppendOrders(const std::vector<OrderAppend>& orders) {
  for (const OrderAppend& o : orders)
    if (!o.command.has_order()) return Status::InvalidArgument("AppendOrders: orders only");
  // Site order for the lane locks; the answers go back in the input's order.
  std::vector<size_t> by_site(orders.size());
  for (size_t i = 0; i < by_site.size(); ++i) by_site[i] = i;
  std::stable_sort(by_site.begin(), by_site.end(), [&](size_t a, size_t b) { return orders[a].site < orders[b].site; });
  std::vector<DownAppend> out;
  Status s = store_.Write([&](SqlTx& tx) -> Status {
    out.assign(orders.size(), DownAppend{});  // a PostgreSQL retry starts again
    std::map<std::string, LaneRow> lanes;
    for (size_t i : by_site) {
      const OrderAppend& o = orders[i];
      auto lane = lanes.find(o.site);
      if (lane == lanes.end()) {
        auto locked = LockLane(tx, o.site);
        if (!locked.ok()) return locked.status();
        lane = lanes.emplace(o.site, *locked).first;
      }
      // A repeat must not take the allotment twice: look for the id before deciding.
      auto found = FindCommand(tx, o.site, o.command.command_id(), o.digest);
      if (!found.ok()) return found.status();
      Result<DownAppend> r = DownAppend{};
      if (*found) {
        r = **found;
      } else {
        v1::DownCommand c = o.command;
        auto taken = TakeEscrow(tx, o.site, c.order());
        if (!taken.ok()) return taken.status();
        c.mutable_order()->set_escrow(*taken);
        r = AppendLocked(tx, o.site, lane->second, c, o.digest, o.sealed_customer, /*absent=*/true);
        if (!r.ok()) return r.status();
      }
      out[i] = *r;
      if (o.audit && !r->conflict) {
        const AuditEntry& a = *o.audit;
        Status as = tx.Run(store_sql::kInsertAudit, [&](SqlParams& p) {
          p.Int(1, a.ts_ms).Text(2, a.kind).Text(3, a.actor).Text(4, a.path).UInt(5, r->down_seq).UInt(6, r->down_seq);
          p.Int(7, 1).Int(8, 202).Text(9, r->command_id);
        });
        if (!as.ok()) return as;
        out[i].audited = true;
      }
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<DownAppend> DownstreamLog::AppendNumbered(const std::string& site, v1::DownCommand command,
                                                 const std::string& key) {
  DownAppend out;
  Status s = store_.Write([&](SqlTx& tx) -> Status {
    auto lane = LockLane(tx, site);
    if (!lane.ok()) return lane.status();
    v1::DownCommand c = command;
    c.set_command_id(DownCommandId(c.kind(), key, lane->last_seq + 1));
    auto r = AppendLocked(tx, site, *lane, c, c.command_id(), "");
    if (!r.ok()) return r.status();
    out = *r;
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<int> DownstreamLog::ReturnEscrow(const std::string& site, int64_t now_ms) {
  bool any = false;
  Status s = store_.Read(kReadEscrow, [&](SqlParams& p) { p.Text(1, site); }, [&](const SqlRow& r) {
    const EscrowRow e = EscrowRowFrom(r);
    if (e.Free() > e.target) any = true;
  });
  if (!s.ok()) return s;
  if (!any) return 0;
  int appended = 0;
  s = store_.Write([&](SqlTx& tx) -> Status {
    appended = 0;
    auto lane = LockLane(tx, site);
    if (!lane.ok()) return lane.status();
    auto returns = ReturnExcess(tx, site);
    if (!returns.ok()) return returns.status();
    for (v1::EscrowReturn& ret : *returns) {
      v1::DownCommand c;
      c.set_kind(v1::DOWN_ESCROW_RETURN);
      c.set_command_id(DownCommandId(v1::DOWN_ESCROW_RETURN, ret.sku(), static_cast<uint64_t>(ret.returned())));
      c.set_issued_ms(now_ms);
      c.set_issued_by("escrow");
      *c.mutable_escrow_return() = std::move(ret);
      auto r = AppendLocked(tx, site, *lane, c, c.command_id(), "");
      if (!r.ok()) return r.status();
      ++appended;
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return appended;
}

Result<DownAppend> DownstreamLog::AppendVersioned(const std::string& site, v1::DownCommand command,
                                                  const std::string& digest,
                                                  const std::function<void(v1::DownCommand&, uint64_t)>& set_version) {
  const bool fences = command.kind() == v1::DOWN_FENCES;
  if (!fences && command.kind() != v1::DOWN_COLDCHAIN_RULES)
    return Status::InvalidArgument("AppendVersioned: fences or coldchain-rules only");
  DownAppend out;
  Status s = store_.Write([&](SqlTx& tx) -> Status {
    auto lane = LockLane(tx, site);
    if (!lane.ok()) return lane.status();
    const uint64_t current = fences ? lane->fences_version : lane->rules_version;
    const std::string& current_digest = fences ? lane->fences_digest : lane->rules_digest;
    if (current > 0 && current_digest == digest) {
      // The current version again: its command's answer (down_seq 0 once trimmed).
      out = DownAppend{};
      out.repeated = true;
      out.version = current;
      out.command_id = DownCommandId(command.kind(), "", current);
      return tx.Run(kFindCommand, [&](SqlParams& p) { p.Text(1, site).Text(2, out.command_id); },
                    [&](const SqlRow& r) { out.down_seq = r.UInt(0); });
    }
    const uint64_t version = current + 1;
    v1::DownCommand c = command;
    c.set_command_id(DownCommandId(c.kind(), "", version));
    set_version(c, version);
    auto r = AppendLocked(tx, site, *lane, c, digest, "");
    if (!r.ok()) return r.status();
    out = *r;
    out.version = version;
    Status st = tx.Run(fences ? kSetFences : kSetRules,
                       [&](SqlParams& p) { p.Text(1, site).UInt(2, version).Text(3, digest); });
    if (!st.ok()) return st;
    // The current body, apart from the log: retention trims the command once delivered.
    c.set_down_seq(0);
    const std::string body = c.SerializeAsString();
    return tx.Run(kPutCurrent, [&](SqlParams& p) {
      p.Text(1, site).Int(2, c.kind()).UInt(3, version).Blob(4, body).Int(5, c.issued_ms());
    });
  });
  if (!s.ok()) return s;
  return out;
}

Result<CatalogPut> DownstreamLog::PutCatalog(v1::CatalogItem item, const std::string& digest, int64_t now_ms,
                                             const std::string& issued_by) {
  CatalogPut out;
  Status s = store_.Write([&](SqlTx& tx) -> Status {
    out = CatalogPut{};
    bool found = false;
    uint64_t current = 0;
    std::string current_digest;
    Status st = tx.Run(kCatalogOne, [&](SqlParams& p) { p.Text(1, item.sku()); }, [&](const SqlRow& r) {
      found = true;
      current = r.UInt(0);
      current_digest = r.Text(1);
    });
    if (!st.ok()) return st;
    if (found && current_digest == digest) {
      out.unchanged = true;
      out.version = current;
      out.command_id = DownCommandId(v1::DOWN_CATALOG, item.sku(), current);
      return tx.Run(kSitesHolding, [&](SqlParams& p) { p.Text(1, out.command_id); },
                    [&](const SqlRow& r) { out.sites.emplace_back(r.Text(0), r.UInt(1)); });
    }
    out.version = current + 1;
    out.command_id = DownCommandId(v1::DOWN_CATALOG, item.sku(), out.version);
    v1::CatalogItem versioned = item;
    versioned.set_version(out.version);
    const std::string body = versioned.SerializeAsString();
    st = tx.Run(kPutCatalog, [&](SqlParams& p) {
      p.Text(1, item.sku()).UInt(2, out.version).Text(3, digest).Blob(4, body).Int(5, now_ms);
    });
    if (!st.ok()) return st;
    std::vector<std::string> sites;
    st = tx.Run(kKnownSites, {}, [&](const SqlRow& r) { sites.push_back(r.Text(0)); });
    if (!st.ok()) return st;
    // Lanes are locked in site order, so two catalog PUTs never wait on each other in a cycle.
    for (const std::string& site : sites) {
      auto lane = LockLane(tx, site);
      if (!lane.ok()) return lane.status();
      v1::DownCommand c;
      c.set_kind(v1::DOWN_CATALOG);
      c.set_command_id(out.command_id);
      c.set_issued_ms(now_ms);
      c.set_issued_by(issued_by);
      *c.mutable_catalog() = versioned;
      auto r = AppendLocked(tx, site, *lane, c, digest, "");
      if (!r.ok()) return r.status();
      out.sites.emplace_back(site, r->down_seq);
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<std::vector<v1::CatalogItem>> DownstreamLog::Catalog() {
  auto rows = CatalogRows([&](const Sql& sql, const std::function<void(const SqlRow&)>& row) {
    return store_.Read(sql, [](SqlParams&) {}, row);
  });
  if (!rows.ok()) return rows.status();
  std::vector<v1::CatalogItem> out;
  for (const CatalogRow& r : *rows) {
    v1::CatalogItem item;
    if (!item.ParseFromString(r.body)) return Status::Internal("catalog_items: a body does not parse");
    out.push_back(std::move(item));
  }
  return out;
}

Result<LaneState> DownstreamLog::Acknowledge(const std::string& site, uint64_t after, int64_t now_ms) {
  // Most pulls change nothing (the same `after` as the last one): a read, no write.
  bool found = false;
  LaneState st;
  bool seeded = false;
  Status s = store_.Read(kReadLane, [&](SqlParams& p) { p.Text(1, site); }, [&](const SqlRow& r) {
    found = true;
    st.last_seq = r.UInt(0);
    st.delivered_seq = r.UInt(1);
    seeded = r.Int(2) != 0;
  });
  if (!s.ok()) return s;
  if (found && seeded && st.delivered_seq == after && st.last_seq >= after) return st;
  s = store_.Write([&](SqlTx& tx) -> Status {
    auto lane = LockLane(tx, site);
    if (!lane.ok()) return lane.status();
    // A site ahead of the log (the hub restored from an older backup): new commands must not
    // reuse a down_seq the site has applied. The log's unacknowledged tail moves above `after`
    // too: it holds commands the site saw in the lost timeline (its dedupe by command_id makes
    // them no-ops) and ones appended since the restore, which the site would otherwise skip
    // as at or below its position: lost.
    if (lane->last_seq < after) {
      std::vector<std::pair<uint64_t, std::string>> tail;
      Status r = tx.Run(kUnacked, [&](SqlParams& p) { p.Text(1, site).UInt(2, lane->delivered_seq); },
                        [&](const SqlRow& row) { tail.emplace_back(row.UInt(0), row.Text(1)); });
      if (!r.ok()) return r;
      uint64_t next = after;
      for (const auto& [old_seq, body] : tail) {
        v1::DownCommand c;
        if (!c.ParseFromString(body)) return Status::Internal("down_commands: a body does not parse");
        c.set_down_seq(++next);
        const std::string moved = c.SerializeAsString();
        r = tx.Run(kRenumber, [&](SqlParams& p) { p.Text(1, site).UInt(2, old_seq).UInt(3, next).Blob(4, moved); });
        if (!r.ok()) return r;
      }
      lane->last_seq = next;
    }
    if (!lane->seeded) {
      auto rows = CatalogRows([&](const Sql& sql, const std::function<void(const SqlRow&)>& row) {
        return tx.Run(sql, {}, row);
      });
      if (!rows.ok()) return rows.status();
      for (const CatalogRow& row : *rows) {
        v1::DownCommand c;
        c.set_kind(v1::DOWN_CATALOG);
        if (!c.mutable_catalog()->ParseFromString(row.body)) return Status::Internal("catalog_items: a body does not parse");
        c.set_command_id(DownCommandId(v1::DOWN_CATALOG, c.catalog().sku(), row.version));
        c.set_issued_ms(now_ms);
        c.set_issued_by("catalog");
        auto r = AppendLocked(tx, site, *lane, c, row.digest, "");
        if (!r.ok()) return r.status();
      }
    }
    Status w = tx.Run(kAck, [&](SqlParams& p) { p.Text(1, site).UInt(2, after).Int(3, now_ms).UInt(4, lane->last_seq); });
    if (!w.ok()) return w;
    st.last_seq = lane->last_seq;
    st.delivered_seq = after;
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return st;
}

Result<std::vector<StoredDownCommand>> DownstreamLog::Commands(const std::string& site, uint64_t after, int limit) {
  std::vector<StoredDownCommand> out;
  bool bad = false;
  Status s = store_.Read(kCommands, [&](SqlParams& p) { p.Text(1, site).UInt(2, after).Int(3, limit); },
                         [&](const SqlRow& r) {
                           StoredDownCommand c;
                           if (!c.command.ParseFromString(r.Text(0))) bad = true;
                           c.sealed_customer = r.Text(1);
                           out.push_back(std::move(c));
                         });
  if (!s.ok()) return s;
  if (bad) return Status::Internal("down_commands: a body does not parse");
  return out;
}

Result<std::optional<CurrentCommand>> DownstreamLog::Current(const std::string& site, v1::DownKind kind) {
  std::optional<CurrentCommand> out;
  bool bad = false;
  Status s = store_.Read(kCurrent, [&](SqlParams& p) { p.Text(1, site).Int(2, kind); }, [&](const SqlRow& r) {
    CurrentCommand c;
    c.version = r.UInt(0);
    if (!c.command.ParseFromString(r.Text(1))) bad = true;
    c.command.set_down_seq(0);  // rows filled by migration 8 hold the log's copy
    c.updated_ms = r.Int(2);
    out = std::move(c);
  });
  if (!s.ok()) return s;
  if (bad) return Status::Internal("down_current: a body does not parse");
  return out;
}

Result<LaneState> DownstreamLog::Lane(const std::string& site) {
  LaneState st;
  Status s = store_.Read(kReadLane, [&](SqlParams& p) { p.Text(1, site); }, [&](const SqlRow& r) {
    st.last_seq = r.UInt(0);
    st.delivered_seq = r.UInt(1);
  });
  if (!s.ok()) return s;
  s = store_.Read(kPending, [&](SqlParams& p) { p.Text(1, site).UInt(2, st.delivered_seq); }, [&](const SqlRow& r) {
    st.pending = r.UInt(0);
    st.oldest_pending_ms = r.Int(1);
  });
  if (!s.ok()) return s;
  return st;
}

Result<std::vector<std::pair<std::string, LaneState>>> DownstreamLog::Lanes() {
  std::vector<std::pair<std::string, LaneState>> out;
  Status s = store_.Read(kLanes, [](SqlParams&) {}, [&](const SqlRow& r) {
    LaneState st;
    st.last_seq = r.UInt(1);
    st.delivered_seq = r.UInt(2);
    st.pending = st.last_seq > st.delivered_seq ? st.last_seq - st.delivered_seq : 0;
    out.emplace_back(r.Text(0), st);
  });
  if (!s.ok()) return s;
  return out;
}

Status DownstreamLog::Trim(int64_t cutoff_ms) {
  return store_.Write([&](SqlTx& tx) { return tx.Run(kTrim, [&](SqlParams& p) { p.Int(1, cutoff_ms); }); });
}

}  // namespace freshsync::hub
