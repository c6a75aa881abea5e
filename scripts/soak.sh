#!/usr/bin/env bash
# The damage tests, again and again with new faults: the long soak that does not fit in CI.
# Each round runs every damage test once with a fresh FRESHSYNC_DAMAGE_SEED (the tests mix it
# into their fixed seeds; tests/support/harness.h, DamageSeed) and FRESHSYNC_DAMAGE_SCALE times
# their rounds (kill cycles, power cuts). It stops at the first failure and prints the command
# that repeats it; on success it prints one line per round and a summary.
#
#   scripts/soak.sh                          # 8 hours, scale 1, every damage test
#   scripts/soak.sh --hours 0.5 --scale 3    # half an hour, three times the cycles per test
#   scripts/soak.sh --rounds 2 --tests "crash_loop_pg power_loss"
#   BUILD_DIR=build-soak JOBS=2 scripts/soak.sh
#
# Needs what scripts/test.sh installs (Mosquitto, PostgreSQL 15; root, for PostgreSQL's own
# user and the full-disk test's tmpfs). Logs go to $SOAK_LOG_DIR (default: a new directory
# under /tmp, printed at the start); the failing test's whole output is kept there.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-release}
JOBS=${JOBS:-2}
HOURS=8
SCALE=1
MAX_ROUNDS=0  # 0: until the hours are over

# name | test binary | gtest filter. The same tests ctest runs as crash_loop_test, power_loss_test,
# ... (tests/damage/README.md), called directly: ctest's per-test timeouts would cut a scaled run.
ALL_TESTS=(
  "crash_loop|crash_loop_test|*SlowHundredKillsUnderLoad*"
  "crash_loop_pg|crash_loop_test|*Postgres*"
  "replicas_damage|hub_replicas_test|*SlowDamage*"
  "power_loss|store_damage_test|PowerLoss*"
  "disk_errors|store_damage_test|DiskErrors*"
  "journal_power_loss|journal_power_loss_test|*"
  "broker_faults|edged_faults_test|*Slow*"
  "disk_full|disk_full_test|*"
  "stock_crash|stock_crash_test|*"
)
SELECTED=""

usage() {
  sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
  echo "tests: $(for t in "${ALL_TESTS[@]}"; do printf '%s ' "${t%%|*}"; done)"
}

while (($#)); do
  case $1 in
    --hours) HOURS=$2; shift 2 ;;
    --scale) SCALE=$2; shift 2 ;;
    --rounds) MAX_ROUNDS=$2; shift 2 ;;
    --tests) SELECTED=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "soak.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[[ $SCALE =~ ^[1-9][0-9]*$ ]] || { echo "soak.sh: --scale must be a positive integer, not '$SCALE'" >&2; exit 2; }
[[ $MAX_ROUNDS =~ ^[0-9]+$ ]] || { echo "soak.sh: --rounds must be a number, not '$MAX_ROUNDS'" >&2; exit 2; }
[[ $HOURS =~ ^[0-9]*\.?[0-9]+$ ]] || { echo "soak.sh: --hours must be a number, not '$HOURS'" >&2; exit 2; }

TESTS=()
if [[ -z $SELECTED ]]; then
  TESTS=("${ALL_TESTS[@]}")
else
  for want in $SELECTED; do
    found=""
    for t in "${ALL_TESTS[@]}"; do [[ ${t%%|*} == "$want" ]] && found=$t; done
    [[ -n $found ]] || { echo "soak.sh: no damage test named '$want'" >&2; usage >&2; exit 2; }
    TESTS+=("$found")
  done
fi

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" >/dev/null
binaries=(edged hubd)
for t in "${TESTS[@]}"; do
  IFS='|' read -r _ bin _ <<<"$t"
  binaries+=("$bin")
done
cmake --build "$BUILD_DIR" -j"$JOBS" --target $(printf '%s\n' "${binaries[@]}" | sort -u)

export FRESHSYNC_BIN_DIR=$BUILD_DIR/bin
export FRESHSYNC_DAMAGE_SCALE=$SCALE
LOG_DIR=${SOAK_LOG_DIR:-$(mktemp -d /tmp/freshsync-soak.XXXXXX)}
mkdir -p "$LOG_DIR"
deadline=$(( $(date +%s) + $(awk -v h="$HOURS" 'BEGIN { printf "%d", h * 3600 }') ))
echo "soak: ${#TESTS[@]} tests per round, scale $SCALE, until $(date -d "@$deadline" '+%F %T')$( ((MAX_ROUNDS)) && echo " or $MAX_ROUNDS rounds"); logs in $LOG_DIR"

round=0
runs=0
start=$(date +%s)
while (( $(date +%s) < deadline )) && { ((MAX_ROUNDS == 0)) || ((round < MAX_ROUNDS)); }; do
  round=$((round + 1))
  # A fresh seed per round, never 0 (0 means "the fixed seeds").
  seed=$(( (RANDOM << 15 | RANDOM) + 1 ))
  for t in "${TESTS[@]}"; do
    IFS='|' read -r name bin filter <<<"$t"
    log=$LOG_DIR/round$round-$name.log
    t0=$(date +%s)
    # stock_crash_test draws a fresh workload seed per run unless FRESHSYNC_STOCK_SEED names one:
    # the round's seed, so that the repeat command below repeats it too.
    if FRESHSYNC_DAMAGE_SEED=$seed FRESHSYNC_STOCK_SEED=$seed "$FRESHSYNC_BIN_DIR/$bin" --gtest_filter="$filter" >"$log" 2>&1; then
      runs=$((runs + 1))
      figures=$(grep -h '^FIGURES\|^damage:' "$log" | tail -n 2 | tr '\n' ' ' | cut -c1-160 || true)
      echo "round $round seed $seed $name: passed in $(( $(date +%s) - t0 )) s ${figures}"
      rm -f "$log"
    else
      echo "round $round seed $seed $name: FAILED after $(( $(date +%s) - t0 )) s; its output: $log" >&2
      grep -h 'Failure\|Expected\|Which is\|error' "$log" | head -n 20 >&2 || true
      echo "repeat it with:" >&2
      echo "  FRESHSYNC_BIN_DIR=$FRESHSYNC_BIN_DIR FRESHSYNC_DAMAGE_SEED=$seed FRESHSYNC_STOCK_SEED=$seed FRESHSYNC_DAMAGE_SCALE=$SCALE $FRESHSYNC_BIN_DIR/$bin --gtest_filter='$filter'" >&2
      exit 1
    fi
  done
done
echo "soak: $runs test runs over $round rounds in $(( ($(date +%s) - start) / 60 )) min, no failure"
