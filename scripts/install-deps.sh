#!/usr/bin/env bash
# Installs what kleak needs to build and test on Debian 12, skipping what is
# already there. Run as root.
set -euo pipefail
# libclang-rt-dev: clang's libFuzzer and sanitizer runtimes (tests/fuzz),
# only recommended by clang, so --no-install-recommends leaves it out.
# protobuf-compiler, libprotobuf-dev: --format pprof (protoc and the static
# protobuf-lite). golang-go and prometheus only for the tests that read the
# formats back (`go tool pprof`, `promtool`, a real Prometheus scraping
# `kleak serve`); about 450 MB installed, no service started.
# python3-yaml and systemd (for systemd-analyze verify): tests/deploy checks
# the fleet recipes in deploy/; util-linux's unshare: the pinned-mode tests.
# libdw-dev: file:line of user-space and kernel frames (liblzma-dev and
# libbz2-dev: the decompressors of libdw.a's libdwfl, for the static build
# scripts/vmtest boots); binutils' addr2line checks kernel lines; valgrind: the
# user-space test's cross-check (bench/user_overhead.sh also wants heaptrack).
# libcapstone-dev: decodes allocator entry instructions to place uprobes where
# the kernel emulates instead of single-stepping (user/probe/probe_site.h).
pkgs=(cmake make g++ pkg-config clang llvm libclang-rt-dev libbpf-dev bpftool libelf-dev zlib1g-dev
      libgtest-dev libcli11-dev nlohmann-json3-dev libfmt-dev protobuf-compiler libprotobuf-dev
      golang-go prometheus python3-yaml systemd util-linux libdw-dev liblzma-dev libbz2-dev binutils valgrind libcapstone-dev)
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
