#!/usr/bin/env bash
# The quick start: install what building and running kleak needs (not the
# tests' tools), build the kleak binary alone, and run it with the given
# arguments (none: a report every 10 s, the final one on Ctrl-C).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/install-deps.sh" --build-only
KLEAK_BUILD_TARGET=kleak "$here/scripts/build.sh" -DKLEAK_TESTS=OFF >/dev/null
exec "${KLEAK_BUILD_DIR:-$here/build}/kleak" "$@"
