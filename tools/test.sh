#!/usr/bin/env bash
# Installs the dependencies, builds outbox twice (release, and ASan+UBSan),
# runs every test (unit and integration) in both builds, then runs the
# fuzzers for FUZZ_SECONDS each. Exits non-zero on any failure.
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
# libFuzzer over the session, the DATA decoder and the address parser (clang,
# ASan+UBSan), each for a bounded time; any finding fails.
FUZZ_SECONDS=${FUZZ_SECONDS:-60} ./tools/fuzz.sh
echo "all tests passed"
