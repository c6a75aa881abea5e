#include "edge/outbox_writer.h"

#include <sqlite3.h>

#include <algorithm>
#include <string>
#include <vector>

#include "audit/chain.h"
#include "freshsync.pb.h"

namespace freshsync::edge {

namespace {

// The persisted values an HLC must stay above, read through primary keys only: edge_meta's
// hlc_last covers rows the sync agent or the quota have since trimmed, and since hlc is issued
// in seq order (outbox_writer.h) the newest rows by seq hold the highest hlc of what is left.
// At open the newest 1000 rows are read, so a writer of an older binary that did not keep that
// order cannot make the HLC go back; per transaction the newest row is enough.
const std::string kRecoverHlcSql =
    "SELECT max(IFNULL((SELECT value FROM edge_meta WHERE name = 'hlc_last'), 0), "
    "IFNULL((SELECT MAX(hlc) FROM (SELECT hlc FROM outbox ORDER BY seq DESC LIMIT 1000)), 0))";
const std::string kNextSeqSql =
    std::string("SELECT ") + kLastIssuedSeqSql +
    " + 1, max(IFNULL((SELECT value FROM edge_meta WHERE name = 'hlc_last'), 0), "
    "IFNULL((SELECT hlc FROM outbox ORDER BY seq DESC LIMIT 1), 0))";

}  // namespace

Result<std::unique_ptr<OutboxWriter>> OutboxWriter::Open(sqlite3* db, Clock& clock) {
  std::unique_ptr<OutboxWriter> w(new OutboxWriter(db, clock));
  Status prepared = sqlite::PrepareAllOn(
      db, {// Read, then write the next: an UPSERT ... RETURNING did it in one statement but SQLite
           // runs every RETURNING through an ephemeral table (open, begin, insert, close per
           // execution): 31k of edged's 80k instructions per GPS fix (docs/benchmarks.md).
           {"SELECT version FROM entity_versions WHERE entity = ?1 AND key = ?2", &w->version_get_},
           {"UPDATE entity_versions SET version = ?3 WHERE entity = ?1 AND key = ?2", &w->version_put_},
           {"INSERT INTO entity_versions(entity, key, version) VALUES (?1, ?2, 1)", &w->version_new_},
           {kNextSeqSql.c_str(), &w->next_seq_stmt_},
           {"INSERT INTO outbox(seq, entity, key, version, hlc, priority, created_ms, record) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
            &w->insert_},
           {"UPDATE edge_meta SET value = ?1 WHERE name = 'hlc_last'", &w->hlc_save_}});
  if (!prepared.ok()) return prepared;
  prepared = sqlite::PrepareAllOn(
      db, {{"SELECT last_index, last_hash, last_ts_ms, sealed_index FROM coldchain_heads WHERE sensor = ?1", &w->head_get_},
           {"INSERT INTO coldchain_heads(sensor, last_index, last_hash, last_ts_ms, sealed_index) VALUES (?1,?2,?3,?4,?5) "
            "ON CONFLICT(sensor) DO UPDATE SET last_index = excluded.last_index, last_hash = excluded.last_hash, "
            "last_ts_ms = excluded.last_ts_ms, sealed_index = excluded.sealed_index",
            &w->head_put_},
           {"INSERT INTO coldchain_links(sensor, idx, seq, ts_ms, chain_prev, chain_hash, alert) VALUES (?1,?2,?3,?4,?5,?6,?7)",
            &w->link_put_},
           {"SELECT MIN(ts_ms), MAX(ts_ms) FROM coldchain_links WHERE sensor = ?1 AND idx BETWEEN ?2 AND ?3", &w->link_range_},
           {"INSERT OR REPLACE INTO coldchain_seals(sensor, last_index, seq, seal) VALUES (?1,?2,?3,?4)", &w->seal_put_}});
  if (!prepared.ok()) return prepared;
  auto recover = sqlite::PrepareOn(db, kRecoverHlcSql.c_str());
  if (!recover.ok()) return recover.status();
  const int rc = recover->Step();
  if (rc != SQLITE_ROW) return sqlite::StatusFor(rc, "outbox: reading the last hlc", db);
  w->hlc_.Observe(recover->UInt(0));
  return w;
}

Result<int64_t> OutboxWriter::NextVersion(int entity, const std::string& key) {
  // A batch of 2048 GPS fixes names ~20 vehicles: the versions this transaction wrote are
  // remembered until it ends, so only the first record of a key reads its row.
  auto [it, first] = versions_.try_emplace({entity, key}, 0);
  if (first) {
    sqlite::ResetGuard g(version_get_, true);
    const int rc = version_get_.Bind(1, entity).Bind(2, key).Step();
    if (rc == SQLITE_ROW) {
      it->second = version_get_.Int(0);
    } else if (rc != SQLITE_DONE) {
      versions_.erase(it);
      return sqlite::LastError(db_, "entity version");
    }
  }
  const int64_t next = it->second + 1;
  sqlite::Stmt& put = next == 1 ? version_new_ : version_put_;
  sqlite::ResetGuard g(put, true);
  put.Bind(1, entity).Bind(2, key);
  if (next > 1) put.Bind(3, next);
  if (put.Step() != SQLITE_DONE) {
    versions_.erase(it);  // the row is as it was, or the transaction is gone: read it again
    return sqlite::LastError(db_, "entity version");
  }
  it->second = next;
  return next;
}

Result<int64_t> OutboxWriter::Append(int entity, const std::string& key, int64_t version, int lane, int64_t ts_ms,
                                     v1::ChangeRecord& record, int64_t now_ms) {
  if (next_seq_ == 0) {
    sqlite::ResetGuard g(next_seq_stmt_);
    if (next_seq_stmt_.Step() != SQLITE_ROW) return sqlite::LastError(db_, "next seq");
    next_seq_ = next_seq_stmt_.Int(0);
    // Only a value another connection issued moves the clock: observing our own would tick
    // the logical counter for nothing.
    if (const uint64_t persisted = next_seq_stmt_.UInt(1); persisted > hlc_.Last()) hlc_.Observe(persisted);
  }
  int64_t seq = next_seq_++;
  appended_ = true;
  uint64_t hlc = hlc_.Now();
  record.set_seq(static_cast<uint64_t>(seq));
  record.set_entity(static_cast<v1::Entity>(entity));
  record.set_key(key);
  record.set_version(static_cast<uint64_t>(version));
  record.set_hlc(hlc);
  record.set_ts_ms(ts_ms);
  if (const std::string sensor = audit::ChainSensor(record); !sensor.empty()) {
    if (Status s = Chain(sensor, record, now_ms); !s.ok()) return s;
    // A seal may have been appended ahead of the link: it took this seq, the link the next.
    seq = static_cast<int64_t>(record.seq());
    hlc = record.hlc();
  }
  {
    sqlite::ResetGuard g(insert_, true);
    const int rc = insert_.Bind(1, seq)
                       .Bind(2, entity)
                       .Bind(3, key)
                       .Bind(4, version)
                       .Bind(5, static_cast<int64_t>(hlc))
                       .Bind(6, lane)
                       .Bind(7, now_ms)
                       .BindBlob(8, record.SerializeAsString())
                       .Step();
    if (rc != SQLITE_DONE) return sqlite::LastError(db_, "outbox");
  }
  // Every value issued is in an outbox row of the same transaction, so edge_meta only has to
  // cover rows trimmed since (acked, and older than the retention or dropped by the quota);
  // writing it once a second rather than per record saves a page write per commit.
  if (now_ms - hlc_saved_ms_ >= 1000 || now_ms < hlc_saved_ms_) {
    sqlite::ResetGuard g(hlc_save_, true);
    if (hlc_save_.Bind(1, static_cast<int64_t>(hlc)).Step() != SQLITE_DONE) return sqlite::LastError(db_, "hlc");
    hlc_saved_ms_ = now_ms;  // if this transaction rolls back we merely save again sooner or later
  }
  return seq;
}

Status OutboxWriter::Chain(const std::string& sensor, v1::ChangeRecord& record, int64_t now_ms) {
  constexpr int64_t kHourMs = 3'600'000;
  uint64_t last_index = 0, sealed_index = 0;
  int64_t last_ts_ms = 0;
  std::string prev = audit::GenesisHash();
  {
    sqlite::ResetGuard g(head_get_, true);
    const int rc = head_get_.Bind(1, sensor).Step();
    if (rc == SQLITE_ROW) {
      last_index = head_get_.UInt(0);
      prev = head_get_.Text(1);
      last_ts_ms = head_get_.Int(2);
      sealed_index = head_get_.UInt(3);
    } else if (rc != SQLITE_DONE) {
      return sqlite::LastError(db_, "coldchain head");
    }
  }
  // The hour closes at the sensor's first link of a later hour, on the records' own time, so a
  // replay seals the same links as live traffic did. The seal takes a seq of its own before
  // the link's (Append is re-entered: a seal is not a link).
  if (signing_key_ != nullptr && last_index > sealed_index &&
      record.ts_ms() / kHourMs > last_ts_ms / kHourMs) {
    const uint64_t link_seq = record.seq();
    next_seq_ = static_cast<int64_t>(link_seq);  // the seal goes in the link's place...
    if (Status s = Seal(sensor, sealed_index + 1, last_index, prev, now_ms); !s.ok()) return s;
    sealed_index = last_index;
    record.set_seq(static_cast<uint64_t>(next_seq_++));  // ...and the link after it
    record.set_hlc(hlc_.Now());
  }
  const uint64_t index = last_index + 1;
  record.set_chain_index(index);
  record.set_chain_prev(prev);
  std::string hash = audit::NextHash(prev, audit::CanonicalBytes(audit::LinkOf(record)));
  record.set_chain_hash(hash);
  {
    sqlite::ResetGuard g(link_put_, true);
    link_put_.Bind(1, sensor).Bind(2, static_cast<int64_t>(index)).Bind(3, static_cast<int64_t>(record.seq()));
    link_put_.Bind(4, record.ts_ms()).BindBlob(5, prev).BindBlob(6, hash);
    if (record.has_alert()) link_put_.BindBlob(7, record.alert().SerializeAsString());
    else link_put_.BindNull(7);
    if (link_put_.Step() != SQLITE_DONE) return sqlite::LastError(db_, "coldchain link");
  }
  sqlite::ResetGuard g(head_put_, true);
  head_put_.Bind(1, sensor).Bind(2, static_cast<int64_t>(index)).BindBlob(3, hash);
  head_put_.Bind(4, std::max(record.ts_ms(), last_ts_ms)).Bind(5, static_cast<int64_t>(sealed_index));
  if (head_put_.Step() != SQLITE_DONE) return sqlite::LastError(db_, "coldchain head");
  return Status::Ok();
}

Status OutboxWriter::Seal(const std::string& sensor, uint64_t first, uint64_t last, const std::string& last_hash,
                          int64_t now_ms) {
  v1::ChangeRecord rec;
  auto* s = rec.mutable_seal();
  s->set_sensor(sensor);
  s->set_first_index(first);
  s->set_last_index(last);
  s->set_count(last - first + 1);
  s->set_last_hash(last_hash);
  {
    sqlite::ResetGuard g(link_range_, true);
    if (link_range_.Bind(1, sensor).Bind(2, static_cast<int64_t>(first)).Bind(3, static_cast<int64_t>(last)).Step() !=
        SQLITE_ROW)
      return sqlite::LastError(db_, "coldchain seal range");
    s->set_first_ts_ms(link_range_.Int(0));
    s->set_last_ts_ms(link_range_.Int(1));
  }
  s->set_public_key(signing_key_->public_key());
  s->set_signature(signing_key_->Sign(audit::SealBytes(*s)));
  auto seq = AppendNext(v1::COLDCHAIN_SEAL, sensor, kPriorityLane, s->last_ts_ms(), rec, now_ms);
  if (!seq.ok()) return seq.status();
  sqlite::ResetGuard g(seal_put_, true);
  seal_put_.Bind(1, sensor).Bind(2, static_cast<int64_t>(last)).Bind(3, *seq).BindBlob(4, s->SerializeAsString());
  if (seal_put_.Step() != SQLITE_DONE) return sqlite::LastError(db_, "coldchain seal");
  return Status::Ok();
}

Result<int64_t> OutboxWriter::AppendNext(int entity, const std::string& key, int lane, int64_t ts_ms,
                                         v1::ChangeRecord& record, int64_t now_ms) {
  auto version = NextVersion(entity, key);
  if (!version.ok()) return version.status();
  return Append(entity, key, *version, lane, ts_ms, record, now_ms);
}

}  // namespace freshsync::edge
