#!/usr/bin/env bash
# One outboxd run under smtp-source, relaying to smtp-sink, for profiling
# (docs/performance.md, round four). Not a test and not a comparison with
# Postfix: alternate two builds with it to compare them.
#
#   tests/bench/profile-run.sh BUILD_DIR MESSAGES [MODE]
#   MODE: (none)  rates and CPU per message
#         stat    + system calls per message (perf stat, every thread;
#                   PERTHREAD=1: counted per thread)
#         trace   + time in system calls by thread (perf trace -s: where each
#                   thread waits, e.g. the store writer in fdatasync; it slows
#                   a busy thread: TRACE_THREAD=store traces that thread alone,
#                   TRACE_EVENTS=fdatasync,futex those calls alone)
#         perf    + perf record (FREQ, default 199 Hz; CG, default dwarf call graphs)
#
# Env: SIZE (5000), SESS (20), OPTS (smtp-source options, e.g. -d), UPC (upstream
# max_connections, 10), LOGLEVEL (info), NORELAY=1 (accept only).
# Prints two lines (accepted and end-to-end msg/s, outboxd CPU ms/msg, the
# sink's and the source's CPU) and the directory holding the spool, log,
# per-thread CPU and perf output. The second line splits outboxd's CPU into
# user and kernel time.
set -u
build=$1; n=$2; mode=${3:-}
size=${SIZE:-5000}; sess=${SESS:-20}
port=${PORT:-2587}; sink_port=${SINK:-2526}
w=$(mktemp -d /tmp/outbox-prof.XXXXXX)
smtp-sink -u nobody -c -m 512 127.0.0.1:$sink_port 1024 >/dev/null 2>&1 &
sinkpid=$!
relay=""
if [ -z "${NORELAY:-}" ]; then relay="[[upstream]]
name = \"sink\"
host = \"127.0.0.1\"
port = $sink_port
tls = \"none\"
max_connections = ${UPC:-10}
[[route]]
sender = \"*\"
upstreams = [\"sink\"]"; fi
cat > "$w/outbox.toml" <<CONF
[spool]
path = "$w/spool.db"
[host]
name = "bench.localdomain"
domain = "localdomain"
[[listen]]
address = "127.0.0.1:$port"
[log]
level = "${LOGLEVEL:-info}"
$relay
CONF
"$build/bin/outboxd" --config "$w/outbox.toml" 2>"$w/outboxd.log" &
pid=$!
trap 'kill $pid $sinkpid 2>/dev/null' EXIT
for _ in $(seq 50); do ss -ltn "sport = :$port" | grep -q LISTEN && break; sleep 0.1; done
threads() { for t in /proc/$pid/task/*; do
  echo "$(basename "$t"):$(tr -d " \n" < "$t/comm") $(awk '{print $14+$15}' "$t/stat") $(awk '/^voluntary_ctxt/ {v = $2} /^nonvoluntary_ctxt/ {n = $2} END {print v + n}' "$t/status")"; done; }
cpu0=$(awk '{print $14+$15}' /proc/$pid/stat)
read -r u0 s0 < <(awk '{print $14, $15}' /proc/$pid/stat)
threads > "$w/threads0"
ppid=""
case "$mode" in
  perf) perf record -F "${FREQ:-199}" ${CG:---call-graph dwarf,16384} -o "$w/perf.data" -p $pid 2>/dev/null & ppid=$! ;;
  trace) target="-p $pid"
    if [ -n "${TRACE_THREAD:-}" ]; then
      for t in /proc/$pid/task/*; do [ "$(cat "$t/comm")" = "$TRACE_THREAD" ] && target="-t $(basename "$t")"; done
    fi
    perf trace -s $target ${TRACE_EVENTS:+-e $TRACE_EVENTS} -o "$w/trace.txt" >/dev/null 2>&1 & ppid=$! ;;
  stat) perf stat ${PERTHREAD:+--per-thread} -e 'syscalls:sys_enter_*' -p $pid -o "$w/stat.txt" 2>/dev/null & ppid=$! ;;
esac
[ -n "$ppid" ] && sleep 0.5
t0=$(date +%s.%N)
/usr/bin/time -f "%U %S" smtp-source -s "$sess" ${OPTS:-} -m "$n" -l "$size" -f a@localdomain -t b@example.org \
  127.0.0.1:$port 2>"$w/source.txt"
t1=$(date +%s.%N)
if [ -z "${NORELAY:-}" ]; then
  for _ in $(seq 1200); do
    q=$(sqlite3 "$w/spool.db" "select count(*) from messages where state not in ('sent','failed')" 2>/dev/null || echo x)
    [ "$q" = 0 ] && break; sleep 0.1
  done
fi
t2=$(date +%s.%N)
cpu1=$(awk '{print $14+$15}' /proc/$pid/stat)
read -r u1 s1 < <(awk '{print $14, $15}' /proc/$pid/stat)
threads > "$w/threads1"
[ -n "$ppid" ] && { kill -INT $ppid; wait $ppid; }
sinkcpu=$(awk '{print $14+$15}' /proc/$sinkpid/stat)
tck=$(getconf CLK_TCK)
read -r su ss < <(tail -1 "$w/source.txt")
awk -v n="$n" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v c0="$cpu0" -v c1="$cpu1" -v sc="$sinkcpu" -v tck="$tck" \
    -v su="$su" -v ss="$ss" -v u0="$u0" -v u1="$u1" -v s0="$s0" -v s1="$s1" 'BEGIN {
  printf "accepted=%.0f/s e2e=%.0f/s cpu_ms_per_msg=%.3f sink_cpu_ms_per_msg=%.3f source_cpu_ms_per_msg=%.3f\n",
    n / (t1 - t0), n / (t2 - t0), (c1 - c0) * 1000 / tck / n, sc * 1000 / tck / n, (su + ss) * 1000 / n
  printf "outboxd_user_ms_per_msg=%.3f outboxd_kernel_ms_per_msg=%.3f\n", (u1 - u0) * 1000 / tck / n, (s1 - s0) * 1000 / tck / n }'
join "$w/threads0" "$w/threads1" | awk -v n="$n" -v tck="$tck" '{ printf "thread %s cpu_ms_per_msg=%.3f switches_per_msg=%.2f\n", $1, ($4 - $2) * 1000 / tck / n, ($5 - $3) / n }' \
  > "$w/threads.txt"
if [ "$mode" = stat ] && [ -n "${PERTHREAD:-}" ]; then
  # "thread-tid count event": per message, by thread
  grep syscalls "$w/stat.txt" | awk -v n="$n" '$2 > 0 { s += $2; printf "%8.2f %s %s\n", $2 / n, $1, $3 } END { printf "%8.2f total system calls per message\n", s / n }' |
    sort -rn > "$w/syscalls.txt"
  head -20 "$w/syscalls.txt"
elif [ "$mode" = stat ]; then
  grep syscalls "$w/stat.txt" | awk -v n="$n" '$1 > 0 { s += $1; printf "%8.2f %s\n", $1 / n, $2 } END { printf "%8.2f total system calls per message\n", s / n }' |
    sort -rn > "$w/syscalls.txt"
  head -12 "$w/syscalls.txt"
fi
echo "dir=$w"
