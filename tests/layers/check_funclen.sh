#!/usr/bin/env bash
# No function of user/ or bpf/ is longer than 80 lines (scripts/funclen.py).
# First the checker is shown to see one: a generated 81-line function is
# named, and an 80-line one passes.
#
# usage: check_funclen.sh SOURCE_DIR
set -euo pipefail
src=$1
check="python3 $src/scripts/funclen.py 80"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gen() {  # gen NAME BODY_LINES: a function of BODY_LINES + 2 lines
  { echo "namespace n {"; echo "int $1(int x) {"
    for ((i = 0; i < $2; i++)); do echo "  if (x) { x += $i; }"; done
    echo "}"; echo "}"; } >"$tmp/$1.cpp"
}
gen too_long 79
gen just_fits 78
if out=$($check "$tmp/too_long.cpp"); then
  echo "FAIL: funclen.py passed an 81-line function"; exit 1
fi
grep -q "too_long: 81 lines" <<<"$out" || { echo "FAIL: funclen.py did not name it: $out"; exit 1; }
$check "$tmp/just_fits.cpp" || { echo "FAIL: funclen.py refused an 80-line function"; exit 1; }
shopt -s nullglob
if ! out=$($check "$src"/user/*/*.cpp "$src"/user/*/*.h "$src"/bpf/*.c "$src"/bpf/*.h); then
  echo "FAIL: functions over 80 lines (split them):"; echo "$out"; exit 1
fi
echo "ok: no function over 80 lines in user/ and bpf/"
