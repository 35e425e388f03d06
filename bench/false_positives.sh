#!/usr/bin/env bash
# False positives of `kleak --ci` on a cold cache: each ordinary command of
# tests/integration/false_positive_test.cpp, RUNS times, caches dropped
# before every run, once with --no-reclaim ("before": the rules alone) and
# once with the defaults ("after": prove by reclaim), alternating. Prints,
# per command, how many runs were judged a leak each way and what reclaim
# freed. Each kleak run holds /run/lock/kleak-bpf.lock, so it can run beside
# the test suite. Root.
#
# usage: sudo bench/false_positives.sh [RUNS]   (default 20)
#   KLEAK_FP_MODES="after": only the default mode (a before count of 0 then
#   means not run)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${KLEAK_BUILD_DIR:-$here/build}
runs=${1:-20}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
names=(file_walk archive compiler loopback_tcp spawn proc_reads git)
scripts=(
  "find /usr/lib /usr/share -name '*.so*' -o -name '*.py' | wc -l"
  "tar -cf - /usr/share/doc | gzip -1 > /dev/null"
  "printf 'int main(void){return 0;}\n' > fp.c && gcc -O2 -o fp fp.c && ./fp && rm -f fp fp.c"
  "/usr/bin/python3 $here/tests/progs/loopback_exchange.py"
  "for i in \$(seq 100); do /bin/true; done"
  "cat /proc/schedstat /proc/meminfo /proc/*/status > /dev/null 2>&1; ls -l /proc/self/fd > /dev/null"
  "rm -rf r && git init -q r && cd r && git status > /dev/null && git --version && cd .. && rm -rf r"
)
echo "kernel $(uname -r); $runs cold-cache runs per command and mode"
printf "%-13s %16s %16s %s\n" command "before: leaks" "after: leaks" "after: reclaim freed (median bytes / allocations / stacks), seconds"
for i in "${!names[@]}"; do
  before=0 after=0
  : >"$tmp/freed"
  for ((r = 0; r < runs; r++)); do
    for mode in ${KLEAK_FP_MODES:-before after}; do
      extra=()
      [ $mode = before ] && extra=(--no-reclaim)
      mkdir -p "$tmp/work"
      sync; echo 3 >/proc/sys/vm/drop_caches
      rc=0
      flock /run/lock/kleak-bpf.lock "$build/kleak" --ci -q "${extra[@]}" --report-json "$tmp/r.json" -- \
        /bin/sh -c "cd $tmp/work && ${scripts[$i]}" >"$tmp/out" 2>&1 || rc=$?
      if [ $rc -eq 1 ]; then
        if [ $mode = before ]; then before=$((before + 1)); else after=$((after + 1)); fi
        [ $mode = after ] && cp "$tmp/out" "$tmp/${names[$i]}.leak.$r"
      elif [ $rc -ne 0 ]; then
        echo "${names[$i]} ($mode): kleak exited $rc" >&2; tail -3 "$tmp/out" >&2
      fi
      if [ $mode = after ]; then
        python3 -c "import json; r=json.load(open('$tmp/r.json'))['ci']['reclaim']; print(r['cache_owned_bytes'], r['cache_owned_count'], r['cache_owned_stacks'], round(r['seconds'], 2))" >>"$tmp/freed"
      fi
      rm -rf "$tmp/work"
    done
  done
  med() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
  printf "%-13s %10d of %-3d %10d of %-3d %s / %s / %s, %s s\n" "${names[$i]}" "$before" "$runs" "$after" "$runs" \
    "$(cut -d' ' -f1 "$tmp/freed" | med)" "$(cut -d' ' -f2 "$tmp/freed" | med)" \
    "$(cut -d' ' -f3 "$tmp/freed" | med)" "$(cut -d' ' -f4 "$tmp/freed" | med)"
  for f in "$tmp/${names[$i]}".leak.*; do
    [ -e "$f" ] || continue
    echo "  after, judged a leak:"; grep -A4 '^#1 ' "$f" | sed 's/^/    /'; tail -1 "$f" | sed 's/^/    /'
    break
  done
done
