#!/usr/bin/env bash
# Report latency and kleak's RSS with N outstanding allocations: a test
# program holds N System V messages of 64 bytes (N kmalloc-64 objects), kleak
# reports every second; each report's time (map read + grouping, ranking,
# symbolizing, formatting) comes from kleak -v.
#
# usage: sudo bench/report_latency.sh [N] [REPORTS] [KLEAK_ARGS...]
#        (default 100000 held, 7 reports; e.g. 1000000 7 --low-overhead)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${KLEAK_BUILD_DIR:-$here/build}
n=${1:-100000}
reports=${2:-7}
shift $(( $# > 2 ? 2 : $# ))
tmp=$(mktemp -d)
trap 'exec 3>&- 2>/dev/null; [ -n "${KLEAK_BENCH_KEEP:-}" ] && cp "$tmp/kleak.err" "$KLEAK_BENCH_KEEP"; rm -rf "$tmp"' EXIT

mkfifo "$tmp/in"
"$build/tests/kleak-msghold" "$n" 64 <"$tmp/in" >"$tmp/holder.out" &
exec 3>"$tmp/in"
max=$(( n + n / 5 + 262144 ))
"$build/kleak" 1 "$reports" -v -o 0 -q -T 10 --max-allocs "$max" "$@" >/dev/null 2>"$tmp/kleak.err" &
kpid=$!
sleep 1
echo send >&3
while ! grep -q '^held' "$tmp/holder.out"; do sleep 0.2; done
rss=()
while kill -0 "$kpid" 2>/dev/null; do
  r=$(awk '/^VmRSS/ {print $2}' /proc/"$kpid"/status 2>/dev/null || true)
  [ -n "$r" ] && rss+=("$r")
  sleep 0.5
done
echo exit >&3
wait
grep -o 'report #[0-9]*: [0-9]* live allocations, [0-9]* stacks in [0-9.]* ms' "$tmp/kleak.err" |
  awk '{print $3, $(NF-1)}' >"$tmp/times"
# The first report may come before every message is held: keep those with
# (nearly) the most live allocations.
most=$(sort -n "$tmp/times" | tail -1 | cut -d' ' -f1)
awk -v m="$most" '$1 >= 0.99 * m {print $2}' "$tmp/times" | sort -n |
  awk -v n="$n" -v m="$most" '{t[NR]=$1} END {
    printf "held %d: %d reports at ~%d live allocations: report time median %.1f ms, min %.1f, max %.1f\n",
      n, NR, m, t[int((NR + 1) / 2)], t[1], t[NR] }'
printf '%s\n' "${rss[@]}" | sort -n | awk '{a[NR]=$1} END {printf "kleak RSS while reporting: %.1f-%.1f MiB\n", a[1]/1024, a[NR]/1024}'
