#!/usr/bin/env bash
# Builds kleak with warnings as errors and runs every test. The BPF tests need
# root and a kernel with BTF: they skip without them when run by hand, and
# fail under CI=true.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${KLEAK_BUILD_DIR:-$here/build}
"$here/scripts/install-deps.sh"
KLEAK_BUILD_DIR=$build "$here/scripts/build.sh" -DKLEAK_WERROR=ON
cd "$build"
ctest --output-on-failure -j "$(nproc)" --timeout 600
