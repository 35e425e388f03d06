#!/usr/bin/env bash
# The quick start: install what is missing, build, and run kleak with the
# given arguments (none: a report every 10 s, the final one on Ctrl-C).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/install-deps.sh"
"$here/scripts/build.sh" >/dev/null
exec "${KLEAK_BUILD_DIR:-$here/build}/kleak" "$@"
