#!/usr/bin/env bash
# Builds kleak with warnings as errors and runs every test, the load tier
# (tests/load: every BPF program loaded in every mode) first. The BPF tests need
# root and a kernel with BTF: they skip without them when run by hand, and
# fail under CI=true. Then the unit tests again under ASan+UBSan (build-san/),
# and a short seeded run of every fuzz target (bench/fuzz.sh, build-fuzz/,
# KLEAK_FUZZ_SECONDS each): any sanitizer report or crash fails.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${KLEAK_BUILD_DIR:-$here/build}
"$here/scripts/install-deps.sh"
# -DKLEAK_TESTS=ON: a build dir the quick start (scripts/kleak.sh) configured
# has them off.
KLEAK_BUILD_DIR=$build "$here/scripts/build.sh" -DKLEAK_WERROR=ON -DKLEAK_TESTS=ON
cd "$build"
# The load tier first: seconds, and a kernel that refuses one of kleak's
# programs shows here as the cases naming it, before the tests that trace.
# Its result does not stop the rest: every failure is worth seeing.
load_rc=0
ctest --output-on-failure -R '^load\.' --no-tests=error --timeout 600 || load_rc=$?
ctest --output-on-failure -j "$(nproc)" -E '^load\.' --timeout 600
[ "$load_rc" -eq 0 ] || { echo "test.sh: the load tier failed (see above)" >&2; exit "$load_rc"; }

san=${KLEAK_SAN_BUILD_DIR:-$here/build-san}
# Debug (-O0): the sanitizers check the same as at -O2, and this build takes
# 136 s instead of 358 s on the 2-core CI host; the unit tests run in seconds.
cmake -S "$here" -B "$san" -DKLEAK_SANITIZE=ON -DKLEAK_WERROR=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build "$san" -j "$(nproc)" --target kleak_unit_tests
(cd "$san" && ctest --output-on-failure -j "$(nproc)" -R '^unit\.' --no-tests=error)
KLEAK_FUZZ_CMAKE_ARGS=-DKLEAK_WERROR=ON "$here/bench/fuzz.sh" "${KLEAK_FUZZ_SECONDS:-10}"
