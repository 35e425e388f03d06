// The text report: a header of counters and warnings, then one block per
// stack (kleak's default --format).
#include <ctime>

#include <fmt/format.h>

#include "report/report.h"
#include "util/units.h"

namespace kleak {
namespace {

std::string bytes_text(uint64_t b) { return human_bytes(static_cast<double>(b)); }

// " uleak.c:42", " mm/slub.c:4321" (shown_source), "" without a line.
std::string source_text(const std::string& source) { return source.empty() ? "" : " " + shown_source(source); }

// addr 0: hidden (--hide-addresses) or unknown. A kernel frame without a
// symbol says why: "0x... [unknown: not in kallsyms]", or in a module
// "0x... [leaky+0x1ec: module init text, unloaded]".
std::string frame_text(const Frame& f) {
  const std::string gone = f.unloaded ? ", unloaded" : "";
  if (f.symbol.empty()) {
    std::string addr = f.addr ? fmt::format("0x{:x}", f.addr) : std::string("?");
    if (!f.module.empty())
      return fmt::format("{} [{}+0x{:x}{}{}]", addr, f.module, f.offset, f.unknown.empty() ? "" : ": " + f.unknown,
                         gone);
    return f.unknown.empty() ? addr : fmt::format("{} [unknown: {}]", addr, f.unknown);
  }
  std::string text = f.module.empty() ? fmt::format("{}+0x{:x}", f.symbol, f.offset)
                                      : fmt::format("{}+0x{:x} [{}{}]", f.symbol, f.offset, f.module, gone);
  return text + source_text(f.source);
}

// A frame's lines: the functions inlined at its address first, innermost
// first, as `perf report --inline` and `addr2line -i` show them.
std::string frame_lines(const Frame& f) {
  std::string out;
  for (const InlinedCall& c : f.inlined)
    out += fmt::format("    {}{} (inlined)\n", c.symbol.empty() ? "?" : c.symbol, source_text(c.source));
  return out + fmt::format("    {}\n", frame_text(f));
}

std::string age_text(uint64_t ms) {
  if (ms >= 3600 * 1000) return fmt::format("{:.1f}h", static_cast<double>(ms) / 3.6e6);
  if (ms >= 60 * 1000) return fmt::format("{:.1f}m", static_cast<double>(ms) / 6e4);
  return fmt::format("{:.1f}s", static_cast<double>(ms) / 1e3);
}

// "[page] " for records beyond slab; nothing for slab, whose reports read
// as they always did.
std::string family_tag(const StackReport& s) {
  if (s.family == KLEAK_FAMILY_KMALLOC || s.family == KLEAK_FAMILY_KMEM_CACHE) return {};
  return fmt::format("[{}] ", family_name(s.family));
}

std::string family_totals_text(const Report& r) {
  if (r.ctx.traced_families.empty()) return {};
  const FamilyTotal& k = r.by_family[KLEAK_FAMILY_KMALLOC];
  const FamilyTotal& c = r.by_family[KLEAK_FAMILY_KMEM_CACHE];
  std::string out = r.ctx.families.slab ? fmt::format("; slab {} in {}", bytes_text(k.bytes + c.bytes), k.count + c.count)
                                        : std::string();
  for (uint32_t fam : r.ctx.traced_families) {
    const FamilyTotal& t = r.by_family[fam];
    out += fmt::format("; {} {} in {}", family_name(fam), bytes_text(t.bytes), t.count);
  }
  return out;
}

std::string family_counter_lines(const Report& r) {
  std::string out;
  for (uint32_t fam : r.ctx.traced_families) {
    const Counters& f = r.family_counters[fam];
    out += fmt::format(
        "  {}: seen {} recorded {} filtered {} failed {} | lost: map-full {} map-error {} | missed frees: {} | "
        "frees: seen {} matched {} unmatched {} errors {} | no stack {}\n",
        family_name(fam), f[KLEAK_CNT_ALLOC_SEEN], f[KLEAK_CNT_ALLOC_RECORDED], f[KLEAK_CNT_ALLOC_FILTERED],
        f[KLEAK_CNT_ALLOC_FAILED], f[KLEAK_CNT_LIVE_FULL], f[KLEAK_CNT_LIVE_ERROR], f.missed_frees(),
        f[KLEAK_CNT_FREE_SEEN], f[KLEAK_CNT_FREE_MATCHED], f.frees_unmatched(), f[KLEAK_CNT_FREE_ERROR],
        f.stack_errors());
    if (fam == KLEAK_FAMILY_PAGE)
      out += fmt::format(
          "  page: not leak candidates, not recorded: movable (user/page cache) {} ({}), slab pages {} ({}), "
          "large kmallocs {} ({}); dropped when added to the page cache {} ({})\n",
          f[KLEAK_CNT_EXCL_MOVABLE], bytes_text(f[KLEAK_CNT_EXCL_MOVABLE_BYTES]), f[KLEAK_CNT_EXCL_SLAB],
          bytes_text(f[KLEAK_CNT_EXCL_SLAB_BYTES]), f[KLEAK_CNT_EXCL_KMALLOC],
          bytes_text(f[KLEAK_CNT_EXCL_KMALLOC_BYTES]), f[KLEAK_CNT_EXCL_PAGECACHE],
          bytes_text(f[KLEAK_CNT_EXCL_PAGECACHE_BYTES]));
  }
  return out;
}

// Frees the free programs' backups did: each one a run the kernel skipped
// for the program itself (bpf/kleak.bpf.c, KLEAK_FREE_PROGRAMS).
uint64_t frees_rescued(const Report& r) {
  uint64_t n = r.counters[KLEAK_CNT_FREE_RESCUED];
  for (const Counters& f : r.family_counters) n += f[KLEAK_CNT_FREE_RESCUED];
  return n;
}

std::string recursion_line(const Report& r) {
  const RecursionMisses& m = r.recursion;
  if (!m.available) return "  recursion: this kernel does not report skipped program runs (before v5.12)\n";
  const uint64_t skipped = m.free_runs_skipped(), rescued = frees_rescued(r);
  return fmt::format("  recursion: the kernel skipped {} program runs (recursion){}: up to {} frees may be missed\n",
                     m.total, rescued ? fmt::format(", their backups did {} of those frees", rescued) : "",
                     skipped > rescued ? skipped - rescued : 0);
}

// The verified stack cache's line, when it was used (bpf/stack_cache.bpf.h).
std::string stack_cache_line(const Counters& c) {
  uint64_t walked = c[KLEAK_CNT_SC_MISS] + c[KLEAK_CNT_SC_UNCACHED] + c[KLEAK_CNT_SC_NOT_TASK] +
                    c[KLEAK_CNT_SC_NESTED] + c[KLEAK_CNT_SC_PAUSED];
  if (c[KLEAK_CNT_SC_HIT] + walked == 0) return {};
  std::string out = fmt::format(
      "  stack cache: hits {} walked {} (cached {} uncacheable {} | not task stack {} nested {} paused {})",
      c[KLEAK_CNT_SC_HIT], walked, c[KLEAK_CNT_SC_MISS], c[KLEAK_CNT_SC_UNCACHED], c[KLEAK_CNT_SC_NOT_TASK],
      c[KLEAK_CNT_SC_NESTED], c[KLEAK_CNT_SC_PAUSED]);
  if (c[KLEAK_CNT_SC_MISMATCH] > 0) out += fmt::format(" | verify MISMATCHES {}", c[KLEAK_CNT_SC_MISMATCH]);
  return out + "\n";
}

// The header's counter lines: what was seen, lost and missed.
std::string counter_lines(const Report& r) {
  const Counters& c = r.counters;
  double fill = r.ctx.live_capacity ? 100.0 * static_cast<double>(r.live_count) / r.ctx.live_capacity : 0;
  std::string out = fmt::format("  live map: {} allocations ({:.1f}% of {}); {} younger than {} ms not shown ({})\n",
                                r.live_count, fill, r.ctx.live_capacity, r.young_count, r.opts->min_age_ms,
                                bytes_text(r.young_bytes));
  out += fmt::format(
      "  allocs: seen {} recorded {} filtered {} failed {} | lost: map-full {} map-error {} | missed frees: {}\n",
      c[KLEAK_CNT_ALLOC_SEEN], c[KLEAK_CNT_ALLOC_RECORDED], c[KLEAK_CNT_ALLOC_FILTERED], c[KLEAK_CNT_ALLOC_FAILED],
      c[KLEAK_CNT_LIVE_FULL], c[KLEAK_CNT_LIVE_ERROR], c.missed_frees());
  out += fmt::format("  frees: seen {} matched {} (bulk {}, unfollowed {}) unmatched {} errors {} | stack errors: "
                     "EFAULT {} ENOMEM {} other {} | tasks-full {}\n",
                     c[KLEAK_CNT_FREE_SEEN], c[KLEAK_CNT_FREE_MATCHED], c[KLEAK_CNT_FREE_BULK],
                     c[KLEAK_CNT_FREE_BULK_UNFOLLOWED], c.frees_unmatched(), c[KLEAK_CNT_FREE_ERROR],
                     c[KLEAK_CNT_STACK_EFAULT], c[KLEAK_CNT_STACK_ENOMEM], c[KLEAK_CNT_STACK_OTHER],
                     c[KLEAK_CNT_TASKS_FULL]);
  return out + stack_cache_line(c) + family_counter_lines(r) + recursion_line(r);
}

// The kernel counts slab pages (new objects first fill partly used ones)
// and nets out frees of objects older than kleak: tracked bytes can exceed
// its growth; below it, the rest is growth kleak does not see.
std::string reconciliation_line(const Reconciliation& rc) {
  if (!rc.available) return {};
  std::string share;
  if (rc.sunreclaim_delta > 0) {
    double covered = static_cast<double>(rc.tracked_unreclaimable) / static_cast<double>(rc.sunreclaim_delta);
    share = covered >= 1 ? ", covers all of it" : fmt::format(", covers {:.0f}% of it", 100 * covered);
  }
  return fmt::format(
      "  vs kernel since start: SUnreclaim {} ({} tracked{}), SReclaimable {} ({} tracked), Slab {}; "
      "large kmallocs (pages) {} tracked\n",
      signed_bytes(static_cast<double>(rc.sunreclaim_delta)), bytes_text(rc.tracked_unreclaimable), share,
      signed_bytes(static_cast<double>(rc.sreclaimable_delta)), bytes_text(rc.tracked_reclaimable),
      signed_bytes(static_cast<double>(rc.slab_delta)), bytes_text(rc.tracked_large_kmalloc));
}

// The stack store, the sampled mode, and what a reader must know to trust
// the stacks.
// --reclaim: what the kernel gave back before this report (not in it).
std::string reclaim_line(const Report& r) {
  if (!r.ctx.reclaim) return {};
  const ReclaimTally& t = *r.ctx.reclaim;
  if (!t.skipped.empty()) return fmt::format("  reclaim: not done: {}\n", t.skipped);
  if (!t.ran) return "  reclaim: nothing outstanding to prove\n";
  return fmt::format("  reclaim: freed {} in {} allocations at {} stacks in {:.1f} s (cache-owned, not shown){}\n",
                     bytes_text(t.freed_bytes), t.freed_count, t.freed_stacks, t.seconds,
                     t.time_wait_ended ? fmt::format("; {} loopback TIME_WAIT sockets ended", t.time_wait_ended)
                                       : std::string());
}

std::string warning_lines(const Report& r) {
  const Counters& c = r.counters;
  std::string out;
  if (r.ctx.stacks_stored > 0 || r.ctx.stacks_reclaimed > 0)
    out += fmt::format("  stack store: {} of {} stacks; {} reclaimed so far (no live allocation used them)\n",
                       r.ctx.stacks_stored, r.ctx.stack_capacity, r.ctx.stacks_reclaimed);
  if (r.ctx.stack_sample_every > 1)
    out += fmt::format("  stacks sampled: one allocation in {} (and each call site's first) has its own stack; per-stack "
                       "totals marked ~ are estimates, per-call-site totals are exact\n",
                       r.ctx.stack_sample_every);
  if (c[KLEAK_CNT_LIVE_FULL] > 0)
    out += fmt::format("  WARNING: the live map filled up and {} allocations were not tracked: raise --max-allocs\n",
                       c[KLEAK_CNT_LIVE_FULL]);
  if (c[KLEAK_CNT_STACK_ENOMEM] > 0)
    out += fmt::format("  WARNING: the stack store filled up and {} allocations kept only their call site: "
                       "raise --stack-storage-size\n",
                       c[KLEAK_CNT_STACK_ENOMEM]);
  if (r.symbols_hidden)
    out += "  WARNING: /proc/kallsyms shows zero addresses (kptr_restrict; reading them needs CAP_SYSLOG): "
           "frames are raw\n";
  if (!r.frames_unknown.empty()) {
    std::string why;
    for (const auto& [reason, n] : r.frames_unknown) why += fmt::format("{}{} {}", why.empty() ? "" : ", ", n, reason);
    out += fmt::format("  frames without a symbol: {}\n", why);
  }
  for (const std::string& note : r.notes) out += "  NOTE: " + note + "\n";
  return out;
}

std::string peek_addr_text(const Report& r) {
  if (!r.peek_addr) return {};
  const PeekResult& p = *r.peek_addr;
  return fmt::format("  peek 0x{:x}: {}\n", p.addr,
                     p.status == KLEAK_PEEK_GONE ? "refused: not a live allocation kleak tracks (freed, never "
                                                   "recorded, or not the start of an object)"
                                                 : peek_status_name(p.status)) +
         hexdump(p.data, p.addr, "    ");
}

// A stack's first line: rank, family, bytes, sizes, age, top task.
std::string stack_head(const Report& r, const StackReport& s) {
  std::string sizes;
  for (const SizeCount& sc : s.sizes) {
    if (!sizes.empty()) sizes += ", ";
    sizes += sc.bytes_alloc ? fmt::format("{}x{}", sc.bytes_alloc, sc.count) : fmt::format("other x{}", sc.count);
  }
  std::string task =
      s.tasks.empty() ? "" : fmt::format(", top task {}/{} ({})", s.tasks[0].comm, s.tasks[0].tgid, s.tasks[0].count);
  const Estimate& e = s.estimate;
  const char* approx = e.estimated ? "~" : "";
  std::string pages = s.family == KLEAK_FAMILY_PAGE && r.page_size && !e.estimated
                          ? fmt::format(" ({} pages)", s.bytes / r.page_size)
                          : std::string();
  return fmt::format("\n#{} {}{}{} bytes{} in {}{} allocations [{}sizes {}] oldest {}{}{}\n", s.rank, family_tag(s),
                     approx, s.bytes, pages, approx, s.count, e.estimated ? "sampled " : "", sizes,
                     age_text(s.oldest_age_ms), task, s.reclaimable ? " [reclaimable cache]" : "");
}

// What qualifies a stack's numbers: estimates, growth, missed frees.
std::string stack_notes(const StackReport& s) {
  const Estimate& e = s.estimate;
  std::string out;
  if (e.stack_inferred)
    out += fmt::format("    (estimated: none of these {} allocations had its stack sampled; the stack shown is the one "
                       "last captured at their call site)\n",
                       s.count);
  else if (e.estimated)
    out += fmt::format(
        "    (estimated, count +-{:.0f} at 95%: {} of the {} sampled allocations at this call site have "
        "this stack; the call site holds exactly {} bytes in {} allocations)\n",
        e.count_error95, e.sampled, e.site_sampled, e.site_bytes, e.site_count);
  if (s.has_growth)
    out += fmt::format("    growth: {}/s, {:+.1f} allocs/s ({}, R2 {:.2f}, {} reports)\n",
                       signed_bytes(s.growth.bytes.slope_per_s), s.growth.count.slope_per_s, growth_label(s.growth),
                       s.growth.bytes.r2, s.growth.points);
  if (s.missed_frees > 0)
    out += fmt::format("    (unverified: {} frees of objects from the same cache or call site bypassed kleak's hooks, "
                       "e.g. bulk frees: some of these may be freed already)\n",
                       s.missed_frees);
  return out;
}

// --peek: what the sampled allocations of a stack hold.
std::string stack_peeks(const Report& r, const StackReport& s) {
  if (s.peeks.empty()) return {};
  size_t ok = 0;
  for (const PeekResult& p : s.peeks) ok += p.status == KLEAK_PEEK_OK;
  std::string alike = s.peek_groups.empty() ? std::string("nothing readable")
                                            : fmt::format("{} of {} alike, first string \"{}\"",
                                                          s.peek_groups[0].count, ok, s.peek_groups[0].shape);
  std::string out = fmt::format("    contents (--peek {}): {} sampled of {}; {}\n", r.opts->peek_bytes,
                                s.peeks.size(), s.count, alike);
  for (const PeekResult& p : s.peeks) {
    out += fmt::format("      0x{:x}: {}{}\n", p.addr, peek_status_name(p.status),
                       p.status == KLEAK_PEEK_GONE ? " (freed before it could be read)" : "");
    if (p.data.empty()) continue;
    out += hexdump(p.data, p.addr, "        ");
    std::string strings;
    for (const std::string& str : printable_strings(p.data, r.opts->peek_min_string))
      strings += (strings.empty() ? "" : ", ") + fmt::format("\"{}\"", str.substr(0, 64));
    if (!strings.empty()) out += fmt::format("        strings: {}\n", strings);
  }
  return out;
}

std::string stack_text(const Report& r, const StackReport& s) {
  std::string out = stack_head(r, s) + stack_notes(s);
  if (!s.stack_error.empty()) {
    out += fmt::format("    {} (no stack: {})\n", frame_text(s.call_site), s.stack_error);
  } else {
    for (const Frame& f : s.frames) out += frame_lines(f);
  }
  if (r.opts->show_allocs)
    for (const AllocLine& a : s.allocs)
      out += fmt::format("      addr 0x{:x} size {} req {} age {} by {}/{}\n", a.addr, a.bytes_alloc, a.bytes_req,
                         age_text(a.age_ms), a.comm.empty() ? "?" : a.comm, a.pid);
  return out + stack_peeks(r, s);
}

}  // namespace

std::string render_text(const Report& r) {
  time_t secs = static_cast<time_t>(r.time_unix_ns / 1000000000ull);
  tm local{};
  localtime_r(&secs, &local);
  char clock[16];
  strftime(clock, sizeof(clock), "%H:%M:%S", &local);
  std::string out = fmt::format("[{}] kleak {}report #{}: kernel {}, {:.1f}s traced\n", clock,
                                r.ctx.final_report ? "final " : "", r.ctx.seq, r.ctx.kernel, r.elapsed_s);
  if (!r.ctx.degraded.empty()) out += "  degraded: " + degraded_text(r.ctx.degraded) + "\n";
  out += counter_lines(r) + reconciliation_line(r.reconciliation) + reclaim_line(r) + warning_lines(r) +
         peek_addr_text(r);
  const char* sorts[] = {"score (steady growth first)", "bytes", "count", "growth"};
  out += fmt::format("Top {} of {} stacks by {}: {} in {} allocations older than {} ms{}\n", r.stacks.size(),
                     r.stacks_total, sorts[static_cast<int>(r.opts->sort)], bytes_text(r.total_bytes), r.total_count,
                     r.opts->min_age_ms, family_totals_text(r));
  for (const StackReport& s : r.stacks) out += stack_text(r, s);
  return out;
}

}  // namespace kleak
