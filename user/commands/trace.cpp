#include "commands/trace.h"
#include "util/clock.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>

#include <fmt/format.h>

#include "analysis/aggregate.h"
#include "pipeline/map_reader.h"
#include "pipeline/peeks.h"
#include "procfs/cache_filter.h"
#include "report/output.h"
#include "analysis/growth.h"
#include "symbols/ksyms.h"
#include "probe/loader.h"
#include "util/log.h"
#include "util/privileges.h"
#include "procfs/procfs.h"
#include "report/report.h"
#include "pipeline/report_schedule.h"
#include "commands/selftest.h"
#include "probe/snapshot.h"
#include "probe/stack_reclaim.h"
#include "util/sys.h"

namespace kleak {
namespace {

// A report's tables (one entry per stack and per process with live
// allocations: hundreds of thousands on a busy machine) are freed once it is
// built, but glibc keeps the freed chunks in its heap, so without this the
// RSS stays at the largest live set ever seen. malloc_trim also hands back
// whole free pages inside the heap (glibc 2.8+), not only its top.
void return_freed_heap() {
  const uint64_t t0 = monotonic_ns();
  malloc_trim(0);
  log_debug("malloc_trim: {:.1f} ms", static_cast<double>(monotonic_ns() - t0) / 1e6);
}

// One report after another, written where --output says.
class Session {
 public:
  // `start`: when tracing began; by default now (a tracer that just attached).
  Session(const TraceOptions& opts, const BpfHandles& loader, Ksyms ksyms, Output output,
          std::optional<TraceStart> start = std::nullopt)
      : reporter_(opts, loader, std::move(ksyms), std::move(start)),
        format_(format_options(opts)),
        output_(std::move(output)) {}

  uint64_t start_ns() const { return reporter_.start_ns(); }
  void describe(const LoaderConfig& cfg) { reporter_.describe(cfg); }
  void without_growth() { reporter_.without_growth(); }

  // Between reports, sweeps the stack store (see Reporter::maintain).
  void maintain() { reporter_.maintain(); }

  // Prints one report. Returns an exit status to stop with, or nothing to go on.
  // The heap is returned before printing, so whoever reads kleak's RSS
  // when a report appears (bench/soak.py) sees it without the report's
  // freed tables.
  std::optional<int> report(bool final_report) {
    Result<Report> r = reporter_.next(final_report);
    return_freed_heap();
    return print_report(std::move(r), format_, output_);
  }

 private:
  Reporter reporter_;
  FormatOptions format_;
  Output output_;
};

}  // namespace

bool selftest_passed() {
  auto r = run_selftest_checks();
  if (!r) {
    log_error("selftest: {}", r.error().message);
    return false;
  }
  fmt::print(stderr, "{}", render_selftest_text(*r));
  if (!r->passed()) log_error("--selftest failed: not tracing (see the matrix above)");
  return r->passed();
}

int report_once(const TraceOptions& opts, const BpfHandles& handles, const TraceStart& start,
                const LoaderConfig& filters, Ksyms ksyms, Output output, bool final_report) {
  Session session(opts, handles, std::move(ksyms), std::move(output), start);
  session.describe(filters);
  session.without_growth();
  return session.report(final_report).value_or(kExitOk);
}

Reporter::Reporter(const TraceOptions& opts, const BpfHandles& loader, Ksyms ksyms, std::optional<TraceStart> start)
    : opts_(opts), loader_(loader), ksyms_(std::move(ksyms)) {
  ctx_.kernel = kernel_release();
  ctx_.interval_s = opts.interval_s;
  ctx_.start_mono_ns = start ? start->mono_ns : monotonic_ns();
  ctx_.live_capacity = loader.live_capacity();
  ctx_.stack_capacity = loader.stack_capacity();
  ctx_.stack_sample_every = loader.stack_sample_every();
  ctx_.attached = loader.attached();
  ctx_.missing = loader.missing();
  ctx_.degraded = loader.degraded();
  ctx_.families = loader.families();
  ctx_.traced_families = loader.traced_families();
  if (start) start_meminfo_ = start->meminfo;
  else if (auto m = load_meminfo()) start_meminfo_ = std::move(*m);
}

void Reporter::describe(const LoaderConfig& cfg) { describe_filters(cfg, ctx_); }

// The kernel's slab counters now against when kleak started.
Reconciliation Reporter::reconcile(const Aggregate& agg) const {
  Reconciliation rc;
  auto now = load_meminfo();
  if (!start_meminfo_ || !now) return rc;
  auto delta = [&](std::string_view field) -> std::optional<int64_t> {
    auto a = start_meminfo_->get(field), b = now->get(field);
    if (!a || !b) return std::nullopt;
    return static_cast<int64_t>(*b) - static_cast<int64_t>(*a);
  };
  auto slab = delta("Slab"), unrec = delta("SUnreclaim"), rec = delta("SReclaimable");
  if (!slab || !unrec || !rec) return rc;
  rc.available = true;
  rc.slab_delta = *slab;
  rc.sunreclaim_delta = *unrec;
  rc.sreclaimable_delta = *rec;
  rc.tracked_unreclaimable = agg.live_unreclaimable_bytes;
  rc.tracked_reclaimable = agg.live_reclaimable_bytes;
  rc.tracked_large_kmalloc = agg.live_large_kmalloc_bytes;
  return rc;
}

// A failure is a warning: reports stay right, the store may fill (counted
// as stack ENOMEM).
void Reporter::reclaim_stacks(const std::unordered_set<uint64_t>& referenced) {
  auto r = reclaimer_.sweep(loader_.stacks_fd(), loader_.sites_fd(), referenced);
  if (!r) {
    log_warn("stack store sweep: {}", r.error().message);
    return;
  }
  last_sweep_ns_ = monotonic_ns();
  ctx_.stacks_stored = reclaimer_.stored();
  ctx_.stacks_reclaimed = reclaimer_.reclaimed_total();
  if (r->reclaimed) log_info("stack store: {} stacks, {} reclaimed", r->stored, r->reclaimed);
}

void Reporter::maintain() {
  if (monotonic_ns() - last_sweep_ns_ < static_cast<uint64_t>(kReclaimPeriodS * 1e9)) return;
  Aggregator referenced(monotonic_ns(), 0, false);
  if (auto read = aggregate_maps(loader_.live_fds(), referenced); !read) {
    log_warn("stack store sweep: {}", read.error().message);
    last_sweep_ns_ = monotonic_ns();
    return;
  }
  reclaim_stacks(std::move(referenced).finish().referenced_stacks);
  return_freed_heap();
}

Result<Report> Reporter::next(bool final_report) {
  ++ctx_.seq;
  ctx_.final_report = final_report;
  const uint64_t t0 = monotonic_ns();
  auto snap = snapshot_info(loader_.fds());
  if (!snap) return snap.error();
  Aggregator aggregator(snap->mono_ns, opts_.min_age_ms * 1000000ull, opts_.show_allocs || opts_.peek_bytes > 0);
  if (auto read = aggregate_maps(loader_.live_fds(), aggregator); !read) return read.error();
  const uint64_t t1 = monotonic_ns();
  Aggregate agg = std::move(aggregator).finish();
  reclaim_stacks(agg.referenced_stacks);
  if (track_growth_) growth_.observe(static_cast<double>(snap->mono_ns - ctx_.start_mono_ns) / 1e9, agg);
  rank_groups(agg, opts_.sort, growth_);
  const uint64_t t2 = monotonic_ns();
  int fd = loader_.stacks_fd();
  Report r = build_report(*snap, agg, opts_, ctx_, ksyms_, [fd](uint64_t id) { return read_stack(fd, id); },
                          track_growth_ ? &growth_ : nullptr);
  r.reconciliation = reconcile(agg);
  if (auto st = add_peeks(r, loader_.peek_prog_fd(), loader_.peek_map_fd()); !st)
    log_warn("--peek: {}", st.error().message);
  const uint64_t t3 = monotonic_ns();
  auto ms = [](uint64_t a, uint64_t b) { return static_cast<double>(b - a) / 1e6; };
  log_info("report #{}: {} live allocations, {} stacks in {:.1f} ms (read+group {:.1f}, rank {:.1f}, "
           "symbolize {:.1f})",
           ctx_.seq, agg.live_count, agg.groups.size(), ms(t0, t3), ms(t0, t1), ms(t1, t2), ms(t2, t3));
  return r;
}

Result<LoaderConfig> loader_config(const TraceOptions& opts) {
  LoaderConfig cfg;
  if (!opts.cache.empty()) {
    auto cache = resolve_cache(opts.cache);
    if (!cache) return cache.error();
    if (cache->name != cache->requested)
      log_warn("--cache {}: merged into {} on this kernel, tracing that", cache->requested, cache->name);
    if (!cache->note.empty()) log_warn("--cache {}: {}", cache->requested, cache->note);
    cfg.cache_label = cache->name;
    if (cache->kmalloc) {
      cfg.kmem_cache_off = true;
      cfg.kmalloc_type = cache->kmalloc->type ? static_cast<int>(*cache->kmalloc->type) : -1;
      cfg.min_size_bytes = cfg.max_size_bytes = cache->kmalloc->size;
    } else {
      cfg.kmalloc_off = true;
      cfg.cache_name = cache->name;
    }
  }
  cfg.self_tgid = static_cast<uint32_t>(getpid());
  cfg.target_tgid = opts.pid;
  if (opts.cache.empty()) {
    cfg.min_size_bytes = opts.min_size_bytes;
    cfg.max_size_bytes = opts.max_size_bytes;
  }
  cfg.max_allocs = opts.max_allocs;
  cfg.stack_storage_size = opts.stack_storage_size;
  cfg.stack_sample_every = opts.stack_sample_every;
  cfg.stack_cache = opts.stack_cache;
  // What the command line named is not dropped when refused: an error.
  if (opts.stack_cache_named && opts.stack_cache != KLEAK_SC_OFF && opts.stack_sample_every <= 1)
    cfg.required_parts |= KLEAK_PART_STACK_CACHE;
  for (uint32_t fam : {uint32_t{KLEAK_FAMILY_PAGE}, uint32_t{KLEAK_FAMILY_PERCPU}, uint32_t{KLEAK_FAMILY_VMALLOC}})
    if (opts.families_named.has(fam)) cfg.required_parts |= family_part(fam);
  if (opts.peek_bytes > 0 || opts.peek_addr != 0) cfg.required_parts |= KLEAK_PART_PEEK;
  cfg.btf_path = opts.btf_path;
  cfg.families = opts.families;
  return cfg;
}

void describe_filters(const LoaderConfig& config, ReportContext& ctx) {
  ctx.min_size_bytes = config.min_size_bytes;
  ctx.max_size_bytes = config.max_size_bytes;
  ctx.cache = config.cache_label;
}

Result<Tracer> attach_tracer(const LoaderConfig& config) {
  install_libbpf_logger();
  // Symbols first: the page family excludes the slab paths by their text ranges.
  Ksyms ksyms;
  if (auto loaded = Ksyms::load()) ksyms = std::move(*loaded);
  else log_warn("{}: frames will be raw addresses", loaded.error().message);
  LoaderConfig cfg = config;
  cfg.ksyms = &ksyms;
  auto loader = Loader::create(cfg);
  if (!loader) return loader.error();
  Tracer t{std::move(*loader), std::move(ksyms)};
  // Loading parsed the kernel's BTF (several MiB) and kallsyms' text: hand
  // those freed pages back, kleak runs on machines already short of memory.
  malloc_trim(0);
  return t;
}

int run_trace(const TraceOptions& opts) {
  log_set_level(opts.verbosity >= 2 ? LogLevel::debug : opts.verbosity == 1 ? LogLevel::info : LogLevel::warn);
  // Before anything else: an unwritable --output is a one-line error.
  auto output = open_output(opts.output_path, opts.format);
  if (!output) {
    log_error("{}", output.error().message);
    return kExitFailure;
  }
  if (auto why = check_privileges(); !why) {
    log_error("{}", why.error().message);
    return kExitFailure;
  }
  if ((opts.peek_bytes > 0 || opts.peek_addr != 0) && geteuid() != 0) {
    log_error("--peek shows kernel memory: root only");
    return kExitFailure;
  }
  if (opts.selftest && !selftest_passed()) return kExitFailure;
  // Signals are taken synchronously with sigtimedwait; block them before
  // anything is attached so an early Ctrl-C still ends in a clean detach.
  const sigset_t stop_set = block_stop_signals();

  auto config = loader_config(opts);
  if (!config) {
    log_error("{}", config.error().message);
    return kExitUsage;
  }
  const LoaderConfig& cfg = *config;
  auto tracer = attach_tracer(cfg);
  if (!tracer) {
    log_error("{}", tracer.error().message);
    return kExitFailure;
  }
  auto& loader = tracer->loader;
  Session session(opts, *loader, std::move(tracer->ksyms), std::move(*output));
  session.describe(cfg);
  if (!opts.quiet) {
    std::string what;
    for (const auto& a : loader->attached()) what += (what.empty() ? "" : ", ") + a;
    fmt::print(stderr, "kleak: tracing {} (up to {} live allocations). {}\n", what, cfg.max_allocs,
               opts.duration_s > 0 ? fmt::format("Final report in {} s or on Ctrl-C.", opts.duration_s)
                                   : std::string("Ctrl-C for the final report."));
  }

  ReportSchedule schedule(session.start_ns(), opts.interval_s, opts.count, opts.duration_s);
  const uint64_t maint_step = static_cast<uint64_t>(kReclaimPeriodS * 1e9);
  for (;;) {
    int sig = wait_until(stop_set, schedule.wake(monotonic_ns() + maint_step));
    if (sig != 0) {
      // A second Ctrl-C while the final report is printed ends kleak at once;
      // fd-based links detach with the process.
      release_stop_signals();
      log_info("got {}: final report", strsignal(sig));
      return session.report(true).value_or(kExitOk);
    }
    uint64_t now = monotonic_ns();
    if (schedule.deadline_passed(now)) {
      return session.report(true).value_or(kExitOk);
    }
    if (!schedule.report_due(now)) {
      session.maintain();
      continue;
    }
    const bool last = schedule.next_is_last();
    if (auto rc = session.report(last)) return *rc;
    if (last) return kExitOk;
    schedule.reported(monotonic_ns());
  }
}

}  // namespace kleak
