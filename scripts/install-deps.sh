#!/usr/bin/env bash
# Installs what kleak needs on Debian 12, skipping what is already there.
# Run as root.
#   install-deps.sh               everything the tests and benchmarks need
#   install-deps.sh --build-only  only what building and running kleak needs
#                                 (the quick start, scripts/kleak.sh)
set -euo pipefail
# To build and run kleak: the compilers, the BPF toolchain (clang, llvm,
# bpftool, libbpf), the libraries it links (libelf, zlib, CLI11, JSON, fmt,
# protobuf-lite for --format pprof, libdw for file:line, capstone to place
# uprobes where the kernel emulates instead of single-stepping, see
# user/probe/probe_site.h), python3 for the man page (scripts/md2man.py).
build_pkgs=(cmake make g++ pkg-config clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev libcli11-dev
            nlohmann-json3-dev libfmt-dev protobuf-compiler libprotobuf-dev libdw-dev libcapstone-dev python3)
# The tests and benchmarks, on top: libclang-rt-dev (clang's libFuzzer and
# sanitizer runtimes, tests/fuzz; only recommended by clang, so
# --no-install-recommends leaves it out), libgtest-dev; golang-go and
# prometheus for the tests that read the formats back (`go tool pprof`,
# `promtool`, a real Prometheus scraping `kleak serve`; about 450 MB
# installed, no service started); python3-yaml and systemd (for
# systemd-analyze verify): tests/deploy checks the fleet recipes in deploy/;
# util-linux's unshare: the pinned-mode tests; liblzma-dev and libbz2-dev:
# the decompressors of libdw.a's libdwfl, for the static build
# scripts/vmtest boots; binutils' addr2line checks kernel lines; valgrind:
# the user-space test's cross-check (bench/user_overhead.sh also wants
# heaptrack).
test_pkgs=(libclang-rt-dev libgtest-dev golang-go prometheus python3-yaml systemd util-linux liblzma-dev libbz2-dev
           binutils valgrind)
case ${1:-} in
--build-only) pkgs=("${build_pkgs[@]}") ;;
"") pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
*) echo "usage: install-deps.sh [--build-only]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run as root to install them" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
