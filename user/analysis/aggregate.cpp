#include "analysis/aggregate.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace kleak {
namespace {

uint64_t alloc_key(const kleak_alloc& a) { return group_key(a.stack_id, a.call_site, a.family); }

// Most allocations first, then the lower tgid.
bool task_before(const TaskCount& a, const TaskCount& b) {
  return a.count != b.count ? a.count > b.count : a.tgid < b.tgid;
}

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

StackGroup& Aggregator::group_for(const kleak_alloc& a, uint64_t key) {
  auto [it, inserted] = index_.try_emplace(key, agg_.groups.size());
  if (inserted) {
    StackGroup g;
    g.stack_id = a.stack_id;
    g.stack_err = a.stack_err;
    g.call_site = a.call_site;
    g.family = a.family;
    g.flags = a.flags & ~KLEAK_ALLOC_STACK_HINT;
    g.cache = a.cache;
    agg_.groups.push_back(std::move(g));
  }
  return agg_.groups[it->second];
}

void Aggregator::add(const LiveAlloc& la) {
  const kleak_alloc& a = la.a;
  ++agg_.live_count;
  FamilyTotal* fam = a.family < KLEAK_FAMILY_MAX ? &agg_.by_family[a.family] : nullptr;
  if (fam) {
    fam->live_bytes += a.bytes_alloc;
    ++fam->live_count;
  }
  // Slab records by where the kernel accounts them; other families are
  // outside its slab counters.
  const bool slab = a.family == KLEAK_FAMILY_KMALLOC || a.family == KLEAK_FAMILY_KMEM_CACHE;
  if (slab && a.family == KLEAK_FAMILY_KMALLOC && a.bytes_alloc > kKmallocMaxCacheBytes)
    agg_.live_large_kmalloc_bytes += a.bytes_alloc;
  else if (slab && (a.flags & KLEAK_ALLOC_RECLAIMABLE))
    agg_.live_reclaimable_bytes += a.bytes_alloc;
  else if (slab)
    agg_.live_unreclaimable_bytes += a.bytes_alloc;
  uint64_t age = now_ns_ > a.ts_ns ? now_ns_ - a.ts_ns : 0;
  const bool young = age < min_age_ns_;
  if (young) {
    agg_.young_bytes += a.bytes_alloc;
    ++agg_.young_count;
  } else {
    agg_.bytes += a.bytes_alloc;
    ++agg_.count;
    if (fam) {
      fam->bytes += a.bytes_alloc;
      ++fam->count;
    }
  }
  if (a.stack_id != 0) agg_.referenced_stacks.insert(a.stack_id);
  if ((a.flags & KLEAK_ALLOC_STACK_HINT) && a.stack_id != 0) return add_unsampled(la, young);
  const uint64_t key = alloc_key(a);
  auto [tot, new_total] = totals_.try_emplace(key);
  if (new_total) {
    tot->second.key = key;
    site_keys_[a.call_site].push_back(key);
  }
  tot->second.bytes += a.bytes_alloc;
  ++tot->second.count;
  if (young) return;
  StackGroup& g = group_for(a, key);
  const size_t gi = index_[key];
  g.bytes += a.bytes_alloc;
  ++g.count;
  g.oldest_ts_ns = std::min<uint64_t>(g.oldest_ts_ns, a.ts_ns);
  g.newest_ts_ns = std::max<uint64_t>(g.newest_ts_ns, a.ts_ns);
  add_size(g, a.bytes_alloc);
  auto [task, new_task] = tasks_.try_emplace(task_key(gi, a.tgid));
  if (new_task) std::memcpy(task->second.comm, a.comm, sizeof(a.comm));
  ++task->second.count;
  if (keep_allocs_) g.allocs.push_back(la);
}

void Aggregator::add_unsampled(const LiveAlloc& la, bool young) {
  const kleak_alloc& a = la.a;
  Unsampled& u = unsampled_[a.call_site];
  if (u.all_count == 0) u.first = a;
  u.hint_stack_id = a.stack_id;
  u.all_bytes += a.bytes_alloc;
  ++u.all_count;
  if (young) return;
  u.bytes += a.bytes_alloc;
  ++u.count;
  u.oldest_ts_ns = std::min<uint64_t>(u.oldest_ts_ns, a.ts_ns);
  u.newest_ts_ns = std::max<uint64_t>(u.newest_ts_ns, a.ts_ns);
  if (keep_allocs_) u.allocs.push_back(la);
}

namespace {

// Shares `total` out in proportion to `weights` (largest remainder), so the
// shares add up to `total` exactly.
std::vector<uint64_t> share(uint64_t total, const std::vector<uint64_t>& weights) {
  std::vector<uint64_t> out(weights.size(), 0);
  long double sum = 0;
  for (uint64_t w : weights) sum += w;
  if (sum == 0 || total == 0) return out;
  std::vector<std::pair<long double, size_t>> rest;
  uint64_t given = 0;
  for (size_t i = 0; i < weights.size(); ++i) {
    long double exact = static_cast<long double>(total) * weights[i] / sum;
    out[i] = static_cast<uint64_t>(exact);
    given += out[i];
    rest.emplace_back(exact - out[i], i);
  }
  std::sort(rest.begin(), rest.end(), [](const auto& x, const auto& y) {
    return x.first != y.first ? x.first > y.first : x.second < y.second;
  });
  for (size_t k = 0; given < total && k < rest.size(); ++k, ++given) ++out[rest[k].second];
  return out;
}

}  // namespace

// Each call site's allocations without a stack of their own go to the
// site's stacks in the proportions its outstanding sampled allocations show
// (a stack that leaks keeps its sampled allocations outstanding, one that
// frees loses them: the split follows what is outstanding, not what is
// allocated). A site with no sampled allocation outstanding keeps them
// under the stack last captured there, marked inferred.
void Aggregator::share_out_unsampled() {
  for (auto& [site, u] : unsampled_) {
    const std::vector<uint64_t>* keys = nullptr;
    if (auto it = site_keys_.find(site); it != site_keys_.end()) keys = &it->second;
    share_totals(site, u, keys);
    if (u.count == 0) continue;
    // Reported groups, old enough.
    std::vector<size_t> groups;
    if (keys)
      for (uint64_t k : *keys)
        if (auto gi = index_.find(k); gi != index_.end()) groups.push_back(gi->second);
    if (groups.empty())
      infer_group(site, u);
    else
      share_groups(u, groups);
  }
  unsampled_.clear();
  site_keys_.clear();
}

// Growth totals, any age.
void Aggregator::share_totals(uint64_t site, const Unsampled& u, const std::vector<uint64_t>* keys) {
  std::vector<uint64_t> tcounts, tbytes;
  if (keys)
    for (uint64_t k : *keys) {
      tcounts.push_back(totals_[k].count);
      tbytes.push_back(totals_[k].bytes);
    }
  if (!tcounts.empty()) {
    auto c = share(u.all_count, tcounts), b = share(u.all_bytes, tbytes);
    for (size_t i = 0; i < keys->size(); ++i) {
      totals_[(*keys)[i]].count += c[i];
      totals_[(*keys)[i]].bytes += b[i];
    }
    return;
  }
  uint64_t k = group_key(u.hint_stack_id, site);
  StackTotal& t = totals_[k];
  t.key = k;
  t.count += u.all_count;
  t.bytes += u.all_bytes;
}

// No sampled allocation of the site outstanding: all go under the stack
// last captured there, marked inferred.
void Aggregator::infer_group(uint64_t site, const Unsampled& u) {
  kleak_alloc hint = u.first;
  hint.stack_id = u.hint_stack_id;
  const uint64_t key = group_key(hint.stack_id, site);
  StackGroup& g = group_for(hint, key);
  g.estimate.stack_inferred = true;
  g.estimate.estimated = true;
  g.bytes += u.bytes;
  g.count += u.count;
  g.estimate.site_bytes = g.bytes;
  g.estimate.site_count = g.count;
  g.oldest_ts_ns = std::min(g.oldest_ts_ns, u.oldest_ts_ns);
  g.newest_ts_ns = std::max(g.newest_ts_ns, u.newest_ts_ns);
  g.allocs.insert(g.allocs.end(), u.allocs.begin(), u.allocs.end());
}

// Shared out in proportion to each group's sampled allocations, with the
// binomial 95% error of that split; the listed allocations go to the biggest.
void Aggregator::share_groups(const Unsampled& u, const std::vector<size_t>& groups) {
  std::vector<uint64_t> counts, bytes;
  uint64_t sampled = 0, sampled_bytes = 0;
  for (size_t gi : groups) {
    counts.push_back(agg_.groups[gi].count);
    bytes.push_back(agg_.groups[gi].bytes);
    sampled += counts.back();
    sampled_bytes += bytes.back();
  }
  auto c = share(u.count, counts), b = share(u.bytes, bytes);
  size_t biggest = 0;
  for (size_t i = 0; i < groups.size(); ++i) {
    StackGroup& g = agg_.groups[groups[i]];
    Estimate& e = g.estimate;
    e.estimated = true;
    e.sampled = counts[i];
    e.site_sampled = sampled;
    e.site_count = sampled + u.count;
    e.site_bytes = sampled_bytes + u.bytes;
    double p = static_cast<double>(counts[i]) / static_cast<double>(sampled);
    e.count_error95 =
        1.96 * static_cast<double>(e.site_count) * std::sqrt(p * (1 - p) / static_cast<double>(sampled));
    g.count += c[i];
    g.bytes += b[i];
    g.oldest_ts_ns = std::min(g.oldest_ts_ns, u.oldest_ts_ns);
    g.newest_ts_ns = std::max(g.newest_ts_ns, u.newest_ts_ns);
    if (c[i] > c[biggest]) biggest = i;
  }
  StackGroup& host = agg_.groups[groups[biggest]];
  host.allocs.insert(host.allocs.end(), u.allocs.begin(), u.allocs.end());
}

// Each group keeps its kMaxTasks busiest tasks, inserted in order, so no
// list longer than that is ever built.
void Aggregator::pick_top_tasks() {
  for (const auto& [key, tally] : tasks_) {
    StackGroup& g = agg_.groups[key >> 32];
    TaskCount t{static_cast<uint32_t>(key), {}, tally.count};
    auto at = std::upper_bound(g.tasks.begin(), g.tasks.end(), t, task_before);
    if (at == g.tasks.end() && g.tasks.size() >= StackGroup::kMaxTasks) continue;
    t.comm.assign(tally.comm, strnlen(tally.comm, sizeof(tally.comm)));
    g.tasks.insert(at, std::move(t));
    if (g.tasks.size() > StackGroup::kMaxTasks) g.tasks.pop_back();
  }
  tasks_.clear();
}

Aggregate Aggregator::finish() && {
  share_out_unsampled();
  pick_top_tasks();
  for (size_t i = 0; i < agg_.groups.size(); ++i) {
    StackGroup& g = agg_.groups[i];
    if (!g.estimate.estimated) g.estimate.sampled = g.count;
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
  agg_.totals.reserve(totals_.size());
  for (auto& [key, t] : totals_) agg_.totals.push_back(t);
  totals_.clear();
  return std::move(agg_);
}

Aggregate aggregate(const std::vector<LiveAlloc>& allocs, uint64_t now_ns, uint64_t min_age_ns, bool keep_allocs) {
  Aggregator a(now_ns, min_age_ns, keep_allocs);
  for (const LiveAlloc& la : allocs) a.add(la);
  return std::move(a).finish();
}

}  // namespace kleak
