// "Unaccounted" kernel memory from /proc/meminfo: RAM that is neither free
// nor in any counter meminfo breaks out. It is what drivers and subsystems
// take straight from the page allocator (alloc_pages, __get_free_pages):
// pipe and socket buffer pages, page_frag caches, DMA buffers, the per-CPU
// free page lists... A leak of such pages shows up nowhere else in /proc.
//
//   unaccounted = MemTotal - MemFree
//                 - Buffers - Cached - SwapCached - AnonPages
//                 - Slab - (KReclaimable - SReclaimable)
//                 - KernelStack - ShadowCallStack - PageTables - SecPageTables
//                 - VmallocUsed - Percpu
//                 - Hugetlb (or HugePages_Total x Hugepagesize)
//                 - Zswap - Balloon - Unaccepted - HardwareCorrupted
//                 - Bounce - WritebackTmp
//
// Not subtracted because another term already holds them: Shmem,
// NFS_Unstable, Mapped, Dirty, Writeback and the *HugePages/PmdMapped
// fields (inside Cached or AnonPages), Unevictable, Mlocked, Active and
// Inactive (LRU lists of the same pages), CmaFree (inside MemFree).
//
// Where two counters overlap, the formula subtracts both, so the result errs
// low, never high, and growth in it is not an artefact of double counting:
// - SwapCached: a swapped-in page stays in the swap cache while mapped, and
//   is then in AnonPages too.
// - KernelStack, ShadowCallStack: with CONFIG_VMAP_STACK (x86-64 and arm64
//   defaults) stacks are vmalloc'ed, so they are inside VmallocUsed too.
// - Balloon: virtio-balloon may already have taken the pages out of MemTotal.
// docs/usage.md ("Unaccounted kernel memory") has the reasoning per field.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "procfs/procfs.h"

namespace kleak {

struct Unaccounted {
  int64_t bytes = 0;  // may be negative: see the overlaps above
  // Optional fields this kernel does not have (treated as 0), e.g. Percpu
  // before v4.16: that memory is then counted here.
  std::vector<std::string> absent;
};

// nullopt when a required field (MemTotal, MemFree, Buffers, Cached,
// AnonPages, and Slab or SReclaimable+SUnreclaim) is missing.
std::optional<Unaccounted> unaccounted_kernel_memory(const Meminfo& m);

}  // namespace kleak
