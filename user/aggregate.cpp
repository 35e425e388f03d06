#include "aggregate.h"

#include <algorithm>
#include <cstring>

namespace kleak {
namespace {

uint64_t alloc_key(const kleak_alloc& a) { return group_key(a.stack_id, a.call_site); }

std::string comm_of(const kleak_alloc& a) { return std::string(a.comm, strnlen(a.comm, sizeof(a.comm))); }

// Bounded tallies: past the cap, new values fold into a catch-all entry, so a
// group's memory stays small whatever the load.
void add_size(StackGroup& g, uint64_t bytes_alloc) {
  for (auto& s : g.sizes)
    if (s.bytes_alloc == bytes_alloc) return void(++s.count);
  if (g.sizes.size() < StackGroup::kMaxSizes) return g.sizes.push_back({bytes_alloc, 1});
  for (auto& s : g.sizes)
    if (s.bytes_alloc == 0) return void(++s.count);
  g.sizes.push_back({0, 1});
}


}  // namespace

void Aggregator::add(const LiveAlloc& la) {
  const kleak_alloc& a = la.a;
  ++agg_.live_count;
  if (a.family == KLEAK_FAMILY_KMALLOC && a.bytes_alloc > kKmallocMaxCacheBytes)
    agg_.live_large_kmalloc_bytes += a.bytes_alloc;
  else if (a.flags & KLEAK_ALLOC_RECLAIMABLE)
    agg_.live_reclaimable_bytes += a.bytes_alloc;
  else
    agg_.live_unreclaimable_bytes += a.bytes_alloc;
  const uint64_t key = alloc_key(a);
  StackTotal& total = totals_[key];
  total.key = key;
  total.bytes += a.bytes_alloc;
  ++total.count;
  uint64_t age = now_ns_ > a.ts_ns ? now_ns_ - a.ts_ns : 0;
  if (age < min_age_ns_) {
    agg_.young_bytes += a.bytes_alloc;
    ++agg_.young_count;
    return;
  }
  auto [it, inserted] = index_.try_emplace(key, agg_.groups.size());
  if (inserted) {
    StackGroup g;
    g.stack_id = a.stack_id;
    g.stack_err = a.stack_err;
    g.call_site = a.call_site;
    g.family = a.family;
    g.flags = a.flags;
    g.cache = a.cache;
    agg_.groups.push_back(std::move(g));
    tasks_.emplace_back();
  }
  StackGroup& g = agg_.groups[it->second];
  g.bytes += a.bytes_alloc;
  ++g.count;
  g.oldest_ts_ns = std::min<uint64_t>(g.oldest_ts_ns, a.ts_ns);
  g.newest_ts_ns = std::max<uint64_t>(g.newest_ts_ns, a.ts_ns);
  add_size(g, a.bytes_alloc);
  auto [task, new_task] = tasks_[it->second].try_emplace(a.tgid);
  if (new_task) task->second = TaskCount{a.tgid, comm_of(a), 0};
  ++task->second.count;
  if (keep_allocs_) g.allocs.push_back(la);
  agg_.bytes += a.bytes_alloc;
  ++agg_.count;
}

Aggregate Aggregator::finish() && {
  for (size_t i = 0; i < agg_.groups.size(); ++i) {
    StackGroup& g = agg_.groups[i];
    for (auto& [tgid, t] : tasks_[i]) g.tasks.push_back(std::move(t));
    std::sort(g.tasks.begin(), g.tasks.end(), [](const TaskCount& a, const TaskCount& b) {
      return a.count != b.count ? a.count > b.count : a.tgid < b.tgid;
    });
    if (g.tasks.size() > StackGroup::kMaxTasks) g.tasks.resize(StackGroup::kMaxTasks);
    std::stable_sort(g.sizes.begin(), g.sizes.end(), [](const SizeCount& a, const SizeCount& b) {
      if ((a.bytes_alloc == 0) != (b.bytes_alloc == 0)) return b.bytes_alloc == 0;  // "other" last
      if (a.count != b.count) return a.count > b.count;
      return a.bytes_alloc > b.bytes_alloc;
    });
    std::sort(g.allocs.begin(), g.allocs.end(), [](const LiveAlloc& x, const LiveAlloc& y) {
      return x.a.ts_ns != y.a.ts_ns ? x.a.ts_ns < y.a.ts_ns : x.addr < y.addr;
    });
  }
  std::sort(agg_.groups.begin(), agg_.groups.end(), [](const StackGroup& a, const StackGroup& b) {
    if (a.bytes != b.bytes) return a.bytes > b.bytes;
    if (a.count != b.count) return a.count > b.count;
    if (a.stack_id != b.stack_id) return a.stack_id < b.stack_id;
    return a.call_site < b.call_site;
  });
  index_.clear();
  tasks_.clear();
  agg_.totals.reserve(totals_.size());
  for (auto& [key, t] : totals_) agg_.totals.push_back(t);
  totals_.clear();
  return std::move(agg_);
}

Status aggregate_map(int live_fd, Aggregator& a) {
  return read_live(live_fd, [&a](const LiveAlloc* allocs, size_t n) {
    for (size_t i = 0; i < n; ++i) a.add(allocs[i]);
  });
}

Aggregate aggregate(const std::vector<LiveAlloc>& allocs, uint64_t now_ns, uint64_t min_age_ns, bool keep_allocs) {
  Aggregator a(now_ns, min_age_ns, keep_allocs);
  for (const LiveAlloc& la : allocs) a.add(la);
  return std::move(a).finish();
}

}  // namespace kleak
