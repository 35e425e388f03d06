#include "triage/triage_report.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "util/units.h"

#include "procfs/procfs.h"

namespace kleak {

const std::vector<std::string> kTriageMeminfoFields = {
    kUnaccountedSeries, "Slab",      "SReclaimable", "SUnreclaim", "KernelStack", "PageTables", "VmallocUsed",
    "Percpu",           "AnonPages", "Shmem",        "Buffers",    "Cached",      "MemFree"};

namespace {

std::string rate(double bytes_per_s) { return signed_bytes(bytes_per_s) + "/s"; }

SeriesSummary summarize(std::string name, const std::vector<TrendPoint>& points, double min_change) {
  SeriesSummary s;
  s.name = std::move(name);
  s.trend = compute_trend(points);
  TrendThresholds th;
  th.min_change = min_change;
  s.verdict = classify(s.trend, th);
  return s;
}

void rank(Section& sec, bool (*rankable)(const SeriesSummary&)) {
  for (size_t i = 0; i < sec.series.size(); ++i)
    if (sec.series[i].verdict == TrendClass::growing && rankable(sec.series[i])) sec.growing.push_back(i);
  std::stable_sort(sec.growing.begin(), sec.growing.end(), [&](size_t a, size_t b) {
    return sec.series[a].trend.slope_per_s > sec.series[b].trend.slope_per_s;
  });
}

std::string process_label(const SeriesSummary& s) { return fmt::format("{} ({})", s.pid, s.name); }

nlohmann::json series_json(const SeriesSummary& s) {
  const Trend& t = s.trend;
  return {{"name", s.name},
          {"verdict", std::string(to_string(s.verdict))},
          {"points", t.points},
          {"start_bytes", std::llround(t.start)},
          {"end_bytes", std::llround(t.end)},
          {"delta_bytes", std::llround(t.delta)},
          {"slope_bytes_per_s", t.slope_per_s},
          {"recent_slope_bytes_per_s", t.recent_slope_per_s},
          {"r2", t.r2},
          {"monotonic_fraction", t.nondecreasing_fraction}};
}

nlohmann::json source_json(const SourceStatus& s) {
  return {{"readable", s.readable},
          {"error", s.error.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.error)},
          {"bad_lines", s.bad_lines}};
}

nlohmann::json null_or(const std::string& s) { return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s); }

std::string row(const std::string& name, const SeriesSummary& s) {
  const Trend& t = s.trend;
  return fmt::format("  {:<28} {:>11} {:>11} {:>12} {:>13} {:>5.2f} {:>6.2f}  {}\n", name.substr(0, 28),
                     human_bytes(t.start), human_bytes(t.end), signed_bytes(t.delta), rate(t.slope_per_s), t.r2,
                     t.nondecreasing_fraction, to_string(s.verdict));
}

constexpr const char* kHeader = "  {:<28} {:>11} {:>11} {:>12} {:>13} {:>5} {:>6}  {}\n";

}  // namespace

TriageReport analyze(const TriageData& d, uint32_t top) {
  TriageReport r;
  r.data = &d;
  r.top = top;
  for (const std::string& f : kTriageMeminfoFields) {
    auto it = d.meminfo.find(f);
    if (it != d.meminfo.end()) r.meminfo.series.push_back(summarize(f, it->second, kMinChangeMeminfoBytes));
  }
  for (const auto& [name, ss] : d.slab) {
    SeriesSummary s = summarize(name, ss.points, kMinChangeSlabBytes);
    s.objsize = ss.objsize;
    s.kmalloc_size = kmalloc_size_of(name);
    if (auto a = d.slab_aliases.find(name); a != d.slab_aliases.end()) s.aliases = a->second;
    r.slab.series.push_back(std::move(s));
  }
  for (const auto& [pid, ps] : d.processes) {
    SeriesSummary s = summarize(ps.comm, ps.points, kMinChangeProcessBytes);
    s.pid = pid;
    s.rss_end_bytes = ps.last_rss_bytes;
    s.alive_at_end = !ps.points.empty() && ps.points.back().t_s >= d.last_sample_t_s;
    r.processes.series.push_back(std::move(s));
  }
  // MemFree growing is memory coming back, not a leak: shown, not ranked.
  rank(r.meminfo, [](const SeriesSummary& s) { return s.name != "MemFree"; });
  rank(r.slab, [](const SeriesSummary&) { return true; });
  // A process that exited leaks no more.
  rank(r.processes, [](const SeriesSummary& s) { return s.alive_at_end; });
  r.next = suggest_next_step(r);
  return r;
}

namespace {

NextStep slab_cache_step(const SeriesSummary& s) {
  NextStep n;
  n.series = s.name;
  n.slope_bytes_per_s = s.trend.slope_per_s;
  if (s.kmalloc_size) {
    // Old SLAB's size-N rows have no kmalloc type to select, and random
    // kmalloc copies are picked per call site: their size is the filter.
    n.kind = "kmalloc";
    bool by_size = s.name.rfind("size-", 0) == 0 || s.name.rfind("kmalloc-rnd-", 0) == 0;
    n.command = by_size ? fmt::format("kleak trace --size {}", *s.kmalloc_size)
                        : fmt::format("kleak trace --cache {}", s.name);
    n.text = fmt::format("{} grows {}: trace the {}-byte kmalloc allocations that are never freed", s.name,
                         rate(s.trend.slope_per_s), *s.kmalloc_size);
  } else {
    n.kind = "slab_cache";
    n.command = fmt::format("kleak trace --cache {}", s.name);
    n.text = fmt::format("slab cache {} grows {}: trace its allocations that are never freed", s.name,
                         rate(s.trend.slope_per_s));
  }
  return n;
}

// Slab memory grows but no cache does: either slabinfo was unreadable, or
// the growth is spread thin or in kmalloc() beyond the largest cache, which
// SLUB serves from the page allocator but counts as SUnreclaim. The first in
// rank order (the fastest) of Slab, SUnreclaim, SReclaimable speaks for all.
std::optional<NextStep> slab_unknown_step(const TriageReport& r) {
  for (size_t i : r.meminfo.growing) {
    const SeriesSummary& s = r.meminfo.series[i];
    if (s.name != "Slab" && s.name != "SUnreclaim" && s.name != "SReclaimable") continue;
    NextStep n;
    n.kind = "slab_unknown";
    n.series = s.name;
    n.slope_bytes_per_s = s.trend.slope_per_s;
    if (r.data && !r.data->slabinfo_status.readable) {
      n.command = "sudo kleak triage";
      n.text = fmt::format("{} grows {} but /proc/slabinfo is unreadable (root only): run as root to see which cache",
                           s.name, rate(s.trend.slope_per_s));
    } else {
      n.command = "kleak trace";
      n.text = fmt::format(
          "{} grows {} but no single slab cache does: trace every size (large kmalloc()s count as slab "
          "but have no cache)",
          s.name, rate(s.trend.slope_per_s));
    }
    return n;
  }
  return std::nullopt;
}

NextStep unaccounted_step(const SeriesSummary& s) {
  NextStep n;
  n.kind = "unaccounted";
  n.series = s.name;
  n.slope_bytes_per_s = s.trend.slope_per_s;
  n.planned_command = "kleak trace --family page";
  n.text = fmt::format(
      "unaccounted kernel memory grows {}: pages taken straight from the page allocator, outside slab; "
      "page-allocator tracing (kleak trace --family page) is the next step once it exists",
      rate(s.trend.slope_per_s));
  return n;
}

NextStep process_step(const SeriesSummary& s) {
  NextStep n;
  n.kind = "process";
  n.series = process_label(s);
  n.slope_bytes_per_s = s.trend.slope_per_s;
  // `kleak -p` stays the kernel tracer's pid filter: user space is `kleak user`.
  n.command = fmt::format("kleak user -p {}", s.pid);
  n.text = fmt::format(
      "PSS of {} grows {}: that is a user-space leak in {}, not a kernel one; find the stacks that keep "
      "their heap: kleak user -p {}",
      process_label(s), rate(s.trend.slope_per_s), process_label(s), s.pid);
  return n;
}

}  // namespace

// The fastest-growing candidate's step, or a longer look when nothing grew.
NextStep suggest_next_step(const TriageReport& r) {
  std::vector<NextStep> candidates;
  for (size_t i : r.slab.growing) candidates.push_back(slab_cache_step(r.slab.series[i]));
  if (r.slab.growing.empty())
    if (auto n = slab_unknown_step(r)) candidates.push_back(std::move(*n));
  for (size_t i : r.meminfo.growing)
    if (r.meminfo.series[i].name == kUnaccountedSeries) candidates.push_back(unaccounted_step(r.meminfo.series[i]));
  if (!r.processes.growing.empty()) candidates.push_back(process_step(r.processes.series[r.processes.growing.front()]));
  if (candidates.empty()) {
    NextStep n;
    n.kind = "none";
    double span = r.data ? r.data->elapsed_s : 0;
    n.command = "kleak triage --interval 10 --duration 600";
    n.text = fmt::format("nothing grew steadily in {:.0f} s; a slow leak needs a longer look", span);
    return n;
  }
  return *std::max_element(candidates.begin(), candidates.end(), [](const NextStep& a, const NextStep& b) {
    return a.slope_bytes_per_s < b.slope_bytes_per_s;
  });
}

std::string render_triage_text(const TriageReport& r) {
  const TriageData& d = *r.data;
  std::string out = fmt::format("kleak triage: {} samples over {:.1f} s (every {} s){}, kernel {}\n", d.samples,
                                d.elapsed_s, d.interval_s, d.interrupted ? ", stopped early" : "", d.kernel);
  auto status = [](const SourceStatus& s) {
    std::string t = s.readable ? "ok" : "unreadable (" + s.error + ")";
    if (s.bad_lines) t += fmt::format(", {} bad lines skipped", s.bad_lines);
    return t;
  };
  out += fmt::format("  sources: meminfo {}; slabinfo {}; processes {} ({} unreadable, {} kernel threads)\n",
                     status(d.meminfo_status), status(d.slabinfo_status), d.processes.size(), d.processes_unreadable,
                     d.kernel_threads);
  if (!d.unaccounted_absent.empty()) {
    std::string absent;
    for (const auto& f : d.unaccounted_absent) absent += (absent.empty() ? "" : ", ") + f;
    out += fmt::format("  unaccounted: this kernel has no {} (counted as unaccounted)\n", absent);
  }
  out += "\nKernel memory (/proc/meminfo)\n";
  out += fmt::format(kHeader, "series", "start", "end", "delta", "slope", "R2", "steady", "verdict");
  for (const SeriesSummary& s : r.meminfo.series) out += row(s.name, s);

  auto section = [&](const char* title, const Section& sec, const char* what, auto label) {
    size_t n = std::min<size_t>(r.top, sec.growing.size());
    if (n == 0) {
      out += fmt::format("\n{}: none (of {} {})\n", title, sec.series.size(), what);
      return;
    }
    out +=
        fmt::format("\n{}: top {} of {} growing (of {} {})\n", title, n, sec.growing.size(), sec.series.size(), what);
    out += fmt::format(kHeader, what, "start", "end", "delta", "slope", "R2", "steady", "verdict");
    for (size_t i = 0; i < n; ++i) {
      const SeriesSummary& s = sec.series[sec.growing[i]];
      out += row(label(s), s);
      if (!s.aliases.empty()) {
        std::string a;
        for (const auto& x : s.aliases) a += (a.empty() ? "" : " ") + x;
        out += fmt::format("      merged with: {}\n", a);
      }
    }
  };
  section("Growing slab caches", r.slab, "caches", [](const SeriesSummary& s) { return s.name; });
  section("Growing processes (PSS)", r.processes, "processes", process_label);

  const NextStep& n = r.next;
  out += "\nNext step: ";
  out += n.command.empty() ? n.text + "\n" : fmt::format("{}\n  ({})\n", n.command, n.text);
  return out;
}

nlohmann::json triage_to_json(const TriageReport& r) {
  using nlohmann::json;
  const TriageData& d = *r.data;
  json j;
  j["schema"] = "kleak/triage/v1";
  j["kernel"] = d.kernel;
  j["interval_s"] = d.interval_s;
  j["duration_s"] = d.duration_s;
  j["elapsed_s"] = d.elapsed_s;
  j["samples"] = d.samples;
  j["interrupted"] = d.interrupted;
  j["top"] = r.top;
  j["sources"] = {{"meminfo", source_json(d.meminfo_status)},
                  {"slabinfo", source_json(d.slabinfo_status)},
                  {"processes", source_json(d.process_status)}};
  j["processes_unreadable"] = d.processes_unreadable;
  j["kernel_threads"] = d.kernel_threads;
  j["unaccounted_absent_fields"] = d.unaccounted_absent;
  j["thresholds"] = {
      {"min_change_bytes",
       {{"meminfo", kMinChangeMeminfoBytes}, {"slab", kMinChangeSlabBytes}, {"processes", kMinChangeProcessBytes}}},
      {"min_r2", TrendThresholds{}.min_r2},
      {"min_monotonic_fraction", TrendThresholds{}.min_steady_fraction},
      {"min_recent_ratio", TrendThresholds{}.min_recent_ratio},
      {"min_points", TrendThresholds{}.min_points}};
  json meminfo = json::array();
  for (const SeriesSummary& s : r.meminfo.series) meminfo.push_back(series_json(s));
  j["meminfo"] = meminfo;
  json slab = json::array();
  for (const SeriesSummary& s : r.slab.series) {
    json js = series_json(s);
    js["objsize"] = s.objsize;
    js["kmalloc_size"] = s.kmalloc_size ? json(*s.kmalloc_size) : json(nullptr);
    js["aliases"] = s.aliases;
    slab.push_back(std::move(js));
  }
  j["slab"] = slab;
  json procs = json::array();
  for (const SeriesSummary& s : r.processes.series) {
    json js = series_json(s);
    js["name"] = s.name;
    js["pid"] = s.pid;
    js["rss_end_bytes"] = s.rss_end_bytes;
    js["alive_at_end"] = s.alive_at_end;
    procs.push_back(std::move(js));
  }
  j["processes"] = procs;
  // Every growing series, ranked (the text report shows the top N).
  auto names = [](const Section& sec, bool pid) {
    json a = json::array();
    for (size_t i : sec.growing) a.push_back(pid ? json(sec.series[i].pid) : json(sec.series[i].name));
    return a;
  };
  j["growing"] = {
      {"meminfo", names(r.meminfo, false)}, {"slab", names(r.slab, false)}, {"processes", names(r.processes, true)}};
  j["next_step"] = {{"kind", r.next.kind},
                    {"series", null_or(r.next.series)},
                    {"slope_bytes_per_s", r.next.slope_bytes_per_s},
                    {"command", null_or(r.next.command)},
                    {"planned_command", null_or(r.next.planned_command)},
                    {"text", r.next.text}};
  return j;
}

}  // namespace kleak
