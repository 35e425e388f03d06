#!/usr/bin/env bash
# The README's first command on a bare Debian 12: a minbase bookworm root
# (mmdebstrap), a clone of this repository in it, and `scripts/kleak.sh -d 5`
# run inside (chroot, with the host's /proc, /sys, /dev and bpffs), timed
# from the start of the install to the end of the first report. apt inside
# uses the root's own sources (deb.debian.org); the host's are not touched.
#
# usage: sudo bench/quickstart.sh [ROOT_DIR]   (default /var/tmp/kleak-quickstart)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
root=${1:-/var/tmp/kleak-quickstart}
[ "$(id -u)" -eq 0 ] || { echo "quickstart: run as root (mmdebstrap, chroot, BPF)" >&2; exit 1; }
command -v mmdebstrap >/dev/null || { echo "quickstart: apt-get install mmdebstrap" >&2; exit 1; }
rm -rf "$root"
opts=(--variant=minbase)
for line in Acquire::Check-Valid-Until Acquire::Check-Date; do
  [ "$(apt-config dump "$line" | awk '{ gsub(/[";]/, "", $2); print $2 }')" = false ] && opts+=(--aptopt="$line \"false\";")
done
mmdebstrap "${opts[@]}" bookworm "$root" "deb http://deb.debian.org/debian bookworm main" \
  "deb http://deb.debian.org/debian bookworm-updates main" \
  "deb http://deb.debian.org/debian-security bookworm-security main" >"$root.log" 2>&1 ||
  { tail -n 15 "$root.log" >&2; exit 1; }
git clone -q "$here" "$root/kleak"
echo "quickstart: $(du -sm "$root" | cut -f1) MB bare root; running scripts/kleak.sh -d 5 -q -T 3 in it" >&2
# A private mount namespace: the binds go when the chroot ends.
start=$(date +%s.%N)
unshare -m sh -c 'for d in proc sys dev; do mount --rbind "/$d" "$1/$d"; done && exec chroot "$1" \
  sh -c "cd /kleak && scripts/kleak.sh -d 5 -q -T 3"' sh "$root" >"$root.report" 2>"$root.err" || {
  tail -n 20 "$root.err" >&2
  exit 1
}
end=$(date +%s.%N)
head -n 3 "$root.report"
echo "quickstart: bare Debian 12 root to the first report in $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }') s" \
  "(of which tracing 5 s); binary $(du -m "$root/kleak/build/kleak" | cut -f1) MB"
