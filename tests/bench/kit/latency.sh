#!/bin/bash
# latency.sh TARGET SINKPORT SESSIONS MESSAGES SIZE [latency_client.py opts, e.g. --reuse]
#   One bounded latency measurement of an SMTP relay endpoint (added to the outbox copy of the kit):
#     * latency of the 250 after the final dot, p50/p90/p99/max ms, and the rate, from
#       tests/bench/latency_client.py (SESSIONS concurrent sessions, MESSAGES messages of SIZE bytes,
#       one message per connection unless --reuse)
#     * CPU ms per message of the endpoint's processes over the run and its drain (procmon.py, MON=
#       as for e2e.sh)
#     * then waits (E2E_TIMEOUT, default 300 s) until the smtp-sink on SINKPORT has counted MESSAGES
#       more messages, so the next run starts with an empty queue (SINKPORT "-" = don't wait).
#   Bounded by LOAD_TIMEOUT (default 600 s). Prints key=value fields on one line, all prefixed lat_
#   (to be appended to e2e.sh's line of the same run), lat_rc!=0 if a message failed or the drain
#   timed out.
set -u
B=$(cd "$(dirname "$0")" && pwd)
T=${1:?usage: latency.sh TARGET SINKPORT SESSIONS MESSAGES SIZE [opts]}; SP=$2; S=$3; M=$4; L=$5; shift 5
case $T in 127.*|unix:*|localhost:*) ;; *) echo "refusing non-loopback target $T" >&2; exit 2;; esac
CLIENT=${LAT_CLIENT:-$B/../latency_client.py}
MON=${MON:---exe-prefix /usr/lib/postfix/sbin/}
ST=${BENCH_STATE:-/tmp/outbox-bench}; mkdir -p "$ST"
base=0; [ "$SP" != - ] && base=$("$B/sink.sh" mesg "$SP")
/usr/bin/python3 "$B/procmon.py" $MON --period 0.25 --max-s 900 > "$ST/procmon.lat.$$.out" & MPID=$!
sleep 0.3
json=$(timeout "${LOAD_TIMEOUT:-600}" /usr/bin/python3 "$CLIENT" "$T" --sessions "$S" --messages "$M" --size "$L" "$@"); lrc=$?
wrc=0; to=${E2E_TIMEOUT:-300}; [ $lrc -ne 0 ] && to=5
if [ "$SP" != - ]; then "$B/sink.sh" wait "$SP" $((base + M)) "$to" >/dev/null; wrc=$?; fi
kill -TERM $MPID; wait $MPID 2>/dev/null
mon=$(cat "$ST/procmon.lat.$$.out"); rm -f "$ST/procmon.lat.$$.out"
cpu=$(echo "$mon" | sed -n 's/.*cpu_s=\([0-9.]*\).*/\1/p')
[ $lrc -ne 0 ] && echo "latency_client failed: $json" >&2
JSON="$json" CPU="${cpu:-0}" M="$M" RC=$((lrc + wrc)) /usr/bin/python3 -c '
import json, os
try: j = json.loads(os.environ["JSON"])
except ValueError: j = {}
f = lambda v: "-" if v is None else v
print("lat_count=%s lat_errors=%s lat_p50_ms=%s lat_p90_ms=%s lat_p99_ms=%s lat_max_ms=%s lat_rate_per_s=%s lat_cpu_ms_per_msg=%.3f lat_rc=%s" % (
    f(j.get("count")), f(j.get("errors")), f(j.get("p50_ms")), f(j.get("p90_ms")), f(j.get("p99_ms")),
    f(j.get("max_ms")), f(j.get("rate_per_s")), float(os.environ["CPU"]) * 1000 / int(os.environ["M"]), os.environ["RC"]))'
