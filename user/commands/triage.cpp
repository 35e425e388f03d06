#include "commands/triage.h"
#include "util/clock.h"

#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>

#include <fmt/format.h>

#include "util/log.h"
#include "procfs/procfs.h"
#include "probe/snapshot.h"
#include "util/sys.h"
#include "triage/triage_report.h"
#include "triage/unaccounted.h"

namespace kleak {
namespace {

// Reads every source once per sample and appends to the series. Problems
// are logged once each, then counted.
class Sampler {
 public:
  explicit Sampler(TriageData& d) : d_(d) {}

  // False when /proc/meminfo cannot be read at the first sample: without it
  // there is nothing to triage.
  bool sample(double t_s) {
    if (!sample_meminfo(t_s) && d_.samples == 0) return false;
    sample_slabinfo(t_s);
    sample_processes(t_s);
    ++d_.samples;
    d_.last_sample_t_s = t_s;
    d_.elapsed_s = t_s;
    return true;
  }

 private:
  void note_issues(const char* what, const ParseIssues& issues, SourceStatus& status, bool& warned) {
    status.bad_lines += issues.bad_lines;
    if (issues.bad_lines && !warned) {
      warned = true;
      log_warn("{}: skipped {} line(s) that did not parse, e.g. '{}'", what, issues.bad_lines, issues.first_bad_line);
    }
  }

  bool sample_meminfo(double t_s) {
    auto m = load_meminfo();
    if (!m) {
      d_.meminfo_status.error = m.error().message;
      if (!warned_meminfo_) log_error("{}", m.error().message);
      warned_meminfo_ = true;
      return false;
    }
    d_.meminfo_status.readable = true;
    note_issues("/proc/meminfo", m->issues, d_.meminfo_status, warned_meminfo_parse_);
    for (const std::string& f : kTriageMeminfoFields)
      if (auto v = m->get(f)) d_.meminfo[f].push_back({t_s, static_cast<double>(*v)});
    if (auto u = unaccounted_kernel_memory(*m)) {
      d_.meminfo[kUnaccountedSeries].push_back({t_s, static_cast<double>(u->bytes)});
      d_.unaccounted_absent = u->absent;
    } else if (!warned_unaccounted_) {
      warned_unaccounted_ = true;
      log_warn("/proc/meminfo lacks a field the unaccounted-memory formula needs: no unaccounted series");
    }
    return true;
  }

  void sample_slabinfo(double t_s) {
    if (slabinfo_off_) return;
    auto s = load_slabinfo();
    if (!s) {
      // Once: /proc/slabinfo is 0400 root, so this is the normal non-root case.
      slabinfo_off_ = true;
      d_.slabinfo_status.readable = false;
      d_.slabinfo_status.error = s.error().message;
      bool perm = s.error().err == EACCES || s.error().err == EPERM;
      log_warn("{}{}: slab caches are not sampled", s.error().message, perm ? " (root only)" : "");
      return;
    }
    d_.slabinfo_status.readable = true;
    note_issues("/proc/slabinfo", s->issues, d_.slabinfo_status, warned_slab_parse_);
    // Two caches may share a name (SLUB allows it when merging is off): one
    // series for the name, their sum.
    std::map<std::string, std::pair<double, uint64_t>> by_name;
    for (const SlabCache& c : s->caches) {
      auto& [bytes, objsize] = by_name[c.name];
      bytes += static_cast<double>(c.bytes);
      objsize = c.objsize;
    }
    for (const auto& [name, v] : by_name) {
      SlabSeries& ss = d_.slab[name];
      ss.points.push_back({t_s, v.first});
      ss.objsize = v.second;
    }
  }

  void sample_processes(double t_s) {
    auto scan = scan_processes();
    if (!scan) {
      d_.process_status.error = scan.error().message;
      if (!warned_processes_) log_warn("{}: processes are not sampled", scan.error().message);
      warned_processes_ = true;
      return;
    }
    d_.process_status.readable = true;
    note_issues("/proc/PID/smaps_rollup", scan->issues, d_.process_status, warned_smaps_parse_);
    if (scan->no_rollup > 0 && scan->processes.empty() && !warned_no_rollup_) {
      warned_no_rollup_ = true;
      log_warn("no /proc/PID/smaps_rollup (Linux 4.14 or later): processes are not sampled");
    }
    d_.processes_unreadable = scan->unreadable;
    d_.kernel_threads = scan->kernel_threads;
    for (const ProcessSample& p : scan->processes) {
      ProcessSeries& ps = d_.processes[p.pid];
      if (ps.comm.empty()) ps.comm = p.comm;
      ps.points.push_back({t_s, static_cast<double>(p.mem.pss_bytes)});
      ps.last_rss_bytes = p.mem.rss_bytes;
    }
  }

  TriageData& d_;
  bool slabinfo_off_ = false;
  bool warned_meminfo_ = false, warned_meminfo_parse_ = false, warned_unaccounted_ = false;
  bool warned_slab_parse_ = false, warned_processes_ = false, warned_smaps_parse_ = false, warned_no_rollup_ = false;
};

}  // namespace

int run_triage(const TriageOptions& opts) {
  log_set_level(opts.verbosity >= 2 ? LogLevel::debug : opts.verbosity == 1 ? LogLevel::info : LogLevel::warn);
  // Signals are taken synchronously with sigtimedwait, as in trace.cpp: a
  // Ctrl-C ends sampling and the report is still printed.
  const sigset_t stop_set = block_stop_signals();

  TriageData d;
  d.kernel = kernel_release();
  d.interval_s = opts.interval_s;
  d.duration_s = opts.duration_s;
  d.slab_aliases = load_slab_aliases();
  Sampler sampler(d);
  // Samples at 0, interval, 2 x interval, ... up to the duration: a
  // duration of twice the interval gives the three a trend needs.
  const size_t samples = static_cast<size_t>(std::floor(opts.duration_s / opts.interval_s + 1e-9)) + 1;
  if (!opts.quiet)
    fmt::print(stderr, "kleak triage: sampling /proc every {} s for {} s ({} samples). Ctrl-C to stop early.\n",
               opts.interval_s, opts.duration_s, samples);

  const uint64_t start = monotonic_ns();
  for (size_t i = 0; i < samples; ++i) {
    if (i > 0) {
      auto at = start + static_cast<uint64_t>(std::llround(static_cast<double>(i) * opts.interval_s * 1e9));
      if (int sig = wait_until(stop_set, at); sig != 0) {
        // A second Ctrl-C while the report is printed ends kleak at once.
        release_stop_signals();
        log_info("got {}: stopping after {} samples", strsignal(sig), d.samples);
        d.interrupted = true;
        break;
      }
    }
    double t_s = static_cast<double>(monotonic_ns() - start) / 1e9;
    if (!sampler.sample(t_s)) return kExitFailure;
  }

  TriageReport r = analyze(d, opts.top);
  std::string out = opts.format == OutputFormat::json
                        ? triage_to_json(r).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"
                        : render_triage_text(r);
  if (!write_stdout(out)) {
    if (errno == EPIPE) return kExitOk;
    log_error("write report: {}", std::strerror(errno));
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace kleak
