#include "report/prometheus.h"

#include <fmt/format.h>

#include <cmath>
#include <unordered_map>

#include "version.h"

namespace kleak {
namespace {

struct Series {
  std::string labels;  // {stack="...",function="..."}
  uint64_t bytes = 0;
  uint64_t count = 0;
  bool has_growth = false;
  double bytes_per_s = 0;
  double count_per_s = 0;
};

// The allocator's caller names a stack best (load_msg, not __kmalloc).
std::string stack_function(const StackReport& s) {
  if (!s.call_site.symbol.empty()) return s.call_site.symbol;
  for (const Frame& f : s.frames)
    if (!f.symbol.empty()) return f.symbol;
  return "?";
}

// Reported stacks merged by symbolic hash, in report order.
std::vector<Series> stack_series(const Report& r) {
  std::vector<Series> out;
  std::unordered_map<uint64_t, size_t> index;
  for (const StackReport& s : r.stacks) {
    auto [it, fresh] = index.try_emplace(s.stack_hash, out.size());
    if (fresh) {
      Series n;
      n.labels = fmt::format("{{stack=\"{}\",function=\"{}\"}}", stack_hash_hex(s.stack_hash),
                             prometheus_label_value(stack_function(s)));
      out.push_back(std::move(n));
    }
    Series& x = out[it->second];
    x.bytes += s.bytes;
    x.count += s.count;
    // A slope needs two reports; a fitted line through fewer says nothing.
    if (s.has_growth && s.growth.points >= 2 && std::isfinite(s.growth.bytes.slope_per_s)) {
      x.has_growth = true;
      x.bytes_per_s += s.growth.bytes.slope_per_s;
      x.count_per_s += s.growth.count.slope_per_s;
    }
  }
  return out;
}

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

template <typename T>
void sample(std::string& out, std::string_view name, std::string_view labels, T value) {
  out += fmt::format("{}{} {}\n", name, labels, value);
}

}  // namespace

std::string prometheus_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

namespace {

// The counters' families (every report) and the last reclaim's (serve
// --reclaim).
void counter_samples(std::string& out, const Report& r) {
  const Counters& c = r.counters;
  family(out, "kleak_allocations_seen_total", "counter", "Allocations kleak's hooks saw.");
  sample(out, "kleak_allocations_seen_total", "", c[KLEAK_CNT_ALLOC_SEEN]);
  family(out, "kleak_allocations_recorded_total", "counter", "Allocations kleak recorded in its live map.");
  sample(out, "kleak_allocations_recorded_total", "", c[KLEAK_CNT_ALLOC_RECORDED]);
  family(out, "kleak_allocations_filtered_total", "counter", "Allocations left out by the filters (size, pid, cache).");
  sample(out, "kleak_allocations_filtered_total", "", c[KLEAK_CNT_ALLOC_FILTERED]);
  family(out, "kleak_frees_seen_total", "counter", "Frees kleak's hooks saw.");
  sample(out, "kleak_frees_seen_total", "", c[KLEAK_CNT_FREE_SEEN]);
  family(out, "kleak_frees_matched_total", "counter", "Frees of an allocation kleak had recorded.");
  sample(out, "kleak_frees_matched_total", "", c[KLEAK_CNT_FREE_MATCHED]);
  family(out, "kleak_frees_unmatched_total", "counter", "Frees of memory allocated before kleak or filtered out.");
  sample(out, "kleak_frees_unmatched_total", "", c.frees_unmatched());
  family(out, "kleak_frees_bulk_total", "counter",
         "Frees without a per-object tracepoint (kmem_cache_free_bulk, kfree_rcu sheaves) that the bulk-free "
         "follower matched to a recorded allocation.");
  sample(out, "kleak_frees_bulk_total", "", c[KLEAK_CNT_FREE_BULK]);
  family(out, "kleak_frees_bulk_unfollowed_total", "counter",
         "Entries of bulk-free arrays past what the follower reads: their records stay until the address is reused.");
  sample(out, "kleak_frees_bulk_unfollowed_total", "", c[KLEAK_CNT_FREE_BULK_UNFOLLOWED]);
  family(out, "kleak_missed_frees_total", "counter",
         "Frees that bypassed kleak's hooks (bulk frees): some outstanding allocations may be freed already.");
  sample(out, "kleak_missed_frees_total", "", c.missed_frees());
  family(out, "kleak_lost_total", "counter", "What kleak lost, by reason: nonzero means the numbers are incomplete.");
  const std::pair<const char*, uint64_t> lost[] = {
      {"live_map_full", c[KLEAK_CNT_LIVE_FULL]},   {"live_map_error", c[KLEAK_CNT_LIVE_ERROR]},
      {"alloc_failed", c[KLEAK_CNT_ALLOC_FAILED]}, {"free_error", c[KLEAK_CNT_FREE_ERROR]},
      {"tasks_full", c[KLEAK_CNT_TASKS_FULL]},     {"stack_efault", c[KLEAK_CNT_STACK_EFAULT]},
      {"stack_enomem", c[KLEAK_CNT_STACK_ENOMEM]}, {"stack_other", c[KLEAK_CNT_STACK_OTHER]},
  };
  for (const auto& [reason, n] : lost) sample(out, "kleak_lost_total", fmt::format("{{reason=\"{}\"}}", reason), n);
  if (r.ctx.reclaim && r.ctx.reclaim->ran) {
    // serve --reclaim: the last proof by reclaim. What it freed is not in
    // the live set any more, so not in the stack series above.
    const ReclaimTally& t = *r.ctx.reclaim;
    family(out, "kleak_reclaim_freed_bytes", "gauge",
           "Bytes the last reclaim (--reclaim) freed: cache-owned, not leaks, not in the series above.");
    sample(out, "kleak_reclaim_freed_bytes", "", t.freed_bytes);
    family(out, "kleak_reclaim_freed_allocations", "gauge", "Allocations the last reclaim (--reclaim) freed.");
    sample(out, "kleak_reclaim_freed_allocations", "", t.freed_count);
  }
}

}  // namespace

std::string render_prometheus(const Report& r) {
  const Counters& c = r.counters;
  std::string out;
  family(out, "kleak_info", "gauge", "kleak's version and the kernel it traces; always 1.");
  sample(out, "kleak_info",
         fmt::format("{{version=\"{}\",kernel=\"{}\"}}", prometheus_label_value(kVersion),
                     prometheus_label_value(r.ctx.kernel)),
         1);
  family(out, "kleak_degraded_parts", "gauge",
         "Parts of kleak this kernel refused or lacks, dropped (the stack cache, a family, ...): 0 when whole.");
  sample(out, "kleak_degraded_parts", "", r.ctx.degraded.size());
  family(out, "kleak_degraded", "gauge", "1 for each part of kleak dropped on this kernel.");
  for (const Degraded& d : r.ctx.degraded)
    sample(out, "kleak_degraded", fmt::format("{{part=\"{}\"}}", prometheus_label_value(d.part)), 1);
  family(out, "kleak_traced_seconds", "gauge", "Seconds since kleak attached.");
  sample(out, "kleak_traced_seconds", "", r.elapsed_s);
  family(out, "kleak_min_age_seconds", "gauge", "Allocations younger than this are not counted as outstanding.");
  sample(out, "kleak_min_age_seconds", "", static_cast<double>(r.opts ? r.opts->min_age_ms : 0) / 1000);
  family(out, "kleak_outstanding_bytes", "gauge", "Bytes of allocations older than the age threshold, every stack.");
  sample(out, "kleak_outstanding_bytes", "", r.total_bytes);
  family(out, "kleak_outstanding_allocations", "gauge", "Allocations older than the age threshold, every stack.");
  sample(out, "kleak_outstanding_allocations", "", r.total_count);
  family(out, "kleak_stacks", "gauge", "Stacks with outstanding allocations (only the top ones are series).");
  sample(out, "kleak_stacks", "", r.stacks_total);
  family(out, "kleak_live_allocations", "gauge", "Allocations in kleak's live map, young ones included.");
  sample(out, "kleak_live_allocations", "", r.live_count);
  family(out, "kleak_live_capacity_allocations", "gauge", "Size of kleak's live map (--max-allocs).");
  sample(out, "kleak_live_capacity_allocations", "", r.ctx.live_capacity);

  std::vector<Series> series = stack_series(r);
  family(out, "kleak_stack_outstanding_bytes", "gauge",
         "Outstanding bytes at one of the top stacks (stack: hash of its function names).");
  for (const Series& s : series) sample(out, "kleak_stack_outstanding_bytes", s.labels, s.bytes);
  family(out, "kleak_stack_outstanding_allocations", "gauge", "Outstanding allocations at one of the top stacks.");
  for (const Series& s : series) sample(out, "kleak_stack_outstanding_allocations", s.labels, s.count);
  family(out, "kleak_stack_growth_bytes_per_second", "gauge",
         "Fitted growth of a top stack's outstanding bytes over kleak's recent reports.");
  for (const Series& s : series)
    if (s.has_growth) sample(out, "kleak_stack_growth_bytes_per_second", s.labels, s.bytes_per_s);
  family(out, "kleak_stack_growth_allocations_per_second", "gauge",
         "Fitted growth of a top stack's outstanding allocations over kleak's recent reports.");
  for (const Series& s : series)
    if (s.has_growth) sample(out, "kleak_stack_growth_allocations_per_second", s.labels, s.count_per_s);

  counter_samples(out, r);
  family(out, "kleak_report_complete", "gauge", "1 when nothing was lost, 0 when the report undercounts.");
  sample(out, "kleak_report_complete", "", counters_complete(c) ? 1 : 0);
  return out;
}

}  // namespace kleak
