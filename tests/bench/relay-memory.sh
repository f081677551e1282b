#!/usr/bin/env bash
# Relay memory benchmark (issue 8, "Done when"): SESSIONS concurrent messages
# of SIZE_MB each, submitted with smtplib to outboxd on loopback and relayed
# to a loopback smtp-sink (Postfix's, /usr/sbin/smtp-sink). Reports outboxd's
# peak RSS (VmHWM of its own process, not of every outboxd on the machine),
# the submission time (all sessions started together until the last final
# reply), the end-to-end time (until outboxd logged every message delivered),
# and how many sessions outboxd cut as slow (event=disconnect reason=slow_data),
# beside the client's own longest delay between the 354 and its first octet of
# text (a cut after such a delay is the client's slowness, not outboxd's).
# Not a test: on a shared machine the times vary a lot; peak RSS and the cut
# count are the figures that matter.
#
#   tests/bench/relay-memory.sh [BUILD_DIR]
#
# Env (defaults): SESSIONS=50 SIZE_MB=20 BUSY=0 CONNECTIONS=2 PORT=2597
#   SINK_PORT=2596 E2E_TIMEOUT=900 KEEP=0
#   BUSY=N        the "busy machine" variant: N `yes > /dev/null` processes
#                 (same priority as outboxd) run for the whole measurement.
#   BUSY_IO=N     N more processes that write 4 MiB and fsync it, in a loop,
#                 beside the spool (disk contention: the spool's commits slow
#                 down, so outboxd's store falls behind its clients).
#   CONNECTIONS   the upstream's max_connections (outbox's default is 2).
#   MODE=stream   how the clients send (submit_parallel.py --mode): "stream"
#                 writes the text in 64 KiB pieces as soon as 354 arrives;
#                 "sendmail" uses smtplib.sendmail(), which first dot-stuffs
#                 and copies each 20 MB message in Python (GIL-bound), so on a
#                 busy machine some clients send nothing for seconds after 354.
#   KEEP=1        keep the work directory (config, spool, log) and print it.
# Output: a human summary, then one key=value line (for RESULTS.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
sessions=${SESSIONS:-50}
size_mb=${SIZE_MB:-20}
busy=${BUSY:-0}
busy_io=${BUSY_IO:-0}
mode=${MODE:-stream}
conns=${CONNECTIONS:-2}
port=${PORT:-2597}
sink_port=${SINK_PORT:-2596}
e2e_timeout=${E2E_TIMEOUT:-900}
sink=${SMTP_SINK:-/usr/sbin/smtp-sink}

for p in "$port" "$sink_port"; do
  if ss -ltn "sport = :$p" | grep -q LISTEN; then
    echo "relay-memory: port $p is in use (set PORT / SINK_PORT)" >&2; exit 1
  fi
done
[ -x "$build/bin/outboxd" ] || { echo "relay-memory: no $build/bin/outboxd (build first)" >&2; exit 1; }
[ -x "$sink" ] || { echo "relay-memory: no $sink (apt-get install postfix)" >&2; exit 1; }

work=$(mktemp -d /tmp/outbox-relay-memory.XXXXXX)
pids=()
cleanup() {
  # Only the processes started here, by their ids.
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "relay-memory: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# The upstream: smtp-sink counts (-c) and discards; -u is needed as root;
# up to 512 connections, backlog 1024.
"$sink" -u nobody -c -m 512 "127.0.0.1:$sink_port" 1024 > "$work/sink.out" 2>&1 < /dev/null &
pids+=($!)

cat > "$work/outbox.toml" <<CONF
[spool]
path = "$work/spool.db"
[host]
name = "bench.localdomain"
domain = "localdomain"
[[listen]]
address = "127.0.0.1:$port"
[limits]
max_connections = 1000
max_connections_per_client = 1000
[log]
level = "info"
[[upstream]]
name = "sink"
host = "127.0.0.1"
port = $sink_port
tls = "none"
max_connections = $conns
[[route]]
sender = "*"
upstreams = ["sink"]
CONF
"$build/bin/outboxd" --config "$work/outbox.toml" 2> "$work/outboxd.log" &
opid=$!
pids+=("$opid")
for _ in $(seq 100); do
  grep -q 'event=ready' "$work/outboxd.log" 2>/dev/null && break
  kill -0 "$opid" 2>/dev/null || { cat "$work/outboxd.log" >&2; exit 1; }
  sleep 0.1
done
for _ in $(seq 50); do ss -ltn "sport = :$sink_port" | grep -q LISTEN && break; sleep 0.1; done

status_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$opid/status"; }
rss_start=$(status_kb VmRSS)

for _ in $(seq "$busy"); do
  yes > /dev/null &
  pids+=($!)
done
for i in $(seq "$busy_io"); do
  /usr/bin/python3 -c '
import os, sys
buf = os.urandom(4 << 20)
while True:
    with open(sys.argv[1], "wb") as f:
        f.write(buf)
        f.flush()
        os.fsync(f.fileno())
' "$work/busy-io.$i" &
  pids+=($!)
done

t0=$(date +%s.%N)
/usr/bin/python3 "$root/tests/bench/submit_parallel.py" --port "$port" --sessions "$sessions" \
  --size-mb "$size_mb" --mode "$mode" > "$work/submit.json"
t1=$(date +%s.%N)
read -r ok gap_max gap_over5 < <(/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["ok"], d["gap_354_max_s"], d["gap_354_over_5s"])' "$work/submit.json")

# End to end: every accepted message logged event=delivered (one recipient each).
delivered=0
deadline=$(( $(date +%s) + e2e_timeout ))
while :; do
  delivered=$(grep -c '^.*event=delivered ' "$work/outboxd.log" || true)
  [ "$delivered" -ge "$ok" ] && break
  [ "$(date +%s)" -ge "$deadline" ] && break
  kill -0 "$opid" 2>/dev/null || break
  sleep 0.2
done
t2=$(date +%s.%N)

alive=yes
kill -0 "$opid" 2>/dev/null || alive=no
hwm=$([ $alive = yes ] && status_kb VmHWM || echo "?")
cut=$(grep -c 'event=disconnect.*reason=slow_data' "$work/outboxd.log" || true)
timeouts=$(grep -c 'event=timeout' "$work/outboxd.log" || true)
sink_mesg=$(tail -c 200 "$work/sink.out" | tr '\r' '\n' | grep -a 'mesg=' | tail -1 | sed 's/.*mesg=//')
spool_mb=$(du -cm "$work"/spool.db* | tail -1 | cut -f1)
submit_s=$(echo "$t1 - $t0" | bc -l)
e2e_s=$(echo "$t2 - $t0" | bc -l)

echo "== relay-memory: $sessions x $size_mb MiB, client mode $mode, upstream max_connections=$conns, busy loops=$busy cpu + $busy_io io, $(nproc) CPUs, load avg $(cut -d' ' -f1-3 /proc/loadavg)"
echo "submission: $(cat "$work/submit.json" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); d.pop("ids"); print(d)')"
grep 'event=disconnect.*reason=slow_data' "$work/outboxd.log" | head -3 || true
printf 'sessions=%s size_mb=%s mode=%s busy=%s busy_io=%s upstream_connections=%s accepted=%s client_gap_354_max_s=%s client_gaps_over_5s=%s cut_slow_data=%s timeouts=%s delivered=%s sink_mesg=%s rss_start_kb=%s peak_rss_kb=%s submit_s=%.1f e2e_s=%.1f spool_mb=%s outboxd_alive=%s\n' \
  "$sessions" "$size_mb" "$mode" "$busy" "$busy_io" "$conns" "$ok" "$gap_max" "$gap_over5" "$cut" "$timeouts" "$delivered" "${sink_mesg:-0}" "$rss_start" "$hwm" \
  "$submit_s" "$e2e_s" "$spool_mb" "$alive"
