#include "triage/unaccounted.h"

namespace kleak {
namespace {

// Optional terms, each a meminfo field subtracted whole. Why each is there
// (and first kernel with the field, where it is recent):
constexpr const char* kOptionalTerms[] = {
    "SwapCached",         // swap cache: in NR_FILE_PAGES, but left out of Cached
    "KernelStack",        // task stacks
    "ShadowCallStack",    // arm64 CONFIG_SHADOW_CALL_STACK (v5.8)
    "PageTables",         // user page tables
    "SecPageTables",      // KVM/IOMMU secondary page tables (v6.1)
    "VmallocUsed",        // pages behind vmalloc areas (v5.3; 0 in v4.4-v5.2)
    "Percpu",             // per-CPU allocator chunks (v4.16)
    "Zswap",              // compressed swap pool (v5.19)
    "Balloon",            // pages a balloon driver holds for the hypervisor
    "Unaccepted",         // TDX/SEV-SNP memory not yet accepted (v6.5): free in all but name
    "HardwareCorrupted",  // poisoned pages, never handed out again
    "Bounce",             // bounce buffers (0 since v6.x)
    "WritebackTmp",       // FUSE writeback temp pages, not in the page cache
};

// No real machine has 2^56 bytes (64 PiB). Refusing larger values keeps the
// signed sums below of at most 20 terms far from overflow when a garbled
// file holds a huge number.
constexpr uint64_t kMaxBytes = 1ull << 56;

}  // namespace

std::optional<Unaccounted> unaccounted_kernel_memory(const Meminfo& m) {
  auto total = m.get("MemTotal"), free = m.get("MemFree"), buffers = m.get("Buffers"), cached = m.get("Cached"),
       anon = m.get("AnonPages");
  std::optional<uint64_t> slab = m.get("Slab");
  // Slab is SReclaimable + SUnreclaim; take the parts if only they are there.
  if (!slab && m.get("SReclaimable") && m.get("SUnreclaim")) slab = *m.get("SReclaimable") + *m.get("SUnreclaim");
  if (!total || !free || !buffers || !cached || !anon || !slab) return std::nullopt;
  for (const auto& [name, bytes] : m.bytes)
    if (bytes > kMaxBytes) return std::nullopt;
  auto huge_pages = m.counts.find("HugePages_Total");
  if (huge_pages != m.counts.end() && huge_pages->second > kMaxBytes / (1ull << 30)) return std::nullopt;

  Unaccounted u;
  // Signed from here: the overlaps in the header can take it below zero.
  int64_t v = static_cast<int64_t>(*total) - static_cast<int64_t>(*free);
  // Cached = NR_FILE_PAGES - SwapCached - Buffers (fs/proc/meminfo.c), and
  // Shmem is inside Cached: the three are disjoint.
  v -= static_cast<int64_t>(*buffers) + static_cast<int64_t>(*cached) + static_cast<int64_t>(*anon) +
       static_cast<int64_t>(*slab);
  for (const char* f : kOptionalTerms) {
    if (auto x = m.get(f))
      v -= static_cast<int64_t>(*x);
    else
      u.absent.emplace_back(f);
  }
  // KReclaimable = SReclaimable + NR_KERNEL_MISC_RECLAIMABLE (v4.20): only
  // the part outside slab is new.
  auto krecl = m.get("KReclaimable"), srecl = m.get("SReclaimable");
  if (krecl && srecl) {
    if (*krecl > *srecl) v -= static_cast<int64_t>(*krecl - *srecl);
  } else {
    u.absent.emplace_back("KReclaimable");
  }
  // Hugetlb (v4.16) counts every huge page size; before it, only the default
  // size's pool is visible.
  if (auto h = m.get("Hugetlb")) {
    v -= static_cast<int64_t>(*h);
  } else {
    u.absent.emplace_back("Hugetlb");
    auto size = m.get("Hugepagesize");
    if (huge_pages != m.counts.end() && size && *size <= (1ull << 30))
      v -= static_cast<int64_t>(huge_pages->second * *size);
  }
  u.bytes = v;
  return u;
}

}  // namespace kleak
