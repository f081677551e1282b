#!/usr/bin/env bash
# Two outboxd builds side by side, in one interleaved run: A = BEFORE_BUILD,
# B = AFTER_BUILD, both relaying to the same loopback smtp-sink, measured with
# the kit's compare.sh (smtp-source load, ABBA rounds, ratios B/A). This is how
# issue 8's "the relay's throughput does not drop" is checked: absolute figures
# on a shared machine move ±20-40 % between minutes, the ratio of one run does
# not. Postfix is not started (A_EXTERNAL=1).
#
#   tests/bench/compare-builds.sh BEFORE_BUILD AFTER_BUILD [BENCH_DIR]
#
# A "before" build of an older commit:
#   git worktree add /tmp/outbox-before f7ee8c4 &&
#   cmake -S /tmp/outbox-before -B /tmp/outbox-before/build -DCMAKE_BUILD_TYPE=Release &&
#   cmake --build /tmp/outbox-before/build -j2 --target outboxd
# Env passed through to compare.sh: ROUNDS SESSIONS MESSAGES SIZE OPTS SINK.
# Ports: PORT_A (2588), PORT_B (2589), sink SINK (2526).
# SPOOL_DIR_A / SPOOL_DIR_B: a directory for that side's spool instead of the
# run's temp dir (an experiment's bound, e.g. SPOOL_DIR_B=/dev/shm with the
# same build on both sides: what the rates would be if fsync cost nothing).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
before=${1:?usage: compare-builds.sh BEFORE_BUILD AFTER_BUILD [BENCH_DIR]}
after=${2:?usage: compare-builds.sh BEFORE_BUILD AFTER_BUILD [BENCH_DIR]}
bench=${3:-$root/tests/bench/kit}
sink=${SINK:-2526}
work=$(mktemp -d /tmp/outbox-builds.XXXXXX)
pids=()
spools=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
  for d in "${spools[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT

start() {  # start LABEL BUILD PORT -> sets $started_pid
  local dir=$work/$1
  mkdir -p "$dir"
  local spool_var=SPOOL_DIR_$1 spool_dir
  spool_dir=${!spool_var:-$dir}
  if [ "$spool_dir" != "$dir" ]; then spool_dir=$(mktemp -d "$spool_dir/outbox-spool-$1.XXXXXX"); spools+=("$spool_dir"); fi
  cat > "$dir/outbox.toml" <<CONF
[spool]
path = "$spool_dir/spool.db"
[host]
name = "bench.localdomain"
domain = "localdomain"
[[listen]]
address = "127.0.0.1:$3"
[limits]
max_connections = 1000
max_connections_per_client = 1000
[log]
level = "warn"
[[upstream]]
name = "sink"
host = "127.0.0.1"
port = $sink
tls = "none"
max_connections = 10
[[route]]
sender = "*"
upstreams = ["sink"]
CONF
  "$2/bin/outboxd" --config "$dir/outbox.toml" 2> "$dir/outboxd.log" &
  started_pid=$!
  pids+=("$started_pid")
  for _ in $(seq 50); do ss -ltn "sport = :$3" | grep -q LISTEN && return 0; sleep 0.1; done
  echo "compare-builds: outboxd $1 ($2) did not start:" >&2; cat "$dir/outboxd.log" >&2; exit 1
}

port_a=${PORT_A:-2588}
port_b=${PORT_B:-2589}
start A "$before" "$port_a"; pid_a=$started_pid
start B "$after" "$port_b"; pid_b=$started_pid
echo "A (before) = $before/bin/outboxd pid $pid_a on $port_a; B (after) = $after/bin/outboxd pid $pid_b on $port_b"
A_EXTERNAL=1 A_TARGET=127.0.0.1:$port_a MON_A="--pid $pid_a" MON_B="--pid $pid_b" \
  "$bench/compare.sh" "127.0.0.1:$port_b" "$sink"
