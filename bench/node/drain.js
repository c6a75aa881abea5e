// What a team would otherwise write: a Node.js subscriber (mqtt.js) that applies each message
// to SQLite (better-sqlite3) in one transaction per message, as edged does, and acknowledges
// after the commit. bench/ingest_drain runs it against the same broker backlog as edged and
// the bare Paho subscriber (--node-script), when Node.js and these modules are installed
// (bench/node/README.md). Prints one JSON line: {"messages":N,"seconds":S}.
'use strict';
const mqtt = require('mqtt');
const Database = require('better-sqlite3');

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));
const total = Number(args.count);
const db = new Database(args.db);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.exec(`
  CREATE TABLE IF NOT EXISTS seen(key TEXT PRIMARY KEY);
  CREATE TABLE IF NOT EXISTS stock(sku TEXT PRIMARY KEY, qty INTEGER NOT NULL CHECK(qty >= 0));
  CREATE TABLE IF NOT EXISTS movements(id TEXT PRIMARY KEY, sku TEXT, delta INTEGER, reason TEXT, ts INTEGER);
  CREATE TABLE IF NOT EXISTS gps(vehicle TEXT, seq INTEGER, ts INTEGER, lat REAL, lon REAL, PRIMARY KEY(vehicle, seq));
  CREATE TABLE IF NOT EXISTS climate(sensor TEXT, seq INTEGER, ts INTEGER, temp_c REAL, PRIMARY KEY(sensor, seq));
  CREATE TABLE IF NOT EXISTS outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT, entity TEXT, key TEXT, body TEXT);`);
const seen = db.prepare('INSERT OR IGNORE INTO seen(key) VALUES (?)');
const move = db.prepare('INSERT INTO movements VALUES (?, ?, ?, ?, ?)');
const stock = db.prepare(`INSERT INTO stock(sku, qty) VALUES (?, ?)
                          ON CONFLICT(sku) DO UPDATE SET qty = qty + excluded.qty`);
const gps = db.prepare('INSERT INTO gps VALUES (?, ?, ?, ?, ?)');
const climate = db.prepare('INSERT INTO climate VALUES (?, ?, ?, ?)');
const outbox = db.prepare('INSERT INTO outbox(entity, key, body) VALUES (?, ?, ?)');

const apply = db.transaction((topic, m) => {
  const parts = topic.split('/');
  if (topic === 'fs/stock/movements') {
    if (seen.run('m:' + m.id).changes === 0) return;
    move.run(m.id, m.sku, m.delta, m.reason, m.ts);
    stock.run(m.sku, m.delta);
    outbox.run('stock', m.sku, JSON.stringify(m));
  } else if (parts[1] === 'vehicles') {
    if (seen.run('g:' + parts[2] + ':' + m.seq).changes === 0) return;
    gps.run(parts[2], m.seq, m.ts, m.lat, m.lon);
    outbox.run('position', parts[2], JSON.stringify(m));
  } else if (parts[1] === 'sensors') {
    if (seen.run('c:' + parts[2] + ':' + m.seq).changes === 0) return;
    climate.run(parts[2], m.seq, m.ts, m.temp_c);
    outbox.run('climate', parts[2], JSON.stringify(m));
  }
});

let done = 0;
const t0 = process.hrtime.bigint();
const client = mqtt.connect(args.url, {
  clientId: args['client-id'], clean: false, protocolVersion: 4, reconnectPeriod: 1000,
});
// mqtt.js sends the PUBACK when this calls back: only after the message is committed.
client.handleMessage = (packet, callback) => {
  try {
    apply(packet.topic, JSON.parse(packet.payload.toString('utf8')));
  } catch (e) {
    // A refusal (bad JSON, negative stock) is still acknowledged: counted, not retried.
  }
  callback();
  if (++done === total) {
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(JSON.stringify({ messages: done, seconds: s }));
    client.end(false, () => process.exit(0));
  }
};
client.on('connect', (ack) => {
  if (ack.sessionPresent) return;
  // --count=0: only make the persistent session (the bench queues the backlog for it next).
  client.subscribe('fs/#', { qos: 1 }, (err) => {
    if (err) { console.error('drain.js: subscribe: ' + err.message); process.exit(1); }
    if (total === 0) client.end(false, () => process.exit(0));
  });
});
client.on('error', (e) => { console.error('drain.js: ' + e.message); process.exit(1); });
