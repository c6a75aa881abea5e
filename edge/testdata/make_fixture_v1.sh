#!/usr/bin/env bash
# Builds edge/testdata/store_v1.db: a store at schema version 1 (before migration 2), with a
# few rows, as an edged of that version would have left it. The .db is committed; this script
# documents how it was made. The SQL below is migration 1 verbatim (edge/migrations.cc).
# Usage: edge/testdata/make_fixture_v1.sh   (needs the sqlite3 CLI)
set -euo pipefail
cd "$(dirname "$0")"
rm -f store_v1.db
sqlite3 store_v1.db <<'SQL'
PRAGMA journal_mode=DELETE;
BEGIN;
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
-- Rows: one stock movement (seq 1), one order created (seq 2), one refused message.
-- record = ChangeRecord{seq, entity, key, version} serialized by hand.
INSERT INTO dedupe VALUES (1, 'm-1', 1764000000000), (2, 'o-1#created', 1764000000001);
INSERT INTO entity_versions VALUES (1, 'apple', 1), (2, 'o-1', 1);
INSERT INTO stock VALUES ('apple', 10, 0, 1, 1764000000000);
INSERT INTO stock_movements VALUES ('m-1', 'apple', 10, 'receive', NULL, 'lot-7', 1764000000000, 1);
INSERT INTO orders VALUES ('o-1', 'created', 1, '[{"qty":2,"sku":"apple"}]', NULL, NULL, 1764000000001, 1764000000001);
INSERT INTO outbox VALUES (1, 1, 'apple', 1, 115670016000000000, 1, 1764000000000, X'08011001' || X'1a056170706c652001');
INSERT INTO outbox VALUES (2, 2, 'o-1', 1, 115670016000065536, 1, 1764000000001, X'08021002' || X'1a036f2d312001');
INSERT INTO sync_state VALUES ('acked_seq', 1);
UPDATE edge_meta SET value = 115670016000065536 WHERE name = 'hlc_last';
INSERT INTO dead_letters(received_ms, topic, reason, payload, payload_bytes) VALUES (1764000000002, 'fs/stock/movements', 'malformed JSON', '{oops', 5);
PRAGMA user_version=1;
COMMIT;
SQL
echo "wrote $(pwd)/store_v1.db"
