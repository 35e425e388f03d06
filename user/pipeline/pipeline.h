// The one path from a tracer's maps to a report, driven by every command
// (kleak trace, kleak user, --ci, serve, kleak report of a pinned session):
//
//   snapshot_info ─ counters, missed-free sites, the time
//   source.read   ─ every live record ─▶ Aggregator (group by stack)
//   sweep         ─ stacks no record holds leave the stack store
//   growth        ─ the history of each stack (GrowthTracker), then rank
//   select        ─ optional: a CI verdict keeps the groups it judges
//   build_report  ─ symbolized through source.symbolizer()
//   reconcile     ─ vs /proc/meminfo since the start (kernel slab)
//   peeks         ─ --peek, --peek-addr
//   source.annotate ─ the tracer's own notes and fields
//
// What differs between tracers is a LiveSource; what differs between
// commands is which stages run (PipelineStages) and what each report asks
// for (ReportRequest).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <unordered_set>

#include "analysis/aggregate.h"
#include "analysis/growth.h"
#include "options/options.h"
#include "probe/handles.h"
#include "probe/loader.h"
#include "probe/snapshot.h"
#include "probe/stack_reclaim.h"
#include "procfs/procfs.h"
#include "report/report.h"
#include "symbols/kernel_symbols.h"
#include "symbols/ksyms.h"
#include "symbols/symbolizer.h"
#include "util/clock.h"
#include "util/result.h"

namespace kleak {

// Where a tracer's records come from, and what it adds to its reports.
class LiveSource {
 public:
  virtual ~LiveSource() = default;
  virtual const BpfHandles& handles() const = 0;
  virtual Symbolizer& symbolizer() = 0;
  // Before a report's snapshot (kleak user: re-reads the processes' maps).
  virtual Status prepare() { return {}; }
  // Feeds every live record to `a`: by default every family's live map.
  virtual Status read(Aggregator& a);
  // After the report is built: the tracer's notes and fields.
  virtual Status annotate(Report&) { return {}; }
};

// The kernel tracer's records, a live Loader's or a pinned session's.
// Frames are named from kallsyms as read at start and from the modules the
// module follower saw come and go (kernel_symbols.h).
class KernelSource : public LiveSource {
 public:
  KernelSource(const BpfHandles& handles, Ksyms ksyms) : handles_(handles), ksyms_(std::move(ksyms)) {}
  const BpfHandles& handles() const override { return handles_; }
  Symbolizer& symbolizer() override { return ksyms_; }
  // Source lines for the frames of every report from now on.
  void set_debug_info(std::unique_ptr<KernelDebugInfo> debug) { ksyms_.set_debug_info(std::move(debug)); }
  const Ksyms& kallsyms() const { return ksyms_.core(); }
  // Before a report: the modules loaded since the last look are named (a
  // failed look costs names, never the report).
  Status prepare() override;
  // Reads the follower's records and names new modules while they are
  // loaded: a run loop calls it every tick, so a module unloaded before
  // the report keeps its names.
  Status poll_modules();

 private:
  const BpfHandles& handles_;
  KernelSymbols ksyms_;
};

// When tracing began, for a report made by another process than the one
// that attached (kleak report on a pinned session).
struct TraceStart {
  uint64_t mono_ns = 0;            // CLOCK_MONOTONIC, the clock of kleak_alloc.ts_ns
  std::optional<Meminfo> meminfo;  // /proc/meminfo then, for the reconciliation line
};

// Which stages a command's reports go through.
struct PipelineStages {
  bool growth = true;     // keep history: growth verdicts and ranking by them
  bool reconcile = true;  // the kernel's slab counters since the start
  bool sweep = true;      // sweep the stack store at each report
  // Allocations younger than this are not reported: the --min-age of the
  // options unless set (a CI run with a command: 0, the command is over).
  std::optional<uint64_t> min_age_ms;
};

// A CI verdict's choice of groups (judged_groups): from the ranked ones,
// which are reported.
using GroupSelector = std::function<Aggregate(const Aggregate& ranked, const SnapshotInfo& snap, Symbolizer& syms,
                                              const StackSource& stacks)>;

struct ReportRequest {
  bool final_report = false;
  GroupSelector select;  // unset: every group, ranked
};

class Pipeline {
 public:
  // `source` must outlive the pipeline; `opts` is copied (reports point at
  // the copy). `start`: when tracing began, by default now.
  Pipeline(const TraceOptions& opts, LiveSource& source, PipelineStages stages = {},
           std::optional<TraceStart> start = std::nullopt);
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  uint64_t start_ns() const { return ctx_.start_mono_ns; }
  // The filters in force in the kernel, stated in every report.
  void describe(const LoaderConfig& cfg);
  void describe(uint64_t min_size_bytes, uint64_t max_size_bytes, const std::string& cache);

  // The next report (seq counts up). Errors name the map that failed. The
  // heap its tables took is handed back before it returns.
  Result<Report> next(const ReportRequest& req);
  Result<Report> next(bool final_report) { return next(ReportRequest{final_report, {}}); }
  // A point of every stack's growth history without a report: what a
  // one-shot run (-d) takes while it traces, so its one report has rates.
  // Nothing without the growth stage.
  Status sample();
  // The growth history kept in `path` between processes (kleak report of a
  // pinned session), headed by `tag` (which session it belongs to). Load:
  // a missing file, or another session's, is an empty history. Save: via
  // a temporary file and a rename, so a reader never sees half of it.
  Status load_history(const std::string& path, const std::string& tag);
  Status save_history(const std::string& path, const std::string& tag) const;
  // What proving by reclaim freed, for the reports from now on.
  void set_reclaim(const ReclaimTally& t) { ctx_.reclaim = t; }
  // Sweeps the stack store (stack_reclaim.h) when kReclaimPeriodS has
  // passed since the last sweep: for runs with long gaps between reports.
  void maintain();

 private:
  Result<Report> build(const ReportRequest& req);
  // The live set now, grouped: what a report and a growth sample both read
  // (with every allocation listed when `keep_allocs`).
  struct LiveSet {
    SnapshotInfo snap;
    Aggregate agg;
  };
  Result<LiveSet> read_live_set(bool keep_allocs);
  // A growth point of `live` (the growth stage on).
  void observe(const LiveSet& live);
  Reconciliation reconcile(const Aggregate& agg) const;
  void sweep(const std::unordered_set<uint64_t>& referenced);

  TraceOptions opts_;
  LiveSource& source_;
  PipelineStages stages_;
  ReportContext ctx_;
  GrowthTracker growth_;
  StackReclaimer reclaimer_;
  uint64_t last_sweep_ns_ = monotonic_ns();
  std::optional<Meminfo> start_meminfo_;
};

// The filters a report states, from the loader settings.
void describe_filters(const LoaderConfig& config, ReportContext& ctx);

// A report's tables (one entry per stack and per process with live
// allocations: hundreds of thousands on a busy machine) are freed once it
// is built, but glibc keeps the freed chunks: hands them back.
void return_freed_heap();

// Growth samples for a run with no interval reports (kleak -d, a command
// under --ci or kleak user): about kPoints of them over the run, so its
// one report has rates. Call due() from a tick of at most a second.
class GrowthSampler {
 public:
  static constexpr uint64_t kPoints = 20;
  static constexpr uint64_t kTickNs = 250000000;  // how often a run loop should call due()
  explicit GrowthSampler(Pipeline& p, double duration_s = 0) : p_(p), duration_ns_(duration_s * 1e9) {}
  // Samples when the last one is older than a twentieth of the run (of
  // --duration when known, of the time so far otherwise), at least 250 ms.
  void due();

 private:
  Pipeline& p_;
  double duration_ns_;
  uint64_t last_ns_ = 0;
};

// A kernel run loop's tick (RunHooks::tick): names the modules loaded
// since the last tick and, with a sampler, takes its growth sample when due.
std::function<std::optional<std::string>()> kernel_tick(KernelSource& source, GrowthSampler* sampler);

}  // namespace kleak
