// The triage report on fuzzed samples: the input is a run of samples
// separated by form feeds; each is parsed as /proc/meminfo, /proc/slabinfo
// and one process's smaps_rollup (each parser skips what is not its own),
// appended to series the way triage.cpp's Sampler does, then analyze(),
// the text report and the JSON report run on it. Cache names and comms come
// from outside: they reach every formatter.
#include "fuzz_util.h"
#include "procfs/procfs.h"
#include "triage/triage_report.h"
#include "triage/unaccounted.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = kleak::fuzz::as_text(data, size);
  kleak::TriageData d;
  d.kernel = "fuzz";
  d.interval_s = 2;
  d.slab_aliases = kleak::slab_aliases({{"kmalloc-4k", ":0004096"}, {"names_cache", ":0004096"}});
  d.meminfo_status.readable = d.slabinfo_status.readable = d.process_status.readable = true;
  for (size_t i = 0; i < 64 && (i == 0 || !text.empty()); ++i) {
    size_t ff = text.find('\f');
    std::string_view sample = text.substr(0, ff);
    text.remove_prefix(ff == std::string_view::npos ? text.size() : ff + 1);
    double t_s = 2.0 * static_cast<double>(i);

    kleak::Meminfo m = kleak::parse_meminfo(sample);
    for (const std::string& f : kleak::kTriageMeminfoFields)
      if (auto v = m.get(f)) d.meminfo[f].push_back({t_s, static_cast<double>(*v)});
    if (auto u = kleak::unaccounted_kernel_memory(m)) {
      d.meminfo[kleak::kUnaccountedSeries].push_back({t_s, static_cast<double>(u->bytes)});
      d.unaccounted_absent = u->absent;
    }
    if (auto s = kleak::parse_slabinfo(sample); s.ok()) {
      std::map<std::string, std::pair<double, uint64_t>> by_name;
      for (const kleak::SlabCache& c : s->caches) {
        auto& [bytes, objsize] = by_name[c.name];
        bytes += static_cast<double>(c.bytes);
        objsize = c.objsize;
      }
      for (const auto& [name, v] : by_name) {
        kleak::SlabSeries& ss = d.slab[name];
        ss.points.push_back({t_s, v.first});
        ss.objsize = v.second;
      }
    }
    kleak::ParseIssues issues;
    if (auto mem = kleak::parse_smaps_rollup(sample, issues)) {
      // The pid from the sample number, so processes come and go.
      kleak::ProcessSeries& ps = d.processes[100 + static_cast<uint32_t>(i % 3)];
      if (ps.comm.empty()) ps.comm = kleak::parse_comm(sample.substr(0, sample.find('\n')));
      ps.points.push_back({t_s, static_cast<double>(mem->pss_bytes)});
      ps.last_rss_bytes = mem->rss_bytes;
    }
    ++d.samples;
    d.last_sample_t_s = d.elapsed_s = t_s;
  }
  d.duration_s = d.elapsed_s;

  kleak::TriageReport r = kleak::analyze(d, 3);
  (void)kleak::render_triage_text(r);
  // As run_triage dumps it: invalid UTF-8 in names is replaced, not thrown.
  (void)kleak::triage_to_json(r).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return 0;
}
