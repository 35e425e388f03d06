// Grouping live allocations by kernel stack, and ranking the groups.
// One pass over the snapshot with a hash map keyed by stack: O(n).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "model/records.h"

namespace kleak {

struct SizeCount {
  uint64_t bytes_alloc = 0;
  uint64_t count = 0;
};

struct TaskCount {
  uint32_t tgid = 0;
  std::string comm;
  uint64_t count = 0;
};

// The sampled (low-overhead) mode: a stack's `bytes` and `count` are
// estimates when `estimated`: the allocations at its call site that carry
// their own stack (`sampled` of them at this stack, `site_sampled` at the
// call site) are split by stack, and the call site's exact totals
// (`site_bytes`, `site_count`) are shared out in those proportions. sizes,
// tasks and ages describe the sampled allocations. `stack_inferred`: no
// outstanding allocation at the call site had its own stack; the stack shown
// is the one last captured there.
struct Estimate {
  bool estimated = false;
  bool stack_inferred = false;
  uint64_t sampled = 0;
  uint64_t site_sampled = 0;
  uint64_t site_bytes = 0;
  uint64_t site_count = 0;
  // 95% interval half-width of the count estimate (binomial on the share).
  double count_error95 = 0;
};

struct StackGroup {
  // A kleak_stacks key; 0 when the stack was not captured (stack_err says
  // why: -errno) and the group is keyed by call_site instead.
  uint64_t stack_id = 0;
  int32_t stack_err = 0;
  uint64_t call_site = 0;  // of the first allocation seen in the group
  uint32_t family = 0;     // enum kleak_family of that allocation
  uint32_t flags = 0;      // KLEAK_ALLOC_* of that allocation
  uint64_t cache = 0;      // its kmem_cache, 0 for kmalloc
  uint64_t bytes = 0;
  uint64_t count = 0;
  uint64_t oldest_ts_ns = UINT64_MAX;
  uint64_t newest_ts_ns = 0;
  std::vector<SizeCount> sizes;  // most common first, at most kMaxSizes, then "other" (bytes_alloc 0)
  std::vector<TaskCount> tasks;  // most allocations first, at most kMaxTasks (exact counts)
  std::vector<LiveAlloc> allocs;  // oldest first, only when asked to keep them
  Estimate estimate;

  static constexpr size_t kMaxSizes = 8;
  static constexpr size_t kMaxTasks = 8;
};

// The identity of a group within a run: its stack key, or for allocations
// without a stack their call site (mixed so it cannot meet a stack key).
// Families beyond slab are mixed in too, so a page and a slab object never
// share a group; slab keys are what they always were.
inline uint64_t group_key(uint64_t stack_id, uint64_t call_site, uint32_t family = KLEAK_FAMILY_KMALLOC) {
  uint64_t key = stack_id != 0 ? stack_id : (call_site ^ 0x9e3779b97f4a7c15ull);
  if (family != KLEAK_FAMILY_KMALLOC && family != KLEAK_FAMILY_KMEM_CACHE) key ^= 0xc2b2ae3d27d4eb4full * family;
  return key;
}
inline uint64_t group_key(const StackGroup& g) { return group_key(g.stack_id, g.call_site, g.family); }

// Where missed-free evidence for a group is kept (see kleak_missed).
inline uint64_t missed_free_key(const StackGroup& g) {
  return g.family == KLEAK_FAMILY_KMEM_CACHE ? g.cache : g.call_site;
}

// Everything outstanding at one stack, young allocations included: what
// growth is measured on.
// kmallocs above this come from the page allocator, not a kmalloc cache
// (KMALLOC_MAX_CACHE_SIZE with SLUB and 4 KiB pages: two pages).
constexpr uint64_t kKmallocMaxCacheBytes = 8192;

struct StackTotal {
  uint64_t key = 0;  // group_key()
  uint64_t bytes = 0;
  uint64_t count = 0;
};

// One family's share of the live records (kmalloc and kmem_cache apart).
struct FamilyTotal {
  uint64_t bytes = 0;  // reported (old enough)
  uint64_t count = 0;
  uint64_t live_bytes = 0;  // every live record, young ones included
  uint64_t live_count = 0;
};

struct Aggregate {
  std::array<FamilyTotal, KLEAK_FAMILY_MAX> by_family;  // indexed by enum kleak_family
  std::vector<StackGroup> groups;  // ranked: bytes, then count, descending
  std::vector<StackTotal> totals;  // every stack with a live allocation, any age
  uint64_t live_count = 0;         // every allocation seen, young or old
  uint64_t bytes = 0;              // of reported (old enough) allocations
  uint64_t count = 0;
  uint64_t young_bytes = 0;  // live, but younger than the age threshold
  uint64_t young_count = 0;
  // Every live allocation's bytes, by where the kernel accounts them: slab
  // objects as SUnreclaim or SReclaimable, kmallocs too large for a slab
  // cache as pages straight from the page allocator (not in Slab).
  uint64_t live_unreclaimable_bytes = 0;
  uint64_t live_reclaimable_bytes = 0;
  uint64_t live_large_kmalloc_bytes = 0;
  // Every stack id a live allocation referenced, hints included: what the
  // stack store must keep (stack_reclaim.h).
  std::unordered_set<uint64_t> referenced_stacks;
};

// Groups allocations fed one at a time (a map read in batches), so memory
// grows with the number of stacks, not of allocations. Allocations younger
// than min_age_ns at now_ns are only counted. With keep_allocs, each group
// also keeps its allocations (for -a).
class Aggregator {
 public:
  Aggregator(uint64_t now_ns, uint64_t min_age_ns, bool keep_allocs)
      : now_ns_(now_ns), min_age_ns_(min_age_ns), keep_allocs_(keep_allocs) {}
  void add(const LiveAlloc& la);
  // Sorts the tallies and ranks the groups.
  Aggregate finish() &&;

 private:
  uint64_t now_ns_;
  uint64_t min_age_ns_;
  bool keep_allocs_;
  Aggregate agg_;
  std::unordered_map<uint64_t, size_t> index_;
  std::unordered_map<uint64_t, StackTotal> totals_;
  // Every (group, task) pair's count, the top kMaxTasks per group picked at
  // finish(). One map of small nodes for all groups: under a busy machine's
  // load the pairs run into the hundreds of thousands (one per short-lived
  // process per stack), so this is the report's largest table.
  struct TaskTally {
    uint64_t count = 0;
    char comm[sizeof(kleak_alloc::comm)] = {};  // of the first allocation seen
  };
  static uint64_t task_key(size_t group, uint32_t tgid) { return static_cast<uint64_t>(group) << 32 | tgid; }
  std::unordered_map<uint64_t, TaskTally> tasks_;
  void pick_top_tasks();

  // The sampled mode: per call site, its allocations without a stack of
  // their own, shared out over the site's stacks at finish().
  struct Unsampled {
    uint64_t bytes = 0, count = 0;              // old enough to report
    uint64_t all_bytes = 0, all_count = 0;      // any age (growth)
    uint64_t oldest_ts_ns = UINT64_MAX, newest_ts_ns = 0;
    uint64_t hint_stack_id = 0;  // the stack last captured at the site
    kleak_alloc first{};
    std::vector<LiveAlloc> allocs;
  };
  std::unordered_map<uint64_t, Unsampled> unsampled_;
  // Call site -> keys of its groups and totals that have their own stack.
  std::unordered_map<uint64_t, std::vector<uint64_t>> site_keys_;
  void add_unsampled(const LiveAlloc& la, bool young);
  void share_out_unsampled();
  void share_totals(uint64_t site, const Unsampled& u, const std::vector<uint64_t>* keys);
  void infer_group(uint64_t site, const Unsampled& u);
  void share_groups(const Unsampled& u, const std::vector<size_t>& groups);
  StackGroup& group_for(const kleak_alloc& a, uint64_t key);
};

// All of `allocs` through an Aggregator.
Aggregate aggregate(const std::vector<LiveAlloc>& allocs, uint64_t now_ns, uint64_t min_age_ns, bool keep_allocs);

}  // namespace kleak
