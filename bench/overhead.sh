#!/usr/bin/env bash
# Overhead of tracing, measured side by side: rounds of each workload run
# interleaved with no tracer and with kleak attached, medians and paired
# ratios printed at the end. Run as root on an otherwise idle machine.
#
# usage: bench/overhead.sh [ROUNDS] [MSG_OPS] [PROC_OPS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${KLEAK_BUILD_DIR:-$here/build}
rounds=${1:-7}
msg_ops=${2:-200000}
proc_ops=${3:-100000}
kleak=$build/kleak
work=$build/bench/kleak-bench-work
[ -x "$kleak" ] && [ -x "$work" ] || { echo "build first: scripts/build.sh" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'pkill -INT -f "$kleak -q --format json" 2>/dev/null || true; rm -rf "$tmp"' EXIT

# Starts kleak (extra args in "$@"), waits until it is attached.
start_kleak() {
  "$kleak" -q --format json -d 3600 "$@" >"$tmp/report.json" 2>"$tmp/kleak.err" &
  kpid=$!
  for _ in $(seq 100); do
    bpftool prog show 2>/dev/null | grep -q kleak_kfree && return 0
    sleep 0.05
  done
  echo "kleak did not attach: $(cat "$tmp/kleak.err")" >&2
  exit 1
}

stop_kleak() {
  kill -INT "$kpid"
  wait "$kpid" || true
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

for wl in msg proc; do
  ops=$msg_ops
  [ "$wl" = proc ] && ops=$proc_ops
  "$work" "$wl" $((ops / 10)) >/dev/null  # warm caches
  : >"$tmp/$wl.none"; : >"$tmp/$wl.kleak"; : >"$tmp/$wl.events"
  for r in $(seq "$rounds"); do
    "$work" "$wl" "$ops" | awk '{print $4}' >>"$tmp/$wl.none"
    start_kleak
    "$work" "$wl" "$ops" | awk '{print $4}' >>"$tmp/$wl.kleak"
    stop_kleak
    python3 -c "import json,sys; d=json.load(open('$tmp/report.json')); c=d['counters']; print(c['allocs_seen']+c['frees_seen'], c['live_map_full']+c['live_map_errors'], sum(c['stack_errors'].values()))" >>"$tmp/$wl.events"
  done
  none=$(median <"$tmp/$wl.none")
  with=$(median <"$tmp/$wl.kleak")
  events=$(awk '{print $1}' "$tmp/$wl.events" | median)
  lost=$(awk '{s+=$2} END {print s}' "$tmp/$wl.events")
  stackerr=$(awk '{s+=$3} END {print s}' "$tmp/$wl.events")
  awk -v wl="$wl" -v n="$none" -v k="$with" -v ev="$events" -v ops="$ops" -v lost="$lost" -v se="$stackerr" -v r="$rounds" 'BEGIN {
    per_op = ev / ops;
    printf "%-5s rounds %d  none %.0f ns/op  kleak %.0f ns/op  throughput ratio %.2f  added %.0f ns/op  events/op %.1f  added %.0f ns/event  lost %d  stack-errors %d\n",
      wl, r, n, k, n / k, k - n, per_op, (k - n) / per_op, lost, se }'
  paste "$tmp/$wl.none" "$tmp/$wl.kleak" | awk '{printf "  round %d: none %s kleak %s ratio %.2f\n", NR, $1, $2, $1/$2}'
done
