#!/bin/sh
# Builds the libFuzzer targets with clang, ASan and UBSan in build-fuzz/ and
# runs each for FUZZ_SECONDS (default 60) on a scratch copy of its checked-in
# corpus (tests/fuzz/corpus/<target>/). Exits non-zero on the first crash,
# leak, sanitizer report or invariant violation; the reproducer is left in
# build-fuzz/artifacts/<target>/.
#   FUZZ_SECONDS=300 tools/fuzz.sh                 all targets, 5 min each
#   tools/fuzz.sh fuzz_address                     one target
#   FUZZ_JOBS=2 tools/fuzz.sh                      parallel workers per target
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$here/build-fuzz}
seconds=${FUZZ_SECONDS:-60}
jobs=${FUZZ_JOBS:-1}
targets=${*:-"fuzz_server_session fuzz_data_decoder fuzz_address"}

command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (tools/install-deps.sh installs it)" >&2; exit 2; }

cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DOUTBOX_FUZZ=ON -DOUTBOX_SANITIZE=ON -DOUTBOX_TESTS=OFF >/dev/null
# shellcheck disable=SC2086
cmake --build "$build" -j2 --target $targets

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

status=0
for t in $targets; do
  seeds=$here/tests/fuzz/corpus/$t
  work=$build/corpus/$t
  art=$build/artifacts/$t
  mkdir -p "$work" "$art"
  parallel=""
  [ "$jobs" -gt 1 ] && parallel="-jobs=$jobs -workers=$jobs"
  echo "== $t: ${seconds}s"
  # New inputs go to the scratch corpus (first directory), the checked-in
  # seeds are only read.
  # shellcheck disable=SC2086
  if ! "$build/bin/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 $parallel \
        -artifact_prefix="$art/" "$work" "$seeds"; then
    echo "fuzz.sh: $t FAILED; reproducer in $art/" >&2
    status=1
  fi
done
exit $status
