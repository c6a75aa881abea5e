#include "hub/store_copy.h"

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

namespace freshsync::hub {
namespace {

// Reads of the source. Plain SQL valid in both dialects (the source is SQLite in practice).
constexpr Sql kHeldRecords{
    "SELECT c.seq, c.record FROM changes c JOIN sites s ON s.site_id = c.site_id "
    "WHERE s.site = ?1 AND c.seq >= ?2 AND c.seq <= ?3 ORDER BY c.seq"};
constexpr Sql kRefusedRecords{
    "SELECT r.seq, r.entity, r.version, r.key, r.reason FROM refused_records r JOIN sites s ON s.site_id = r.site_id "
    "WHERE s.site = ?1 AND r.seq >= ?2 AND r.seq <= ?3 ORDER BY r.seq"};
// The lowest seq held above `after` (changes or refused): where the next urgent page starts.
constexpr Sql kNextHeldSeq{
    "SELECT min(seq) FROM (SELECT min(c.seq) AS seq FROM changes c JOIN sites s ON s.site_id = c.site_id "
    "WHERE s.site = ?1 AND c.seq > ?2 UNION ALL SELECT min(r.seq) FROM refused_records r JOIN sites s ON "
    "s.site_id = r.site_id WHERE s.site = ?1 AND r.seq > ?2) AS t"};
constexpr Sql kLane{
    "SELECT last_seq, delivered_seq, delivered_ms, seeded, fences_version, fences_digest, rules_version, rules_digest "
    "FROM down_lanes WHERE site = ?1"};
constexpr Sql kCommands{
    "SELECT down_seq, kind, command_id, digest, body, sealed, sealed IS NULL, issued_ms, issued_by FROM down_commands "
    "WHERE site = ?1 AND down_seq > ?2 ORDER BY down_seq LIMIT 500"};
constexpr Sql kCatalog{"SELECT sku, version, digest, body, updated_ms FROM catalog_items WHERE sku > ?1 ORDER BY sku LIMIT 500"};
constexpr Sql kEscrowHubCounters{
    "SELECT e.sku, e.returned, e.used FROM escrow e JOIN sites s ON s.site_id = e.site_id WHERE s.site = ?1 ORDER BY e.sku"};

// Writes to the target. ON CONFLICT DO NOTHING is valid in SQLite and PostgreSQL alike: rows
// the target already has (an earlier run's copy) stay as they are.
constexpr Sql kInsertLane{
    "INSERT INTO down_lanes(site, last_seq, delivered_seq, delivered_ms, seeded, fences_version, fences_digest, "
    "rules_version, rules_digest) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING"};
constexpr Sql kInsertCommand{
    "INSERT INTO down_commands(site, down_seq, kind, command_id, digest, body, sealed, issued_ms, issued_by) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT DO NOTHING"};
constexpr Sql kInsertCatalog{
    "INSERT INTO catalog_items(sku, version, digest, body, updated_ms) VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING"};
constexpr Sql kSetEscrowHubCounters{
    "UPDATE escrow SET returned = ?3, used = ?4 WHERE site_id = (SELECT site_id FROM sites WHERE site = ?1) AND sku = ?2"};
constexpr Sql kInsertAudit{
    "INSERT INTO audit(ts_ms, kind, actor, path, seq_from, seq_to, count, status, detail) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"};
constexpr Sql kSetCursor{
    "INSERT INTO relay_cursors(name, cursor) VALUES(?1, ?2) ON CONFLICT(name) DO UPDATE SET cursor = excluded.cursor"};

class Copier {
 public:
  Copier(HubStore& from, HubStore& to, int64_t now_ms, const StoreCopyOptions& o) : from_(from), to_(to), now_ms_(now_ms), o_(o) {}

  Result<StoreCopyReport> Run() {
    auto sites = from_.Sites();
    if (!sites.ok()) return sites.status();
    for (const SiteInfo& site : *sites) {
      if (Status s = CopyRecords(site); !s.ok()) return s;
      if (Status s = CopyLane(site.site); !s.ok()) return s;
      if (Status s = CopyEscrowCounters(site.site); !s.ok()) return s;
      ++report_.sites;
    }
    if (Status s = CopyCatalog(); !s.ok()) return s;
    if (Status s = CopyAudit(); !s.ok()) return s;
    return report_;
  }

 private:
  void Say(const std::string& line) {
    if (o_.progress) o_.progress(line);
  }

  // The records and refused seqs of `site` with first <= seq <= last, in seq order, as one
  // batch, with the refusal reason of each refused one.
  Status ReadRange(const std::string& site, uint64_t first, uint64_t last, v1::Batch* batch, std::vector<std::string>* refusals) {
    std::map<uint64_t, std::pair<v1::ChangeRecord, std::string>> by_seq;
    Status parse_error = Status::Ok();
    auto bind = [&](SqlParams& p) { p.Text(1, site).UInt(2, first).UInt(3, last); };
    Status s = from_.Read(kHeldRecords, bind, [&](const SqlRow& row) {
      v1::ChangeRecord r;
      if (!r.ParseFromString(row.Text(1))) parse_error = Status::Internal(site + " seq " + std::to_string(row.UInt(0)) + ": record does not parse");
      by_seq[row.UInt(0)].first = std::move(r);
    });
    if (!s.ok()) return s;
    if (!parse_error.ok()) return parse_error;
    s = from_.Read(kRefusedRecords, bind, [&](const SqlRow& row) {
      // The record itself was never kept; its seq, entity, version, key and reason were, and
      // that is all the target's quarantine row holds.
      v1::ChangeRecord r;
      r.set_seq(row.UInt(0));
      r.set_entity(static_cast<v1::Entity>(row.Int(1)));
      r.set_version(row.UInt(2));
      r.set_key(row.Text(3));
      by_seq[row.UInt(0)] = {std::move(r), row.Text(4).empty() ? std::string("refused") : row.Text(4)};
    });
    if (!s.ok()) return s;
    batch->set_site(site);
    for (auto& [seq, rec] : by_seq) {
      *batch->add_records() = std::move(rec.first);
      refusals->push_back(std::move(rec.second));
    }
    return Status::Ok();
  }

  Status Apply(const std::string& site, const v1::Batch& batch, const std::vector<std::string>& refusals) {
    if (o_.stop_after_batches_for_test > 0 && applied_batches_ >= o_.stop_after_batches_for_test)
      return Status::Unavailable("stopped after " + std::to_string(applied_batches_) + " batches (test)");
    ApplyChecks checks;
    const bool any_refused = std::any_of(refusals.begin(), refusals.end(), [](const std::string& r) { return !r.empty(); });
    if (any_refused) checks.refusals = &refusals;
    auto r = to_.ApplyBatch(site, batch, now_ms_, nullptr, checks);
    if (!r.ok()) return r.status();
    if (r->gap || r->over_quota)  // cannot be: the batch starts at the target's contiguous + 1, no quota
      return Status::Internal(site + ": the target refused seqs " + std::to_string(batch.records(0).seq()) + ".." +
                              std::to_string(batch.records(batch.records_size() - 1).seq()));
    ++applied_batches_;
    report_.records += r->applied;
    report_.refused += r->refused;
    return Status::Ok();
  }

  Status CopyRecords(const SiteInfo& site) {
    auto done = to_.ContiguousSeq(site.site);
    if (!done.ok()) return done.status();
    const uint64_t start = *done;
    // Up to the source's contiguous seq: normal batches, each consecutive from the target's
    // contiguous + 1 (the source holds every seq there, as a record or a refused row).
    for (uint64_t first = *done + 1; first <= site.contiguous_seq;) {
      const uint64_t last = std::min<uint64_t>(site.contiguous_seq, first + static_cast<uint64_t>(o_.page) - 1);
      v1::Batch batch;
      std::vector<std::string> refusals;
      if (Status s = ReadRange(site.site, first, last, &batch, &refusals); !s.ok()) return s;
      if (static_cast<uint64_t>(batch.records_size()) != last - first + 1)
        return Status::Internal(site.site + ": the source holds " + std::to_string(batch.records_size()) + " of seqs " +
                                  std::to_string(first) + ".." + std::to_string(last) + " below its contiguous seq");
      if (Status s = Apply(site.site, batch, refusals); !s.ok()) return s;
      first = last + 1;
    }
    // Held above the contiguous seq (urgent records ahead of a gap): urgent batches, which hold
    // their records without moving contiguous; already held ones count as duplicates.
    uint64_t after = site.contiguous_seq;
    while (after < site.max_seq) {
      uint64_t next = 0;
      Status s = from_.Read(kNextHeldSeq, [&](SqlParams& p) { p.Text(1, site.site).UInt(2, after); },
                            [&](const SqlRow& row) { next = row.UInt(0); });
      if (!s.ok()) return s;
      if (next == 0) break;
      const uint64_t last = std::min<uint64_t>(site.max_seq, next + static_cast<uint64_t>(o_.page) - 1);
      v1::Batch batch;
      std::vector<std::string> refusals;
      if (s = ReadRange(site.site, next, last, &batch, &refusals); !s.ok()) return s;
      batch.set_urgent(true);
      if (s = Apply(site.site, batch, refusals); !s.ok()) return s;
      after = last;
    }
    Say(site.site + ": records up to seq " + std::to_string(site.contiguous_seq) + " (" +
        (start == 0 ? "copied" : "resumed after seq " + std::to_string(start)) + ")" +
        (site.max_seq > site.contiguous_seq ? ", held above it up to " + std::to_string(site.max_seq) : ""));
    return Status::Ok();
  }

  Status CopyLane(const std::string& site) {
    bool has_lane = false;
    Status s = from_.Read(kLane, [&](SqlParams& p) { p.Text(1, site); }, [&](const SqlRow& row) {
      has_lane = true;
      lane_ = {row.Int(0), row.Int(1), row.Int(2), row.Int(3), row.Int(4), row.Text(5), row.Int(6), row.Text(7)};
    });
    if (!s.ok() || !has_lane) return s;
    s = to_.Write([&](SqlTx& tx) {
      return tx.Run(kInsertLane, [&](SqlParams& p) {
        p.Text(1, site).Int(2, lane_.last_seq).Int(3, lane_.delivered_seq).Int(4, lane_.delivered_ms).Int(5, lane_.seeded);
        p.Int(6, lane_.fences_version).Text(7, lane_.fences_digest).Int(8, lane_.rules_version).Text(9, lane_.rules_digest);
      });
    });
    if (!s.ok()) return s;
    uint64_t copied = 0;
    for (int64_t after = 0;;) {
      struct Command {
        int64_t down_seq, kind;
        std::string command_id, digest, body, sealed;
        bool sealed_null;
        int64_t issued_ms;
        std::string issued_by;
      };
      std::vector<Command> page;
      s = from_.Read(kCommands, [&](SqlParams& p) { p.Text(1, site).Int(2, after); }, [&](const SqlRow& row) {
        page.push_back({row.Int(0), row.Int(1), row.Text(2), row.Text(3), row.Text(4), row.Text(5), row.Int(6) != 0, row.Int(7), row.Text(8)});
      });
      if (!s.ok()) return s;
      if (page.empty()) break;
      s = to_.Write([&](SqlTx& tx) {
        for (const Command& c : page) {
          Status w = tx.Run(kInsertCommand, [&](SqlParams& p) {
            p.Text(1, site).Int(2, c.down_seq).Int(3, c.kind).Text(4, c.command_id).Text(5, c.digest).Blob(6, c.body);
            if (c.sealed_null) p.Null(7);
            else p.Blob(7, c.sealed);
            p.Int(8, c.issued_ms).Text(9, c.issued_by);
          });
          if (!w.ok()) return w;
        }
        return Status::Ok();
      });
      if (!s.ok()) return s;
      copied += page.size();
      after = page.back().down_seq;
    }
    report_.commands += copied;
    Say(site + ": downstream lane at down_seq " + std::to_string(lane_.last_seq) + " (delivered " +
        std::to_string(lane_.delivered_seq) + "), " + std::to_string(copied) + " commands held");
    return Status::Ok();
  }

  Status CopyEscrowCounters(const std::string& site) {
    std::vector<std::tuple<std::string, int64_t, int64_t>> rows;
    Status s = from_.Read(kEscrowHubCounters, [&](SqlParams& p) { p.Text(1, site); },
                          [&](const SqlRow& row) { rows.emplace_back(row.Text(0), row.Int(1), row.Int(2)); });
    if (!s.ok() || rows.empty()) return s;
    return to_.Write([&](SqlTx& tx) {
      for (const auto& [sku, returned, used] : rows) {
        Status w = tx.Run(kSetEscrowHubCounters, [&](SqlParams& p) { p.Text(1, site).Text(2, sku).Int(3, returned).Int(4, used); });
        if (!w.ok()) return w;
      }
      return Status::Ok();
    });
  }

  Status CopyCatalog() {
    for (std::string after;;) {
      std::vector<std::tuple<std::string, int64_t, std::string, std::string, int64_t>> page;
      Status s = from_.Read(kCatalog, [&](SqlParams& p) { p.Text(1, after); }, [&](const SqlRow& row) {
        page.emplace_back(row.Text(0), row.Int(1), row.Text(2), row.Text(3), row.Int(4));
      });
      if (!s.ok()) return s;
      if (page.empty()) break;
      s = to_.Write([&](SqlTx& tx) {
        for (const auto& [sku, version, digest, body, updated_ms] : page) {
          Status w = tx.Run(kInsertCatalog, [&](SqlParams& p) { p.Text(1, sku).Int(2, version).Text(3, digest).Blob(4, body).Int(5, updated_ms); });
          if (!w.ok()) return w;
        }
        return Status::Ok();
      });
      if (!s.ok()) return s;
      report_.catalog += page.size();
      after = std::get<0>(page.back());
    }
    Say("catalog: " + std::to_string(report_.catalog) + " items");
    return Status::Ok();
  }

  // The audit log, after the last entry an earlier run copied; each page and the cursor in
  // one transaction, so a rerun neither repeats nor skips an entry.
  Status CopyAudit() {
    auto cursor = to_.RelayCursor(kAuditCursor);
    if (!cursor.ok()) return cursor.status();
    for (uint64_t after = *cursor;;) {
      auto page = from_.Audit(after, 1000);
      if (!page.ok()) return page.status();
      if (page->empty()) break;
      Status s = to_.Write([&](SqlTx& tx) {
        for (const AuditEntry& e : *page) {
          Status w = tx.Run(kInsertAudit, [&](SqlParams& p) {
            p.Int(1, e.ts_ms).Text(2, e.kind).Text(3, e.actor).Text(4, e.path).UInt(5, e.seq_from).UInt(6, e.seq_to);
            p.UInt(7, e.count).Int(8, e.status).Text(9, e.detail);
          });
          if (!w.ok()) return w;
        }
        return tx.Run(kSetCursor, [&](SqlParams& p) { p.Text(1, kAuditCursor).UInt(2, page->back().id); });
      });
      if (!s.ok()) return s;
      report_.audit += page->size();
      after = page->back().id;
    }
    Say("audit: " + std::to_string(report_.audit) + " entries");
    return Status::Ok();
  }

  struct Lane {
    int64_t last_seq = 0, delivered_seq = 0, delivered_ms = 0, seeded = 0, fences_version = 0;
    std::string fences_digest;
    int64_t rules_version = 0;
    std::string rules_digest;
  };

  HubStore& from_;
  HubStore& to_;
  const int64_t now_ms_;
  const StoreCopyOptions& o_;
  StoreCopyReport report_;
  Lane lane_;
  int64_t applied_batches_ = 0;
};

}  // namespace

Result<StoreCopyReport> CopyHubStore(HubStore& from, HubStore& to, int64_t now_ms, const StoreCopyOptions& options) {
  return Copier(from, to, now_ms, options).Run();
}

}  // namespace freshsync::hub
