#include "commands/ci.h"
#include "util/clock.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include <fmt/format.h>

#include "analysis/aggregate.h"
#include "pipeline/reclaim.h"
#include "pipeline/pipeline.h"
#include "pipeline/run_loop.h"
#include "commands/ci_report.h"
#include "probe/loader.h"
#include "util/log.h"
#include "util/privileges.h"
#include "report/report.h"
#include "probe/snapshot.h"
#include "util/spawn.h"
#include "util/sys.h"
#include "commands/trace.h"
#include "report/verdict.h"

namespace kleak {
namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& a : v) s += (s.empty() ? "" : " ") + a;
  return s;
}

// Deferred frees (kfree_rcu batches, call_rcu) land after the command is
// gone: waits up to settle_s for them, but stops as soon as nothing is left.
void settle(const BpfHandles& handles, const sigset_t& signals, double settle_s, Verdict& v) {
  const uint64_t settle_end = monotonic_ns() + static_cast<uint64_t>(settle_s * 1e9);
  while (count_live(handles.live_fds()) > 0) {
    run_on_every_cpu();
    uint64_t next = std::min<uint64_t>(settle_end, monotonic_ns() + 250000000ull);
    int sig = wait_for_stop_until(signals, next);
    if (sig == SIGINT || sig == SIGTERM) {
      v.interrupted = fmt::format("interrupted by {} while settling", strsignal(sig));
      release_stop_signals();
      break;
    }
    if (monotonic_ns() >= settle_end) break;
  }
}


void print_banner(const TraceOptions& opts, const HeldCommand* command) {
  const CiOptions& ci = opts.ci;
  fmt::print(stderr, "kleak --ci: tracing {}; verdict {}\n",
             command ? fmt::format("`{}` (pid {}) and its children", join(ci.command), command->pid())
                     : std::string("all tasks") + (opts.pid ? fmt::format(" of pid {}", opts.pid) : ""),
             command ? fmt::format("when it exits (+ up to {} s for deferred frees)", ci.settle_s)
                     : fmt::format("in {} s", opts.duration_s));
}

}  // namespace

int run_ci(const TraceOptions& opts) {
  log_set_level(opts.verbosity >= 2 ? LogLevel::debug : opts.verbosity == 1 ? LogLevel::info : LogLevel::warn);
  const CiOptions& ci = opts.ci;
  // Like the other files kleak writes: checked before anything runs.
  auto output = Output::open(opts.output_path);
  if (!output) {
    log_error("{}", output.error().message);
    return kCiUsage;
  }
  auto baseline = load_baseline(ci.baseline_path);
  if (!baseline) {
    log_error("{}", baseline.error().message);
    return kCiUsage;
  }
  if (!ready_to_trace(opts)) return kCiUnsupported;
  const sigset_t signals = block_stop_signals(SIGCHLD);
  // The workload, forked before tracing starts and held until the programs
  // are attached, so its first allocation is already followed.
  HeldCommand command(HeldCommand::Trace::none);
  const bool with_command = !ci.command.empty();
  if (with_command) {
    if (auto why = command.fork_held(ci.command); !why) {
      log_error("cannot start {}: {}", ci.command[0], why.error().message);
      return kCiUsage;
    }
  }
  auto config = loader_config(opts);
  if (!config) {
    log_error("{}", config.error().message);
    return kCiUsage;
  }
  if (with_command) config->follow_tgids = {static_cast<uint32_t>(command.pid())};
  auto tracer = attach_tracer(*config);
  if (!tracer) {
    log_error("{}", tracer.error().message);
    return kCiUnsupported;
  }
  // One report, judged, with growth from samples; no stack sweeps. With a command every
  // record is the command's, and it is over: all that is left counts. With
  // --duration, the usual age threshold applies.
  PipelineStages stages{.growth = true, .reconcile = false, .sweep = false, .min_age_ms = std::nullopt};
  if (with_command) stages.min_age_ms = 0;
  KernelSource source(*tracer->loader, std::move(tracer->ksyms));
  if (!use_debug_info(opts, source)) return kCiUsage;
  const uint64_t start = monotonic_ns();
  Pipeline pipeline(opts, source, stages, TraceStart{start, std::nullopt});
  pipeline.describe(*config);
  if (with_command) {
    if (auto why = command.start(); !why) {
      command.kill_and_reap();
      log_error("cannot run {}: {}", ci.command[0], why.error().message);
      return kCiUsage;
    }
  }
  if (!opts.quiet) print_banner(opts, with_command ? &command : nullptr);

  ReportSchedule schedule(start, 0, 0, opts.duration_s);
  RunHooks hooks;
  hooks.command = with_command ? &command : nullptr;
  // Growth samples while the workload runs: the verdict's report has rates.
  GrowthSampler sampler(pipeline, opts.duration_s);
  hooks.tick_ns = GrowthSampler::kTickNs;
  hooks.tick = kernel_tick(source, &sampler);  // and modules the workload loads are named
  Verdict v;
  v.interrupted = run_until_done(signals, schedule, opts.duration_s, hooks).interrupted;
  if (with_command) command.kill_and_reap();
  const uint64_t traced_ns = monotonic_ns() - start;
  if (with_command && v.interrupted.empty()) settle(*tracer->loader, signals, ci.settle_s, v);
  if (ci.reclaim && v.interrupted.empty())
    v.interrupted = prove_by_reclaim(*tracer->loader, signals, ci.settle_s, v.reclaim);

  CiRun run;
  run.tool = "kleak --ci";
  if (with_command) run.command_status = command.status();
  run.traced_s = static_cast<double>(traced_ns) / 1e9;
  return judge_final_report(pipeline, opts, *baseline, v, run, *output);
}

}  // namespace kleak
