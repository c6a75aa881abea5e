#include "edge/outbox_writer.h"

#include <sqlite3.h>

#include <string>

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
      db, {{"INSERT INTO entity_versions(entity, key, version) VALUES (?1, ?2, 1) "
            "ON CONFLICT(entity, key) DO UPDATE SET version = version + 1 RETURNING version",
            &w->version_},
           {kNextSeqSql.c_str(), &w->next_seq_stmt_},
           {"INSERT INTO outbox(seq, entity, key, version, hlc, priority, created_ms, record) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
            &w->insert_},
           {"UPDATE edge_meta SET value = ?1 WHERE name = 'hlc_last'", &w->hlc_save_}});
  if (!prepared.ok()) return prepared;
  auto recover = sqlite::PrepareOn(db, kRecoverHlcSql.c_str());
  if (!recover.ok()) return recover.status();
  const int rc = recover->Step();
  if (rc != SQLITE_ROW) return sqlite::StatusFor(rc, "outbox: reading the last hlc", db);
  w->hlc_.Observe(recover->UInt(0));
  return w;
}

Result<int64_t> OutboxWriter::NextVersion(int entity, const std::string& key) {
  sqlite::ResetGuard g(version_, true);
  if (version_.Bind(1, entity).Bind(2, key).Step() != SQLITE_ROW) return sqlite::LastError(db_, "entity version");
  const int64_t v = version_.Int(0);
  (void)version_.Step();  // finish the RETURNING statement
  return v;
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
  const int64_t seq = next_seq_++;
  appended_ = true;
  const uint64_t hlc = hlc_.Now();
  record.set_seq(static_cast<uint64_t>(seq));
  record.set_entity(static_cast<v1::Entity>(entity));
  record.set_key(key);
  record.set_version(static_cast<uint64_t>(version));
  record.set_hlc(hlc);
  record.set_ts_ms(ts_ms);
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

Result<int64_t> OutboxWriter::AppendNext(int entity, const std::string& key, int lane, int64_t ts_ms,
                                         v1::ChangeRecord& record, int64_t now_ms) {
  auto version = NextVersion(entity, key);
  if (!version.ok()) return version.status();
  return Append(entity, key, *version, lane, ts_ms, record, now_ms);
}

}  // namespace freshsync::edge
