#include "edge/migrations.h"

#include <string>

#include "edge/outbox_writer.h"
#include "edge/stock_ledger.h"

namespace freshsync::edge {

// The outbox and sync_state DDL is the contract of docs/sync-protocol.md; do not change
// their columns here (the sync agent and operators' queries rely on them). This is the only
// copy: the sync agent's tests and benchmarks migrate their stores with StoreMigrations().
// Column meanings: outbox.seq dense per site from 1 (edge/outbox_writer.h); entity the proto
// Entity value; priority 1 for orders, stock, alerts, geofence events, 0 for bulk telemetry;
// created_ms the edge wall clock at commit; record a serialized freshsync.v1.ChangeRecord
// without `site` (the batch carries it), appended to a Batch unparsed.
static const char* kV1 = R"sql(
CREATE TABLE outbox(
  seq        INTEGER PRIMARY KEY,
  entity     INTEGER NOT NULL,
  key        TEXT    NOT NULL,
  version    INTEGER NOT NULL,
  hlc        INTEGER NOT NULL,
  priority   INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  record     BLOB    NOT NULL
);
CREATE TABLE sync_state(
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE edge_meta(
  name  TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO edge_meta(name, value) VALUES ('hlc_last', 0);
CREATE TABLE dedupe(
  kind    INTEGER NOT NULL,
  key     TEXT    NOT NULL,
  seen_ms INTEGER NOT NULL,
  PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE TABLE dead_letters(
  id            INTEGER PRIMARY KEY,
  received_ms   INTEGER NOT NULL,
  topic         TEXT    NOT NULL,
  reason        TEXT    NOT NULL,
  payload       BLOB,
  payload_bytes INTEGER NOT NULL
);
CREATE TABLE entity_versions(
  entity  INTEGER NOT NULL,
  key     TEXT    NOT NULL,
  version INTEGER NOT NULL,
  PRIMARY KEY (entity, key)
) WITHOUT ROWID;
CREATE TABLE stock(
  sku        TEXT PRIMARY KEY,
  on_hand    INTEGER NOT NULL CHECK (on_hand >= 0),
  reserved   INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  version    INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE stock_movements(
  id       TEXT PRIMARY KEY,
  sku      TEXT    NOT NULL,
  delta    INTEGER NOT NULL,
  reason   TEXT    NOT NULL,
  order_id TEXT,
  lot      TEXT,
  ts_ms    INTEGER NOT NULL,
  seq      INTEGER NOT NULL
);
CREATE TABLE orders(
  order_id        TEXT PRIMARY KEY,
  status          TEXT    NOT NULL,
  version         INTEGER NOT NULL,
  lines           TEXT    NOT NULL,
  customer_sealed BLOB,
  actor           TEXT,
  created_ts_ms   INTEGER NOT NULL,
  updated_ts_ms   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE vehicle_positions(
  vehicle   TEXT    NOT NULL,
  seq       INTEGER NOT NULL,
  ts_ms     INTEGER NOT NULL,
  lat       REAL    NOT NULL,
  lon       REAL    NOT NULL,
  speed_kmh REAL,
  heading   REAL,
  hdop      REAL,
  PRIMARY KEY (vehicle, seq)
);
CREATE TABLE climate_readings(
  sensor  TEXT    NOT NULL,
  seq     INTEGER NOT NULL,
  ts_ms   INTEGER NOT NULL,
  temp_c  REAL    NOT NULL,
  rh      REAL,
  battery REAL,
  PRIMARY KEY (sensor, seq)
);
)sql";

// v2: dead letters say which kind of refusal they were (bad input or a rule), so operators
// can tell a broken device from a business conflict; time indexes for track queries.
static const char* kV2 = R"sql(
ALTER TABLE dead_letters ADD COLUMN code TEXT NOT NULL DEFAULT 'invalid';
CREATE INDEX vehicle_positions_by_ts ON vehicle_positions(vehicle, ts_ms);
CREATE INDEX climate_readings_by_ts ON climate_readings(sensor, ts_ms);
)sql";

// v3: site rules (docs/rules.md). rule_state holds each rule engine's per-entity snapshot,
// written in the transaction of the message that changed it; climate_rollups holds one-minute
// aggregates, kept longer than the raw readings.
static const char* kV3 = R"sql(
CREATE TABLE rule_state(
  engine     TEXT    NOT NULL,
  entity     TEXT    NOT NULL,
  blob       TEXT    NOT NULL,
  updated_ms INTEGER NOT NULL,
  PRIMARY KEY (engine, entity)
) WITHOUT ROWID;
CREATE TABLE climate_rollups(
  sensor    TEXT    NOT NULL,
  minute_ms INTEGER NOT NULL,
  count     INTEGER NOT NULL CHECK (count > 0),
  min_c     REAL    NOT NULL,
  avg_c     REAL    NOT NULL,
  max_c     REAL    NOT NULL,
  PRIMARY KEY (sensor, minute_ms)
) WITHOUT ROWID;
)sql";

// v4: stock per lot with reservations (edge/stock_ledger.h, docs/rules.md "Stock"). The
// ledger's DDL rebuilds `stock` with CHECK (reserved <= on_hand) and moves each SKU's stock to
// lot ""; movements keep the expiry they carried.
static const std::string& V4() {
  static const std::string sql = std::string(StockLedger::kMigrationSql) + "ALTER TABLE stock_movements ADD COLUMN expiry TEXT;\n";
  return sql;
}

// v5: the disk quota (edge/disk_quota.h) thins and drops raw telemetry only once the hub has
// acknowledged it, so each raw row names its outbox record. Rows from before v5 have NULL
// there; they are all at or below quota_legacy_seq, the highest seq issued before v5 (the
// outbox writer's rule, kLastIssuedSeqSql).
static const std::string& V5() {
  static const std::string sql = std::string(R"sql(
ALTER TABLE vehicle_positions ADD COLUMN outbox_seq INTEGER;
ALTER TABLE climate_readings ADD COLUMN outbox_seq INTEGER;
INSERT OR REPLACE INTO edge_meta(name, value) SELECT 'quota_legacy_seq', )sql") +
                                 kLastIssuedSeqSql + ";\n";
  return sql;
}

// v6: pallet scans at dock doors ({root}/docks/{door}/scans). A record only, no stock effect;
// outbox_seq names the scan's DOCK_SCAN record.
static const char* kV6 = R"sql(
CREATE TABLE dock_scans(
  scan_id    TEXT    PRIMARY KEY,
  door       TEXT    NOT NULL,
  pallet_id  TEXT    NOT NULL,
  sku        TEXT    NOT NULL,
  lot        TEXT    NOT NULL,
  qty        INTEGER NOT NULL CHECK (qty > 0),
  direction  TEXT    NOT NULL CHECK (direction IN ('in', 'out')),
  ts_ms      INTEGER NOT NULL,
  outbox_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX dock_scans_by_door_ts ON dock_scans(door, ts_ms);
)sql";

// v7: HQ's commands (docs/sync-protocol.md, "Downstream"). down_applied: one row per applied
// command_id, the dedupe of the downstream log (written in the command's transaction, with
// sync_state 'down_applied_seq'). catalog: HQ's items, one column per field, HQ's version
// decides. hq_rule_sets: HQ's newest fence set and cold-chain rule set (kind 'fences' or
// 'coldchain-rules', body the serialized proto FenceSet / ColdchainRuleSet), loaded at start.
// orders.reason / orders.down_seq: why the site refused an order (or a cancel) and the HQ
// command that created or last changed it, carried by its ORDER records.
static const char* kV7 = R"sql(
CREATE TABLE down_applied(
  command_id TEXT    PRIMARY KEY,
  down_seq   INTEGER NOT NULL,
  kind       TEXT    NOT NULL,
  applied_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE catalog(
  sku          TEXT    PRIMARY KEY,
  name         TEXT    NOT NULL,
  unit         TEXT    NOT NULL,
  price_cents  INTEGER NOT NULL,
  temp_min_c   REAL,
  temp_max_c   REAL,
  shelf_life_h INTEGER,
  version      INTEGER NOT NULL,
  updated_ms   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE hq_rule_sets(
  kind       TEXT    PRIMARY KEY,
  version    INTEGER NOT NULL,
  body       BLOB    NOT NULL,
  updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
ALTER TABLE orders ADD COLUMN reason TEXT;
ALTER TABLE orders ADD COLUMN down_seq INTEGER;
)sql";

// 8: escrow allotments (docs/escrow.md): per SKU the target the site aims at (target; the
// last [escrow] value applied in config_target, NULL when the config names none) and the
// monotone counters it sends up on ESCROW records. What the site holds is its reservation
// under the holder EdgeStore::kEscrowHolder in `reservations`, so local sales cannot take it.
static const char* kV8 = R"sql(
CREATE TABLE escrow(
  sku              TEXT    PRIMARY KEY,
  target           INTEGER NOT NULL DEFAULT 0 CHECK (target >= 0),
  config_target    INTEGER,
  given            INTEGER NOT NULL DEFAULT 0,
  returned_applied INTEGER NOT NULL DEFAULT 0,
  consumed_applied INTEGER NOT NULL DEFAULT 0,
  CHECK (returned_applied + consumed_applied <= given)
) WITHOUT ROWID;
)sql";

// Cold-chain audit chain (docs/formats.md, "Cold-chain audit chain"; audit/chain.h), written by
// the OutboxWriter in the transaction of each CLIMATE or COLDCHAIN_ALERT record of a sensor.
// coldchain_heads: per sensor the last link (index, hash, ts) and the last sealed index.
// coldchain_links: one compact row per link, which the disk quota never deletes: a reading's
// content is its climate_readings row (outbox_seq = seq), which the quota may thin (thinned =
// 1, set in the same transaction); an alert's is kept here (the serialized ColdchainAlert).
// coldchain_seals: the signed seals (serialized ColdchainSeal), for the export.
static const char* kColdchainChain = R"sql(
CREATE TABLE coldchain_heads(
  sensor       TEXT    PRIMARY KEY,
  last_index   INTEGER NOT NULL,
  last_hash    BLOB    NOT NULL,
  last_ts_ms   INTEGER NOT NULL,
  sealed_index INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE coldchain_links(
  sensor     TEXT    NOT NULL,
  idx        INTEGER NOT NULL,
  seq        INTEGER NOT NULL,
  ts_ms      INTEGER NOT NULL,
  chain_prev BLOB    NOT NULL,
  chain_hash BLOB    NOT NULL,
  alert      BLOB,
  thinned    INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (sensor, idx)
) WITHOUT ROWID;
CREATE INDEX coldchain_links_by_seq ON coldchain_links(seq);
CREATE TABLE coldchain_seals(
  sensor     TEXT    NOT NULL,
  last_index INTEGER NOT NULL,
  seq        INTEGER NOT NULL,
  seal       BLOB    NOT NULL,
  PRIMARY KEY (sensor, last_index)
) WITHOUT ROWID;
)sql";

const std::vector<sqlite::Migration>& StoreMigrations() {
  using sqlite::MigrationStep;
  static const std::vector<sqlite::Migration> migrations = {
      {1, "initial schema: outbox, sync_state, dedupe, dead letters, domain tables", {MigrationStep::Sql(kV1)}},
      {2, "dead_letters.code; time indexes on positions and climate readings", {MigrationStep::Sql(kV2)}},
      {3, "rule_state (rule engine snapshots) and climate_rollups", {MigrationStep::Sql(kV3)}},
      {4, "stock per lot with reservations: stock_lots, reservations, stock_movements.expiry", {MigrationStep::Sql(V4().c_str())}},
      {5, "outbox_seq on raw telemetry rows, for the disk quota", {MigrationStep::Sql(V5().c_str())}},
      {6, "dock_scans: pallet scans at dock doors", {MigrationStep::Sql(kV6)}},
      {7, "downstream: down_applied, catalog, hq_rule_sets; orders.reason and down_seq", {MigrationStep::Sql(kV7)}},
      {8, "escrow: allotments HQ may sell while the site is offline", {MigrationStep::Sql(kV8)}},
      {9, "cold-chain audit chain: coldchain_heads, coldchain_links, coldchain_seals", {MigrationStep::Sql(kColdchainChain)}},
  };
  return migrations;
}

int LatestStoreVersion() { return StoreMigrations().back().version; }

}  // namespace freshsync::edge
