// --cache NAME: a slab cache named as slabtop and /proc/slabinfo show it,
// turned into what the BPF programs can filter on.
//
// kmalloc caches are not seen by name: kmalloc() reports its size and gfp
// flags, and the kernel picks the cache from both (kmalloc_type(): DMA, else
// reclaimable, else accounted ("cg"), else normal). So "kmalloc-cg-4k"
// becomes bytes_alloc == 4096 with the accounted type. Any other cache is
// matched by its name in kmem_cache_alloc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "util/result.h"

namespace kleak {

// Values of kmalloc_type(), as the BPF side computes them from gfp flags.
enum class KmallocType : uint32_t { normal = 0, cgroup = 1, reclaim = 2, dma = 3 };

struct KmallocCache {
  uint64_t size = 0;
  std::optional<KmallocType> type;  // nullopt: any (a kmalloc bucket)
};

// kmalloc-N, kmalloc-cg-N, kmalloc-rcl-N (kmalloc-reclaimable-N, v4.20),
// dma-kmalloc-N, and SLAB's size-N / size-N(DMA); N may be "4k", "1M".
// nullopt for other names, and for kmalloc-rnd-* (random per call site).
std::optional<KmallocCache> parse_kmalloc_cache(std::string_view name);

struct CacheFilter {
  std::string requested;  // as the user gave it
  std::string name;       // the cache that holds it (after alias resolution)
  std::optional<KmallocCache> kmalloc;
  // What the filter cannot tell apart on this kernel, for a warning: kmalloc
  // buckets (CONFIG_SLAB_BUCKETS, v6.11: msg_msg-4k, memdup_user-4k) are
  // filled through kmalloc's tracepoint, which does not name the cache.
  std::string note;
};

// Resolves NAME on this kernel: kmalloc names directly; kmalloc buckets
// (a /proc/slabinfo ladder PREFIX-8 ... PREFIX-8k) as their size; other
// names must be a /proc/slabinfo row or an alias of one (SLUB merges caches;
// their names all link to one /sys/kernel/slab entry). The error says why not.
Result<CacheFilter> resolve_cache(const std::string& name, const std::string& proc_dir = "/proc",
                                  const std::string& sys_slab_dir = "/sys/kernel/slab");

}  // namespace kleak
