// What kernel source lines cost a report (symbols/kernel_dwarf.h): opening
// a vmlinux with DWARF, the first lookup of each frame (a compile unit's
// line table and DIE tree are read then), and a cached one. The frames are
// return addresses inside the functions of a kernel leak's usual stacks,
// as a report's top stacks hold them; with --check, each one's lines are
// also compared with `addr2line -f -i` on the same file.
//
// usage: kleak-bench-lines VMLINUX [--check] [FUNCTION...]
#include <chrono>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "symbols/kernel_dwarf.h"

using kleak::DwarfFile;
using kleak::SourceInfo;

namespace {

double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// addr2line -a -f -i for every address, one run: per address, its pairs.
std::vector<std::vector<std::pair<std::string, std::string>>> addr2line(const std::string& file,
                                                                         const std::vector<uint64_t>& addrs) {
  std::string cmd = "addr2line -a -f -i -e " + file;
  for (uint64_t a : addrs) cmd += fmt::format(" 0x{:x}", a);
  std::vector<std::vector<std::pair<std::string, std::string>>> out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return out;
  char buf[4096];
  std::string fn;
  bool want_loc = false;
  while (fgets(buf, sizeof buf, p)) {
    std::string l(buf);
    if (!l.empty() && l.back() == '\n') l.pop_back();
    if (!want_loc && l.rfind("0x", 0) == 0 && l.size() == 18) {
      out.emplace_back();
    } else if (!want_loc) {
      fn = l;
      want_loc = true;
    } else {
      if (auto d = l.find(" (discriminator"); d != std::string::npos) l.resize(d);
      if (!out.empty()) out.back().emplace_back(fn, l);
      want_loc = false;
    }
  }
  pclose(p);
  return out;
}

bool same(const std::vector<std::pair<std::string, std::string>>& want, const SourceInfo& s) {
  if (want.size() != s.inlined.size() + 1) return false;
  auto suffix = [](const std::string& full, const std::string& rel) {
    return !rel.empty() && (full == rel || (full.size() > rel.size() &&
                                             full.compare(full.size() - rel.size(), rel.size(), rel) == 0 &&
                                             full[full.size() - rel.size() - 1] == '/'));
  };
  for (size_t i = 0; i < s.inlined.size(); ++i)
    if (want[i].first != s.inlined[i].symbol || !suffix(want[i].second, s.inlined[i].source)) return false;
  return suffix(want.back().second, s.source);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s VMLINUX [--check] [FUNCTION...]\n", argv[0]);
    return 2;
  }
  const std::string path = argv[1];
  bool check = false;
  std::vector<std::string> fns;
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) == "--check") check = true;
    else fns.emplace_back(argv[i]);
  }
  if (fns.empty())  // the frames of slab leaks through open, read, fork and ext4
    fns = {"__kmalloc",     "kmalloc_trace",  "kmem_cache_alloc", "kmemdup_nul",      "single_open",
           "proc_reg_open", "do_dentry_open", "vfs_open",         "path_openat",      "do_filp_open",
           "do_sys_openat2", "__x64_sys_openat", "do_syscall_64",  "seq_read_iter",    "vfs_read",
           "ksys_read",     "copy_process",   "kernel_clone",     "prepare_creds",    "security_prepare_creds",
           "ext4_lookup",   "__ext4_iget",    "d_alloc",          "alloc_inode",      "load_msg",
           "do_msgsnd",     "newque",         "sock_alloc_send_pskb", "__alloc_skb",  "tcp_sendmsg_locked"};
  auto t0 = std::chrono::steady_clock::now();
  auto f = DwarfFile::open(path);
  if (!f) {
    fprintf(stderr, "%s\n", f.error().message.c_str());
    return 1;
  }
  const double open_ms = ms_since(t0);
  std::vector<uint64_t> addrs;
  size_t missing = 0;
  for (const std::string& fn : fns) {
    auto start = (*f)->function_address(fn);
    if (!start) {
      ++missing;
      continue;
    }
    for (uint64_t off : {0x1d, 0x42, 0x67, 0x8c, 0xb1}) addrs.push_back(*start + off);
  }
  t0 = std::chrono::steady_clock::now();
  size_t inlined = 0, with_line = 0;
  for (uint64_t a : addrs) {
    const SourceInfo& s = (*f)->lookup(a);
    inlined += s.inlined.size();
    with_line += !s.source.empty();
  }
  const double first_ms = ms_since(t0);
  t0 = std::chrono::steady_clock::now();
  for (int round = 0; round < 100; ++round)
    for (uint64_t a : addrs) (*f)->lookup(a);
  const double cached_us = ms_since(t0) * 1000 / 100 / static_cast<double>(addrs.size());
  printf("%s: build ID %s\n", path.c_str(), (*f)->build_id().c_str());
  printf("open (with the function table): %.1f ms\n", open_ms);
  printf("%zu frames in %zu functions (%zu not found): first lookup %.1f ms (%.2f ms a frame), cached %.2f us a frame\n",
         addrs.size(), fns.size() - missing, missing, first_ms, first_ms / static_cast<double>(addrs.size()), cached_us);
  printf("frames with a line: %zu; inlined functions: %zu\n", with_line, inlined);
  if (check) {
    auto want = addr2line(path, addrs);
    size_t match = 0;
    for (size_t i = 0; i < addrs.size() && i < want.size(); ++i) {
      if (same(want[i], (*f)->lookup(addrs[i]))) ++match;
      else fprintf(stderr, "differs at 0x%lx\n", static_cast<unsigned long>(addrs[i]));
    }
    printf("addr2line -f -i agrees on %zu of %zu frames\n", match, addrs.size());
    return match == addrs.size() ? 0 : 1;
  }
  return 0;
}
