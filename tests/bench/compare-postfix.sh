#!/usr/bin/env bash
# Side-by-side benchmark of outboxd against Postfix on this machine, with the
# shared loopback kit (../shared/bench: smtp-source load, smtp-sink upstream,
# ABBA-interleaved rounds, ratios B/A). Not a test: figures vary ±20-40 %
# between minutes on shared machines; only the ratios of one run mean anything.
#
#   tests/bench/compare-postfix.sh [BUILD_DIR] [BENCH_DIR]
# Env passed through to compare.sh: ROUNDS SESSIONS MESSAGES SIZE OPTS.
# Until the relay engine lands outboxd does not relay, so this measures the
# accepted rate (durable 250s per second), CPU per message and memory; the
# Postfix side is measured end to end as usual and its accepted rate is the
# comparable figure.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
bench=${2:-$root/../shared/bench}
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
CONF
"$build/bin/outboxd" --config "$work/outbox.toml" 2>"$work/outboxd.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do ss -ltn "sport = :$port" | grep -q LISTEN && break; sleep 0.1; done
target=127.0.0.1:$port
[ "${BENCH_UNIX:-0}" = 1 ] && target=unix:$work/submit.sock
MON_B="--comm outboxd" "$bench/compare.sh" "$target" -
echo "outboxd spool: $(du -sh "$work/spool.db" | cut -f1)"
