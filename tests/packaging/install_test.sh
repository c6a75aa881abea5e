#!/usr/bin/env bash
# Package install proof: builds freshsync-edge and freshsync-hub with cpack from the current
# build, installs them with apt into a clean Debian 12 (bookworm, minbase) root, checks what
# they installed, starts the packaged Mosquitto config, then removes and purges both.
#
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
# Needs root, mmdebstrap, unshare, ip and the mosquitto clients on the host,
# and the Debian mirror the host's apt uses. Exit 77 (CTest: skipped) when not root or a tool
# is missing.
#
# The clean root is cached as a tarball, one per day, in $FRESHSYNC_ROOT_CACHE (default
# ~/.cache/freshsync), so reruns skip the bootstrap; each run unpacks a fresh copy of it.
set -euo pipefail

# The whole test is one function, read by bash before it runs: editing this file while a run
# is in progress cannot change what that run does.
main() {
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)

skip() { echo "SKIP: $*"; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "needs root (chroot, mount, unshare)"
# mmdebstrap, not debootstrap: the same minbase root from the same mirror, with one apt/dpkg
# run instead of one dpkg run per package; measured side by side here it took 48 s of CPU
# against debootstrap's 82 s, and CI pays the bootstrap on every fresh machine.
for tool in mmdebstrap unshare ip curl mosquitto_pub mosquitto_sub cpack; do
  command -v "$tool" >/dev/null || skip "$tool not installed (scripts/install-deps.sh installs it)"
done

t0=$SECONDS
step() { echo "== [$((SECONDS - t0))s] $*"; }
failures=0
check() {  # check DESCRIPTION COMMAND...: runs COMMAND, records a failure without stopping
  local what=$1; shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; failures=$((failures + 1)); fi
}

work=$(mktemp -d "${TMPDIR:-/tmp}/freshsync-install.XXXXXX")
root=$work/root
cleanup() {
  # Every exit path: unmount what was mounted, then delete. --one-file-system
  # keeps rm out of anything still mounted.
  for m in proc dev/pts dev; do
    if mountpoint -q "$root/$m" 2>/dev/null; then umount "$root/$m" || umount -l "$root/$m" || true; fi
  done
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- 1. The packages, from the current build -------------------------------------------------
step "cpack"
(cd "$build" && cpack -G DEB -B "$work/debs" >"$work/cpack.log" 2>&1) || { cat "$work/cpack.log"; exit 1; }
edge_deb=$(ls "$work"/debs/freshsync-edge_*.deb)
hub_deb=$(ls "$work"/debs/freshsync-hub_*.deb)
for deb in "$edge_deb" "$hub_deb"; do
  echo "$(basename "$deb"): Depends: $(dpkg-deb -f "$deb" Depends)"
done
# dpkg-shlibdeps must have found the shared libraries: a hand-written list goes stale.
check "edge Depends has the shared libraries (libc6, paho, sqlite)" \
  sh -c "dpkg-deb -f '$edge_deb' Depends | grep -q libc6 && dpkg-deb -f '$edge_deb' Depends | grep -q libpaho-mqtt && dpkg-deb -f '$edge_deb' Depends | grep -q libsqlite3"
check "edge Depends on mosquitto" sh -c "dpkg-deb -f '$edge_deb' Depends | grep -q 'mosquitto'"
check "hub Depends has the shared libraries (libc6, ssl, sqlite)" \
  sh -c "dpkg-deb -f '$hub_deb' Depends | grep -q libc6 && dpkg-deb -f '$hub_deb' Depends | grep -q libssl && dpkg-deb -f '$hub_deb' Depends | grep -q libsqlite3"

# --- 2. A clean Debian 12 root ----------------------------------------------------------------
# The Debian sources the host's apt uses (deb822 .sources and one-line .list), bookworm suites.
host_sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] && awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                          if ($(i+1) ~ /^bookworm/) { line = "deb " $i; for (j = i+1; j <= NF; j++) line = line " " $j; print line } }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] && awk 'function flush() { if (types ~ /(^| )deb( |$)/ && enabled != "no")
                                             for (u in uris) for (s in suites) if (suites[s] ~ /^bookworm/) print "deb " uris[u] " " suites[s] " " comps
                                           types = ""; enabled = ""; comps = ""; delete uris; delete suites }
                        /^[ \t]*$/ { flush(); next }
                        /^[ \t]*#/ { next }
                        { key = tolower($1); sub(/:$/, "", key); $1 = "" ; sub(/^ /, "") }
                        key == "types" { types = $0 } key == "enabled" { enabled = tolower($0) }
                        key == "components" { comps = $0 }
                        key == "uris" { split($0, uris, " ") } key == "suites" { split($0, suites, " ") }
                        END { flush() }' "$f"
  done
}
host_sources | sort -u >"$work/sources.list"
[[ -s $work/sources.list ]] || echo "deb http://deb.debian.org/debian bookworm main" >"$work/sources.list"
echo "Debian sources:"; sed 's/^/  /' "$work/sources.list"

cache_dir=${FRESHSYNC_ROOT_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/freshsync}
cache=$cache_dir/bookworm-minbase-$(date -u +%Y%m%d).tar
mkdir -p "$cache_dir"
if [[ ! -s $cache ]]; then
  step "bootstrap a bookworm minbase root with mmdebstrap (cached in $cache)"
  rm -f "$cache_dir"/bookworm-minbase-*.tar   # yesterday's root: stale package lists
  # Package lists kept (skip cleanup) so apt in the test root resolves without a download.
  mmdebstrap --variant=minbase --mode=root --format=tar --dpkgopt=force-unsafe-io \
    --skip=cleanup/apt/lists bookworm "$cache.part.$$" "$work/sources.list" >"$work/bootstrap.log" 2>&1 \
    || { tail -30 "$work/bootstrap.log"; rm -f "$cache.part.$$"; exit 1; }
  mv "$cache.part.$$" "$cache"   # atomic: a parallel run sees the whole root or none
fi
step "unpack a fresh root"
mkdir "$root"
tar -C "$root" -xf "$cache"

# The root as a chroot: /proc and /dev from the host, the host's resolver, no service starts
# (policy-rc.d 101: there is no init in a chroot), dpkg without fsync (a throwaway root).
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
cp /etc/resolv.conf "$root/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" && chmod 0755 "$root/usr/sbin/policy-rc.d"
echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/unsafe-io"
mkdir -p "$root/tmp/debs" && cp "$edge_deb" "$hub_deb" "$root/tmp/debs/"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 HOME=/root \
              DEBIAN_FRONTEND=noninteractive "$@"; }
check "the root has no systemd running (the maintainer scripts must cope)" test ! -d "$root/run/systemd/system"

# --- 3. Install, as an operator does -----------------------------------------------------------
step "apt-get update"
in_root apt-get update -qq
step "apt-get install ./freshsync-edge"
in_root apt-get install -y -q "/tmp/debs/$(basename "$edge_deb")" | tail -5
step "apt-get install ./freshsync-hub"
in_root apt-get install -y -q "/tmp/debs/$(basename "$hub_deb")" | tail -5
check "both packages installed" sh -c "chroot '$root' dpkg-query -W -f='\${Status}\n' freshsync-edge freshsync-hub | grep -c 'install ok installed' | grep -qx 2"

step "checks"
check "the hub ships its OpenAPI description, the same bytes hubd serves" \
  cmp "$root/usr/share/freshsync/openapi.json" "$src/hub/openapi.json"
# The binaries run, on the shipped configs.
check "edged --check-config on the shipped edged.toml exits 0" in_root edged --config /etc/freshsync/edged.toml --check-config
# As the unit runs it: User=freshsync, the privacy key handed over as a credential (the
# key file itself is root's). A bad credential must fail the check: it is really read.
creds=/run/credentials/edged.service
mkdir -p "$root$creds" && cp "$root/etc/freshsync/privacy.key" "$root$creds/privacy.key"
chroot "$root" chown -R freshsync: "$creds"
as_unit() { chroot --userspec=freshsync:freshsync "$root" /usr/bin/env -i PATH=/usr/bin:/bin CREDENTIALS_DIRECTORY="$creds" "$@"; }
check "as edged.service runs it (User=freshsync, privacy.key credential): --check-config exits 0" \
  as_unit edged --config /etc/freshsync/edged.toml --check-config
echo not-a-key >"$root$creds/privacy.key"
check "... and the credential is what it reads (a bad key fails the check)" \
  sh -c "! chroot --userspec=freshsync:freshsync '$root' /usr/bin/env -i CREDENTIALS_DIRECTORY='$creds' /usr/bin/edged --config /etc/freshsync/edged.toml --check-config"
cp "$root/etc/freshsync/privacy.key" "$root$creds/privacy.key"   # the real one again, for the run below
check "edged --help" in_root sh -c 'edged --help >/dev/null'
check "edgectl --help" in_root sh -c 'edgectl --help >/dev/null'
check "edge-sim --help" in_root sh -c 'edge-sim --help >/dev/null'
set +e
in_root hubd --config /etc/freshsync/hubd.toml --check-config >"$work/hub-check" 2>&1; hub_rc=$?
set -e
echo "  hubd --check-config (no certificates yet): rc=$hub_rc: $(cat "$work/hub-check")"
check "hubd --check-config without certificates exits 2" test "$hub_rc" -eq 2
check "... and names the missing certificate file" grep -Eq '/etc/freshsync/(ca|hub)\.(crt|key)' "$work/hub-check"
# With the operator's certificates in place, the shipped hubd.toml is valid.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=freshsync-test-ca -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=hub.freshsync.test -keyout "$work/hub.key" -out "$work/hub.csr" 2>/dev/null
openssl x509 -req -in "$work/hub.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial -days 2 -out "$work/hub.crt" 2>/dev/null
install -m 0644 "$work/ca.crt" "$work/hub.crt" "$root/etc/freshsync/"
install -m 0600 "$work/hub.key" "$root/etc/freshsync/"
check "hubd --check-config with the certificates in place exits 0" in_root hubd --config /etc/freshsync/hubd.toml --check-config

# The system user from sysusers.d, the directories from tmpfiles.d, owner and mode as written.
check_user_and_dirs() {  # check_user_and_dirs LABEL
  local user home type path mode owner group want got
  user=$(awk '$1 == "u" { print $2 }' "$src/systemd/freshsync.sysusers")
  home=$(awk '$1 == "u" { print $NF }' "$src/systemd/freshsync.sysusers")
  check "$1: user $user exists with home $home" sh -c "chroot '$root' getent passwd '$user' | cut -d: -f6 | grep -qx '$home'"
  check "$1: group $user exists" sh -c "chroot '$root' getent group '$user' >/dev/null"
  check "$1: user $user has no login shell" sh -c "chroot '$root' getent passwd '$user' | cut -d: -f7 | grep -Eq '(nologin|false)\$'"
  while read -r type path mode owner group _; do
    [[ $type == d ]] || continue
    want="$mode $owner $group"; want=${want#0}
    got=$(chroot "$root" stat -c '%a %U %G' "$path" 2>&1 || true)   # names from the root's passwd
    check "$1: tmpfiles: $path is $want (got $got)" test "$got" = "$want"
  done < <(grep -v '^#' "$src/systemd/freshsync.tmpfiles")
}
check_user_and_dirs "minbase (adduser fallback)"

# Units, sysusers.d and tmpfiles.d where systemd looks for them, byte for byte what we ship.
for f in edged.service:lib/systemd/system/edged.service hubd.service:lib/systemd/system/hubd.service \
         freshsync.sysusers:lib/sysusers.d/freshsync-edge.conf freshsync.tmpfiles:lib/tmpfiles.d/freshsync-hub.conf; do
  check "/usr/${f#*:} installed" cmp -s "$src/systemd/${f%%:*}" "$root/usr/${f#*:}"
done

# Every file either package ships under /etc is a conffile, and the conffiles lists match.
for pkg in edge hub; do
  in_root dpkg-query -W -f='${Conffiles}\n' "freshsync-$pkg" | awk 'NF { print $1 }' | sort >"$work/$pkg.conffiles"
  in_root dpkg -L "freshsync-$pkg" | grep '^/etc/' | while read -r f; do [[ -f $root$f ]] && echo "$f"; done | sort >"$work/$pkg.etc"
  echo "  freshsync-$pkg conffiles: $(tr '\n' ' ' <"$work/$pkg.conffiles")"
  check "freshsync-$pkg: conffiles are exactly its files under /etc" cmp -s "$work/$pkg.conffiles" "$work/$pkg.etc"
  check "freshsync-$pkg: conffiles as listed in packaging/debian/$pkg/conffiles" \
    cmp -s "$work/$pkg.conffiles" <(sort "$src/packaging/debian/$pkg/conffiles")
done

# Secrets postinst generates: mode and owner.
got=$(chroot "$root" stat -c '%a %U' /etc/freshsync/privacy.key 2>&1 || true)
check "privacy.key generated, 0600 root (got $got)" test "$got" = "600 root"
check "privacy.key holds 64 hex digits" sh -c "grep -Eqx '[0-9a-f]{64}' '$root/etc/freshsync/privacy.key'"
got=$(chroot "$root" stat -c '%a %U %G' /etc/mosquitto/freshsync.passwd 2>&1 || true)
check "freshsync.passwd created, 0640 root:mosquitto (got $got)" test "$got" = "640 root mosquitto"
got=$(chroot "$root" stat -c '%a %U %G' /etc/mosquitto/certs/freshsync-broker.key 2>&1 || true)
check "placeholder broker TLS key generated, 0640 root:mosquitto (got $got)" test "$got" = "640 root mosquitto"
check "... with its self-signed certificate" \
  sh -c "openssl x509 -in '$root/etc/mosquitto/certs/freshsync-broker.crt' -noout -subject | grep -q 'FreshSync placeholder'"

# --- 4. The packaged broker config, in Debian's mosquitto, in a private network namespace -------
# (its listeners are the real ports 1883 and 9001; a namespace keeps them off the host's).
step "mosquitto with the installed config"
check "freshsync.conf in /etc/mosquitto/conf.d" test -f "$root/etc/mosquitto/conf.d/freshsync.conf"
in_root mosquitto_passwd -b /etc/mosquitto/freshsync.passwd edged pw-edged
in_root mosquitto_passwd -b /etc/mosquitto/freshsync.passwd truck-07 pw-truck
in_root mosquitto_passwd -b /etc/mosquitto/freshsync.passwd terminal-01 pw-terminal
# What the operator does before starting edged: the broker password in the shipped config.
sed -i 's/^# password = .*/password = "pw-edged"/' "$root/etc/freshsync/edged.toml"
cat >"$work/broker.sh" <<EOF
set -u
ip link set lo up
# What the Debian unit does before starting the broker (the pid file lives there).
mkdir -p '$root/run/mosquitto' && chroot '$root' chown mosquitto: /run/mosquitto
chroot '$root' /usr/sbin/mosquitto -c /etc/mosquitto/mosquitto.conf >'$work/mosquitto.out' 2>&1 &
pid=\$!
for i in \$(seq 100); do ss -ltn | grep -q ':1883 ' && ss -ltn | grep -q ':8883 ' && ss -ltn | grep -q ':9001 ' && break; sleep 0.1; done
rc=0
ss -ltn >'$work/listen'
cat '$work/listen'
# The device listener speaks TLS 1.2+ with the placeholder certificate, and refuses TLS 1.1.
openssl s_client -connect 127.0.0.1:8883 -tls1_2 </dev/null >'$work/tls12.out' 2>&1
openssl s_client -connect 127.0.0.1:8883 -tls1_1 -cipher 'DEFAULT@SECLEVEL=0' </dev/null >'$work/tls11.out' 2>&1 && echo tls11-accepted >>'$work/tls11.out'
pub() { mosquitto_pub -h 127.0.0.1 -p 1883 -q 1 "\$@"; }
mosquitto_sub -h 127.0.0.1 -p 1883 -q 1 -u edged -P pw-edged -t 'fs/#' -v -W 4 >'$work/sub.out' 2>/dev/null &
sub=\$!
sleep 0.5
pub -u truck-07 -P pw-truck -t fs/vehicles/truck-08/gps -m not-yours || true
pub -u truck-07 -P pw-truck -t fs/vehicles/truck-07/gps -m yours || rc=1
pub -t fs/vehicles/truck-07/gps -m anonymous 2>/dev/null && echo anonymous-accepted >>'$work/sub.out'
wait \$sub
# edged as its unit runs it (User=freshsync, the key as a credential) on the shipped config:
# it gets ready, applies a terminal's stock movement that came through the ACLs, and stops
# cleanly on SIGTERM.
chroot --userspec=freshsync:freshsync '$root' /usr/bin/env -i PATH=/usr/bin:/bin CREDENTIALS_DIRECTORY='$creds' \
  /usr/bin/edged --config /etc/freshsync/edged.toml >'$work/edged.out' 2>&1 &
edged=\$!
for i in \$(seq 200); do curl -sf http://127.0.0.1:9464/readyz >/dev/null && break; sleep 0.1; done
curl -sf http://127.0.0.1:9464/readyz >/dev/null && echo ready >>'$work/edged.result'
pub -u terminal-01 -P pw-terminal -t fs/stock/movements -m '{"id":"m-1","sku":"carrot-1kg","delta":5,"reason":"receive"}'
for i in \$(seq 100); do
  chroot '$root' edgectl --config /etc/freshsync/edged.toml status --json 2>/dev/null | grep -q '"last_seq":1' && break
  sleep 0.1
done
chroot '$root' edgectl --config /etc/freshsync/edged.toml status --json >>'$work/edged.result' 2>&1
kill -TERM \$edged; wait \$edged; echo "stopped \$?" >>'$work/edged.result'
kill -TERM \$pid; wait \$pid
exit \$rc
EOF
set +e
unshare -n bash "$work/broker.sh"; broker_rc=$?
set -e
echo "  broker output:"; cat "$work/mosquitto.out" "$root/var/log/mosquitto/mosquitto.log" 2>/dev/null | tail -15 | sed 's/^/    /' || true
echo "  edged saw:"; sed 's/^/    /' "$work/sub.out" || true
check "the broker started with the packaged config and took a device's publish" test "$broker_rc" -eq 0
check "listens on 1883 (MQTT, loopback), 8883 (MQTT over TLS) and 9001 (websockets over TLS)" \
  sh -c "grep -q '127.0.0.1:1883 ' '$work/listen' && grep -q ':8883 ' '$work/listen' && grep -q ':9001 ' '$work/listen'"
check "8883 completes a TLS 1.2 handshake with the placeholder certificate" grep -q 'FreshSync placeholder' "$work/tls12.out"
check "8883 refuses TLS 1.1" sh -c "! grep -q tls11-accepted '$work/tls11.out'"
check "truck-07 publishes to its own topic" grep -qx 'fs/vehicles/truck-07/gps yours' "$work/sub.out"
check "truck-07 cannot publish to truck-08's topic" sh -c "! grep -q not-yours '$work/sub.out'"
check "anonymous clients are refused" sh -c "! grep -q anonymous '$work/sub.out'"
check "persistence: the broker saved its state on shutdown" test -s "$root/var/lib/mosquitto/mosquitto.db"
echo "  edged:"; sed 's/^/    /' "$work/edged.result" "$work/edged.out" 2>/dev/null | tail -20 || true
check "edged (User=freshsync, shipped config) got ready on the packaged broker" grep -qx ready "$work/edged.result"
check "edged applied a terminal's stock movement (outbox last_seq 1)" grep -q '"last_seq":1' "$work/edged.result"
check "edged stopped cleanly on SIGTERM (exit 0)" grep -qx 'stopped 0' "$work/edged.result"
rm -rf "$root/run/credentials"

# --- Upgrade in place (the same version again: postinst runs as on an upgrade) ---------------
step "reinstall freshsync-edge over itself"
key_before=$(cat "$root/etc/freshsync/privacy.key")
cp "$root/etc/mosquitto/certs/freshsync-broker.crt" "$work/broker.crt.before"
sed -i 's/^site = .*/site = "sh-pudong-01"/' "$root/etc/freshsync/edged.toml"
check "apt-get install --reinstall ./freshsync-edge" in_root apt-get install -y -q --reinstall "/tmp/debs/$(basename "$edge_deb")"
check "the privacy key survives an upgrade" test "$(cat "$root/etc/freshsync/privacy.key")" = "$key_before"
check "the operator's edit to edged.toml survives an upgrade" grep -qx 'site = "sh-pudong-01"' "$root/etc/freshsync/edged.toml"
check "the broker users survive an upgrade" grep -q '^truck-07:' "$root/etc/mosquitto/freshsync.passwd"
check "the broker certificate survives an upgrade" cmp -s "$work/broker.crt.before" "$root/etc/mosquitto/certs/freshsync-broker.crt"

# --- 5. Remove and purge ----------------------------------------------------------------------
step "remove freshsync-edge (the hub stays)"
check "apt-get remove freshsync-edge" in_root apt-get remove -y -q freshsync-edge
check "edged is gone" test ! -e "$root/usr/bin/edged"
check "edged.toml stays until purge" test -f "$root/etc/freshsync/edged.toml"
check "the hub still works after the edge left" in_root hubd --config /etc/freshsync/hubd.toml --check-config
step "remove freshsync-hub, then purge both"
check "apt-get remove freshsync-hub" in_root apt-get remove -y -q freshsync-hub
check "apt-get purge freshsync-edge freshsync-hub" in_root apt-get purge -y -q freshsync-edge freshsync-hub
check "neither package is left in dpkg's database" sh -c "! chroot '$root' dpkg-query -W freshsync-edge freshsync-hub 2>/dev/null | grep -q ."
for f in /etc/freshsync/edged.toml /etc/freshsync/hubd.toml /etc/freshsync/fences.geojson \
         /etc/mosquitto/conf.d/freshsync.conf /etc/mosquitto/freshsync.acl /etc/mosquitto/freshsync.passwd \
         /usr/lib/systemd/system/edged.service /usr/lib/sysusers.d/freshsync-edge.conf \
         /etc/mosquitto/certs/freshsync-broker.crt /etc/mosquitto/certs/freshsync-broker.key; do
  check "purged: $f" test ! -e "$root$f"
done
check "the operator's hub certificates stay" test -f "$root/etc/freshsync/hub.key"
check "purge keeps the site's store" test -f "$root/var/lib/freshsync/edge.db"
check "... and the privacy key that unseals it" test -f "$root/etc/freshsync/privacy.key"
check "mosquitto still parses its config after the purge" \
  unshare -n sh -c "ip link set lo up; chroot '$root' timeout -s TERM 2 /usr/sbin/mosquitto -c /etc/mosquitto/mosquitto.conf >/dev/null 2>&1; test \$? -eq 124"

# --- 6. Again with systemd installed (a Debian 12 server), still not PID 1 -------------------
# Now postinst takes the systemd-sysusers/systemd-tmpfiles path, and the root's own
# systemd-analyze verifies the installed units against the root's systemd.
step "install systemd (not running: still a chroot), then both packages again"
in_root userdel freshsync; in_root groupdel freshsync 2>/dev/null || true
in_root sh -c 'rm -rf /var/lib/freshsync /etc/freshsync'
in_root apt-get install -y -q --no-install-recommends systemd | tail -2
check "the root has systemd-sysusers and systemd-tmpfiles" in_root sh -c 'command -v systemd-sysusers && command -v systemd-tmpfiles'
check "the root has no systemd running" test ! -d "$root/run/systemd/system"
check "apt-get install ./freshsync-edge ./freshsync-hub (with systemd)" \
  in_root apt-get install -y -q "/tmp/debs/$(basename "$edge_deb")" "/tmp/debs/$(basename "$hub_deb")"
check_user_and_dirs "with systemd (sysusers/tmpfiles)"
check "edged --check-config on the shipped edged.toml exits 0 (with systemd)" in_root edged --config /etc/freshsync/edged.toml --check-config
set +e
in_root systemd-analyze verify /usr/lib/systemd/system/edged.service /usr/lib/systemd/system/hubd.service >"$work/verify" 2>&1; rc=$?
set -e
sed 's/^/  /' "$work/verify"
check "systemd-analyze verify in the root on the installed units" test "$rc" -eq 0
check "... and it has nothing to say about them" sh -c "! grep -E '(edged|hubd)\.service' '$work/verify'"
check "apt-get purge freshsync-edge freshsync-hub (with systemd)" in_root apt-get purge -y -q freshsync-edge freshsync-hub
check "neither package is left (with systemd)" sh -c "! chroot '$root' dpkg-query -W freshsync-edge freshsync-hub 2>/dev/null | grep -q ."

step "done: $failures failure(s)"
exit $((failures > 0))
}
main "$@"
