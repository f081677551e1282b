#!/usr/bin/env bash
# Installs the dependencies, builds outbox three times (release, ASan+UBSan,
# ThreadSanitizer), runs every test (unit and integration) in each build,
# then runs the fuzzers for FUZZ_SECONDS each. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/install-deps.sh
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure -j "$jobs")
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DOUTBOX_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ctest --output-on-failure -j "$jobs")
# ThreadSanitizer: the daemon's threads (loop, store writer, token runner,
# status reader, libuv's pool) under the unit and integration tests. Reports
# go to files as well as failing the process (halt_on_error), so a race in a
# process whose exit status a test does not check (outboxctl, a daemon
# killed on purpose) still fails CI. tools/tsan.supp holds only proven
# third-party false positives, each justified there.
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DOUTBOX_TSAN=ON >/dev/null
cmake --build build-tsan -j "$jobs"
tsan_logs=$(mktemp -d)
tsan_rc=0
(cd build-tsan && OUTBOX_SANITIZER=thread TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 log_path=$tsan_logs/tsan suppressions=$PWD/../tools/tsan.supp" \
   ctest --output-on-failure -j "$jobs") || tsan_rc=$?
if compgen -G "$tsan_logs/tsan.*" >/dev/null; then
  cat "$tsan_logs"/tsan.*
  echo "ThreadSanitizer reported the problems above" >&2
  tsan_rc=1
fi
rm -rf "$tsan_logs"
[ "$tsan_rc" -eq 0 ] || exit "$tsan_rc"
# libFuzzer over the session, the DATA decoder and the address parser (clang,
# ASan+UBSan), each for a bounded time; any finding fails.
FUZZ_SECONDS=${FUZZ_SECONDS:-60} ./tools/fuzz.sh
echo "all tests passed"
