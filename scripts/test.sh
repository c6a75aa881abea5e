#!/usr/bin/env bash
# Builds FreshSync and runs every test: the default build, then ASan/UBSan and TSan builds
# of the unit and integration tests, then a short libFuzzer run of every fuzz target
# (scripts/fuzz.sh). Usage: scripts/test.sh [--quick] (skip sanitizer builds and fuzzing)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0; [[ ${1:-} == --quick ]] && quick=1
# Each stage's elapsed time goes to the log, so a slow CI run shows where its minutes went.
started=$SECONDS
stage() { echo "== test.sh: $* (at $((SECONDS - started)) s)"; }
stage "installing dependencies"
scripts/install-deps.sh
# puppeteer-core for tests/browser/, exactly as its lockfile says (it drives Debian's chromium
# and downloads no browser).
(cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
jobs=${JOBS:-2}

# ccache, where a developer has it, makes rebuilds across worktrees cheap; CI has none.
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)

build() {  # build DIR [cmake args...]
  local dir=$1; shift
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

stage "default build"
build build -DCMAKE_BUILD_TYPE=Release  # what the packages are built from; GCC 12 at -O3 must stay warning-free
stage "default tests"
(cd build && ctest --output-on-failure -j "$jobs" -LE "slow|sanitizer-skip" --timeout 600)
if ((quick)); then
  (cd build && ctest --output-on-failure -L slow --timeout 900)
else
  # The executables a sanitizer suite needs: those of the tests `ctest ARGS` selects, read from
  # the generated CTestTestfile.cmake files (ctest shows a test's command only once its binary
  # exists), and the daemons (each test target depends on those it starts; named here as well so
  # that the tree always has them). Building only these skips the slow-only test programs.
  suite_targets() {  # suite_targets DIR CTEST-ARGS...
    local dir=$1; shift
    local names; names=$(cd "$dir" && ctest -N "$@" | sed -n 's/^ *Test *#[0-9]*: *//p')
    local bin; bin=$(cd "$dir" && pwd)/bin
    find "$dir" -name CTestTestfile.cmake -exec grep -h '^add_test(' {} + |
      sed -n 's/^add_test(\[=\[\([^]]*\)\]=\] "\([^"]*\)".*/\1 \2/p' |
      while read -r name path; do
        if grep -qxF "$name" <<<"$names" && [[ $path == "$bin"/* ]]; then basename "$path"; fi
      done | sort -u
    printf '%s\n' edged hubd edgectl edge-sim
  }
  san_build() {  # san_build DIR SANITIZER OPT-LEVEL CTEST-ARGS...
    local dir=$1 sanitizer=$2 opt=$3; shift 3
    cmake -S . -B "$dir" -G Ninja "${launcher[@]}" -DFRESHSYNC_SANITIZE="$sanitizer" -DCMAKE_BUILD_TYPE=None \
      "-DCMAKE_CXX_FLAGS=$opt -g1" -DFRESHSYNC_BUILD_BENCH=OFF >/dev/null
    mapfile -t targets < <(suite_targets "$dir" "$@")
    cmake --build "$dir" -j "$jobs" --target "${targets[@]}"
  }
  # The TSan tree and the fuzz targets compile in the background at nice 19 from here on: the
  # slow suites below mostly wait (kills, restarts, broker autosaves), and at nice 19 the
  # compiler only takes CPU that the tests leave idle. They are waited for before their tests.
  # Line tables only (-g1) in both sanitizer trees: file:line in reports for less compile time.
  # TSan at -O1: unoptimised code under TSan is several times slower and its suites are timed.
  (
    set -e
    renice -n 19 -p "$BASHPID" >/dev/null  # the compilers inherit it
    san_build build-tsan thread -O1 -L tsan
    FUZZ_BUILD_ONLY=1 scripts/fuzz.sh
  ) >build/background-builds.log 2>&1 &
  background_pid=$!

  stage "slow tests (TSan and fuzz builds in the background at nice 19)"
  (cd build && ctest --output-on-failure -L slow -LE install --timeout 900)
  # The package install test (3-9 min on a fresh machine) mostly waits on the Debian mirror and
  # dpkg, so it runs while the ASan tree compiles, and is waited for before any timing-driven
  # suite runs again. Its output is printed when it ends.
  (cd build && ctest --output-on-failure -L install --timeout 900 >install-test.log 2>&1) &
  install_pid=$!

  stage "ASan/UBSan build (package install test alongside)"
  # -O0: the ASan+UBSan tree is the longest compile of the run (Beast's templates under UBSan),
  # and at -O0 it compiles in about 60 % of the CPU time of -O1 (2026-12-07: 1,445 against
  # 2,339 CPU-s), while the suite runs 264 s instead of 200 s.
  san_build build-asan address -O0 -LE "slow|sanitizer-skip"
  install_rc=0; wait "$install_pid" || install_rc=$?
  cat build/install-test.log
  ((install_rc == 0)) || { echo "test.sh: package_install_test failed" >&2; exit 1; }
  stage "ASan/UBSan tests"
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure -j "$jobs" -LE "slow|sanitizer-skip" --timeout 900)
  stage "waiting for the background TSan and fuzz builds"
  background_rc=0; wait "$background_pid" || background_rc=$?
  tail -n 5 build/background-builds.log
  ((background_rc == 0)) || { cat build/background-builds.log; echo "test.sh: the TSan or fuzz build failed" >&2; exit 1; }
  stage "TSan tests"
  (cd build-tsan && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
     ctest --output-on-failure -j "$jobs" -L tsan --timeout 900)
  # libFuzzer targets (clang, ASan+UBSan), FUZZ_SECONDS each over fuzz/corpus (fuzz/README.md);
  # the build above left nothing to compile.
  stage "fuzzing"
  scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
fi
stage "done"
