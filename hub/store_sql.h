// The statements of the stores' own tables (sites, changes, vehicles, position_chunks, audit,
// refused_records, site_usage, and stock for the state digest and rebuild-state) that both
// stores run: SqliteHubStore as written, PgHubStore through PostgresText (hub/pg_store.h), the
// `postgres` member only where the dialects differ (hub/sql.h). The entities' statements are
// their handlers' (hub/entity_routes.cc); the DDL is in each store's migrations.
#pragma once

#include "hub/sql.h"

namespace freshsync::hub::store_sql {

inline constexpr Sql kContiguousSeq{"SELECT contiguous_seq FROM sites WHERE site = ?1"};
// The feed: up to ?2 changes after cursor ?1 (SQLite; PgHubStore::Changes also stops below its
// horizon, pg_store.cc).
inline constexpr Sql kChangesAfter{
    "SELECT c.cursor, s.site, c.record FROM changes c JOIN sites s ON s.site_id = c.site_id "
    "WHERE c.cursor > ?1 ORDER BY c.cursor LIMIT ?2"};
inline constexpr Sql kSites{"SELECT site, contiguous_seq, max_seq, records, last_push_ms FROM sites ORDER BY site"};
// Track: the chunks of site ?1, vehicle ?2 with ts_min in [?3, ?4] and ts_max >= ?5. A chunk
// spans at most kChunkMaxSpanMs, so one that holds a fix at or after `from` starts no earlier
// than from - kChunkMaxSpanMs (?3): an index range scan, however long the history.
inline constexpr Sql kTrackChunks{
    "SELECT ts_min, count, fixes FROM position_chunks "
    "WHERE site_id = (SELECT site_id FROM sites WHERE site = ?1) AND vehicle = ?2 AND ts_min BETWEEN ?3 AND ?4 "
    "AND ts_max >= ?5 ORDER BY ts_min, seq_min"};
// Digest of site ?1's seqs in [?2, ?3]. Quarantined records count as held (their seq is
// acknowledged), so the edge's digest of the range matches and reconciliation does not re-send
// them; a record whose key broke the rules has no key here, its bucket differs, and the
// re-send is answered as duplicates.
inline constexpr Sql kDigestRows{
    "SELECT c.seq, c.entity, c.version, c.key FROM changes c "
    "WHERE c.site_id = (SELECT site_id FROM sites WHERE site = ?1) AND c.seq BETWEEN ?2 AND ?3 "
    "UNION ALL SELECT q.seq, q.entity, q.version, q.key FROM refused_records q "
    "WHERE q.site_id = (SELECT site_id FROM sites WHERE site = ?1) AND q.seq BETWEEN ?2 AND ?3 ORDER BY 1"};
// State digest of site ?1. ORDER BY sku is bytewise, as the edge sorts (wire/digest.h):
// SQLite's BINARY collation, PostgreSQL's COLLATE "C" on stock.sku.
inline constexpr Sql kStateDigestRows{
    "SELECT sku, on_hand, reserved, version FROM stock "
    "WHERE site_id = (SELECT site_id FROM sites WHERE site = ?1) ORDER BY sku"};
inline constexpr Sql kInsertAudit{
    "INSERT INTO audit(ts_ms, kind, actor, path, seq_from, seq_to, count, status, detail) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"};
inline constexpr Sql kAuditAfter{
    "SELECT id, ts_ms, kind, actor, path, seq_from, seq_to, count, status, detail FROM audit WHERE id > ?1 "
    "ORDER BY id LIMIT ?2"};
// Latest position: the greater (ts_ms, hlc) wins (docs/conflicts.md).
inline constexpr Sql kUpsertVehicle{
    "INSERT INTO vehicles(vehicle, site_id, device_seq, lat_e6, lon_e6, speed_dkmh, heading_deg, hdop_d, ts_ms, hlc, seq) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
    "ON CONFLICT(vehicle) DO UPDATE SET site_id = excluded.site_id, device_seq = excluded.device_seq, "
    "lat_e6 = excluded.lat_e6, lon_e6 = excluded.lon_e6, speed_dkmh = excluded.speed_dkmh, "
    "heading_deg = excluded.heading_deg, hdop_d = excluded.hdop_d, ts_ms = excluded.ts_ms, hlc = excluded.hlc, "
    "seq = excluded.seq WHERE (excluded.ts_ms, excluded.hlc) > (vehicles.ts_ms, vehicles.hlc)"};
// Telemetry retention: the chunks whose newest fix is older than ?1 (HubStore::MaintainTelemetry).
inline constexpr Sql kDeleteOldChunks{"DELETE FROM position_chunks WHERE ts_max < ?1"};
// The climate history's retention on SQLite (the table is ClimateHandler's, entity_routes.cc).
inline constexpr Sql kDeleteOldReadings{"DELETE FROM climate_readings WHERE ts_ms < ?1"};
// PostgreSQL: kUpsertVehicle for a batch's vehicles at once, $k the array of kUpsertVehicle's
// ?k (PgHubStore; one row per vehicle).
inline constexpr const char* kUpsertVehicles =
    "INSERT INTO vehicles(vehicle, site_id, device_seq, lat_e6, lon_e6, speed_dkmh, heading_deg, hdop_d, ts_ms, hlc, seq) "
    "SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], "
    "$7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[]) "
    "ON CONFLICT(vehicle) DO UPDATE SET site_id = excluded.site_id, device_seq = excluded.device_seq, "
    "lat_e6 = excluded.lat_e6, lon_e6 = excluded.lon_e6, speed_dkmh = excluded.speed_dkmh, "
    "heading_deg = excluded.heading_deg, hdop_d = excluded.hdop_d, ts_ms = excluded.ts_ms, hlc = excluded.hlc, "
    "seq = excluded.seq WHERE (excluded.ts_ms, excluded.hlc) > (vehicles.ts_ms, vehicles.hlc)";
// (SQLite; PgHubStore sends a batch's chunks by one binary COPY.)
inline constexpr Sql kInsertChunk{
    "INSERT INTO position_chunks(site_id, vehicle, ts_min, seq_min, ts_max, count, fixes) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"};
inline constexpr Sql kUpdateSite{
    "UPDATE sites SET contiguous_seq = ?2, max_seq = ?3, records = records + ?4, last_push_ms = ?5 WHERE site_id = ?1"};
inline constexpr Sql kQuarantine{
    "INSERT OR IGNORE INTO refused_records(site_id, seq, entity, version, key, field, reason, received_ms) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    "INSERT INTO refused_records(site_id, seq, entity, version, key, field, reason, received_ms) "
    "VALUES($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"};
inline constexpr Sql kSiteUsage{"SELECT bytes FROM site_usage WHERE site_id = ?1 AND day = ?2"};
inline constexpr Sql kChargeSiteUsage{
    "INSERT INTO site_usage(site_id, day, bytes) VALUES(?1, ?2, ?3) "
    "ON CONFLICT(site_id, day) DO UPDATE SET bytes = site_usage.bytes + excluded.bytes"};
// PostgreSQL: kChargeSiteUsage returning the day's new total and whether the row is new (a row
// the INSERT made has no xmax; one the ON CONFLICT updated has this transaction's), so that
// PgHubStore checks the limit and drops old days without a read or a delete per batch.
inline constexpr const char* kChargeSiteUsageReturning =
    "INSERT INTO site_usage(site_id, day, bytes) VALUES($1, $2, $3) "
    "ON CONFLICT(site_id, day) DO UPDATE SET bytes = site_usage.bytes + excluded.bytes "
    "RETURNING bytes, xmax = 0";
// Rebuild-state of site_id ?1.
inline constexpr Sql kSiteStock{"SELECT sku, on_hand, reserved, version FROM stock WHERE site_id = ?1"};
inline constexpr Sql kDeleteSiteStock{"DELETE FROM stock WHERE site_id = ?1"};
// Per SKU the held STOCK record with the highest version (then seq) first: the first row of
// each key wins, the same result as the conflict rule applied record by record.
inline constexpr Sql kStockRecordsByKey{
    "SELECT key, seq, record FROM changes WHERE site_id = ?1 AND entity = ?2 ORDER BY key, version DESC, seq DESC"};
// Leases (HubStore::HoldLease): one statement, atomic in both dialects. The row is written when
// it is new, ours, or expired (?4 = now); otherwise the WHERE leaves it and no row changes.
inline constexpr Sql kHoldLease{
    "INSERT INTO leases(name, holder, expires_ms) VALUES(?1, ?2, ?3) "
    "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms "
    "WHERE leases.holder = excluded.holder OR leases.expires_ms <= ?4"};
inline constexpr Sql kRelayCursor{"SELECT cursor FROM relay_cursors WHERE name = ?1"};
inline constexpr Sql kSetRelayCursor{
    "INSERT INTO relay_cursors(name, cursor) VALUES(?1, ?2) ON CONFLICT(name) DO UPDATE SET cursor = excluded.cursor"};
inline constexpr Sql kInsertStock{
    "INSERT INTO stock(site_id, sku, on_hand, reserved, version, hlc, ts_ms, seq) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"};

}  // namespace freshsync::hub::store_sql
