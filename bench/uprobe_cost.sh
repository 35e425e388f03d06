#!/usr/bin/env bash
# What a uprobe hit costs on this machine, apart from anything kleak does:
# bpftrace programs that only count, on functions of kleak-bench-uprobe
# (only that binary traps), rounds interleaved with untraced runs. Prints ns
# per call; the difference to "none" is the hit.
#   uprobe on push / je: the kernel emulates the instruction;
#   uprobe on test: the kernel single-steps it (a second trap);
#   uretprobe on push: the entry hit plus the return;
#   uretprobe + ustack: plus a user stack walk (bpf_get_stackid, BPF_F_USER_STACK).
# Run as root. Each bpftrace run takes the machine-wide BPF lock.
#
# usage: bench/uprobe_cost.sh [ROUNDS] [N]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${KLEAK_BUILD_DIR:-$here/build}
rounds=${1:-3}
n=${2:-200000}
b=$build/bench/kleak-bench-uprobe
lock=/run/lock/kleak-bpf.lock
[ -x "$b" ] || { echo "build first: $b missing" >&2; exit 1; }
command -v bpftrace >/dev/null || { echo "needs bpftrace" >&2; exit 1; }
traced() { flock "$lock" bpftrace -e "$1" -c "$b $2 $3" 2>/dev/null | awk '/ns_per_call/ {print $3}'; }
printf "%-6s %8s %8s %8s %8s %10s %12s\n" round none "up push" "up je" "up test" "uret push" "uret+ustack"
for r in $(seq "$rounds"); do
  printf "%-6s %8s %8s %8s %8s %10s %12s\n" "$r" "$("$b" push "$n" | awk '{print $3}')" \
    "$(traced "uprobe:$b:f_push { @ = count(); }" push "$n")" \
    "$(traced "uprobe:$b:f_jcc { @ = count(); }" jcc "$n")" \
    "$(traced "uprobe:$b:f_test { @ = count(); }" test $((n / 10)))" \
    "$(traced "uretprobe:$b:f_push { @ = count(); }" push "$n")" \
    "$(traced "uretprobe:$b:f_push { @[ustack] = count(); }" push "$n")"
done
