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

#include "procfs/cache_filter.h"
#include "report/output.h"
#include "symbols/ksyms.h"
#include "probe/loader.h"
#include "util/log.h"
#include "util/privileges.h"
#include "procfs/procfs.h"
#include "report/report.h"
#include "pipeline/report_schedule.h"
#include "pipeline/run_loop.h"
#include "commands/session.h"
#include "pipeline/reclaim.h"
#include "commands/selftest.h"
#include "util/sys.h"

namespace kleak {
namespace {

using KernelSession = Session<KernelSource>;


// --reclaim: how long the live set may take to settle after reclaim (--ci's
// default --settle).
constexpr double kReclaimSettleS = 10;

// How often a run without growth samples looks for modules loaded since
// (KernelSource::poll_modules): a module loaded and unloaded faster than
// this between two looks keeps only its name and offsets.
constexpr uint64_t kModulePollNs = 250000000;

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

bool ready_to_trace(const TraceOptions& opts) {
  if (auto why = check_privileges(); !why) {
    log_error("{}", why.error().message);
    return false;
  }
  if ((opts.peek_bytes > 0 || opts.peek_addr != 0) && geteuid() != 0) {
    log_error("--peek shows kernel memory: root only");
    return false;
  }
  return !opts.selftest || selftest_passed();
}

int report_once(const TraceOptions& opts, const BpfHandles& handles, const TraceStart& start,
                const LoaderConfig& filters, Ksyms ksyms, Output output, bool final_report,
                const HistoryFile* history) {
  PipelineStages one_report;
  one_report.growth = history != nullptr;  // a single report has no history of its own
  KernelSession session(opts, one_report, start, std::move(output), handles, std::move(ksyms));
  if (!use_debug_info(opts, session.source())) return kExitUsage;
  session.pipeline().describe(filters);
  if (history)
    if (auto st = session.pipeline().load_history(history->path, history->tag); !st)
      log_warn("{}: growth verdicts start afresh", st.error().message);
  if (opts.reclaim) {
    // Stop signals are taken synchronously while reclaim waits for the
    // live set to settle: a Ctrl-C cuts it short, the report still comes.
    const sigset_t stop_set = block_stop_signals();
    ReclaimTally t;
    if (std::string cut = prove_by_reclaim(handles, stop_set, kReclaimSettleS, t); !cut.empty()) log_warn("{}", cut);
    session.pipeline().set_reclaim(t);
  }
  const int rc = session.report(final_report).value_or(kExitOk);
  if (history)
    if (auto st = session.pipeline().save_history(history->path, history->tag); !st)
      log_warn("{}: the next report has no growth history", st.error().message);
  return rc;
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

namespace {

// Source lines for kernel frames: --vmlinux, else the usual places for the
// running kernel, and the modules' .ko files. A --vmlinux that cannot be
// used is an error; a vmlinux not found costs the lines alone, said at -v.
Result<std::unique_ptr<KernelDebugInfo>> open_debug_info(const TraceOptions& opts, const Ksyms& ksyms) {
  // kallsyms keeps one name an address has: _stext or _text (x86, same).
  std::vector<std::pair<std::string, uint64_t>> anchors;
  if (!ksyms.addresses_hidden())
    for (const char* name : {"_stext", "_text", "startup_64"})
      if (auto r = ksyms.function_range(name)) anchors.emplace_back(name, r->first);
  auto debug = KernelDebugInfo::open({opts.vmlinux_path, kernel_release()}, anchors);
  if (!debug) return debug.error();
  for (const std::string& note : (*debug)->notes()) log_info("source lines: {}", note);
  return debug;
}

}  // namespace

bool use_debug_info(const TraceOptions& opts, KernelSource& source) {
  auto debug = open_debug_info(opts, source.kallsyms());
  if (!debug) {
    log_error("{}", debug.error().message);
    return false;
  }
  source.set_debug_info(std::move(*debug));
  return true;
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
  if (!ready_to_trace(opts)) return kExitFailure;
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
  KernelSession session(opts, {}, std::nullopt, std::move(*output), *loader, std::move(tracer->ksyms));
  if (!use_debug_info(opts, session.source())) return kExitUsage;
  session.pipeline().describe(cfg);
  if (!opts.quiet) {
    std::string what;
    for (const auto& a : loader->attached()) what += (what.empty() ? "" : ", ") + a;
    fmt::print(stderr, "kleak: tracing {} (up to {} live allocations). {}\n", what, cfg.max_allocs,
               opts.duration_s > 0 ? fmt::format("Final report in {} s or on Ctrl-C.", opts.duration_s)
                                   : std::string("Ctrl-C for the final report."));
  }

  ReportSchedule schedule(session.pipeline().start_ns(), opts.interval_s, opts.count, opts.duration_s);
  RunHooks hooks;
  hooks.report = [&session](bool last) { return session.report(last); };
  hooks.maintain = [&session] { session.pipeline().maintain(); };
  GrowthSampler sampler(session.pipeline(), opts.duration_s);
  // One report at the end: sample before it, so its stacks have a rate,
  // R² and a verdict. Every tick names the modules loaded since the last.
  const bool sample = opts.duration_s > 0 && opts.interval_s <= 0;
  hooks.tick_ns = sample ? GrowthSampler::kTickNs : kModulePollNs;
  hooks.tick = kernel_tick(session.source(), sample ? &sampler : nullptr);
  RunEnd end = run_until_done(stop_set, schedule, opts.duration_s, hooks);
  if (end.rc) return *end.rc;
  // A second Ctrl-C while the final report is printed ends kleak at once;
  // fd-based links detach with the process.
  log_info("{}: final report", end.what);
  if (opts.reclaim) {
    ReclaimTally t;
    if (std::string cut = prove_by_reclaim(*loader, stop_set, kReclaimSettleS, t); !cut.empty()) log_warn("{}", cut);
    session.pipeline().set_reclaim(t);
  }
  return session.report(true).value_or(kExitOk);
}

}  // namespace kleak
