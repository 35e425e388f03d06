#!/usr/bin/env bash
# The quick start: install what building and running kleak needs (not the
# tests' tools), build the kleak binary alone, and run it with the given
# arguments (none: a report every 10 s, the final one on Ctrl-C).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/install-deps.sh" --build-only
# Release: no debug info, so it builds in 2/3 of the time and the binary is
# 12 MB instead of 90 (scripts/test.sh builds RelWithDebInfo).
KLEAK_BUILD_TARGET=kleak "$here/scripts/build.sh" -DKLEAK_TESTS=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
exec "${KLEAK_BUILD_DIR:-$here/build}/kleak" "$@"
