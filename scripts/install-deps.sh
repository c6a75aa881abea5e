#!/usr/bin/env bash
# Installs the Debian 12 packages FreshSync builds, tests and runs with. Idempotent.
set -euo pipefail
PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libpaho-mqttpp-dev libpaho-mqtt-dev mosquitto mosquitto-clients
  libsqlite3-dev sqlite3 libcurl4-openssl-dev curl libssl-dev openssl
  libprotobuf-dev protobuf-compiler libzstd-dev zstd
  libspdlog-dev libfmt-dev libgtest-dev libgmock-dev libsystemd-dev
  libtomlplusplus-dev nlohmann-json3-dev libcpp-httplib-dev libcli11-dev libsodium-dev
  postgresql-15 libpq-dev postgresql-15-partman  # hub: the PostgreSQL store (docs/architecture-hub.md); tests start their own cluster
  prometheus  # promtool lints the /metrics text in the tests (common/prometheus_test.cc, hub tests)
  haproxy  # tests/hub/haproxy_test.cc: the documented load balancer in front of hubd replicas
  librabbitmq-dev  # hub: rabbitmq-c, the AMQP relay of the change feed (hub/relay/amqp_relay.h)
  rabbitmq-server  # tests/hub/amqp_relay_test.cc starts its own node (tests/support/rabbitmq.h)
  libboost1.74-dev  # hub: Boost.Beast on asio, the event-driven HTTPS server (docs/security.md)
  clang libclang-rt-14-dev iproute2 procps psmisc
  mmdebstrap  # tests/packaging/install_test.sh: a clean Debian 12 root for the package install test
  chromium  # tests/browser/: the HQ console in a real browser (driven by puppeteer-core, no browser download)
  python3-jsonschema  # tests/hub/openapi_check.py: hubd's answers validated against hub/openapi.json
  python3-yaml  # tests/packaging/kubernetes_test.py reads the rendered Kubernetes manifests
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Node.js and npm for the browser test (tests/browser/): the machine's own, or Debian's.
if ! command -v npm >/dev/null 2>&1; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
fi
# kubectl (kustomize v4 or later: kubectl 1.21+) renders the Kubernetes manifests for
# tests/packaging/kubernetes_test.cc, which skips that part without it. Debian 12's
# kubernetes-client is 1.20 (kustomize v2.0.3: no directories in `resources`, no `patches`),
# too old for the manifests' syntax; take kubectl from pkgs.k8s.io or the cloud SDK.
command -v kubectl >/dev/null 2>&1 || echo "note: no kubectl; kubernetes_test renders no manifests (see above)"
# The packaged broker must not hold port 1883 or compete with the brokers the tests start.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  ${SUDO:-} systemctl stop mosquitto || true
fi
# Nor may the packaged RabbitMQ hold 5672, 25672 and epmd's 4369: the tests run their own node
# with its own ports and epmd.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
  ${SUDO:-} systemctl stop rabbitmq-server || true
  ${SUDO:-} systemctl disable rabbitmq-server >/dev/null 2>&1 || true
fi
