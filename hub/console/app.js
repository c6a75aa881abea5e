// FreshSync HQ console (docs/console.md). Initial state from the HQ GET routes (docs/api.md),
// then live from GET /v1/stream. The token comes from the URL fragment or the form, lives in
// sessionStorage, and leaves the page only as "Authorization: Bearer": EventSource cannot set
// headers, so the stream is read with fetch() and parsed here, and no URL the hub sees ever
// carries the token.

import { SseParser } from './sse.js';

const TOKEN_KEY = 'freshsync.console.token';
const ORDER_STATES = ['created', 'accepted', 'picking', 'packed', 'dispatched', 'delivered', 'cancelled', 'refused'];
const CARDS_PER_COLUMN = 60;   // a column shows the newest ones and counts the rest
const GEO_EVENTS_SHOWN = 50;
const SITES_REFRESH_MS = 10000;
const POLL_MS = 500;           // only when the hub has no /v1/stream (an older hubd)
// A truck's trail: its last TRAIL_POINTS fixes. The track route answers oldest first, so the
// seed asks for the TRAIL_SEED_MS before the latest fix (at most TRAIL_SEED_LIMIT fixes: 30 min
// of 1 Hz GPS) and keeps the newest; the stream's fixes extend it.
const TRAIL_POINTS = 500;
const TRAIL_SEED_MS = 30 * 60 * 1000;
const TRAIL_SEED_LIMIT = 2000;
const EARTH_M = 40075016.686;  // the equator's length: metres per world unit at latitude 0

const $ = (sel) => document.querySelector(sel);

// ---------- token ----------
function takeTokenFromFragment() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (!m) return;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  // Out of the address bar and the history, so it is not shared with a copied link.
  history.replaceState(null, '', location.pathname + location.search);
}
const token = () => sessionStorage.getItem(TOKEN_KEY);

class Unauthorized extends Error {}

async function api(path, { allow404 = false } = {}) {
  const res = await fetch(path, {
    headers: { Authorization: `Bearer ${token()}`, Accept: 'application/json' },
    cache: 'no-store',
    credentials: 'omit',
  });
  if (res.status === 401 || res.status === 403) throw new Unauthorized(`${res.status} on ${path}`);
  if (allow404 && res.status === 404) return null;
  if (!res.ok) throw new Error(`${res.status} on ${path}`);
  return res.json();
}

// ---------- state ----------
const state = {
  sites: new Map(),      // site -> {site, contiguous_seq, max_seq, records, last_push_ms, pending}
  stock: new Map(),      // site/sku -> {site, sku, on_hand, reserved, seq}
  orders: new Map(),     // order_id -> {order_id, site, status, actor, lines, down_seq, seq, at}
  vehicles: new Map(),   // site/vehicle -> {site, vehicle, lat, lon, ts, speed_kmh}
  alerts: new Map(),     // site/alert_id -> alert
  geofence: [],          // newest last: {site, vehicle, fence, kind, event, ts}
  trails: new Map(),     // site/vehicle -> [{lat, lon, ts, seq}], oldest first, at most TRAIL_POINTS
  fences: new Map(),     // site -> {etag, fences: [{name, kind, rings | center + radius_m}], lane}
  escrow: new Map(),     // site/sku -> {site, sku, granted, used, free}
  escrowLane: new Map(), // site -> the lane's last_seq at the last escrow read
  escrowStale: new Set(), // sites whose grant changed (an ESCROW record) since that read
  cursor: 0,
  events: 0,
  mode: 'offline',
};
const dirty = new Set();
let frame = 0;
function touch(...parts) {
  for (const p of parts) dirty.add(p);
  if (!frame) frame = requestAnimationFrame(render);
}

// One apply per entity, shared by the initial reads and the stream, so that both give the
// same state. Each ignores what is older than what it holds (a replayed or late change).
const newer = (old, seq, ts) => !old || (seq !== undefined && old.seq !== undefined ? seq >= old.seq : (ts ?? 0) >= (old.ts ?? 0));

function applyStock(site, s) {
  const k = `${site}/${s.sku}`;
  if (!newer(state.stock.get(k), s.seq, s.ts)) return;
  state.stock.set(k, { site, sku: s.sku, on_hand: s.on_hand ?? 0, reserved: s.reserved ?? 0, seq: s.seq, ts: s.ts });
  touch('stock');
}
function applyOrder(site, o) {
  const old = state.orders.get(o.order_id);
  if (old && old.site === site && !newer(old, o.seq, o.ts)) return;
  state.orders.set(o.order_id, { ...o, site, at: performance.now() });
  touch('orders');
}
function applyVehicle(site, v) {
  const k = `${site}/${v.vehicle}`;
  const old = state.vehicles.get(k);
  if (old && (v.ts ?? 0) < (old.ts ?? 0)) return;  // device time: a late fix is history, not position
  state.vehicles.set(k, { site, vehicle: v.vehicle, lat: v.lat, lon: v.lon, ts: v.ts, speed_kmh: v.speed_kmh });
  touch('map');
}
// Every fix goes into its truck's trail in device-time order, a late one too (it is history);
// the same record twice (the seed and the stream overlap) once, by its seq.
function applyTrail(site, v) {
  const k = `${site}/${v.vehicle}`;
  const trail = state.trails.get(k) || [];
  if (v.seq !== undefined && trail.some((p) => p.seq === v.seq)) return;
  let i = trail.length;
  while (i > 0 && (trail[i - 1].ts ?? 0) > (v.ts ?? 0)) i--;
  trail.splice(i, 0, { lat: v.lat, lon: v.lon, ts: v.ts, seq: v.seq });
  if (trail.length > TRAIL_POINTS) trail.splice(0, trail.length - TRAIL_POINTS);
  state.trails.set(k, trail);
  touch('map');
}
// HQ's fences of a site (GET /v1/sites/{site}/fences: the FeatureCollection as PUT, the fence
// file's format): polygons (outer ring, then holes) and circles (a Point with radius_m).
function applyFences(site, etag, collection) {
  const fences = [];
  for (const f of collection?.features || []) {
    const name = f.properties?.name, kind = f.properties?.kind || 'other', g = f.geometry || {};
    if (g.type === 'Polygon') fences.push({ name, kind, rings: g.coordinates.map((r) => r.map(([lon, lat]) => [lat, lon])) });
    else if (g.type === 'Point') fences.push({ name, kind, center: [g.coordinates[1], g.coordinates[0]], radius_m: f.properties?.radius_m ?? 0 });
  }
  const old = state.fences.get(site) || {};
  state.fences.set(site, { ...old, etag, fences });
  touch('map');
}
function applyAlert(site, a) {
  const k = `${site}/${a.alert_id}`;
  if (a.state === 'closed' || a.ended_ts) state.alerts.delete(k);
  else state.alerts.set(k, { ...a, site });
  touch('alerts');
}
function applyGeofence(site, e) {
  state.geofence.push({ ...e, site });
  if (state.geofence.length > 500) state.geofence.splice(0, state.geofence.length - 500);
  touch('geofence', 'map');
}

// A feed item (the JSON of /v1/changes and of the stream's data:).
function applyChange(c) {
  const f = { ...(c.fields || {}), seq: c.seq, ts: c.ts, version: c.version };
  switch (c.entity) {
    case 'STOCK': case 'STOCK_MOVEMENT': applyStock(c.site, f); break;
    case 'ORDER': applyOrder(c.site, f); break;
    case 'VEHICLE_POSITION': applyVehicle(c.site, f); applyTrail(c.site, f); break;
    case 'COLDCHAIN_ALERT': applyAlert(c.site, f); break;
    case 'GEOFENCE_EVENT': applyGeofence(c.site, f); break;
    // The site's grant changed: the hub's view (granted, used, free) is re-read with the sites.
    case 'ESCROW': state.escrowStale.add(c.site); break;
    default: break;
  }
  const s = state.sites.get(c.site) || { site: c.site };
  s.last_push_ms = Date.now();  // it reached the hub just now
  state.sites.set(c.site, s);
  // The sequence position (contiguous, max, records) is the hub's to say: re-read /v1/sites
  // once changes pause for a moment, rather than guess it from the records seen.
  clearTimeout(sitesTimer);
  sitesTimer = setTimeout(() => loadSites().catch(() => {}), 1000);
  if (c.cursor > state.cursor) state.cursor = c.cursor;
  state.events++;
  touch('sites', 'status');
}
let sitesTimer = 0;

// ---------- initial state ----------
async function loadSites() {
  const { sites } = await api('/v1/sites');
  for (const s of sites) {
    const old = state.sites.get(s.site);
    state.sites.set(s.site, { ...old, ...s });
  }
  await Promise.all(sites.map(async (s) => {
    // Present once HQ orders are (docs/sync-protocol.md, "Downstream"); an older hub says 404.
    const d = await api(`/v1/sites/${s.site}/downstream`, { allow404: true }).catch(() => null);
    if (!d) return;
    state.sites.get(s.site).pending = d.pending;
    // HQ's allotments move with the lane (hub-accepted orders use them, targets change them)
    // and with the site's ESCROW records: re-read only then.
    if (state.escrowLane.get(s.site) !== d.last_seq || state.escrowStale.has(s.site)) {
      state.escrowStale.delete(s.site);
      await loadEscrow(s.site).then(() => { state.escrowLane.set(s.site, d.last_seq); }).catch(() => {});
    }
    // A fence PUT appends to the site's lane, and no change record tells the stream: a lane
    // that moved since the last look (or a first look) re-reads the fences, by ETag (a 304
    // when the move was an order). So fences cost no request of their own while nothing
    // changes, and a new version shows within this refresh's period.
    const f = state.fences.get(s.site);
    if (f?.lane === d.last_seq) return;
    await loadFences(s.site).then(() => { state.fences.get(s.site).lane = d.last_seq; }).catch(() => {});
  }));
  touch('sites');
  return sites;
}

async function loadFences(site) {
  const old = state.fences.get(site);
  const headers = { Authorization: `Bearer ${token()}`, Accept: 'application/json' };
  if (old?.etag) headers['If-None-Match'] = old.etag;
  const res = await fetch(`/v1/sites/${encodeURIComponent(site)}/fences`, { headers, cache: 'no-store', credentials: 'omit' });
  if (res.status === 401 || res.status === 403) throw new Unauthorized(`${res.status} on fences`);
  if (res.status === 304) return;
  if (res.status === 404) { applyFences(site, '', null); return; }  // HQ never set any
  if (!res.ok) throw new Error(`${res.status} on fences`);
  applyFences(site, res.headers.get('ETag') || '', await res.json());
}

// HQ's allotments at a site (GET /v1/sites/{site}/escrow, docs/escrow.md): what the site
// granted, what hub-accepted orders used, and what the hub may still accept now. A hub without
// escrow says 404: nothing to show.
async function loadEscrow(site) {
  const e = await api(`/v1/sites/${encodeURIComponent(site)}/escrow`, { allow404: true });
  for (const k of [...state.escrow.keys()]) if (k.startsWith(`${site}/`)) state.escrow.delete(k);
  for (const row of e?.escrow || []) state.escrow.set(`${site}/${row.sku}`, { site, sku: row.sku, granted: row.granted ?? 0, used: row.used ?? 0, free: row.free ?? 0 });
  touch('escrow');
}

// The trail of each truck up to its latest fix (TRAIL_SEED_MS of history).
async function loadTrails(site, vehicles) {
  const base = `/v1/sites/${encodeURIComponent(site)}/vehicles`;
  await Promise.all(vehicles.map(async (v) => {
    const { track } = await api(`${base}/${encodeURIComponent(v.vehicle)}/track?from=${Math.max(0, v.ts - TRAIL_SEED_MS)}&limit=${TRAIL_SEED_LIMIT}`);
    for (const p of track.slice(-TRAIL_POINTS)) applyTrail(site, p);
  }));
}

async function loadSite(site) {
  const base = `/v1/sites/${encodeURIComponent(site)}`;
  const [stock, orders, vehicles, alerts, geo] = await Promise.all([
    api(`${base}/stock`), api(`${base}/orders`), api(`${base}/vehicles`), api(`${base}/alerts`),
    api(`${base}/geofence?from=${Date.now() - 24 * 3600 * 1000}&limit=${GEO_EVENTS_SHOWN}`),
  ]);
  for (const s of stock.stock) applyStock(site, s);
  for (const o of orders.orders) applyOrder(site, o);
  for (const v of vehicles.vehicles) applyVehicle(site, v);
  await loadTrails(site, vehicles.vehicles);
  for (const a of alerts.alerts) applyAlert(site, a);
  for (const e of geo.events) applyGeofence(site, e);
}

// The feed's newest cursor, so the stream starts where the reads below end (changes between
// the two are applied twice, which the applies ignore). /v1/changes?limit=1 answers whether
// anything lies after a cursor; doubling then halving finds the head in about 2 log2(cursor)
// tiny reads instead of reading the feed.
async function headCursor() {
  const after = async (c) => (await api(`/v1/changes?after=${c}&limit=1`)).changes.length > 0;
  if (!(await after(0))) return 0;
  let lo = 0, hi = 1;  // something after lo; find hi with nothing after it
  while (await after(hi)) { lo = hi; hi *= 2; }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (await after(mid)) lo = mid; else hi = mid;
  }
  return hi;
}

// ---------- live ----------
// GET /v1/stream over fetch() (sse.js parses it): id: the feed cursor, event: change, data: a
// feed item as in /v1/changes.
async function readStream(after, signal) {
  const res = await fetch(`/v1/stream?after=${after}`, {
    headers: { Authorization: `Bearer ${token()}`, Accept: 'text/event-stream', 'Last-Event-ID': String(after) },
    cache: 'no-store', credentials: 'omit', signal,
  });
  if (res.status === 401 || res.status === 403) throw new Unauthorized('stream');
  if (res.status === 404) return 'absent';
  if (!res.ok || !res.body) throw new Error(`stream: ${res.status}`);
  setMode('stream');
  const parser = new SseParser(({ event, data, id }) => {
    if (event !== 'change') return;
    const c = JSON.parse(data);
    if (c.cursor === undefined && id !== null) c.cursor = Number(id);
    applyChange(c);
  });
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return 'ended';
    parser.push(value);
  }
}

async function poll() {
  const feed = await api(`/v1/changes?after=${state.cursor}&limit=1000`);
  for (const c of feed.changes) applyChange(c);
  if (feed.next > state.cursor) state.cursor = feed.next;
}

async function live() {
  let backoff = 500;
  let hasStream = true;
  for (;;) {
    try {
      if (hasStream) {
        const how = await readStream(state.cursor);
        if (how === 'absent') { hasStream = false; setMode('poll'); continue; }
      } else {
        await poll();
        await sleep(POLL_MS);
        continue;
      }
      backoff = 500;  // the hub closed a healthy stream (restart, slow reader): resume by cursor
      await sleep(250);
    } catch (e) {
      if (e instanceof Unauthorized) return logout('The hub refused the token.');
      setMode('offline');
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 10000);
    }
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function setMode(m) { state.mode = m; touch('status'); }

// ---------- rendering ----------
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
const age = (ms) => {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
};
const time = (ms) => (ms ? new Date(ms).toISOString().replace('T', ' ').slice(5, 19) : '');  // MM-DD hh:mm:ss UTC

// Link health from the age of the site's last push (the sync agent pushes within seconds
// while it has records, and probes when idle).
function linkOf(s) {
  const a = Date.now() - (s.last_push_ms || 0);
  return a < 60000 ? ['ok', 'link-ok'] : a < 600000 ? ['late', 'link-late'] : ['down', 'link-down'];
}

function renderSites() {
  const rows = [...state.sites.values()].sort((a, b) => a.site.localeCompare(b.site)).map((s) => {
    const [link, cls] = linkOf(s);
    return `<tr data-site="${esc(s.site)}"><td>${esc(s.site)}</td><td class="${cls}">${link}</td>` +
      `<td class="num">${s.contiguous_seq ?? 0} / ${s.max_seq ?? 0}</td><td class="num">${Math.max(0, (s.max_seq ?? 0) - (s.contiguous_seq ?? 0))}</td>` +
      `<td class="num">${s.records ?? ''}</td><td>${age(s.last_push_ms)}</td><td class="num">${s.pending ?? '–'}</td></tr>`;
  });
  $('#sites tbody').innerHTML = rows.join('');
}

function renderStock() {
  const rows = [...state.stock.values()].sort((a, b) => a.site.localeCompare(b.site) || a.sku.localeCompare(b.sku)).map((s) =>
    `<tr data-site="${esc(s.site)}" data-sku="${esc(s.sku)}"><td>${esc(s.site)}</td><td>${esc(s.sku)}</td>` +
    `<td class="num">${s.on_hand}</td><td class="num">${s.reserved}</td><td class="num">${s.on_hand - s.reserved}</td></tr>`);
  $('#stock tbody').innerHTML = rows.join('');
}

function renderEscrow() {
  const rows = [...state.escrow.values()].sort((a, b) => a.site.localeCompare(b.site) || a.sku.localeCompare(b.sku)).map((e) =>
    `<tr data-site="${esc(e.site)}" data-sku="${esc(e.sku)}"><td>${esc(e.site)}</td><td>${esc(e.sku)}</td>` +
    `<td class="num">${e.granted}</td><td class="num">${e.used}</td><td class="num">${e.free}</td></tr>`);
  $('#escrow tbody').innerHTML = rows.join('');
}

function renderAlerts() {
  const rows = [...state.alerts.values()].sort((a, b) => (b.started_ts ?? 0) - (a.started_ts ?? 0)).map((a) =>
    `<tr data-alert="${esc(a.alert_id)}" data-site="${esc(a.site)}"><td>${esc(a.site)}</td><td>${esc(a.alert_id)}</td><td>${esc(a.sensor)}</td>` +
    `<td>${esc(a.kind)}</td><td class="num">${a.min_c ?? ''}</td><td class="num">${a.max_c ?? ''}</td><td>${time(a.started_ts)}</td></tr>`);
  $('#alerts tbody').innerHTML = rows.join('');
}

function renderOrders() {
  const by = new Map(ORDER_STATES.map((s) => [s, []]));
  for (const o of state.orders.values()) (by.get(o.status) || by.get('created')).push(o);
  $('#orders').innerHTML = ORDER_STATES.map((st) => {
    const list = by.get(st).sort((a, b) => b.at - a.at || (b.ts ?? 0) - (a.ts ?? 0));
    const cards = list.slice(0, CARDS_PER_COLUMN).map((o) => {
      const lines = (o.lines || []).map((l) => `${l.qty}×${l.sku}`).join(', ');
      const hq = o.down_seq > 0 ? ' <span class="tag">HQ</span>' : '';
      return `<div class="card" data-order="${esc(o.order_id)}" title="${esc(lines)}">${esc(o.order_id)}${hq}<br><small>${esc(o.site)} ${esc(lines)}</small></div>`;
    });
    const more = list.length > CARDS_PER_COLUMN ? `<div class="more">+${list.length - CARDS_PER_COLUMN} more</div>` : '';
    return `<div class="column" data-status="${st}"><h3>${st} <small>${list.length}</small></h3>${cards.join('')}${more}</div>`;
  }).join('');
}

function renderGeofence() {
  const shown = state.geofence.slice(-GEO_EVENTS_SHOWN).reverse();
  $('#geofence').innerHTML = shown.map((e) =>
    `<li>${time(e.ts)} ${esc(e.site)} <b>${esc(e.vehicle)}</b> ${esc(e.event)} ${esc(e.fence)} <small>${esc(e.kind)}</small></li>`).join('');
}

// Web Mercator in world units (0..1 across and down), as map tiles are cut.
const project = (lat, lon) => {
  const s = Math.sin((Math.max(-85, Math.min(85, lat)) * Math.PI) / 180);
  return [(lon + 180) / 360, 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)];
};
let tilesUrl = '';
let mapView = null;  // {vx, vy, span, h} in world units

// A fence's centre: the circle's, or the middle of the polygon's outer ring's box (its label).
const fenceCenter = (f) => {
  if (f.center) return f.center;
  const lats = f.rings[0].map((p) => p[0]), lons = f.rings[0].map((p) => p[1]);
  return [(Math.min(...lats) + Math.max(...lats)) / 2, (Math.min(...lons) + Math.max(...lons)) / 2];
};

function renderMap() {
  const vs = [...state.vehicles.values()];
  const fences = [...state.fences.entries()].flatMap(([site, f]) => f.fences.map((fence) => ({ ...fence, site })));
  const svg = $('#map');
  const W = 1000, H = 600;
  const pts = vs.map((v) => project(v.lat, v.lon));
  // The view follows the trucks; with none yet, the fences.
  const fit = pts.length ? pts : fences.map((f) => project(...fenceCenter(f)));
  if (!fit.length) {
    for (const g of ['#trucks', '#trails', '#fences', '#geo-marks']) $(g).innerHTML = '';
    $('#map-note').textContent = 'no positions yet';
    return;
  }
  // The view stays put while every truck is inside it, so a truck moves on the map rather
  // than the map under it; it is fitted anew (all trucks, a margin, at least about 8 km
  // across) when one leaves it.
  const inside = (v, [x, y]) => x > v.vx + v.span * 0.05 && x < v.vx + v.span * 0.95 &&
    y > v.vy + v.h * 0.05 && y < v.vy + v.h * 0.95;
  if (!mapView || !fit.every((p) => inside(mapView, p))) {
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const [x, y] of fit) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
    const span = Math.max(x1 - x0, (y1 - y0) * (W / H), 2e-4) * 1.3;
    mapView = { span, h: (span * H) / W, vx: (x0 + x1) / 2 - span / 2, vy: (y0 + y1) / 2 - (span * H) / W / 2 };
  }
  const { vx, vy, span } = mapView, k = W / span;
  const toScreen = ([x, y]) => [((x - vx) * k).toFixed(1), ((y - vy) * k).toFixed(1)];
  svg.dataset.view = `${vx},${vy},${span}`;

  if (tilesUrl) {
    const z = Math.max(0, Math.min(19, Math.floor(Math.log2(4 / span))));
    const n = 2 ** z, t0x = Math.floor(vx * n), t0y = Math.floor(vy * n);
    const t1x = Math.floor((vx + span) * n), t1y = Math.floor((vy + (span * H) / W) * n);
    const imgs = [];
    // One tile more on each side: the SVG shows beyond its viewBox when its box is wider.
    for (let tx = t0x - 1; tx <= t1x + 1; tx++) for (let ty = t0y - 1; ty <= t1y + 1; ty++) {
      if (ty < 0 || ty >= n) continue;
      const href = tilesUrl.replace('{z}', z).replace('{x}', ((tx % n) + n) % n).replace('{y}', ty);
      const [sx, sy] = toScreen([tx / n, ty / n]);
      imgs.push(`<image href="${esc(href)}" x="${sx}" y="${sy}" width="${(k / n).toFixed(1)}" height="${(k / n).toFixed(1)}"/>`);
    }
    $('#tiles').innerHTML = imgs.join('');
  } else {
    // No tiles: a grid every power-of-ten of a degree, so distances still read.
    const deg = 10 ** Math.floor(Math.log10(span * 360 / 4));
    const lines = [];
    const lon0 = vx * 360 - 180;
    for (let lon = Math.ceil(lon0 / deg) * deg; lon < lon0 + span * 360; lon += deg) {
      const [sx] = toScreen(project(0, lon));
      lines.push(`<line x1="${sx}" y1="0" x2="${sx}" y2="${H}"/>`);
    }
    for (let i = 0; i <= 8; i++) { const y = (H / 8) * i; lines.push(`<line x1="0" y1="${y}" x2="${W}" y2="${y}"/>`); }
    $('#grid').innerHTML = lines.join('');
  }
  // Fences under everything else: polygons (holes cut out by even-odd), circles of their
  // radius in metres at their latitude, each labelled with its name.
  const pointsOf = (ring) => ring.slice(0, -1).map(([lat, lon]) => toScreen(project(lat, lon)).join(',')).join(' ');
  $('#fences').innerHTML = fences.map((f) => {
    let shape;
    if (f.center) {
      const [sx, sy] = toScreen(project(...f.center));
      const r = (f.radius_m / (EARTH_M * Math.cos((f.center[0] * Math.PI) / 180))) * k;
      shape = `<circle cx="${sx}" cy="${sy}" r="${r.toFixed(1)}"/>`;
    } else if (f.rings.length === 1) {
      shape = `<polygon points="${pointsOf(f.rings[0])}"/>`;
    } else {
      shape = `<path fill-rule="evenodd" d="${f.rings.map((r) => `M${pointsOf(r)}Z`).join(' ')}"/>`;
    }
    const [lx, ly] = toScreen(project(...fenceCenter(f)));
    return `<g class="fence" data-fence="${esc(f.name)}" data-site="${esc(f.site)}" data-kind="${esc(f.kind)}">${shape}` +
      `<text x="${lx}" y="${ly}" stroke-width="3">${esc(f.name)}</text><title>${esc(f.site)} ${esc(f.name)} (${esc(f.kind)})</title></g>`;
  }).join('');
  $('#trails').innerHTML = vs.map((v) => {
    const trail = state.trails.get(`${v.site}/${v.vehicle}`) || [];
    const points = trail.map((p) => toScreen(project(p.lat, p.lon)).join(',')).join(' ');
    return `<polyline class="trail" data-vehicle="${esc(v.vehicle)}" data-site="${esc(v.site)}" points="${points}"/>`;
  }).join('');
  $('#trucks').innerHTML = vs.map((v, i) => {
    const [sx, sy] = toScreen(pts[i]);
    return `<g class="truck" data-vehicle="${esc(v.vehicle)}" data-site="${esc(v.site)}" data-lat="${v.lat}" data-lon="${v.lon}" transform="translate(${sx} ${sy})">` +
      `<circle r="9" stroke-width="2"/><text x="13" y="6" stroke-width="4">${esc(v.vehicle)}</text>` +
      `<title>${esc(v.site)} ${esc(v.vehicle)} ${v.lat.toFixed(5)}, ${v.lon.toFixed(5)} ${v.speed_kmh ?? ''} km/h ${time(v.ts)}</title></g>`;
  }).join('');
  // The latest geofence event of each vehicle, at the vehicle (the event carries no position).
  const last = new Map();
  for (const e of state.geofence) last.set(`${e.site}/${e.vehicle}`, e);
  $('#geo-marks').innerHTML = [...last.entries()].filter(([k]) => state.vehicles.has(k)).map(([k, e]) => {
    const v = state.vehicles.get(k);
    const [sx, sy] = toScreen(project(v.lat, v.lon));
    return `<g class="geo-mark" transform="translate(${sx} ${sy})"><path d="M0 -22 L6 -16 L0 -10 L-6 -16 Z"/>` +
      `<text x="8" y="-12" stroke-width="3">${esc(e.event)} ${esc(e.fence)}</text></g>`;
  }).join('');
  $('#map-note').textContent = `${vs.length} vehicle(s), ${fences.length} fence(s)${tilesUrl ? '' : ', no tiles configured'}`;
}

function renderStatus() {
  const el = $('#status');
  el.dataset.mode = state.mode;
  el.textContent = `${state.mode === 'stream' ? 'live' : state.mode === 'poll' ? 'polling' : 'offline'} · cursor ${state.cursor} · ${state.events} changes`;
}

const renderers = { sites: renderSites, stock: renderStock, escrow: renderEscrow, alerts: renderAlerts, orders: renderOrders, geofence: renderGeofence, map: renderMap, status: renderStatus };
function render() {
  frame = 0;
  for (const part of dirty) renderers[part]();
  dirty.clear();
}

// ---------- start ----------
function logout(message = '') {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();  // drops the state and any stream; the form comes up without a token
  if (message) console.warn(message);
}

async function start() {
  try { tilesUrl = (await (await fetch('config.json', { cache: 'no-store' })).json()).tiles_url || ''; } catch { tilesUrl = ''; }
  $('#login').hidden = true;
  $('#console').hidden = false;
  $('#logout').hidden = false;
  try {
    state.cursor = await headCursor();
    const sites = await loadSites();
    await Promise.all(sites.map((s) => loadSite(s.site)));
  } catch (e) {
    if (e instanceof Unauthorized) {
      sessionStorage.removeItem(TOKEN_KEY);
      return showLogin('The hub refused this token.');
    }
    setMode('offline');
  }
  document.body.dataset.ready = '1';
  setInterval(() => loadSites().catch(() => {}), SITES_REFRESH_MS);
  setInterval(() => touch('sites'), 1000);  // ages
  live();
}

function showLogin(message = '') {
  $('#console').hidden = true;
  $('#logout').hidden = true;
  $('#login').hidden = false;
  $('#login-error').textContent = message;
}

$('#login').addEventListener('submit', (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $('#token').value.trim());
  $('#token').value = '';
  start();
});
$('#logout').addEventListener('click', () => logout());

takeTokenFromFragment();
if (token()) start(); else showLogin();
