#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan+UBSan; fuzz/README.md) and runs each one for
# SECONDS (default 15) over its seed corpus in fuzz/corpus/<target>/. Fails on any crash,
# sanitizer report, leak, timeout or broken contract; the input that did it is saved in
# build-fuzz/artifacts/<target>/ and the command to replay it is printed.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]    (targets: edge_decode hub_batch config hub_query geofence tls_stream)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-15}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(edge_decode hub_batch config hub_query geofence tls_stream)
jobs=${JOBS:-2}
dir=${FUZZ_BUILD_DIR:-build-fuzz}

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
# -O1 -g1: fast enough to fuzz, cheap to compile, file:line in reports.
cmake -S . -B "$dir" -G Ninja -DFRESHSYNC_FUZZ=ON -DCMAKE_BUILD_TYPE=None "-DCMAKE_CXX_FLAGS=-O1 -g1" \
  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang "${launcher[@]}" >/dev/null
cmake --build "$dir" -j "$jobs" --target fuzz
# FUZZ_BUILD_ONLY=1: stop here (scripts/test.sh builds the targets in the background early on).
[[ ${FUZZ_BUILD_ONLY:-0} == 1 ]] && exit 0

failed=()
for t in "${targets[@]}"; do
  seeds=fuzz/corpus/$t
  [[ -d $seeds ]] || { echo "fuzz.sh: no corpus $seeds" >&2; exit 2; }
  # New inputs go to a scratch corpus; the seeds in the repository stay small and reviewed.
  work=$dir/corpus/$t artifacts=$dir/artifacts/$t
  mkdir -p "$work" "$artifacts"
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
        -artifact_prefix="$artifacts/")
  [[ -f fuzz/$t.dict ]] && args+=(-dict="fuzz/$t.dict")
  echo "== fuzz_$t: ${seconds}s"
  if ! ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
       "$dir/bin/fuzz_$t" "${args[@]}" "$work" "$seeds" >"$dir/fuzz_$t.log" 2>&1; then
    tail -n 60 "$dir/fuzz_$t.log"
    echo "fuzz_$t FAILED; replay with: $dir/bin/fuzz_$t $artifacts/<crash-file>" >&2
    failed+=("$t")
  else
    grep -E "^stat::number_of_executed_units|^#[0-9]+.*DONE" "$dir/fuzz_$t.log" | tr '\n' ' '; echo
  fi
done
if ((${#failed[@]})); then
  echo "fuzz.sh: failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz.sh: all ${#targets[@]} targets clean for ${seconds}s each"
