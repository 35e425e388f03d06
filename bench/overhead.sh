#!/usr/bin/env bash
# Overhead of tracing, measured side by side: in every round each workload
# runs once with no tracer and once under each tracer, in turn, so the
# machine's drift hits all of them alike. Medians, throughput ratios against
# no tracer, added ns per op and per traced event, the tracer's RSS and its
# kernel map memory (memlock of its BPF map fds) are printed at the end, with
# each tracer's added cost relative to memleak's when memleak ran.
# Run as root on an otherwise idle machine.
#
# usage: bench/overhead.sh [ROUNDS] [MSG_OPS] [PROC_OPS] [PIPE_OPS]
#
# Workloads (bench/workload.c): msg (1 kmalloc + 2 kfree per op), proc (12
# slab events per op), pipe (page-heavy: 16 KiB through a fresh pipe).
#
# Environment:
#   KLEAK_BENCH_TRACERS  which to run, in this order (default: every one
#                        available): empty kleak kleak-walk kleak-low memleak bpftrace ftrace ftrace-stacks
#                        (kleak-walk: exact mode without the verified stack
#                        cache, every stack walked; kleak-nobackup: the
#                        default mode without the free programs' backups,
#                        KLEAK_REFUSE=free-backup, to measure what they cost)
#                        (empty: programs that do nothing on the four
#                        kmem tracepoints, bench/empty_hooks.c: the dispatch
#                        floor every BPF tracer of these events pays)
#                        (ftrace: the kmem events read raw from tracefs, as
#                        trace-cmd record does; -stacks adds a kernel stack each)
#   KLEAK_BENCH_MEMLEAK  path to a libbpf-tools memleak binary (bcc's
#                        libbpf-tools are not packaged by Debian 12; see
#                        docs/performance.md for how ours was built)
#   KLEAK_BENCH_WORKLOADS  which workloads (default: msg proc pipe)
#   KLEAK_BUILD_DIR      kleak's build directory (default build/)
#   KLEAK_BENCH_BASE     another kleak binary, run as tracer kleak-base in
#                        the default mode: an earlier commit side by side
#                        with this one (a refactor's cost, or none)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${KLEAK_BUILD_DIR:-$here/build}
rounds=${1:-7}
msg_ops=${2:-200000}
proc_ops=${3:-100000}
pipe_ops=${4:-50000}
kleak=$build/kleak
base_kleak=${KLEAK_BENCH_BASE:-}
work=$build/bench/kleak-bench-work
memleak=${KLEAK_BENCH_MEMLEAK:-}
[ -x "$kleak" ] && [ -x "$work" ] || { echo "build first: scripts/build.sh" >&2; exit 1; }
tmp=$(mktemp -d)
tpid=
cleanup() {
  if [ -n "$tpid" ]; then kill -TERM "$tpid" 2>/dev/null; wait "$tpid" 2>/dev/null; fi
  for e in $kmem_events; do echo 0 >$tracefs/events/kmem/$e/enable 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

tracefs=/sys/kernel/tracing
if [ ! -e $tracefs/trace ]; then mount -t tracefs nodev $tracefs 2>/dev/null || true; fi

if [ -n "${KLEAK_BENCH_TRACERS:-}" ]; then
  read -r -a tracers <<<"$KLEAK_BENCH_TRACERS"
else
  tracers=(empty kleak kleak-walk kleak-low)
  [ -n "$memleak" ] && tracers+=(memleak)
  command -v bpftrace >/dev/null && tracers+=(bpftrace)
  [ -e $tracefs/trace ] && tracers+=(ftrace ftrace-stacks)
fi

# bpftrace's nearest equivalent of an outstanding-allocation tracker: one map
# of live pointers holding size and kernel stack.
cat >"$tmp/live.bt" <<'EOF'
tracepoint:kmem:kmalloc { @live[args->ptr] = (args->bytes_alloc, kstack); }
tracepoint:kmem:kmem_cache_alloc { @live[args->ptr] = (args->bytes_alloc, kstack); }
tracepoint:kmem:kfree { delete(@live[args->ptr]); }
tracepoint:kmem:kmem_cache_free { delete(@live[args->ptr]); }
END { clear(@live); }
EOF

# Polls until the tracer's BPF programs (or ftrace events) are live.
wait_attached() {
  local what=$1
  for _ in $(seq 200); do
    case $what in
      ftrace*) [ "$(cat $tracefs/events/kmem/kfree/enable 2>/dev/null)" = 1 ] && return 0 ;;
      *) [ "$(ls -l /proc/"$tpid"/fd 2>/dev/null | grep -c 'bpf-prog')" -ge 4 ] && return 0 ;;
    esac
    kill -0 "$tpid" 2>/dev/null || break
    sleep 0.05
  done
  echo "$what did not attach: $(tail -3 "$tmp/tracer.err")" >&2
  exit 1
}

start_tracer() {
  local t=$1
  case $t in
    empty) "$build/bench/kleak-bench-empty" 2>"$tmp/tracer.err" & ;;
    kleak) "$kleak" -q --format json -d 3600 >"$tmp/report.json" 2>"$tmp/tracer.err" & ;;
    kleak-low) "$kleak" -q --format json -d 3600 --low-overhead >"$tmp/report.json" 2>"$tmp/tracer.err" & ;;
    kleak-walk) "$kleak" -q --format json -d 3600 --stack-cache off >"$tmp/report.json" 2>"$tmp/tracer.err" & ;;
    kleak-base) "$base_kleak" -q --format json -d 3600 >"$tmp/report.json" 2>"$tmp/tracer.err" & ;;
    kleak-nobackup) KLEAK_REFUSE=free-backup "$kleak" -q --format json -d 3600 >"$tmp/report.json" 2>"$tmp/tracer.err" & ;;
    memleak) "$memleak" 3600 >/dev/null 2>"$tmp/tracer.err" & ;;
    bpftrace) BPFTRACE_MAP_KEYS_MAX=262144 bpftrace "$tmp/live.bt" >/dev/null 2>"$tmp/tracer.err" & ;;
    ftrace|ftrace-stacks) start_ftrace "$t"; return ;;
    *) echo "unknown tracer $t" >&2; exit 2 ;;
  esac
  tpid=$!
  wait_attached "$t"
}

# trace-cmd's path without trace-cmd (its `record` insists on writing
# /proc/sys/kernel/ftrace_enabled, refused here): the four kmem events into
# the ring buffer, optionally with a kernel stack each, drained as raw pages
# by one reader per CPU, as trace-cmd's recorders do.
kmem_events="kmalloc kfree kmem_cache_alloc kmem_cache_free"
start_ftrace() {
  local cpu
  echo 0 >$tracefs/tracing_on
  echo >$tracefs/trace
  if [ "$1" = ftrace-stacks ]; then echo 1 >$tracefs/options/stacktrace; else echo 0 >$tracefs/options/stacktrace; fi
  for e in $kmem_events; do echo 1 >$tracefs/events/kmem/$e/enable; done
  echo 1 >$tracefs/tracing_on
  readers=()
  for cpu in $tracefs/per_cpu/cpu*; do
    cat "$cpu/trace_pipe_raw" >/dev/null 2>&1 &
    readers+=($!)
  done
  tpid=${readers[0]}
}

stop_ftrace() {
  for e in $kmem_events; do echo 0 >$tracefs/events/kmem/$e/enable; done
  echo 0 >$tracefs/options/stacktrace
  kill "${readers[@]}" 2>/dev/null || true
  wait "${readers[@]}" 2>/dev/null || true
  tpid=
}

# Tracer RSS (kB) and the memlock (bytes) of the BPF maps it holds open.
tracer_memory() {
  local rss maps=0 f
  rss=$(awk '/^VmRSS/ {print $2}' /proc/"$tpid"/status 2>/dev/null || echo 0)
  for f in /proc/"$tpid"/fdinfo/*; do
    if grep -q '^map_type' "$f" 2>/dev/null; then
      maps=$((maps + $(awk '/^memlock/ {print $2}' "$f")))
    fi
  done
  echo "$rss $maps"
}

stop_tracer() {
  case $1 in
    ftrace*) stop_ftrace; return ;;
    # bpftrace, started in the background of a script, inherits SIGINT
    # ignored and keeps it so.
    bpftrace) kill -TERM "$tpid" ;;
    *) kill -INT "$tpid" ;;
  esac
  wait "$tpid" || true
  tpid=
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "machine: $(nproc) CPUs, $(uname -r); rounds $rounds; tracers: none ${tracers[*]}"
for wl in ${KLEAK_BENCH_WORKLOADS:-msg proc pipe}; do
  case $wl in msg) ops=$msg_ops ;; proc) ops=$proc_ops ;; pipe) ops=$pipe_ops ;; *) echo "unknown workload $wl" >&2; exit 2 ;; esac
  "$work" "$wl" $((ops / 10)) >/dev/null  # warm caches
  : >"$tmp/$wl.none"
  for t in "${tracers[@]}"; do : >"$tmp/$wl.$t"; : >"$tmp/$wl.$t.mem"; done
  : >"$tmp/$wl.events"
  for _ in $(seq "$rounds"); do
    "$work" "$wl" "$ops" | awk '{print $4}' >>"$tmp/$wl.none"
    for t in "${tracers[@]}"; do
      start_tracer "$t"
      "$work" "$wl" "$ops" | awk '{print $4}' >>"$tmp/$wl.$t"
      tracer_memory >>"$tmp/$wl.$t.mem"
      stop_tracer "$t"
      if [ "$t" = kleak ]; then
        python3 -c "import json; c=json.load(open('$tmp/report.json'))['counters']; print(c['allocs_seen']+c['frees_seen'], c['live_map_full']+c['live_map_errors'], sum(c['stack_errors'].values()))" >>"$tmp/$wl.events"
      fi
    done
  done
  none=$(median <"$tmp/$wl.none")
  events=1
  if [ -s "$tmp/$wl.events" ]; then
    events=$(awk '{print $1}' "$tmp/$wl.events" | median)
    echo "$wl: $(awk -v ops="$ops" '{print $1/ops}' "$tmp/$wl.events" | median) traced events/op (kleak's counters); lost $(awk '{s+=$2} END {print s}' "$tmp/$wl.events"), stack errors $(awk '{s+=$3} END {print s}' "$tmp/$wl.events") over all kleak rounds"
  fi
  memleak_added=
  [ -s "$tmp/$wl.memleak" ] && memleak_added=$(awk -v n="$none" '{print $1 - n}' <(median <"$tmp/$wl.memleak"))
  printf "%-5s %-14s %9s %7s %9s %9s %10s %9s %10s\n" "$wl" tracer "ns/op" ratio "added/op" "added/ev" "vs-memleak" "RSS-kB" "maps-kB"
  printf "%-5s %-14s %9.0f %7s\n" "$wl" none "$none" 1.00
  for t in "${tracers[@]}"; do
    with=$(median <"$tmp/$wl.$t")
    rss=$(awk '{print $1}' "$tmp/$wl.$t.mem" | median)
    maps=$(awk '{print $2}' "$tmp/$wl.$t.mem" | median)
    awk -v wl="$wl" -v t="$t" -v n="$none" -v k="$with" -v ev="$events" -v ops="$ops" -v ma="$memleak_added" \
        -v rss="$rss" -v maps="$maps" 'BEGIN {
      per_op = ev / ops;
      rel = (ma != "" && ma > 0) ? sprintf("%.2f", (k - n) / ma) : "-";
      printf "%-5s %-14s %9.0f %7.2f %9.0f %9.0f %10s %9d %10d\n", wl, t, k, n / k, k - n, (k - n) / per_op, rel, rss, maps / 1024 }'
  done
  if [ -s "$tmp/$wl.kleak" ] && [ -s "$tmp/$wl.kleak-base" ]; then
    # this build's added cost over the base's, per round (its none beside it)
    paste "$tmp/$wl.none" "$tmp/$wl.kleak" "$tmp/$wl.kleak-base" |
      awk '{ printf "%.3f\n", ($2 - $1) / ($3 - $1) }' >"$tmp/$wl.vsbase"
    echo "$wl: kleak added / kleak-base added: median $(median <"$tmp/$wl.vsbase")," \
         "per round $(tr '\n' ' ' <"$tmp/$wl.vsbase")"
  fi
  printf "  per round (ns/op): none"; printf " %s" "${tracers[@]}"; echo
  paste "$tmp/$wl.none" "${tracers[@]/#/$tmp/$wl.}" | awk '{printf "  round %d:", NR; for (i = 1; i <= NF; i++) printf " %s", $i; printf "\n"}'
done
