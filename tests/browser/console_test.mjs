// The HQ console in a real browser (Debian's chromium, driven by puppeteer-core): opens
// /console/#token=... on a running hubd, then publishes at the site (a truck's GPS fix, a
// cold-chain excursion, an order status change) and requires each in the DOM within 1 s of
// the site's message; a truck's trail must grow with its fixes, and fences PUT through the HQ
// API must be drawn (and redrawn at their next version). Started by console_browser_test.cc, which runs Mosquitto, edged and hubd
// and passes them in the environment:
//   HUB_URL (https://127.0.0.1:PORT), TOKEN (a reader token), MQTT_PORT, SITE,
//   VEHICLE, GPS_SEQ (its next fix's seq), ORDER_ID (seeded before the page opens), SCREENSHOTS (folder for console-*.png),
//   WRITER_TOKEN (HQ writes: the fence PUT), HUB_CA (the CA that signed hubd's certificate),
//   CHROMIUM (default /usr/bin/chromium).
// Prints one line per measurement and exits non-zero on the first failed check.
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const HUB = env('HUB_URL');
const TOKEN = env('TOKEN');
const MQTT_PORT = env('MQTT_PORT');
const VEHICLE = env('VEHICLE');
const ORDER_ID = env('ORDER_ID');
const GPS_SEQ = Number(env('GPS_SEQ'));
const SHOTS = env('SCREENSHOTS');
const LIVE = env('LIVE', 'stream');  // the page's live mode: "stream" (GET /v1/stream) or "poll"
const BUDGET_MS = 1000;
const TILES_PORT = Number(env('TILES_PORT'));
const SITE = env('SITE');
const WRITER_TOKEN = env('WRITER_TOKEN');
const HUB_CA = readFileSync(env('HUB_CA'));
const FENCE_WAIT_MS = 25000;  // the console re-reads a site's lane every 10 s (docs/console.md)

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

// QoS 1 through the site's broker, as a device or site system would publish.
function publish(topic, payload) {
  return new Promise((resolve, reject) => {
    const p = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', MQTT_PORT, '-q', '1', '-t', topic, '-m', JSON.stringify(payload)]);
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`mosquitto_pub exit ${code}`))));
  });
}

// Publishes, then waits for `predicate` in the page; the time counts from before the publish.
async function within(page, what, send, predicate, ...args) {
  const t0 = performance.now();
  await send();
  await page.waitForFunction(predicate, { timeout: 10000, polling: 'raf' }, ...args);
  const ms = performance.now() - t0;
  console.log(`${what}: in the DOM ${ms.toFixed(0)} ms after the site's message`);
  check(ms <= BUDGET_MS, `${what} within ${BUDGET_MS} ms (took ${ms.toFixed(0)} ms)`);
  return ms;
}

// An HQ write, as an HQ system makes it: the writer token, hubd's certificate verified; the
// hub's 202 answer.
function hqWrite(method, path, body) {
  return new Promise((resolve, reject) => {
    const req = https.request(`${HUB}${path}`, {
      method, ca: HUB_CA,
      headers: { Authorization: `Bearer ${WRITER_TOKEN}`, 'Content-Type': 'application/json' },
    }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => (res.statusCode === 202 ? resolve(JSON.parse(text)) : reject(new Error(`${method} ${path}: ${res.statusCode} ${text}`))));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}
const hqPut = (path, body) => hqWrite('PUT', path, body);
const hqPost = (path, body) => hqWrite('POST', path, body);

// The escrow panel's row of a SKU: [granted, used, free], or null.
function escrowRow(page, sku) {
  return page.evaluate((k) => {
    const tr = document.querySelector(`#escrow tr[data-sku="${k}"]`);
    return tr ? [...tr.querySelectorAll('td.num')].map((td) => Number(td.textContent)) : null;
  }, sku);
}

// A square fence of `n` corners around (lat, lon) (a closed ring: n + 1 positions), and a circle.
function fenceCollection(lat, lon, n) {
  const ring = [];
  for (let i = 0; i <= n; i++) {
    const a = (2 * Math.PI * (i % n)) / n;
    ring.push([lon + 0.004 * Math.cos(a), lat + 0.003 * Math.sin(a)]);
  }
  return {
    type: 'FeatureCollection',
    features: [
      { type: 'Feature', properties: { name: 'hq-yard', kind: 'depot' }, geometry: { type: 'Polygon', coordinates: [ring] } },
      { type: 'Feature', properties: { name: 'hq-gate', kind: 'customer_drop', radius_m: 120 }, geometry: { type: 'Point', coordinates: [lon - 0.006, lat] } },
    ],
  };
}

// The trail's points, and whether its newest is where the truck's marker is.
const trailOf = (page, v) => page.$eval(`#trails polyline[data-vehicle="${v}"]`, (p) => {
  const g = document.querySelector(`#trucks g[data-vehicle="${p.dataset.vehicle}"]`);
  const last = p.points.numberOfItems ? p.points.getItem(p.points.numberOfItems - 1) : null;
  const m = /translate\(([-\d.]+) ([-\d.]+)\)/.exec(g.getAttribute('transform'));
  return { n: p.points.numberOfItems, atTruck: !!last && Math.abs(last.x - Number(m[1])) < 0.2 && Math.abs(last.y - Number(m[2])) < 0.2 };
});

// The tile server hubd's [console] tiles_url names: pale 1x1 PNGs in a checkerboard (so the
// screenshots show where tiles lie), and a record of what was asked.
const tilesAsked = [];
const PNGS = ['iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGN48eEBAAV8Arl9qM5WAAAAAElFTkSuQmCC',
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGO48+IKAAU8ApmXkY01AAAAAElFTkSuQmCC'].map((b) => Buffer.from(b, 'base64'));
const tiles = http.createServer((req, res) => {
  tilesAsked.push(req.url);
  const m = /^\/tiles\/\d+\/(\d+)\/(\d+)\.png$/.exec(req.url);
  res.writeHead(m ? 200 : 404, { 'Content-Type': 'image/png' });
  res.end(PNGS[m ? (Number(m[1]) + Number(m[2])) % 2 : 0]);
});
await new Promise((resolve) => tiles.listen(TILES_PORT, '127.0.0.1', resolve));

const browser = await puppeteer.launch({
  executablePath: env('CHROMIUM', '/usr/bin/chromium'),
  // --no-sandbox: chromium refuses to run as root with its sandbox (CI runs as root).
  args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--window-size=1400,1000'],
  headless: true,
  acceptInsecureCerts: true,  // the test PKI's server certificate
  defaultViewport: { width: 1400, height: 1000 },
});
let failed = false;
try {
  const page = await browser.newPage();
  const requests = [];
  page.on('request', (r) => requests.push({ url: r.url(), auth: r.headers().authorization ?? '' }));
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // A 404 from the optional route is expected: /downstream on a hub without HQ orders.
  const optional = /\/(downstream|fences)$/;  // and /fences of a site HQ has set none for
  page.on('console', (m) => {
    const where = m.location()?.url ? new URL(m.location().url).pathname : '';
    if (m.type() === 'error' && !optional.test(where)) errors.push(`${m.text()} (${where})`);
  });

  // Load: navigation to the initial state drawn (sites, positions, orders, alerts from the GET
  // routes; body[data-ready]).
  const t0 = performance.now();
  await page.goto(`${HUB}/console/#token=${TOKEN}`, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('body[data-ready="1"]', { timeout: 15000 });
  await page.waitForSelector(`#trucks g[data-vehicle="${VEHICLE}"]`, { timeout: 5000 });
  const loadMs = performance.now() - t0;
  const bytes = await page.evaluate(() => performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))
    .filter((e) => new URL(e.name).pathname.startsWith('/console/')).reduce((n, e) => n + e.decodedBodySize, 0));
  console.log(`load: ${loadMs.toFixed(0)} ms to the initial state; console files ${bytes} bytes`);

  // The token left the address bar, stays in the tab's session storage, and never went into a
  // URL: every data call carried it as a bearer header instead.
  check((await page.evaluate(() => location.hash)) === '', 'the fragment is removed from the address bar');
  check(!(await page.evaluate(() => location.href)).includes(TOKEN), 'the token is not in the address');
  check((await page.evaluate(() => sessionStorage.getItem('freshsync.console.token'))) === TOKEN, 'the token is in sessionStorage');
  await page.waitForSelector(`#status[data-mode="${LIVE}"]`, { timeout: 5000 });
  console.log(`live: ${LIVE}`);

  // Tiles under the trucks, from the configured server only, at a street-level zoom.
  await page.waitForSelector('#tiles image', { timeout: 5000 });
  check(tilesAsked.length > 0 && tilesAsked.every((u) => /^\/tiles\/1[2-9]\/\d+\/\d+\.png$/.test(u)), `tiles fetched (${tilesAsked.slice(0, 3)})`);

  // The seeded track's geofence events are listed.
  check((await page.$$eval('#geofence li', (li) => li.length)) >= 2, 'the geofence events of the seeded track are listed');

  // The truck's trail, seeded from its track: the recorded fixes up to its marker.
  const seeded = await trailOf(page, VEHICLE);
  console.log(`trail: ${seeded.n} points seeded from the track`);
  check(seeded.n > 100 && seeded.atTruck, `the trail is seeded and ends at the truck (${JSON.stringify(seeded)})`);
  check(!(await page.$('#fences g')), 'no fences before HQ sets any');

  // 1. A GPS fix moves the truck's marker, and its trail grows by that fix.
  const before = await page.$eval(`#trucks g[data-vehicle="${VEHICLE}"]`, (g) => [g.dataset.lat, g.dataset.lon, g.getAttribute('transform')]);
  const lat = Number(Number(before[0]) + 0.002).toFixed(6), lon = Number(Number(before[1]) + 0.003).toFixed(6);  // ~350 m: inside the view
  await within(page, 'gps fix',
    () => publish(`fs/vehicles/${VEHICLE}/gps`, { seq: GPS_SEQ, ts: Date.now(), lat: Number(lat), lon: Number(lon), speed_kmh: 32, hdop: 1.1 }),
    (v, want) => document.querySelector(`#trucks g[data-vehicle="${v}"]`)?.dataset.lat === String(want), VEHICLE, String(Number(lat)));
  const after = await page.$eval(`#trucks g[data-vehicle="${VEHICLE}"]`, (g) => g.getAttribute('transform'));
  check(after !== before[2], `the marker moved (${before[2]} -> ${after})`);
  const grown = await trailOf(page, VEHICLE);
  check(grown.n === seeded.n + 1 && grown.atTruck, `the trail grew by the fix (${seeded.n} -> ${JSON.stringify(grown)})`);
  const lat2 = Number(Number(lat) + 0.001).toFixed(6);
  await within(page, 'second gps fix',
    () => publish(`fs/vehicles/${VEHICLE}/gps`, { seq: GPS_SEQ + 1, ts: Date.now(), lat: Number(lat2), lon: Number(lon), speed_kmh: 30, hdop: 1.0 }),
    (v, n) => document.querySelector(`#trails polyline[data-vehicle="${v}"]`)?.points.numberOfItems === n, VEHICLE, seeded.n + 2);
  check((await trailOf(page, VEHICLE)).atTruck, 'the trail ends at the truck again');

  // HQ's allotment (issue 17): the site granted 10 kale from its receipt; an HQ order the
  // hub accepts against it shows as used, and the free part shrinks by as much.
  await page.waitForFunction(() => document.querySelector('#escrow tr[data-sku="kale"] td.num')?.textContent === '10',
    { timeout: FENCE_WAIT_MS, polling: 100 });
  const granted = await escrowRow(page, 'kale');
  check(granted[0] === 10 && granted[1] === 0 && granted[2] === 10, `kale's allotment is shown: granted 10, used 0, free 10 (${granted})`);
  const order = await hqPost(`/v1/sites/${SITE}/orders`, { order_id: 'o-console-escrow', lines: [{ sku: 'kale', qty: 4 }] });
  check(order.decided_by === 'hub' && order.status === 'accepted', `the hub accepts the order from the allotment (${JSON.stringify(order)})`);
  const te = performance.now();
  await page.waitForFunction(() => document.querySelector('#escrow tr[data-sku="kale"] td.num:nth-of-type(4)')?.textContent === '4',
    { timeout: FENCE_WAIT_MS, polling: 100 });
  const used = await escrowRow(page, 'kale');
  console.log(`escrow: the order's use shown ${(performance.now() - te).toFixed(0)} ms after the POST (${used})`);
  check(used[1] === 4 && used[2] === 6, `kale's allotment after the order: used 4, free 6 (${used})`);

  // HQ's fences: PUT through the HQ API, drawn under the trucks (a polygon of as many corners
  // as the ring, a circle), labelled; the next version redraws them.
  const put1 = await hqPut(`/v1/sites/${SITE}/fences`, fenceCollection(Number(lat), Number(lon), 5));
  const tf = performance.now();
  await page.waitForFunction(() => document.querySelector('#fences g[data-fence="hq-yard"] polygon')?.points.numberOfItems === 5,
    { timeout: FENCE_WAIT_MS, polling: 100 });
  console.log(`fences version ${put1.version}: on the map ${(performance.now() - tf).toFixed(0)} ms after the PUT`);
  check(!!(await page.$('#fences g[data-fence="hq-gate"] circle')), 'the circle fence is drawn');
  check((await page.$eval('#fences g[data-fence="hq-yard"] text', (t) => t.textContent)) === 'hq-yard', 'the fence is labelled');
  check(await page.$eval('#map', (svg) => [...svg.children].findIndex((g) => g.id === 'fences') < [...svg.children].findIndex((g) => g.id === 'trucks')),
    'fences are drawn under the trucks');
  const put2 = await hqPut(`/v1/sites/${SITE}/fences`, fenceCollection(Number(lat), Number(lon), 7));
  check(put2.version === put1.version + 1, `a new fence version (${put1.version} -> ${put2.version})`);
  const tf2 = performance.now();
  await page.waitForFunction(() => document.querySelector('#fences g[data-fence="hq-yard"] polygon')?.points.numberOfItems === 7,
    { timeout: FENCE_WAIT_MS, polling: 100 });
  console.log(`fences version ${put2.version}: redrawn ${(performance.now() - tf2).toFixed(0)} ms after the PUT`);

  // 2. A cold-chain excursion: out of range, then still out past the rule's for_s (message
  //    time), which opens the alert at the site.
  const tc = Date.now() - 10000;
  await publish('fs/sensors/cold-1/climate', { seq: 1, ts: tc, temp_c: 9.5 });
  await within(page, 'cold-chain alert',
    () => publish('fs/sensors/cold-1/climate', { seq: 2, ts: tc + 5000, temp_c: 9.8 }),
    () => !!document.querySelector('#alerts tr[data-alert^="cold-1/"]'));

  // 3. An order status change moves its card to the new column.
  check(!!(await page.$(`.column[data-status="created"] .card[data-order="${ORDER_ID}"]`)), 'the order starts as created');
  await within(page, 'order status',
    () => publish('fs/orders/status', { order_id: ORDER_ID, status: 'accepted', ts: Date.now() }),
    (o) => !!document.querySelector(`.column[data-status="accepted"] .card[data-order="${o}"]`), ORDER_ID);
  check(!(await page.$(`.column[data-status="created"] .card[data-order="${ORDER_ID}"]`)), 'the order left the created column');

  for (const r of requests) {
    // The fragment stays in the browser (it is how the token arrives); all the rest is sent.
    check(!r.url.split('#')[0].includes(TOKEN), `no URL sent carries the token (${r.url})`);
    const p = new URL(r.url).pathname;
    if (p.startsWith('/v1/')) check(r.auth === `Bearer ${TOKEN}`, `${p} carries the bearer header`);
  }
  check(requests.some((r) => new URL(r.url).pathname === '/v1/stream'), 'the page asked for /v1/stream');
  check(errors.length === 0, `no page errors (${errors.join('; ')})`);

  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, 'console-overview.png'), fullPage: true });
  await (await page.$('#map-panel')).screenshot({ path: path.join(SHOTS, 'console-map.png') });
  await (await page.$('#orders-panel')).screenshot({ path: path.join(SHOTS, 'console-orders.png') });

  // 4. A hub without /v1/stream (an older hubd, here the same one with the stream answered 404
  //    by the browser): the page polls /v1/changes, and a change still shows within the budget.
  const older = await browser.newPage();
  await older.setRequestInterception(true);
  older.on('request', (r) => (new URL(r.url()).pathname === '/v1/stream'
    ? r.respond({ status: 404, contentType: 'application/json', body: '{"error":"no such route"}' }) : r.continue()));
  await older.goto(`${HUB}/console/#token=${TOKEN}`, { waitUntil: 'domcontentloaded' });
  await older.waitForSelector('#status[data-mode="poll"]', { timeout: 10000 });
  await within(older, 'order status, polling',
    () => publish('fs/orders/status', { order_id: ORDER_ID, status: 'picking', ts: Date.now() }),
    (o) => !!document.querySelector(`.column[data-status="picking"] .card[data-order="${o}"]`), ORDER_ID);
  await older.close();

  // 5. Without a token: the form, and no data call at all.
  const fresh = await browser.createBrowserContext();
  const p2 = await fresh.newPage();
  const calls = [];
  p2.on('request', (r) => { if (new URL(r.url()).pathname.startsWith('/v1/')) calls.push(r.url()); });
  await p2.goto(`${HUB}/console/`, { waitUntil: 'networkidle0' });
  check(await p2.$eval('#login', (f) => !f.hidden), 'the login form shows without a token');
  check(calls.length === 0, `no data call without a token (${calls.join(', ')})`);
  await p2.screenshot({ path: path.join(SHOTS, 'console-login.png') });
  await fresh.close();
  console.log('console_test: all checks passed');
} catch (e) {
  failed = true;
  console.error(String(e.stack || e));
} finally {
  await browser.close();
  tiles.close();
}
process.exit(failed ? 1 : 0);
