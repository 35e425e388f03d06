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

// Frames of a group are named in its top task's address space (user
// space; the kernel has one).
uint32_t group_tgid(const StackGroup& g) { return g.tasks.empty() ? 0 : g.tasks.front().tgid; }

bool starts_with(const std::string& s, std::string_view p) { return s.compare(0, p.size(), p) == 0; }

bool is_tracing_frame(const Frame& f) {
  if (f.module == "bpf") return true;  // JITed programs: bpf_prog_<tag>_<name> [bpf]
  return starts_with(f.symbol, "bpf_prog_") || starts_with(f.symbol, "bpf_trace_run") ||
         starts_with(f.symbol, "__bpf_trace_") || starts_with(f.symbol, "__traceiter_") ||
         starts_with(f.symbol, "bpf_get_stackid");
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

std::vector<Frame> group_frames(const StackGroup& g, Symbolizer& syms, const StackSource& stacks,
                                std::string* error) {
  const uint32_t tgid = group_tgid(g);
  std::vector<Frame> frames;
  if (g.stack_id == 0) {
    if (error) *error = stack_error_name(g.stack_err);
    frames.push_back(syms.frame(g.call_site, tgid));
    return frames;
  }
  auto ips = stacks(g.stack_id);
  if (!ips) {
    if (error) *error = "unreadable";
    frames.push_back(syms.frame(g.call_site, tgid));
    return frames;
  }
  frames.reserve(ips->size());
  for (uint64_t ip : *ips) frames.push_back(syms.frame(ip, tgid));
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

std::string shown_source(const std::string& source) {
  return !source.empty() && source[0] == '/' ? source.substr(source.rfind('/') + 1) : source;
}

Report build_report(const SnapshotInfo& snap, const Aggregate& agg, const ReportSettings& opts, const ReportContext& ctx,
                    Symbolizer& syms, const StackSource& stacks, const GrowthTracker* growth) {
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
  r.symbols_hidden = syms.addresses_hidden();
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
    s.call_site = syms.frame(g.call_site, group_tgid(g));
    s.reclaimable = g.flags & KLEAK_ALLOC_RECLAIMABLE;
    s.estimate = g.estimate;
    if (growth) {
      s.has_growth = true;
      s.growth = growth->growth(group_key(g));
    }
    if (auto it = snap.missed_sites.find(missed_free_key(g)); it != snap.missed_sites.end()) s.missed_frees = it->second;
    std::vector<Frame> frames = group_frames(g, syms, stacks, &s.stack_error);
    s.stack_key = stack_key(frames);
    s.stack_hash = stack_hash(s.stack_key);
    if (s.stack_error.empty()) s.frames = std::move(frames);
    // Lines only for the stacks shown: DWARF costs, names do not.
    syms.add_source(s.call_site);
    for (Frame& f : s.frames) syms.add_source(f);
    for (const Frame& f : s.frames)
      if (f.symbol.empty()) ++r.frames_unknown[f.unknown.empty() ? "unknown" : f.unknown];
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


}  // namespace kleak
