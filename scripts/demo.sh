#!/usr/bin/env bash
# The FreshSync demo on one machine: a site broker (mosquitto), edged with its SQLite store,
# hubd (HTTPS, mutual TLS) and edge-sim's trucks, cold rooms and stock floor. It shows the
# site store filling and the synced data arriving at HQ through the HQ API, and HQ's orders,
# catalog and price change going down to the site and their states coming back.
# Usage: scripts/demo.sh [--postgres] [SECONDS]   (default 60; everything is left in demo-run/)
#   --postgres: the hub as the documented scale-out deployment (docs/operations.md): three hubd
#               replicas sharing one PostgreSQL 15 database, behind HAProxy in TCP mode (the
#               shipped packaging/haproxy/freshsync-hub.cfg), so TLS and the site's certificate
#               pass through to whichever replica takes the connection.
set -euo pipefail
cd "$(dirname "$0")/.."
postgres=0
if [ "${1:-}" = "--postgres" ]; then postgres=1; shift; fi
seconds=${1:-60}
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "${JOBS:-2}" --target edged edgectl hubd edge-sim

run=$PWD/demo-run
bin=$PWD/build/bin
rm -rf "$run"; mkdir -p "$run/pki"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "PKI: a CA, the hub's server certificate, and the site's client certificate (CN = site id)"
site=demo-site-01
(cd "$run/pki"
 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 -subj "/CN=FreshSync Demo CA" -keyout ca.key -out ca.crt
 printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > server.ext
 openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost -keyout hub.key -out hub.csr
 openssl x509 -req -in hub.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -extfile server.ext -out hub.crt
 openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$site" -keyout site.key -out site.csr
 openssl x509 -req -in site.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -out site.crt) >"$run/pki/openssl.log" 2>&1
token=$(openssl rand -hex 24)
token_sha=$(printf '%s' "$token" | sha256sum | cut -d' ' -f1)
echo "$token" > "$run/hq-token"
head -c 32 /dev/urandom > "$run/privacy.key"
head -c 32 /dev/urandom > "$run/hub-privacy.key"   # the hub seals HQ orders' customers while they wait

mqtt_port=$(free_port); hub_port=$(free_port); metrics_port=$(free_port)
cat > "$run/mosquitto.conf" <<CONF
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence true
persistence_location $run/
autosave_interval 5
max_queued_messages 1000000
log_dest file $run/mosquitto.log
CONF
# One hubd on SQLite, or (--postgres) three replicas on one PostgreSQL database behind HAProxy,
# which listens on $hub_port: the site and HQ see one address either way.
if [ "$postgres" = 1 ]; then
  replica_ports=("$(free_port)" "$(free_port)" "$(free_port)")
  pg_port=$(free_port)
  store_toml="[store]
backend = \"postgresql\"
url = \"postgresql://postgres@127.0.0.1:$pg_port/freshsync\""
else
  replica_ports=("$hub_port")
  store_toml="[store]
path = \"$run/hub.db\""
fi
hub_config() {  # the config of the replica listening on $1
cat <<CONF
listen = "127.0.0.1:$1"
[tls]
ca = "$run/pki/ca.crt"
cert = "$run/pki/hub.crt"
key = "$run/pki/hub.key"
$store_toml
[limits]
max_connections_per_address = 1024  # behind HAProxy every connection comes from its address
[privacy]
key_file = "$run/hub-privacy.key"
[[tokens]]
name = "hq-demo"
role = "writer"
sha256 = "$token_sha"
CONF
}
for i in "${!replica_ports[@]}"; do hub_config "${replica_ports[$i]}" > "$run/hubd-$i.toml"; done
"$bin/edge-sim" --write-fences "$run/fences.geojson"
cat > "$run/edged.toml" <<CONF
site = "$site"
[mqtt]
uri = "tcp://127.0.0.1:$mqtt_port"
topic_root = "fs"
[store]
path = "$run/edge.db"
durability = "normal"
[metrics]
listen = "127.0.0.1:$metrics_port"
[geofence]
file = "$run/fences.geojson"
[[coldchain.rule]]
sensors = "cold-*"
min_c = 0.0
max_c = 8.0
for_s = 120
[privacy]
key_file = "$run/privacy.key"
# HQ's allotment (docs/escrow.md): HQ may sell up to 20 crates of tomatoes even while the site is offline.
[escrow]
"veg-tomato-5kg" = 20
[hub]
url = "https://127.0.0.1:$hub_port"
ca = "$run/pki/ca.crt"
cert = "$run/pki/site.crt"
key = "$run/pki/site.key"
CONF

if [ "$postgres" = 1 ]; then
  step "PostgreSQL 15 on :$pg_port (its own cluster, run as the postgres user), database freshsync"
  pgdir=$(mktemp -d /tmp/freshsync-demo-pg.XXXXXX)
  pgbin=/usr/lib/postgresql/15/bin
  as_pg=()
  if [ "$(id -u)" = 0 ]; then chown postgres: "$pgdir"; as_pg=(runuser -u postgres --); fi
  "${as_pg[@]}" "$pgbin/initdb" -D "$pgdir/data" -A trust -U postgres -E UTF8 >"$run/postgres-initdb.log" 2>&1
  "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/postgres.log" -w \
    -o "-p $pg_port -k $pgdir -c listen_addresses=127.0.0.1" start >/dev/null
  pg_stop() { "${as_pg[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -m fast stop >/dev/null 2>&1 || true
              cp "$pgdir/postgres.log" "$run/" 2>/dev/null || true; rm -rf "$pgdir"; }
  trap 'cleanup; pg_stop' EXIT
  "$pgbin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres freshsync
  step "HAProxy :$hub_port (TCP mode, packaging/haproxy/freshsync-hub.cfg) -> hubd replicas :${replica_ports[*]}"
  sed -e "s/bind :8443/bind 127.0.0.1:$hub_port/" -e '/^ *server hub[0-9]/d' -e 's|^    log /dev/log local0|    log stdout format raw local0|' \
    packaging/haproxy/freshsync-hub.cfg > "$run/haproxy.cfg"
  for i in "${!replica_ports[@]}"; do echo "    server hub$((i + 1)) 127.0.0.1:${replica_ports[$i]}" >> "$run/haproxy.cfg"; done
  haproxy -db -f "$run/haproxy.cfg" >"$run/haproxy.log" 2>&1 & pids+=($!)
fi

step "Starting mosquitto :$mqtt_port, hubd (${#replica_ports[@]} on :${replica_ports[*]}), edged (site $site)"
mosquitto -c "$run/mosquitto.conf" >"$run/mosquitto.stdout" 2>&1 & pids+=($!)
for i in "${!replica_ports[@]}"; do
  "$bin/hubd" --config "$run/hubd-$i.toml" >"$run/hubd-$i.log" 2>&1 & pids+=($!)
done
"$bin/edged" --check-config --config "$run/edged.toml"
"$bin/edged" --config "$run/edged.toml" >"$run/edged.log" 2>&1 & pids+=($!)
sleep 1

step "edge-sim: 4 trucks, 3 cold rooms and the stock floor, at 30x speed, for ${seconds}s"
"$bin/edge-sim" --uri "tcp://127.0.0.1:$mqtt_port" --trucks 4 --cold-rooms 3 --orders-per-min 4 --faults-per-day 200 \
  --speed 30 --duration "$seconds" >"$run/edge-sim.log" 2>&1 & sim=$!; pids+=($sim)

hq() { curl -sS --fail-with-body --cacert "$run/pki/ca.crt" -H "Authorization: Bearer $token" "https://127.0.0.1:$hub_port$1"; }
# Pretty-prints a JSON answer with every list cut to its first few items.
show() { python3 -c '
import json, sys
def cut(v):
    if isinstance(v, list): return [cut(x) for x in v[:3]] + ([f"... {len(v) - 3} more"] if len(v) > 3 else [])
    if isinstance(v, dict): return {k: cut(x) for k, x in v.items()}
    return v
print(json.dumps(cut(json.load(sys.stdin)), indent=2))'; }
at_hq() { hq /v1/sites | python3 -c '
import json, sys
sites = json.load(sys.stdin).get("sites", [])
print(", ".join("%s: %d records, contiguous up to seq %d" % (s["site"], s["records"], s["contiguous_seq"]) for s in sites) or "nothing yet")'; }
hq_send() { curl -sS --cacert "$run/pki/ca.crt" -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -X "$1" --data "$3" -w ' -> HTTP %{http_code}\n' "https://127.0.0.1:$hub_port$2"; }
sent_down=0
ticks=0
while kill -0 "$sim" 2>/dev/null; do
  sleep 5
  ticks=$((ticks + 1))
  if [ "$sent_down" = 0 ] && [ "$ticks" -ge 2 ]; then
    sent_down=1
    step "HQ -> site: the catalog, three orders (one more than the stock can cover) and a cancel"
    hq_send PUT /v1/catalog/veg-tomato-5kg '{"name":"Tomatoes 5 kg","unit":"crate","price_cents":1290,"temp_min_c":8,"temp_max_c":12,"shelf_life_h":168}'
    hq_send PUT /v1/catalog/veg-lettuce-box '{"name":"Lettuce box","unit":"box","price_cents":850,"temp_min_c":1,"temp_max_c":4,"shelf_life_h":96}'
    hq_send POST "/v1/sites/$site/orders" '{"order_id":"hq-web-1001","lines":[{"sku":"veg-tomato-5kg","qty":2},{"sku":"veg-lettuce-box","qty":1}],"customer":{"name":"Li Wei","phone":"+86 21 5555 0101","address":"88 Century Ave, Pudong"}}'
    hq_send POST "/v1/sites/$site/orders" '{"order_id":"hq-web-1002","lines":[{"sku":"veg-carrot-10kg","qty":1}]}'
    hq_send POST "/v1/sites/$site/orders" '{"order_id":"hq-web-1003","lines":[{"sku":"veg-potato-20kg","qty":100000}]}'
    hq_send POST "/v1/sites/$site/orders/hq-web-1002/cancel" '{"reason":"customer changed their mind"}'
    step "HQ -> site: an order the hub decides at once from the site's escrow allotment (\"decided_by\": \"hub\")"
    hq_send POST "/v1/sites/$site/orders" '{"order_id":"hq-web-1004","lines":[{"sku":"veg-tomato-5kg","qty":3}]}'
    step "HQ -> site: a price change (the site keeps the newest version)"
    hq_send PUT /v1/catalog/veg-tomato-5kg '{"name":"Tomatoes 5 kg","unit":"crate","price_cents":1190,"temp_min_c":8,"temp_max_c":12,"shelf_life_h":168}'
  fi
  status=$("$bin/edgectl" --config "$run/edged.toml" status --json 2>/dev/null || echo '{}')
  hq_view=$(at_hq 2>/dev/null || echo "hub not answering")
  echo "site: $status"
  echo "  HQ:   $hq_view"
done
sleep 3

step "What the site store holds (sqlite3 $run/edge.db)"
sqlite3 -header -column "$run/edge.db" "SELECT (SELECT count(*) FROM outbox) AS change_records, (SELECT count(*) FROM dead_letters) AS dead_letters, (SELECT count(*) FROM orders) AS orders, (SELECT IFNULL(sum(reserved), 0) FROM stock) AS units_reserved, (SELECT count(*) FROM outbox WHERE entity = 5) AS geofence_events, (SELECT count(*) FROM outbox WHERE entity = 6) AS coldchain_alert_records, (SELECT count(*) FROM climate_rollups) AS climate_rollups, (SELECT count(*) FROM dock_scans) AS dock_scans;"
step "HQ: GET /v1/changes?limit=3 (the change feed across sites)"
hq "/v1/changes?limit=3" | show
step "HQ: GET /v1/sites/$site/stock"
hq "/v1/sites/$site/stock" | show
step "HQ: GET /v1/sites/$site/orders (orders reserve stock when created)"
hq "/v1/sites/$site/orders" | show
step "HQ: GET /v1/sites/$site/vehicles (latest positions)"
hq "/v1/sites/$site/vehicles" | show
step "HQ: GET /v1/sites/$site/geofence (trucks entering and leaving fences)"
hq "/v1/sites/$site/geofence" | show
step "HQ: GET /v1/sites/$site/alerts (open cold-chain alerts)"
hq "/v1/sites/$site/alerts" | show
step "HQ: GET /v1/sites/$site/dock-scans (pallets in at the receiving door, out at the loading door)"
hq "/v1/sites/$site/dock-scans" | show
step "Downstream at the site: HQ's catalog (sqlite3 edge.db), and HQ's orders reserved or refused"
sqlite3 -header -column "$run/edge.db" "SELECT sku, name, unit, price_cents, version FROM catalog ORDER BY sku;"
sqlite3 -header -column "$run/edge.db" "SELECT order_id, status, actor, IFNULL(reason, '') AS reason, down_seq FROM orders WHERE order_id LIKE 'hq-web-%' ORDER BY order_id;"
sqlite3 -header -column "$run/edge.db" "SELECT order_id, sku, lot, qty FROM reservations WHERE order_id LIKE 'hq-web-%' ORDER BY order_id, sku;"
step "HQ: GET /v1/sites/$site/downstream (every command delivered and applied)"
hq "/v1/sites/$site/downstream" | show
step "HQ: the escrow allotment, granted by the site and used by the hub's decisions (GET /v1/sites/$site/escrow)"
hq "/v1/sites/$site/escrow" | show
step "HQ: the states of its orders, back from the site (GET /v1/sites/$site/orders)"
hq "/v1/sites/$site/orders" | python3 -c '
import json, sys
for o in json.load(sys.stdin).get("orders", []):
    if o["order_id"].startswith("hq-web-"):
        print("%-12s %-10s by %s" % (o["order_id"], o["status"], o.get("actor", "")))'
if [ "$postgres" = 1 ]; then
  step "PostgreSQL: what the replicas wrote (psql), and which replica took how many requests (haproxy.log)"
  psql -X -h 127.0.0.1 -p "$pg_port" -U postgres -d freshsync -c "SELECT s.site, s.contiguous_seq, (SELECT count(*) FROM changes c WHERE c.site_id = s.site_id) AS feed_rows FROM sites s;"
  grep -o 'hubd_replicas/hub[0-9]' "$run/haproxy.log" | sort | uniq -c || true
fi
step "Done. Logs, stores and config are in demo-run/. HQ token: $(cat "$run/hq-token")"
