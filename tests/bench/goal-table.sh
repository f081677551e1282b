#!/usr/bin/env bash
# Issue 13's goal table in one run: the three loads of tests/bench/compare-postfix.sh
# one after the other (each its own ABBA rounds against Postfix, outboxd at its
# default configuration), then one table of the figures the issue sets goals
# for, each with its goal and whether this run met it. Not a test: ratios move
# ±20 % between runs on a shared machine.
#
#   tests/bench/goal-table.sh [BUILD_DIR]      # about 10 minutes on 2 vCPUs
#
# Env: ROUNDS1 (default 5) for the one-message-per-connection load, ROUNDS2
# (3) for connection reuse, ROUNDS3 (3) for 100 KB messages; LAT_MESSAGES
# (4000); OUT (a temporary directory): the three full outputs are kept there.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
out=${OUT:-$(mktemp -d /tmp/outbox-goals.XXXXXX)}
mkdir -p "$out"
run() {   # name, then env assignments for compare-postfix.sh
  local name=$1; shift
  echo "== $name: $*" >&2
  env "$@" "$root/tests/bench/compare-postfix.sh" "$build" > "$out/$name.txt" 2>&1 ||
    { echo "$name: compare-postfix.sh failed; see $out/$name.txt" >&2; tail -5 "$out/$name.txt" >&2; exit 1; }
}
run one ROUNDS="${ROUNDS1:-5}" LAT_MESSAGES="${LAT_MESSAGES:-4000}"
run reuse ROUNDS="${ROUNDS2:-3}" OPTS=-d LAT_MESSAGES="${LAT_MESSAGES:-4000}"
run large ROUNDS="${ROUNDS3:-3}" SIZE=100000 MESSAGES=2000 LATENCY=0

# A row of compare.sh's ratio table: "| metric | A | B | ratio (min–max) | better |".
field() {   # file metric column(2=A 3=B 4=ratio)
  awk -F'|' -v m="$2" -v c="$3" '$2 ~ "^ *" m " *$" { gsub(/^ +| +$/, "", $(c + 1)); print $(c + 1); exit }' "$1"
}
ratio() { field "$1" "$2" 4 | cut -d' ' -f1; }
meets() {   # value op goal -> yes/no
  awk -v v="$1" -v g="$3" -v op="$2" 'BEGIN { if (v == "") { print "-"; exit } ok = (op == ">=") ? (v >= g) : (v <= g); print ok ? "yes" : "no" }'
}
echo "# issue 13 goal table, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$root" rev-parse --short HEAD), outputs in $out"
echo "| load | accepted B/A (goal) | met | end to end B/A (goal) | met | outboxd CPU ms/msg (goal ≤ 0.2 at 5 KB) | met | p50 of the 250 A → B | p99 of the 250 A → B (goal B ≤ A) | met |"
echo "|---|---|---|---|---|---|---|---|---|---|"
row() {   # name label accepted_goal [e2e_goal] [cpu_goal]
  local f="$out/$1.txt" acc e2e cpu p50a p50b p99a p99b lat="–" latok="-"
  acc=$(ratio "$f" accepted_mps); e2e=$(ratio "$f" e2e_mps); cpu=$(field "$f" cpu_ms_per_msg 3)
  p50a=$(field "$f" lat_p50_ms 2); p50b=$(field "$f" lat_p50_ms 3)
  p99a=$(field "$f" lat_p99_ms 2); p99b=$(field "$f" lat_p99_ms 3)
  if [ -n "$p99a" ]; then lat="$p99a → $p99b ms"; latok=$(meets "$p99b" "<=" "$p99a"); fi
  local e2e_goal=${4:-} e2e_cell e2e_ok="-"
  if [ -n "$e2e_goal" ]; then e2e_cell="$e2e (≥ $e2e_goal)"; e2e_ok=$(meets "$e2e" ">=" "$e2e_goal"); else e2e_cell="$e2e (–)"; fi
  local cpu_ok="-"
  [ -n "${5:-}" ] && cpu_ok=$(meets "$cpu" "<=" "$5")
  echo "| $2 | $(field "$f" accepted_mps 4) (≥ $3) | $(meets "$acc" ">=" "$3") | $e2e_cell | $e2e_ok | $cpu | $cpu_ok | ${p50a:+$p50a → $p50b ms} | $lat | $latok |"
}
row one "20 sessions, 1 msg/conn, 5 KB" 6 8 0.2
row reuse "20 sessions, reuse, 5 KB" 10 12 0.2
row large "20 sessions, 1 msg/conn, 100 KB" 4
for n in one reuse large; do
  echo "$n: $(grep -E '^outboxd connections refused' "$out/$n.txt")"
done
