#include "report/report.h"
#include "util/clock.h"

#include <unistd.h>

#include <ctime>

#include <fmt/format.h>

namespace kleak {
namespace {

const char* stack_error_name(int32_t err) {
  switch (-err) {
    case 14: return "EFAULT";
    case 17: return "EEXIST";
    case 12: return "ENOMEM";
    default: return "error";
  }
}

Frame make_frame(const Ksyms& ksyms, uint64_t addr) {
  Frame f;
  f.addr = addr;
  if (auto r = ksyms.resolve(addr)) {
    f.symbol = std::string(r->name);
    f.offset = r->offset;
    f.module = std::string(r->module);
  }
  return f;
}

bool starts_with(const std::string& s, std::string_view p) { return s.compare(0, p.size(), p) == 0; }

bool is_tracing_frame(const Frame& f) {
  if (f.module == "bpf") return true;  // JITed programs: bpf_prog_<tag>_<name> [bpf]
  return starts_with(f.symbol, "bpf_prog_") || starts_with(f.symbol, "bpf_trace_run") ||
         starts_with(f.symbol, "__bpf_trace_") || starts_with(f.symbol, "__traceiter_") ||
         starts_with(f.symbol, "bpf_get_stackid");
}

// addr 0: hidden (--hide-addresses) or unknown.
std::string frame_text(const Frame& f) {
  if (f.symbol.empty()) return f.addr ? fmt::format("0x{:x}", f.addr) : std::string("?");
  std::string text = f.module.empty() ? fmt::format("{}+0x{:x}", f.symbol, f.offset)
                                      : fmt::format("{}+0x{:x} [{}]", f.symbol, f.offset, f.module);
  if (!f.source.empty()) text += " " + f.source.substr(f.source.rfind('/') + 1);  // file.c:42
  return text;
}

std::string human_bytes(uint64_t b) {
  if (b >= (1ull << 30)) return fmt::format("{:.1f} GiB", static_cast<double>(b) / (1ull << 30));
  if (b >= (1ull << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(b) / (1ull << 20));
  if (b >= (1ull << 10)) return fmt::format("{:.1f} KiB", static_cast<double>(b) / (1ull << 10));
  return fmt::format("{} B", b);
}

std::string signed_bytes(double b) {
  return (b < 0 ? "-" : "+") + human_bytes(static_cast<uint64_t>(b < 0 ? -b : b));
}

std::string age_text(uint64_t ms) {
  if (ms >= 3600 * 1000) return fmt::format("{:.1f}h", static_cast<double>(ms) / 3.6e6);
  if (ms >= 60 * 1000) return fmt::format("{:.1f}m", static_cast<double>(ms) / 6e4);
  return fmt::format("{:.1f}s", static_cast<double>(ms) / 1e3);
}

nlohmann::json frame_json(const Frame& f) {
  nlohmann::json j;
  j["addr"] = f.addr ? nlohmann::json(fmt::format("0x{:x}", f.addr)) : nlohmann::json(nullptr);
  j["symbol"] = f.symbol.empty() ? nlohmann::json(nullptr) : nlohmann::json(f.symbol);
  j["offset"] = f.offset;
  j["module"] = f.module.empty() ? nlohmann::json(nullptr) : nlohmann::json(f.module);
  if (!f.source.empty()) j["source"] = f.source;
  return j;
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
  std::string out = r.ctx.families.slab ? fmt::format("; slab {} in {}", human_bytes(k.bytes + c.bytes), k.count + c.count)
                                        : std::string();
  for (uint32_t fam : r.ctx.traced_families) {
    const FamilyTotal& t = r.by_family[fam];
    out += fmt::format("; {} {} in {}", family_name(fam), human_bytes(t.bytes), t.count);
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
          f[KLEAK_CNT_EXCL_MOVABLE], human_bytes(f[KLEAK_CNT_EXCL_MOVABLE_BYTES]), f[KLEAK_CNT_EXCL_SLAB],
          human_bytes(f[KLEAK_CNT_EXCL_SLAB_BYTES]), f[KLEAK_CNT_EXCL_KMALLOC],
          human_bytes(f[KLEAK_CNT_EXCL_KMALLOC_BYTES]), f[KLEAK_CNT_EXCL_PAGECACHE],
          human_bytes(f[KLEAK_CNT_EXCL_PAGECACHE_BYTES]));
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

}  // namespace

std::vector<Frame> strip_tracing_frames(std::vector<Frame> frames) {
  constexpr size_t kMaxTracingFrames = 6;
  size_t n = 0;
  for (size_t i = 0; i < std::min(frames.size(), kMaxTracingFrames); ++i)
    if (is_tracing_frame(frames[i])) n = i + 1;
  frames.erase(frames.begin(), frames.begin() + static_cast<std::ptrdiff_t>(n));
  return frames;
}

std::vector<Frame> group_frames(const StackGroup& g, const Ksyms& ksyms, const StackSource& stacks,
                                std::string* error) {
  std::vector<Frame> frames;
  if (g.stack_id == 0) {
    if (error) *error = stack_error_name(g.stack_err);
    frames.push_back(make_frame(ksyms, g.call_site));
    return frames;
  }
  auto ips = stacks(g.stack_id);
  if (!ips) {
    if (error) *error = "unreadable";
    frames.push_back(make_frame(ksyms, g.call_site));
    return frames;
  }
  frames.reserve(ips->size());
  for (uint64_t ip : *ips) frames.push_back(make_frame(ksyms, ip));
  return strip_tracing_frames(std::move(frames));
}

std::string stack_key(const std::vector<Frame>& frames) {
  std::string key;
  for (const Frame& f : frames) {
    if (!key.empty()) key += ';';
    key += f.symbol.empty() ? "?" : f.symbol;
    if (!f.module.empty()) key += " [" + f.module + "]";
  }
  return key;
}

uint64_t stack_hash(std::string_view key) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a offset basis and prime
  for (unsigned char c : key) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string stack_hash_hex(uint64_t hash) { return fmt::format("{:016x}", hash); }

Report build_report(const SnapshotInfo& snap, const Aggregate& agg, const ReportSettings& opts, const ReportContext& ctx,
                    const Ksyms& ksyms, const StackSource& stacks, const GrowthTracker* growth) {
  Report r;
  r.ctx = ctx;
  r.opts = &opts;
  r.time_unix_ns = snap.realtime_ns;
  r.elapsed_s = static_cast<double>(snap.mono_ns - ctx.start_mono_ns) / 1e9;
  r.counters = snap.counters;
  r.family_counters = snap.family_counters;
  r.recursion = snap.recursion;
  r.complete = snapshot_complete(snap);
  r.by_family = agg.by_family;
  r.page_size = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  r.live_count = agg.live_count;
  r.total_bytes = agg.bytes;
  r.total_count = agg.count;
  r.young_bytes = agg.young_bytes;
  r.young_count = agg.young_count;
  r.stacks_total = agg.groups.size();
  r.symbols_hidden = ksyms.addresses_hidden();
  auto age_ms = [&](uint64_t ts) { return snap.mono_ns > ts ? (snap.mono_ns - ts) / 1000000 : 0; };
  size_t n = std::min<size_t>(opts.top, agg.groups.size());
  for (size_t i = 0; i < n; ++i) {
    const StackGroup& g = agg.groups[i];
    StackReport s;
    s.rank = static_cast<uint32_t>(i + 1);
    s.stack_id = g.stack_id;
    s.family = g.family;
    s.bytes = g.bytes;
    s.count = g.count;
    s.sizes = g.sizes;
    s.tasks = g.tasks;
    s.oldest_age_ms = age_ms(g.oldest_ts_ns);
    s.newest_age_ms = age_ms(g.newest_ts_ns);
    s.call_site = make_frame(ksyms, g.call_site);
    s.reclaimable = g.flags & KLEAK_ALLOC_RECLAIMABLE;
    s.estimate = g.estimate;
    if (growth) {
      s.has_growth = true;
      s.growth = growth->growth(group_key(g));
    }
    if (auto it = snap.missed_sites.find(missed_free_key(g)); it != snap.missed_sites.end()) s.missed_frees = it->second;
    std::vector<Frame> frames = group_frames(g, ksyms, stacks, &s.stack_error);
    s.stack_key = stack_key(frames);
    s.stack_hash = stack_hash(s.stack_key);
    if (s.stack_error.empty()) s.frames = std::move(frames);
    if (opts.hide_addresses) {
      // The stack key is a hash of raw addresses: hidden with them.
      s.stack_id = 0;
      s.call_site.addr = 0;
      for (Frame& f : s.frames) f.addr = 0;
    }
    for (const LiveAlloc& la : g.allocs) {
      s.allocs.push_back(AllocLine{la.addr, la.a.bytes_alloc, la.a.bytes_req, age_ms(la.a.ts_ns), la.a.pid, la.a.tgid,
                                   std::string(la.a.comm, strnlen(la.a.comm, sizeof(la.a.comm)))});
    }
    r.stacks.push_back(std::move(s));
  }
  return r;
}


std::string render_text(const Report& r) {
  const Counters& c = r.counters;
  std::string out;
  time_t secs = static_cast<time_t>(r.time_unix_ns / 1000000000ull);
  tm local{};
  localtime_r(&secs, &local);
  char clock[16];
  strftime(clock, sizeof(clock), "%H:%M:%S", &local);
  double fill = r.ctx.live_capacity ? 100.0 * static_cast<double>(r.live_count) / r.ctx.live_capacity : 0;
  out += fmt::format("[{}] kleak {}report #{}: kernel {}, {:.1f}s traced\n", clock, r.ctx.final_report ? "final " : "",
                     r.ctx.seq, r.ctx.kernel, r.elapsed_s);
  if (!r.ctx.degraded.empty()) out += "  degraded: " + degraded_text(r.ctx.degraded) + "\n";
  out += fmt::format("  live map: {} allocations ({:.1f}% of {}); {} younger than {} ms not shown ({})\n", r.live_count,
                     fill, r.ctx.live_capacity, r.young_count, r.opts->min_age_ms, human_bytes(r.young_bytes));
  out += fmt::format(
      "  allocs: seen {} recorded {} filtered {} failed {} | lost: map-full {} map-error {} | missed frees: {}\n",
      c[KLEAK_CNT_ALLOC_SEEN], c[KLEAK_CNT_ALLOC_RECORDED], c[KLEAK_CNT_ALLOC_FILTERED], c[KLEAK_CNT_ALLOC_FAILED],
      c[KLEAK_CNT_LIVE_FULL], c[KLEAK_CNT_LIVE_ERROR], c.missed_frees());
  out += fmt::format("  frees: seen {} matched {} unmatched {} errors {} | stack errors: EFAULT {} ENOMEM {}"
                     " other {} | tasks-full {}\n",
                     c[KLEAK_CNT_FREE_SEEN], c[KLEAK_CNT_FREE_MATCHED], c.frees_unmatched(), c[KLEAK_CNT_FREE_ERROR],
                     c[KLEAK_CNT_STACK_EFAULT], c[KLEAK_CNT_STACK_ENOMEM],
                     c[KLEAK_CNT_STACK_OTHER], c[KLEAK_CNT_TASKS_FULL]);
  out += stack_cache_line(c);
  out += family_counter_lines(r);
  out += recursion_line(r);
  if (const Reconciliation& rc = r.reconciliation; rc.available) {
    // The kernel counts slab pages (new objects first fill partly used ones)
    // and nets out frees of objects older than kleak: tracked bytes can
    // exceed its growth; below it, the rest is growth kleak does not see.
    std::string share;
    if (rc.sunreclaim_delta > 0) {
      double covered = static_cast<double>(rc.tracked_unreclaimable) / static_cast<double>(rc.sunreclaim_delta);
      share = covered >= 1 ? ", covers all of it" : fmt::format(", covers {:.0f}% of it", 100 * covered);
    }
    out += fmt::format(
        "  vs kernel since start: SUnreclaim {} ({} tracked{}), SReclaimable {} ({} tracked), Slab {}; "
        "large kmallocs (pages) {} tracked\n",
        signed_bytes(static_cast<double>(rc.sunreclaim_delta)), human_bytes(rc.tracked_unreclaimable), share,
        signed_bytes(static_cast<double>(rc.sreclaimable_delta)), human_bytes(rc.tracked_reclaimable),
        signed_bytes(static_cast<double>(rc.slab_delta)), human_bytes(rc.tracked_large_kmalloc));
  }
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
  for (const std::string& note : r.notes) out += "  NOTE: " + note + "\n";
  if (r.peek_addr) {
    const PeekResult& p = *r.peek_addr;
    out += fmt::format("  peek 0x{:x}: {}\n", p.addr,
                       p.status == KLEAK_PEEK_GONE ? "refused: not a live allocation kleak tracks (freed, never "
                                                     "recorded, or not the start of an object)"
                                                   : peek_status_name(p.status));
    out += hexdump(p.data, p.addr, "    ");
  }
  const char* sorts[] = {"score (steady growth first)", "bytes", "count", "growth"};
  out += fmt::format("Top {} of {} stacks by {}: {} in {} allocations older than {} ms{}\n", r.stacks.size(),
                     r.stacks_total, sorts[static_cast<int>(r.opts->sort)], human_bytes(r.total_bytes), r.total_count,
                     r.opts->min_age_ms, family_totals_text(r));
  for (const StackReport& s : r.stacks) {
    std::string sizes;
    for (const SizeCount& sc : s.sizes) {
      if (!sizes.empty()) sizes += ", ";
      sizes += sc.bytes_alloc ? fmt::format("{}x{}", sc.bytes_alloc, sc.count) : fmt::format("other x{}", sc.count);
    }
    std::string task = s.tasks.empty() ? "" :
        fmt::format(", top task {}/{} ({})", s.tasks[0].comm, s.tasks[0].tgid, s.tasks[0].count);
    const Estimate& e = s.estimate;
    const char* approx = e.estimated ? "~" : "";
    std::string pages = s.family == KLEAK_FAMILY_PAGE && r.page_size && !e.estimated
                            ? fmt::format(" ({} pages)", s.bytes / r.page_size)
                            : std::string();
    out += fmt::format("\n#{} {}{}{} bytes{} in {}{} allocations [{}sizes {}] oldest {}{}{}\n", s.rank, family_tag(s),
                       approx, s.bytes, pages, approx, s.count, e.estimated ? "sampled " : "", sizes,
                       age_text(s.oldest_age_ms), task, s.reclaimable ? " [reclaimable cache]" : "");
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
    if (!s.stack_error.empty()) {
      out += fmt::format("    {} (no stack: {})\n", frame_text(s.call_site), s.stack_error);
    } else {
      for (const Frame& f : s.frames) out += fmt::format("    {}\n", frame_text(f));
    }
    if (r.opts->show_allocs)
      for (const AllocLine& a : s.allocs)
        out += fmt::format("      addr 0x{:x} size {} req {} age {} by {}/{}\n", a.addr, a.bytes_alloc, a.bytes_req,
                           age_text(a.age_ms), a.comm.empty() ? "?" : a.comm, a.pid);
    if (!s.peeks.empty()) {
      size_t ok = 0;
      for (const PeekResult& p : s.peeks) ok += p.status == KLEAK_PEEK_OK;
      std::string alike = s.peek_groups.empty() ? std::string("nothing readable")
                                                : fmt::format("{} of {} alike, first string \"{}\"",
                                                              s.peek_groups[0].count, ok, s.peek_groups[0].shape);
      out += fmt::format("    contents (--peek {}): {} sampled of {}; {}\n", r.opts->peek_bytes, s.peeks.size(),
                         s.count, alike);
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
    }
  }
  return out;
}

nlohmann::json to_json(const Report& r) {
  using nlohmann::json;
  const Counters& c = r.counters;
  json j;
  j["schema"] = "kleak/report/v1";
  j["seq"] = r.ctx.seq;
  j["final"] = r.ctx.final_report;
  j["time_unix_ns"] = r.time_unix_ns;
  j["elapsed_s"] = r.elapsed_s;
  j["kernel"] = r.ctx.kernel;
  j["interval_s"] = r.ctx.interval_s;
  j["attached"] = r.ctx.attached;
  j["missing"] = r.ctx.missing;
  j["degraded"] = nlohmann::json::array();
  for (const Degraded& d : r.ctx.degraded) j["degraded"].push_back({{"part", d.part}, {"reason", d.reason}});
  const char* sorts[] = {"score", "bytes", "count", "growth"};
  j["sort"] = sorts[static_cast<int>(r.opts->sort)];
  j["filters"] = {{"min_age_ms", r.opts->min_age_ms},
                  {"min_size_bytes", r.ctx.min_size_bytes},
                  {"max_size_bytes", r.ctx.max_size_bytes},
                  {"cache", r.ctx.cache.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.ctx.cache)},
                  {"pid", r.opts->pid}};
  j["live"] = {{"allocations", r.live_count},
               {"capacity", r.ctx.live_capacity},
               {"fill_pct", r.ctx.live_capacity ? 100.0 * static_cast<double>(r.live_count) / r.ctx.live_capacity : 0.0},
               {"stack_capacity", r.ctx.stack_capacity},
               {"stacks_stored", r.ctx.stacks_stored},
               {"stacks_reclaimed", r.ctx.stacks_reclaimed}};
  j["counters"] = {{"allocs_seen", c[KLEAK_CNT_ALLOC_SEEN]},
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
                   {"stack_errors", {{"EFAULT", c[KLEAK_CNT_STACK_EFAULT]},
                                     {"ENOMEM", c[KLEAK_CNT_STACK_ENOMEM]},
                                     {"other", c[KLEAK_CNT_STACK_OTHER]}}},
                   {"stack_cache", {{"hits", c[KLEAK_CNT_SC_HIT]},
                                    {"cached", c[KLEAK_CNT_SC_MISS]},
                                    {"uncacheable", c[KLEAK_CNT_SC_UNCACHED]},
                                    {"not_task_stack", c[KLEAK_CNT_SC_NOT_TASK]},
                                    {"nested", c[KLEAK_CNT_SC_NESTED]},
                                    {"paused", c[KLEAK_CNT_SC_PAUSED]},
                                    {"verify_mismatches", c[KLEAK_CNT_SC_MISMATCH]}}}};
  j["counters"]["recursion_misses"] = r.recursion.available ? json(r.recursion.total) : json(nullptr);
  json by_prog = json::object();
  for (const auto& [name, n] : r.recursion.by_program) by_prog[name] = n;
  j["counters"]["recursion_misses_by_program"] = by_prog;
  j["families"] = json::array();
  if (r.ctx.families.slab) j["families"].push_back("slab");
  json fam_counters = json::object();
  for (uint32_t fam : r.ctx.traced_families) {
    j["families"].push_back(family_name(fam));
    const Counters& f = r.family_counters[fam];
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
    if (fam == KLEAK_FAMILY_PAGE) {
      auto ex = [&](kleak_counter n, kleak_counter b) { return json{{"count", f[n]}, {"bytes", f[b]}}; };
      fc["excluded"] = {{"movable", ex(KLEAK_CNT_EXCL_MOVABLE, KLEAK_CNT_EXCL_MOVABLE_BYTES)},
                        {"slab", ex(KLEAK_CNT_EXCL_SLAB, KLEAK_CNT_EXCL_SLAB_BYTES)},
                        {"large_kmalloc", ex(KLEAK_CNT_EXCL_KMALLOC, KLEAK_CNT_EXCL_KMALLOC_BYTES)},
                        {"page_cache", ex(KLEAK_CNT_EXCL_PAGECACHE, KLEAK_CNT_EXCL_PAGECACHE_BYTES)}};
    }
    fam_counters[family_name(fam)] = fc;
  }
  j["family_counters"] = fam_counters;
  j["complete"] = r.complete;
  j["stack_sample_every"] = r.ctx.stack_sample_every;
  j["symbols_hidden"] = r.symbols_hidden;
  if (!r.notes.empty()) j["notes"] = r.notes;
  if (r.extra.is_object())
    for (const auto& [k, v] : r.extra.items()) j[k] = v;
  if (r.peek_addr) {
    std::string hex;
    for (uint8_t b : r.peek_addr->data) hex += fmt::format("{:02x}", b);
    j["peek_addr"] = {{"addr", fmt::format("0x{:x}", r.peek_addr->addr)},
                      {"status", peek_status_name(r.peek_addr->status)},
                      {"hex", hex},
                      {"strings", printable_strings(r.peek_addr->data, r.opts->peek_min_string)}};
  }
  if (const Reconciliation& rc = r.reconciliation; rc.available)
    j["reconciliation"] = {{"slab_delta_bytes", rc.slab_delta},
                           {"sunreclaim_delta_bytes", rc.sunreclaim_delta},
                           {"sreclaimable_delta_bytes", rc.sreclaimable_delta},
                           {"tracked_unreclaimable_bytes", rc.tracked_unreclaimable},
                           {"tracked_reclaimable_bytes", rc.tracked_reclaimable},
                           {"tracked_large_kmalloc_bytes", rc.tracked_large_kmalloc}};
  j["totals"] = {{"bytes", r.total_bytes},     {"count", r.total_count},     {"stacks", r.stacks_total},
                 {"young_bytes", r.young_bytes}, {"young_count", r.young_count}};
  json by_family = json::object();
  if (r.ctx.families.slab) {
    const FamilyTotal& k = r.by_family[KLEAK_FAMILY_KMALLOC];
    const FamilyTotal& kc = r.by_family[KLEAK_FAMILY_KMEM_CACHE];
    by_family["slab"] = {{"bytes", k.bytes + kc.bytes}, {"count", k.count + kc.count}};
  }
  for (uint32_t fam : r.ctx.traced_families)
    by_family[family_name(fam)] = {{"bytes", r.by_family[fam].bytes}, {"count", r.by_family[fam].count}};
  j["totals"]["by_family"] = by_family;
  json stacks = json::array();
  for (const StackReport& s : r.stacks) {
    json js;
    js["rank"] = s.rank;
    js["family"] = family_name(s.family);
    js["stack_id"] = s.stack_id ? nlohmann::json(fmt::format("0x{:016x}", s.stack_id)) : nlohmann::json(nullptr);
    js["stack_error"] = s.stack_error.empty() ? json(nullptr) : json(s.stack_error);
    js["stack_key"] = s.stack_key;
    js["stack_hash"] = stack_hash_hex(s.stack_hash);
    js["reclaimable"] = s.reclaimable;
    js["missed_frees"] = s.missed_frees;
    if (s.has_growth)
      js["growth"] = {{"verdict", growth_label(s.growth)},
                      {"bytes_per_s", s.growth.bytes.slope_per_s},
                      {"count_per_s", s.growth.count.slope_per_s},
                      {"r2", s.growth.bytes.r2},
                      {"steady", s.growth.bytes.nondecreasing_fraction},
                      {"points", s.growth.points},
                      {"score", s.growth.score}};
    js["bytes"] = s.bytes;
    js["count"] = s.count;
    const Estimate& e = s.estimate;
    js["estimated"] = e.estimated;
    if (e.estimated)
      js["estimate"] = {{"stack_inferred", e.stack_inferred}, {"sampled", e.sampled},
                        {"site_sampled", e.site_sampled},     {"site_bytes", e.site_bytes},
                        {"site_count", e.site_count},         {"count_error95", e.count_error95}};
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
    if (!s.peeks.empty()) {
      json samples = json::array(), groups = json::array();
      for (const PeekResult& p : s.peeks) {
        std::string hex;
        for (uint8_t b : p.data) hex += fmt::format("{:02x}", b);
        samples.push_back({{"addr", fmt::format("0x{:x}", p.addr)},
                           {"status", peek_status_name(p.status)},
                           {"hex", hex},
                           {"strings", printable_strings(p.data, r.opts->peek_min_string)}});
      }
      for (const ContentGroup& g : s.peek_groups) groups.push_back({{"shape", g.shape}, {"count", g.count}});
      js["peek"] = {{"bytes", r.opts->peek_bytes}, {"samples", samples}, {"groups", groups}};
    }
    if (r.opts->show_allocs) {
      json allocs = json::array();
      for (const AllocLine& a : s.allocs)
        allocs.push_back({{"addr", fmt::format("0x{:x}", a.addr)},
                          {"bytes_alloc", a.bytes_alloc},
                          {"bytes_req", a.bytes_req},
                          {"age_ms", a.age_ms},
                          {"pid", a.pid},
                          {"tgid", a.tgid},
                          {"comm", a.comm}});
      js["allocations"] = allocs;
    }
    stacks.push_back(std::move(js));
  }
  j["stacks"] = stacks;
  return j;
}

}  // namespace kleak
