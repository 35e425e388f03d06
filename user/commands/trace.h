// `kleak trace`: attach, report every interval, print a final report on
// Ctrl-C / SIGTERM / --duration / the last count, detach.
#pragma once

#include <memory>
#include <optional>
#include <unordered_set>

#include "analysis/growth.h"
#include "util/clock.h"
#include "symbols/ksyms.h"
#include "probe/loader.h"
#include "options/options.h"
#include "procfs/procfs.h"
#include "report/report.h"
#include "util/result.h"
#include "util/sys.h"
#include "probe/snapshot.h"
#include "probe/stack_reclaim.h"

namespace kleak {

// Returns the process exit status (see ExitCode).
int run_trace(const TraceOptions& opts);

// When tracing began, for a report made by another process than the one
// that attached (kleak report on a pinned session).
struct TraceStart {
  uint64_t mono_ns = 0;            // CLOCK_MONOTONIC, the clock of kleak_alloc.ts_ns
  std::optional<Meminfo> meminfo;  // /proc/meminfo then, for the reconciliation line
};

// Turns a tracer's maps into reports: snapshot, group, rank by growth (it
// keeps the history), symbolize. `opts` and `loader` must outlive it.
// `loader` is a live Loader or a pinned session (handles.h); `start`: when
// tracing began, by default now (a tracer that just attached).
class Reporter {
 public:
  Reporter(const TraceOptions& opts, const BpfHandles& loader, Ksyms ksyms,
           std::optional<TraceStart> start = std::nullopt);
  uint64_t start_ns() const { return ctx_.start_mono_ns; }
  // Records the filters in force for every report (describe_filters).
  void describe(const LoaderConfig& cfg);
  // A single report has no history to judge growth from: leave it out.
  void without_growth() { track_growth_ = false; }
  // The next report (seq counts up). Errors name the map that failed.
  Result<Report> next(bool final_report);
  // Sweeps the stack store (see stack_reclaim.h) when kReclaimPeriodS has
  // passed since the last sweep: for runs with long gaps between reports.
  void maintain();

 private:
  Reconciliation reconcile(const Aggregate& agg) const;
  void reclaim_stacks(const std::unordered_set<uint64_t>& referenced);

  const TraceOptions& opts_;
  const BpfHandles& loader_;
  Ksyms ksyms_;
  ReportContext ctx_;
  GrowthTracker growth_;
  bool track_growth_ = true;
  StackReclaimer reclaimer_;
  uint64_t last_sweep_ns_ = monotonic_ns();
  std::optional<Meminfo> start_meminfo_;  // at start, for Reconciliation
};

// Writes one report from `handles` as `kleak trace` writes its reports (every
// --format), with the filters `filters` states and no growth verdicts.
// Returns the exit status.
int report_once(const TraceOptions& opts, const BpfHandles& handles, const TraceStart& start,
                const LoaderConfig& filters, Ksyms ksyms, Output output, bool final_report);

// What attaching gives a run loop: the programs and the symbolizer.
struct Tracer {
  std::unique_ptr<Loader> loader;
  Ksyms ksyms;  // empty (raw addresses) when /proc/kallsyms is unreadable
};

// --selftest: runs the self-test, prints its matrix on stderr; false when a
// family that should work here did not (or kleak cannot run).
bool selftest_passed();

// The loader settings `opts` asks for; kleak's own process is never traced.
// Fails (a usage error) when --cache names no cache of this kernel.
Result<LoaderConfig> loader_config(const TraceOptions& opts);

// The filters a report states, from the loader settings.
void describe_filters(const LoaderConfig& config, ReportContext& ctx);

// Opens, loads and attaches; loads kallsyms (a warning if it cannot); hands
// the memory of parsing both back to the system.
Result<Tracer> attach_tracer(const LoaderConfig& config);

}  // namespace kleak
