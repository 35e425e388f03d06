// The JSON report (--format json, schema kleak/report/v1): one object per
// report, the same facts as the text report, every counter named.
#include <fmt/format.h>

#include "report/report.h"

namespace kleak {
namespace {

using nlohmann::json;

json or_null(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

std::string addr_hex(uint64_t addr) { return fmt::format("0x{:x}", addr); }

json frame_json(const Frame& f) {
  json j;
  j["addr"] = f.addr ? json(addr_hex(f.addr)) : json(nullptr);
  j["symbol"] = or_null(f.symbol);
  j["offset"] = f.offset;
  j["module"] = or_null(f.module);
  j["unloaded"] = f.unloaded;
  j["unknown"] = or_null(f.unknown);
  if (!f.source.empty()) j["source"] = f.source;
  if (!f.inlined.empty()) {
    json calls = json::array();
    for (const InlinedCall& c : f.inlined) calls.push_back({{"symbol", or_null(c.symbol)}, {"source", or_null(c.source)}});
    j["inlined"] = std::move(calls);  // innermost first
  }
  return j;
}

json peek_json(const PeekResult& p, uint32_t min_string) {
  std::string hex;
  for (uint8_t b : p.data) hex += fmt::format("{:02x}", b);
  return {{"addr", addr_hex(p.addr)},
          {"status", peek_status_name(p.status)},
          {"hex", hex},
          {"strings", printable_strings(p.data, min_string)}};
}

json stack_cache_json(const Counters& c) {
  return {{"hits", c[KLEAK_CNT_SC_HIT]},
          {"cached", c[KLEAK_CNT_SC_MISS]},
          {"uncacheable", c[KLEAK_CNT_SC_UNCACHED]},
          {"not_task_stack", c[KLEAK_CNT_SC_NOT_TASK]},
          {"nested", c[KLEAK_CNT_SC_NESTED]},
          {"paused", c[KLEAK_CNT_SC_PAUSED]},
          {"verify_mismatches", c[KLEAK_CNT_SC_MISMATCH]}};
}

json counters_json(const Report& r) {
  const Counters& c = r.counters;
  json j = {{"allocs_seen", c[KLEAK_CNT_ALLOC_SEEN]},
            {"allocs_recorded", c[KLEAK_CNT_ALLOC_RECORDED]},
            {"allocs_filtered", c[KLEAK_CNT_ALLOC_FILTERED]},
            {"allocs_failed", c[KLEAK_CNT_ALLOC_FAILED]},
            {"allocs_replaced", c[KLEAK_CNT_ALLOC_REPLACED]},
            {"missed_frees", c.missed_frees()},
            {"live_map_full", c[KLEAK_CNT_LIVE_FULL]},
            {"live_map_errors", c[KLEAK_CNT_LIVE_ERROR]},
            {"frees_seen", c[KLEAK_CNT_FREE_SEEN]},
            {"frees_matched", c[KLEAK_CNT_FREE_MATCHED]},
            {"frees_unmatched", c.frees_unmatched()},
            {"tasks_full", c[KLEAK_CNT_TASKS_FULL]},
            {"free_errors", c[KLEAK_CNT_FREE_ERROR]},
            {"frees_rescued", c[KLEAK_CNT_FREE_RESCUED]},
            {"frees_bulk", c[KLEAK_CNT_FREE_BULK]},
            {"frees_bulk_unfollowed", c[KLEAK_CNT_FREE_BULK_UNFOLLOWED]},
            {"stack_errors",
             {{"EFAULT", c[KLEAK_CNT_STACK_EFAULT]}, {"ENOMEM", c[KLEAK_CNT_STACK_ENOMEM]},
              {"other", c[KLEAK_CNT_STACK_OTHER]}}},
            {"stack_cache", stack_cache_json(c)}};
  j["recursion_misses"] = r.recursion.available ? json(r.recursion.total) : json(nullptr);
  json by_prog = json::object();
  for (const auto& [name, n] : r.recursion.by_program) by_prog[name] = n;
  j["recursion_misses_by_program"] = by_prog;
  return j;
}

json page_exclusions_json(const Counters& f) {
  auto ex = [&](kleak_counter n, kleak_counter b) { return json{{"count", f[n]}, {"bytes", f[b]}}; };
  return {{"movable", ex(KLEAK_CNT_EXCL_MOVABLE, KLEAK_CNT_EXCL_MOVABLE_BYTES)},
          {"slab", ex(KLEAK_CNT_EXCL_SLAB, KLEAK_CNT_EXCL_SLAB_BYTES)},
          {"large_kmalloc", ex(KLEAK_CNT_EXCL_KMALLOC, KLEAK_CNT_EXCL_KMALLOC_BYTES)},
          {"page_cache", ex(KLEAK_CNT_EXCL_PAGECACHE, KLEAK_CNT_EXCL_PAGECACHE_BYTES)}};
}

json family_counters_json(uint32_t fam, const Counters& f) {
  json fc = {{"allocs_seen", f[KLEAK_CNT_ALLOC_SEEN]},
             {"allocs_recorded", f[KLEAK_CNT_ALLOC_RECORDED]},
             {"allocs_filtered", f[KLEAK_CNT_ALLOC_FILTERED]},
             {"allocs_failed", f[KLEAK_CNT_ALLOC_FAILED]},
             {"missed_frees", f.missed_frees()},
             {"live_map_full", f[KLEAK_CNT_LIVE_FULL]},
             {"live_map_errors", f[KLEAK_CNT_LIVE_ERROR]},
             {"frees_seen", f[KLEAK_CNT_FREE_SEEN]},
             {"frees_matched", f[KLEAK_CNT_FREE_MATCHED]},
             {"frees_unmatched", f.frees_unmatched()},
             {"free_errors", f[KLEAK_CNT_FREE_ERROR]},
             {"frees_rescued", f[KLEAK_CNT_FREE_RESCUED]},
             {"stack_errors", f.stack_errors()}};
  if (fam == KLEAK_FAMILY_PAGE) fc["excluded"] = page_exclusions_json(f);
  return fc;
}

// "families": slab first when traced, then every other family; and their counters.
void families_json(const Report& r, json& j) {
  j["families"] = json::array();
  if (r.ctx.families.slab) j["families"].push_back("slab");
  json fam_counters = json::object();
  for (uint32_t fam : r.ctx.traced_families) {
    j["families"].push_back(family_name(fam));
    fam_counters[family_name(fam)] = family_counters_json(fam, r.family_counters[fam]);
  }
  j["family_counters"] = fam_counters;
}

json reconciliation_json(const Reconciliation& rc) {
  return {{"slab_delta_bytes", rc.slab_delta},
          {"sunreclaim_delta_bytes", rc.sunreclaim_delta},
          {"sreclaimable_delta_bytes", rc.sreclaimable_delta},
          {"tracked_unreclaimable_bytes", rc.tracked_unreclaimable},
          {"tracked_reclaimable_bytes", rc.tracked_reclaimable},
          {"tracked_large_kmalloc_bytes", rc.tracked_large_kmalloc}};
}

json totals_json(const Report& r) {
  json t = {{"bytes", r.total_bytes},     {"count", r.total_count},     {"stacks", r.stacks_total},
            {"young_bytes", r.young_bytes}, {"young_count", r.young_count}};
  json by_family = json::object();
  if (r.ctx.families.slab) {
    const FamilyTotal& k = r.by_family[KLEAK_FAMILY_KMALLOC];
    const FamilyTotal& kc = r.by_family[KLEAK_FAMILY_KMEM_CACHE];
    by_family["slab"] = {{"bytes", k.bytes + kc.bytes}, {"count", k.count + kc.count}};
  }
  for (uint32_t fam : r.ctx.traced_families)
    by_family[family_name(fam)] = {{"bytes", r.by_family[fam].bytes}, {"count", r.by_family[fam].count}};
  t["by_family"] = by_family;
  return t;
}

// The header: what ran, with which filters, and how full the maps are.
void header_json(const Report& r, json& j) {
  j["schema"] = "kleak/report/v1";
  j["seq"] = r.ctx.seq;
  j["final"] = r.ctx.final_report;
  j["time_unix_ns"] = r.time_unix_ns;
  j["elapsed_s"] = r.elapsed_s;
  j["kernel"] = r.ctx.kernel;
  j["interval_s"] = r.ctx.interval_s;
  j["attached"] = r.ctx.attached;
  j["missing"] = r.ctx.missing;
  j["degraded"] = json::array();
  for (const Degraded& d : r.ctx.degraded) j["degraded"].push_back({{"part", d.part}, {"reason", d.reason}});
  const char* sorts[] = {"score", "bytes", "count", "growth"};
  j["sort"] = sorts[static_cast<int>(r.opts->sort)];
  j["filters"] = {{"min_age_ms", r.opts->min_age_ms},
                  {"min_size_bytes", r.ctx.min_size_bytes},
                  {"max_size_bytes", r.ctx.max_size_bytes},
                  {"cache", or_null(r.ctx.cache)},
                  {"pid", r.opts->pid}};
  const double fill = r.ctx.live_capacity ? 100.0 * static_cast<double>(r.live_count) / r.ctx.live_capacity : 0.0;
  j["live"] = {{"allocations", r.live_count},        {"capacity", r.ctx.live_capacity},
               {"fill_pct", fill},                   {"stack_capacity", r.ctx.stack_capacity},
               {"stacks_stored", r.ctx.stacks_stored}, {"stacks_reclaimed", r.ctx.stacks_reclaimed}};
}

json growth_json(const Growth& g) {
  return {{"verdict", growth_label(g)},         {"bytes_per_s", g.bytes.slope_per_s},
          {"count_per_s", g.count.slope_per_s}, {"r2", g.bytes.r2},
          {"steady", g.bytes.nondecreasing_fraction}, {"points", g.points},
          {"score", g.score}};
}

json estimate_json(const Estimate& e) {
  return {{"stack_inferred", e.stack_inferred}, {"sampled", e.sampled},
          {"site_sampled", e.site_sampled},     {"site_bytes", e.site_bytes},
          {"site_count", e.site_count},         {"count_error95", e.count_error95}};
}

json stack_peek_json(const Report& r, const StackReport& s) {
  json samples = json::array(), groups = json::array();
  for (const PeekResult& p : s.peeks) samples.push_back(peek_json(p, r.opts->peek_min_string));
  for (const ContentGroup& g : s.peek_groups) groups.push_back({{"shape", g.shape}, {"count", g.count}});
  return {{"bytes", r.opts->peek_bytes}, {"samples", samples}, {"groups", groups}};
}

json allocations_json(const StackReport& s) {
  json allocs = json::array();
  for (const AllocLine& a : s.allocs)
    allocs.push_back({{"addr", addr_hex(a.addr)},
                      {"bytes_alloc", a.bytes_alloc},
                      {"bytes_req", a.bytes_req},
                      {"age_ms", a.age_ms},
                      {"pid", a.pid},
                      {"tgid", a.tgid},
                      {"comm", a.comm}});
  return allocs;
}

json stack_json(const Report& r, const StackReport& s) {
  json js;
  js["rank"] = s.rank;
  js["family"] = family_name(s.family);
  js["stack_id"] = s.stack_id ? json(fmt::format("0x{:016x}", s.stack_id)) : json(nullptr);
  js["stack_error"] = or_null(s.stack_error);
  js["stack_key"] = s.stack_key;
  js["stack_hash"] = stack_hash_hex(s.stack_hash);
  js["reclaimable"] = s.reclaimable;
  js["missed_frees"] = s.missed_frees;
  if (s.has_growth) js["growth"] = growth_json(s.growth);
  js["bytes"] = s.bytes;
  js["count"] = s.count;
  js["estimated"] = s.estimate.estimated;
  if (s.estimate.estimated) js["estimate"] = estimate_json(s.estimate);
  json sizes = json::array();
  for (const SizeCount& sc : s.sizes) sizes.push_back({{"bytes_alloc", sc.bytes_alloc}, {"count", sc.count}});
  js["sizes"] = sizes;
  js["oldest_age_ms"] = s.oldest_age_ms;
  js["newest_age_ms"] = s.newest_age_ms;
  json tasks = json::array();
  for (const TaskCount& t : s.tasks) tasks.push_back({{"tgid", t.tgid}, {"comm", t.comm}, {"count", t.count}});
  js["tasks"] = tasks;
  js["call_site"] = frame_json(s.call_site);
  json frames = json::array();
  for (const Frame& f : s.frames) frames.push_back(frame_json(f));
  js["frames"] = frames;
  if (!s.peeks.empty()) js["peek"] = stack_peek_json(r, s);
  if (r.opts->show_allocs) js["allocations"] = allocations_json(s);
  return js;
}

}  // namespace

nlohmann::json reclaim_json(const ReclaimTally& t) {
  return {{"ran", t.ran},
          {"skipped", or_null(t.skipped)},
          {"cache_owned_stacks", t.freed_stacks},
          {"cache_owned_count", t.freed_count},
          {"cache_owned_bytes", t.freed_bytes},
          {"seconds", t.seconds},
          {"time_wait_ended", t.time_wait_ended}};
}

nlohmann::json to_json(const Report& r) {
  json j;
  header_json(r, j);
  j["counters"] = counters_json(r);
  families_json(r, j);
  j["complete"] = r.complete;
  j["stack_sample_every"] = r.ctx.stack_sample_every;
  j["symbols_hidden"] = r.symbols_hidden;
  j["frames_unknown"] = r.frames_unknown;
  if (!r.notes.empty()) j["notes"] = r.notes;
  if (r.extra.is_object())
    for (const auto& [k, v] : r.extra.items()) j[k] = v;
  if (r.peek_addr) j["peek_addr"] = peek_json(*r.peek_addr, r.opts->peek_min_string);
  if (r.reconciliation.available) j["reconciliation"] = reconciliation_json(r.reconciliation);
  if (r.ctx.reclaim) j["reclaim"] = reclaim_json(*r.ctx.reclaim);
  j["totals"] = totals_json(r);
  json stacks = json::array();
  for (const StackReport& s : r.stacks) stacks.push_back(stack_json(r, s));
  j["stacks"] = stacks;
  return j;
}

}  // namespace kleak
