// Readers for the /proc (and /sys) files `kleak triage` samples.
//
// Each parser takes the file's text, so tests run it on recorded fixtures;
// the load_* functions only read the real file and call it. Parsers never
// fail on a bad line: they skip it and count it in ParseIssues, so a garbled
// or truncated file gives fewer values, never a wrong one.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/result.h"
#include "util/sys.h"  // read_text_file

namespace kleak {

struct ParseIssues {
  size_t bad_lines = 0;
  std::string first_bad_line;  // shortened, for the warning
  void add(std::string_view line);
};

// /proc/meminfo. Fields absent on this kernel are absent from the maps, never
// zero: a 4.x kernel has no Percpu, a 5.x no SecPageTables.
struct Meminfo {
  std::map<std::string, uint64_t, std::less<>> bytes;   // "... kB" fields, x 1024
  std::map<std::string, uint64_t, std::less<>> counts;  // unit-less fields (HugePages_Total, ...)
  ParseIssues issues;

  std::optional<uint64_t> get(std::string_view field) const;
};

Meminfo parse_meminfo(std::string_view text);

// One /proc/slabinfo row. The first three numbers mean the same in SLUB's
// and SLAB's "slabinfo - version: 2.1" and in SLAB's 2.0.
struct SlabCache {
  std::string name;
  uint64_t active_objs = 0;
  uint64_t num_objs = 0;
  uint64_t objsize = 0;
  uint64_t bytes = 0;  // active_objs x objsize: what the objects in use take
};

struct Slabinfo {
  std::string version;  // "2.1"
  std::vector<SlabCache> caches;
  ParseIssues issues;
};

// Error when the header is missing or names a version other than 2.x.
Result<Slabinfo> parse_slabinfo(std::string_view text);

// The allocation size a kmalloc cache serves, from its name: kmalloc-96 ->
// 96, kmalloc-4k -> 4096, kmalloc-cg-4k, kmalloc-rcl-1k, kmalloc-rnd-03-64,
// dma-kmalloc-512, and old SLAB's size-4096 and size-4096(DMA). nullopt for
// any other cache (kmalloc_buckets, dentry, ...).
std::optional<uint64_t> kmalloc_size_of(std::string_view cache);

// /proc/<pid>/smaps_rollup.
struct ProcessMemory {
  uint64_t rss_bytes = 0;
  uint64_t pss_bytes = 0;
};

// nullopt when there is no Pss line: an empty file (a kernel thread) or a
// garbled one (then `issues` says so).
std::optional<ProcessMemory> parse_smaps_rollup(std::string_view text, ParseIssues& issues);

// /proc/<pid>/comm without its newline.
std::string parse_comm(std::string_view text);

// SLUB merges compatible caches into one and lists it in /proc/slabinfo
// under one name; /sys/kernel/slab has a symlink per merged name to the
// shared ":<id>" directory. `links` is (name, symlink target) for every
// symlink there. Returns, for each name, the other names sharing its target.
std::map<std::string, std::vector<std::string>> slab_aliases(
    const std::vector<std::pair<std::string, std::string>>& links);

// --- loaders for the real files -------------------------------------------

Result<Meminfo> load_meminfo(const std::string& proc_dir = "/proc");
Result<Slabinfo> load_slabinfo(const std::string& proc_dir = "/proc");
// Empty (not an error) when the directory is missing: no SLUB, or no sysfs.
std::map<std::string, std::vector<std::string>> load_slab_aliases(const std::string& sys_slab_dir = "/sys/kernel/slab");

struct ProcessSample {
  uint32_t pid = 0;
  std::string comm;
  ProcessMemory mem;
};

struct ProcessScan {
  std::vector<ProcessSample> processes;
  size_t unreadable = 0;      // EACCES/EPERM: another user's process, without root
  size_t kernel_threads = 0;  // no mm: ESRCH (v6.x) or an empty smaps_rollup (older)
  size_t vanished = 0;        // exited between listing and reading (ENOENT/ESRCH)
  size_t no_rollup = 0;       // alive, but no smaps_rollup: Linux before 4.14
  ParseIssues issues;         // smaps_rollup text that made no sense
};

// Every process's PSS and RSS. Processes that exit mid-scan, unreadable ones
// and kernel threads are skipped and counted; nothing here is an error except
// an unreadable proc_dir.
Result<ProcessScan> scan_processes(const std::string& proc_dir = "/proc");

}  // namespace kleak
