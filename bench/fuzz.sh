#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang, ASan+UBSan) into
# build-fuzz/ (or $KLEAK_FUZZ_BUILD_DIR) and runs each, one at a time, for
# SECONDS, starting from its seeds in tests/fuzz/corpus/<target>. Prints a
# table: target, seconds, execs, execs/s, corpus (units kept), crashes.
# Exits 1 when any target crashed, timed out, ran out of memory or did not
# run; the reproducer is in build-fuzz/crashes/<target>/, the log in
# build-fuzz/logs/<target>.log. docs/reliability.md has the figures.
#
# usage: bench/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 180 s, every target)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${KLEAK_FUZZ_BUILD_DIR:-$here/build-fuzz}
secs=${1:-180}
shift || true
# Every tests/fuzz/fuzz_<target>.cpp is a target.
all=()
for f in "$here"/tests/fuzz/fuzz_*.cpp; do t=${f##*/fuzz_}; all+=("${t%.cpp}"); done
targets=("${@:-${all[@]}}")

# KLEAK_FUZZ_CMAKE_ARGS: more configure arguments (scripts/test.sh: -DKLEAK_WERROR=ON).
# shellcheck disable=SC2086
cmake -S "$here" -B "$build" -DKLEAK_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ ${KLEAK_FUZZ_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j "$(nproc)" >/dev/null

# Reports go to the log. libFuzzer turns on LeakSanitizer: a leak is a crash.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
failed=0
rows=()
for t in "${targets[@]}"; do
  bin=$build/tests/fuzz/fuzz_$t
  seeds=$here/tests/fuzz/corpus/$t
  [ -x "$bin" ] && [ -d "$seeds" ] || { echo "fuzz: no target or seeds for '$t'" >&2; exit 2; }
  # New units go to the first directory (build-fuzz/corpus/<t>), never to
  # the committed seeds.
  mkdir -p "$build/corpus/$t" "$build/crashes/$t" "$build/logs"
  log=$build/logs/$t.log
  touch "$build/logs/$t.stamp"
  status=0
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$build/crashes/$t/" "$build/corpus/$t" "$seeds" >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  corpus=$(grep -Eo 'corp: [0-9]+/[0-9A-Za-z]+' "$log" | tail -1 | cut -d' ' -f2 || true)
  # Artifacts of this run only: earlier ones stay for whoever fixes them.
  crashes=$(find "$build/crashes/$t" -type f -newer "$build/logs/$t.stamp" | wc -l)
  if [ "$status" -ne 0 ] || [ "$crashes" -ne 0 ] || [ -z "$execs" ]; then
    failed=1
    echo "fuzz: $t FAILED (exit $status): $(grep -m1 -E 'ERROR|runtime error|terminate|SUMMARY' "$log" || tail -1 "$log")" >&2
  fi
  rows+=("$(printf '%-16s %6s %12s %9s %12s %8s' "$t" "$secs" "${execs:-?}" "${rate:-?}" "${corpus:-?}" "$crashes")")
done
printf '%-16s %6s %12s %9s %12s %8s\n' target seconds execs execs/s corpus crashes
printf '%s\n' "${rows[@]}"
exit $failed
