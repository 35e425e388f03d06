#!/usr/bin/env bash
# The build refuses an include that runs upward (user/CMakeLists.txt): for
# each layer, a header of a layer above it does not compile in that layer's
# include view, and one of a layer below it does.
#
# usage: check_layers.sh CXX LAYER_VIEWS_DIR [INCLUDE_DIR...]
#   INCLUDE_DIRs: what every layer sees beside user/ (bpf/, generated headers, CLI11, libbpf)
set -euo pipefail
cxx=$1
views=$2
shift 2
extra=()
for d in "$@"; do extra+=("-I$d"); done
# Pairs: a layer, a header below it (must compile), a header above it (must be refused).
cases=(
  "util util/result.h model/family.h"
  "model util/result.h probe/loader.h"
  "analysis model/records.h report/report.h"
  "report analysis/aggregate.h probe/snapshot.h"
  "probe symbols/ksyms.h pipeline/map_reader.h"
  "options report/output.h commands/trace.h"
)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0
for c in "${cases[@]}"; do
  read -r layer below above <<<"$c"
  printf '#include "%s"\n' "$below" >"$tmp/below.cpp"
  printf '#include "%s"\n' "$above" >"$tmp/above.cpp"
  if ! "$cxx" -std=c++20 -fsyntax-only -I"$views/$layer" "${extra[@]}" "$tmp/below.cpp" 2>"$tmp/err"; then
    echo "FAIL: $layer cannot include $below, a layer below it:"; cat "$tmp/err"; failed=1
  fi
  if "$cxx" -std=c++20 -fsyntax-only -I"$views/$layer" "${extra[@]}" "$tmp/above.cpp" 2>"$tmp/err"; then
    echo "FAIL: $layer may include $above, a layer above it"; failed=1
  elif ! grep -q "$above: No such file or directory" "$tmp/err"; then
    echo "FAIL: $layer including $above failed, but not for want of the file:"; cat "$tmp/err"; failed=1
  else
    echo "ok: $layer refuses $above ($(grep -o "fatal error: .*" "$tmp/err"))"
  fi
done
exit $failed
