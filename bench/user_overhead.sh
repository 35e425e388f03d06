#!/usr/bin/env bash
# kleak user next to heaptrack and valgrind memcheck, on one malloc-heavy
# program (bench/malloc_bench.c) and on the test leaker (tests/progs/uleak.c):
#  1. overhead: the program's own loop time, untraced and under each tool,
#     rounds interleaved; medians and ratios;
#  2. agreement: bytes and blocks outstanding at exit per tool.
# Run as root. kleak runs take the machine-wide BPF lock.
#
# usage: bench/user_overhead.sh [ROUNDS] [OPS] [VALGRIND_OPS]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${KLEAK_BUILD_DIR:-$here/build}
rounds=${1:-5}
ops=${2:-2000000}
vg_ops=${3:-200000}   # valgrind is ~50x slower: fewer ops, same per-op figure
kleak=$build/kleak
bench=$build/bench/kleak-bench-malloc
uleak=$build/tests/kleak-uleak
lock=/run/lock/kleak-bpf.lock
for b in "$kleak" "$bench" "$uleak"; do [ -x "$b" ] || { echo "build first: $b missing" >&2; exit 1; }; done
command -v heaptrack >/dev/null && command -v valgrind >/dev/null || { echo "needs heaptrack and valgrind" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

nsop() { awk '{print $4}'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

"$bench" $((ops / 10)) >/dev/null  # warm up
for r in $(seq "$rounds"); do
  "$bench" "$ops" | nsop >>"$tmp/none"
  flock "$lock" "$kleak" user -q --format json -c "$bench $ops" 2>/dev/null >"$tmp/k.json" \
    || { echo "kleak user failed" >&2; exit 1; }
  # The program's line is on stdout before kleak's report (one JSON line).
  grep '^ops ' "$tmp/k.json" | nsop >>"$tmp/kleak"
  grep '^{' "$tmp/k.json" | python3 -c 'import json,sys; d=json.load(sys.stdin); c=d["counters"]; print(c["allocs_seen"]+c["frees_seen"], c["live_map_full"]+c["live_map_errors"], sum(c["stack_errors"].values()))' >>"$tmp/kleak.events"
  heaptrack -o "$tmp/ht.$r" "$bench" "$ops" 2>/dev/null | grep '^ops ' | nsop >>"$tmp/heaptrack"
  "$bench" "$vg_ops" | nsop >>"$tmp/none_small"
  valgrind -q --leak-check=full "$bench" "$vg_ops" 2>/dev/null | nsop >>"$tmp/valgrind"
done
none=$(median <"$tmp/none"); k=$(median <"$tmp/kleak"); h=$(median <"$tmp/heaptrack")
ns=$(median <"$tmp/none_small"); v=$(median <"$tmp/valgrind")
events=$(awk '{print $1}' "$tmp/kleak.events" | median)
lost=$(awk '{s+=$2} END {print s}' "$tmp/kleak.events")
echo "malloc-heavy loop, $rounds rounds ($ops ops; valgrind $vg_ops ops), median ns per op:"
awk -v n="$none" -v k="$k" -v h="$h" -v ns="$ns" -v v="$v" -v ev="$events" -v ops="$ops" -v lost="$lost" 'BEGIN {
  printf "  none      %8.1f\n", n
  printf "  kleak     %8.1f  (x%.1f slower, +%.0f ns/op; %.1f probe events/op, lost %d)\n", k, k / n, k - n, ev / ops, lost
  printf "  heaptrack %8.1f  (x%.1f slower, +%.0f ns/op)\n", h, h / n, h - n
  printf "  valgrind  %8.1f  (x%.1f slower than %.1f untraced at %d ops)\n", v, v / ns, ns, '"$vg_ops"' }'
for t in none kleak heaptrack none_small valgrind; do printf "  %-10s %s\n" "$t" "$(tr '\n' ' ' <"$tmp/$t")"; done

echo
echo "outstanding at exit, tests/progs/uleak.c:"
flock "$lock" "$kleak" user -q --format json -T 50 -c "$uleak" >"$tmp/u.json"
python3 - "$tmp/u.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
heap = [s for s in d["stacks"] if s["frames"][0]["symbol"] != "leak_mmap"]
print("  kleak      all %d bytes in %d blocks; heap (no mmap) %d bytes in %d blocks" % (
    d["totals"]["bytes"], d["totals"]["count"], sum(s["bytes"] for s in heap), sum(s["count"] for s in heap)))
PY
valgrind --leak-check=full --show-leak-kinds=all "$uleak" 2>&1 | grep -E "in use at exit|definitely|indirectly|possibly|still reachable" | sed 's/^==[0-9]*==/  valgrind  /'
heaptrack -o "$tmp/htu" "$uleak" >/dev/null 2>&1
heaptrack_print -f "$tmp"/htu*.zst -l 1 -p 0 -a 0 -T 0 2>/dev/null | grep -E "leaked over [0-9]+ calls from$|total memory leaked" | sed 's/^/  heaptrack /'
