#!/usr/bin/env bash
# Side-by-side benchmark of outboxd against Postfix on this machine, with the
# loopback kit in tests/bench/kit (a copy of the team's shared bench kit:
# smtp-source load, smtp-sink upstream, ABBA-interleaved rounds, ratios B/A). Not a test: figures vary ±20-40 %
# between minutes on shared machines; only the ratios of one run mean anything.
#
#   tests/bench/compare-postfix.sh [BUILD_DIR] [BENCH_DIR]
#   e.g. ROUNDS=2 MESSAGES=1000 tests/bench/compare-postfix.sh build   # a short smoke run (~1 min)
#
# Env passed through to compare.sh: ROUNDS SESSIONS MESSAGES SIZE OPTS
# (defaults 5, 20, 5000, 5000, ""), and the latency settings below.
# outboxd relays to the same smtp-sink as Postfix (127.0.0.1:$SINK, default
# 2526), so both the accepted rate (durable 250s per second) and the
# end-to-end rate are comparable. BENCH_NO_RELAY=1 measures accepting only.
#
# outboxd logs at its default level (info: an accepted and a delivered line per
# message, to a file), as Postfix logs each message to its maillog_file;
# BENCH_LOG_LEVEL=warn gives the figures measured before 2026-12-05 (issue 13's
# table), which logged nothing per message.
# outboxd runs with its DEFAULT [limits] (max_connections 200; loopback is in
# the listener's default trusted_networks, so max_connections_per_client does
# not apply): the benchmark raises no limit a real user would also hit. The
# one setting chosen is the upstream's max_connections (10, UPSTREAM_CONNECTIONS;
# outbox's default is 2, Postfix's default_destination_concurrency_limit is 20).
#
# Latency (LATENCY=1, the default here; LATENCY=0 gives the throughput table
# only): after each side's smtp-source run in every round, tests/bench/
# latency_client.py (through kit/latency.sh) sends LAT_MESSAGES (default
# MESSAGES) messages of SIZE bytes from LAT_SESSIONS (default SESSIONS)
# concurrent sessions, one message per connection (connection reuse when OPTS
# has -d; LAT_OPTS=--reuse forces it), and times each 250 after the final
# "\r\n.\r\n". Output: the ratio table printed at the end gets rows
#   lat_p50_ms lat_p90_ms lat_p99_ms lat_max_ms   the 250 after the dot, ms
#   lat_rate_per_s                               the latency load's own rate
#   lat_cpu_ms_per_msg                           CPU of the MTA during that load
# for Postfix (A) and outboxd (B), with the per-round B/A ratio (< 1 = outboxd
# answers faster). A line "# latency client floor" before the rounds is the
# same client straight against smtp-sink (no MTA): the client's own share of
# each figure (it is Python, on the same two cores).
# p99 of 1,000 samples is their 10th largest: use LAT_MESSAGES of several
# thousand for a p99 that means something (outboxd's rare whole-daemon stalls,
# see tests/bench/RESULTS.md, land in it or not by chance in short runs).
# --dump FILE (in LAT_OPTS) keeps every sample with its arrival time.
# cpu_ms_per_msg (and lat_cpu_ms_per_msg) are outboxd's utime+stime from
# /proc/PID/stat, sampled by procmon.py from before to after each run
# (including the relay's drain), divided by the run's messages; for Postfix
# the sum over its processes.
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
[log]
level = "${BENCH_LOG_LEVEL:-info}"
[[upstream]]
name = "sink"
host = "127.0.0.1"
port = ${SINK:-2526}
tls = "none"
max_connections = ${UPSTREAM_CONNECTIONS:-10}
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
LATENCY=${LATENCY:-1} MON_B="--pid $pid" "$bench/compare.sh" "$target" "$sinkport"
echo "outboxd spool: $(du -sh "$work/spool.db" | cut -f1)"
# With default limits, no connection may have been refused (event=refused,
# reason=max_connections or max_connections_per_client).
echo "outboxd connections refused: $(grep -c 'event=refused' "$work/outboxd.log" || true)"
