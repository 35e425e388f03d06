#!/usr/bin/env bash
# Configures and builds kleak into build/ (or $KLEAK_BUILD_DIR): every
# target, or $KLEAK_BUILD_TARGET alone. Extra arguments go to cmake's
# configure step.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${KLEAK_BUILD_DIR:-$here/build}
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$build" -j "$(nproc)" ${KLEAK_BUILD_TARGET:+--target "$KLEAK_BUILD_TARGET"}
