#!/usr/bin/env bash
# Side-by-side benchmark of outboxd against Postfix on this machine, with the
# loopback kit in tests/bench/kit (a copy of the team's shared bench kit:
# smtp-source load, smtp-sink upstream, ABBA-interleaved rounds, ratios B/A). Not a test: figures vary ±20-40 %
# between minutes on shared machines; only the ratios of one run mean anything.
#
#   tests/bench/compare-postfix.sh [BUILD_DIR] [BENCH_DIR]
# Env passed through to compare.sh: ROUNDS SESSIONS MESSAGES SIZE OPTS.
# outboxd relays to the same smtp-sink as Postfix (127.0.0.1:$SINK, default
# 2526), so both the accepted rate (durable 250s per second) and the
# end-to-end rate are comparable. BENCH_NO_RELAY=1 measures accepting only.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
bench=${2:-$root/tests/bench/kit}
port=${OUTBOX_BENCH_PORT:-2587}
work=$(mktemp -d /tmp/outbox-bench.XXXXXX)
cat > "$work/outbox.toml" <<CONF
[spool]
path = "$work/spool.db"
[host]
name = "bench.localdomain"
domain = "localdomain"
[[listen]]
address = "127.0.0.1:$port"
[[listen]]
path = "$work/submit.sock"
[limits]
max_connections = 1000
max_connections_per_client = 1000
[log]
level = "warn"
[[upstream]]
name = "sink"
host = "127.0.0.1"
port = ${SINK:-2526}
tls = "none"
max_connections = 10
[[route]]
sender = "*"
upstreams = ["sink"]
CONF
"$build/bin/outboxd" --config "$work/outbox.toml" 2>"$work/outboxd.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do ss -ltn "sport = :$port" | grep -q LISTEN && break; sleep 0.1; done
target=127.0.0.1:$port
[ "${BENCH_UNIX:-0}" = 1 ] && target=unix:$work/submit.sock
sinkport=${SINK:-2526}
[ "${BENCH_NO_RELAY:-0}" = 1 ] && sinkport=-
# By pid: other outboxd processes on the machine (tests, other worktrees)
# must not be counted in outboxd's CPU and memory.
MON_B="--pid $pid" "$bench/compare.sh" "$target" "$sinkport"
echo "outboxd spool: $(du -sh "$work/spool.db" | cut -f1)"
