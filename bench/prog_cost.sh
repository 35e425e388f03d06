#!/usr/bin/env bash
# In-kernel cost of each kleak program per run, on one workload: turns on
# kernel.bpf_stats_enabled for the run only (it adds two clock reads to every
# program run, so never during overhead.sh), starts kleak with the given
# options, runs the workload, and prints run_cnt and ns per run of every
# kleak_* program from the deltas of bpftool's run_time_ns / run_cnt.
# Run as root; takes the machine-wide BPF lock.
#
# usage: bench/prog_cost.sh WORKLOAD OPS [KLEAK OPTION...]
#   e.g. bench/prog_cost.sh proc 50000 --low-overhead
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${KLEAK_BUILD_DIR:-$here/build}
workload=${1:?usage: bench/prog_cost.sh WORKLOAD OPS [KLEAK OPTION...]}
ops=${2:?usage: bench/prog_cost.sh WORKLOAD OPS [KLEAK OPTION...]}
shift 2
[ -z "${KLEAK_PROG_COST_LOCKED:-}" ] && exec env KLEAK_PROG_COST_LOCKED=1 flock /run/lock/kleak-bpf.lock "$0" "$workload" "$ops" "$@"
stats() {
  bpftool -j prog show | python3 -c '
import json, sys
for p in json.load(sys.stdin):
    if p.get("name", "").startswith("kleak_"):
        print(p["name"], p.get("run_cnt", 0), p.get("run_time_ns", 0))'
}
old=$(sysctl -n kernel.bpf_stats_enabled)
"$build/kleak" -q -d 3600 "$@" >/dev/null &
kpid=$!
trap 'kill -INT $kpid 2>/dev/null; wait $kpid 2>/dev/null; sysctl -qw kernel.bpf_stats_enabled=$old' EXIT
for _ in $(seq 100); do stats | grep -q . && break; sleep 0.1; done
sysctl -qw kernel.bpf_stats_enabled=1
before=$(stats)
"$build/bench/kleak-bench-work" "$workload" "$ops" >/dev/null
after=$(stats)
sysctl -qw kernel.bpf_stats_enabled="$old"
python3 - "$before" "$after" <<'PY'
import sys
b = {l.split()[0]: list(map(int, l.split()[1:])) for l in sys.argv[1].splitlines()}
print(f"{'program':<18}{'runs':>10}{'ns/run':>10}")
for l in sys.argv[2].splitlines():
    name, cnt, ns = l.split()[0], *map(int, l.split()[1:])
    c0, n0 = b.get(name, [0, 0])
    if cnt > c0:
        print(f"{name:<18}{cnt - c0:>10}{(ns - n0) / (cnt - c0):>10.0f}")
PY
