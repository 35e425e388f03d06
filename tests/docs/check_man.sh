#!/usr/bin/env bash
# The man page kleak(8), built from docs/ (scripts/md2man.py), renders
# without a groff warning and documents every option each command's --help
# defines: an option added to the CLI but not to docs/ fails here.
#
# usage: check_man.sh KLEAK_BINARY MAN_PAGE
set -euo pipefail
kleak=$1
page=$2
[ -s "$page" ] || { echo "FAIL: no man page at $page"; exit 1; }
if warnings=$(groff -man -ww -Wbreak -z -Tutf8 "$page" 2>&1) && [ -z "$warnings" ]; then :; else
  echo "FAIL: groff warns about $page:"; echo "$warnings" | head -20; exit 1
fi
text=$(MANWIDTH=200 man -l "$page" 2>/dev/null | col -b)
for section in NAME SYNOPSIS; do
  grep -q "^$section" <<<"$text" || { echo "FAIL: no $section section"; exit 1; }
done
missing=0
for cmd in "" user triage serve start report stop selftest; do
  # the options a command defines: "  -x,--name" or "  --name" at a line's start
  opts=$("$kleak" $cmd --help | sed -n 's/^  \(-[A-Za-z],\)\{0,1\}\(--[a-z][a-z0-9-]*\).*/\2/p' | sort -u)
  [ -n "$opts" ] || { echo "FAIL: kleak $cmd --help lists no option"; exit 1; }
  for o in $opts; do
    [ "$o" = --help ] && continue
    if ! grep -q -- "$o\b" <<<"$text"; then
      echo "FAIL: kleak $cmd $o is not in the man page (document it in docs/)"
      missing=1
    fi
  done
done
[ $missing -eq 0 ] || exit 1
echo "ok: $page renders cleanly and documents every option of every command"
