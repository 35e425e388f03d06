#include "commands/user_space.h"
#include "util/clock.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

#include <bpf/bpf.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "model/abi.h"
#include "analysis/aggregate.h"
#include "commands/ci_report.h"
#include "report/output.h"
#include "analysis/growth.h"
#include "symbols/ksyms.h"
#include "probe/loader.h"
#include "util/log.h"
#include "util/privileges.h"
#include "report/report.h"
#include "pipeline/report_schedule.h"
#include "probe/snapshot.h"
#include "util/spawn.h"
#include "probe/stack_reclaim.h"
#include "util/sys.h"
#include "probe/uprobe_loader.h"
#include "report/user_report.h"
#include "symbols/usyms.h"
#include "report/verdict.h"

namespace kleak {
namespace {

// Where a dynamically linked command will find glibc when kleak itself has
// none mapped (a static kleak): Debian/Ubuntu multiarch, then others.
std::string system_libc() {
  for (const char* p : {"/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6",
                        "/usr/lib64/libc.so.6", "/lib/libc.so.6", "/usr/lib/libc.so.6"}) {
    struct stat st;
    if (stat(p, &st) == 0) return p;
  }
  return {};
}

bool alive(uint32_t pid) { return ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM; }

std::string comm_of(uint32_t pid) {
  std::ifstream in(fmt::format("/proc/{}/comm", pid));
  std::string c;
  std::getline(in, c);
  return c;
}

class UserSession {
 public:
  UserSession(const UserOptions& opts, UserLoader& loader, std::vector<uint32_t> pids, Output output)
      : opts_(opts),
        loader_(loader),
        pids_(std::move(pids)),
        format_(format_options(opts.report)),
        output_(std::move(output)) {
    build_opts_ = opts.report;
    build_opts_.hide_addresses = false;  // symbolize first, hide after
    ctx_.kernel = kernel_release();
    ctx_.interval_s = opts.report.interval_s;
    ctx_.start_mono_ns = monotonic_ns();
    ctx_.live_capacity = loader.live_capacity();
    ctx_.stack_capacity = loader.stack_capacity();
    ctx_.stack_sample_every = loader.stack_sample_every();
    ctx_.attached = loader.attached();
    ctx_.missing = loader.missing();
    ctx_.degraded = loader.degraded();
    ctx_.min_size_bytes = opts.report.min_size_bytes;
    ctx_.max_size_bytes = opts.report.max_size_bytes;
    refresh_maps();
  }

  uint64_t start_ns() const { return ctx_.start_mono_ns; }
  UserSymbolizer& symbolizer() { return syms_; }

  // Re-reads the maps of every traced process still alive (the last ones
  // read stay for those that are gone).
  void refresh_maps() {
    for (uint32_t pid : pids_) {
      if (!syms_.refresh(pid)) continue;
      if (std::string comm = comm_of(pid); !comm.empty()) comms_[pid] = comm;
    }
  }

  bool any_alive() const {
    return std::any_of(pids_.begin(), pids_.end(), [](uint32_t p) { return alive(p); });
  }

  // The next report, symbolized; with `all_stacks` every stack is listed
  // (what a CI verdict judges). Errors name the map that failed.
  Result<Report> build(bool final_report, bool all_stacks = false) {
    ++ctx_.seq;
    ctx_.final_report = final_report;
    refresh_maps();
    auto snap = snapshot_info(loader_.fds());
    if (!snap) return snap.error();
    auto execs = read_exec_times(loader_.exec_fd());
    if (!execs) return execs.error();
    auto extra = read_user_counters(loader_.extra_counters_fd());
    if (!extra) return extra.error();
    Aggregator aggregator(snap->mono_ns, opts_.report.min_age_ms * 1000000ull, opts_.report.show_allocs);
    if (auto st = read_current(*execs, aggregator); !st) return st.error();
    Aggregate agg = std::move(aggregator).finish();
    reclaim_stacks(agg.referenced_stacks);
    growth_.observe(static_cast<double>(snap->mono_ns - ctx_.start_mono_ns) / 1e9, agg);
    rank_groups(agg, opts_.report.sort, growth_);
    int fd = loader_.stacks_fd();
    TraceOptions shown = build_opts_;
    if (all_stacks) shown.top = std::numeric_limits<uint32_t>::max();
    Report r = build_report(*snap, agg, shown, ctx_, no_ksyms_, [fd](uint64_t id) { return read_stack(fd, id); },
                            ctx_.seq > 1 ? &growth_ : nullptr);  // one report has no trend
    r.opts = &opts_.report;
    symbolize_user_report(r, syms_, opts_.report.hide_addresses);
    add_notes(r, *extra);
    if ((*extra)[KLEAK_UCNT_INFLIGHT_FULL] > 0) r.complete = false;
    return r;
  }

  // Prints one report. Returns an exit status to stop with, or -1 to go on.
  std::optional<int> report(bool final_report) { return print_report(build(final_report), format_, output_); }

  Output& output() { return output_; }

  // Between reports: sweeps the stack store every kReclaimPeriodS, so a
  // long -p run does not fill it with the stacks of freed blocks.
  void maintain() {
    if (monotonic_ns() - last_sweep_ns_ < static_cast<uint64_t>(kReclaimPeriodS * 1e9)) return;
    auto execs = read_exec_times(loader_.exec_fd());
    Aggregator referenced(monotonic_ns(), 0, false);
    Status st = execs ? read_current(*execs, referenced) : Status(execs.error());
    if (!st) {
      log_warn("stack store sweep: {}", st.error().message);
      last_sweep_ns_ = monotonic_ns();
      return;
    }
    reclaim_stacks(std::move(referenced).finish().referenced_stacks);
  }

 private:
  // Feeds the live map to `a`, deleting the blocks made before their
  // process exec'd (that address space is gone).
  Status read_current(const std::vector<uint64_t>& execs, Aggregator& a) {
    std::vector<uint64_t> stale;
    auto read = read_live(loader_.live_fd(), [&](const LiveAlloc* la, size_t n) {
      for (size_t i = 0; i < n; ++i) {
        const size_t slot = static_cast<size_t>(la[i].addr >> KLEAK_USER_SLOT_SHIFT) % KLEAK_USER_MAX_PIDS;
        if (la[i].a.ts_ns < execs[slot]) stale.push_back(la[i].addr);
        else a.add(la[i]);
      }
    });
    if (!read) return read.error();
    for (uint64_t key : stale) bpf_map_delete_elem(loader_.live_fd(), &key);
    exec_dropped_ += stale.size();
    return {};
  }

  // A failure is a warning: reports stay right, the store may fill (counted
  // as stack ENOMEM).
  void reclaim_stacks(const std::unordered_set<uint64_t>& referenced) {
    last_sweep_ns_ = monotonic_ns();
    auto r = reclaimer_.sweep(loader_.stacks_fd(), loader_.sites_fd(), referenced);
    if (!r) {
      log_warn("stack store sweep: {}", r.error().message);
      return;
    }
    ctx_.stacks_stored = reclaimer_.stored();
    ctx_.stacks_reclaimed = reclaimer_.reclaimed_total();
    if (r->reclaimed) log_info("stack store: {} stacks, {} reclaimed", r->stored, r->reclaimed);
  }

  void add_notes(Report& r, const std::vector<uint64_t>& extra) {
    std::string who;
    nlohmann::json procs = nlohmann::json::array();
    for (uint32_t pid : pids_) {
      bool up = alive(pid);
      who += fmt::format("{}{} ({}){}", who.empty() ? "" : ", ", pid, comms_[pid], up ? "" : ", exited");
      procs.push_back({{"pid", pid}, {"comm", comms_[pid]}, {"alive", up}});
    }
    r.notes.push_back(fmt::format("user space: {}; {} nested allocator calls counted once, {} entries lost "
                                  "(per-thread map full), {} partial munmaps, {} blocks dropped at exec",
                                  who, extra[KLEAK_UCNT_NESTED], extra[KLEAK_UCNT_INFLIGHT_FULL],
                                  extra[KLEAK_UCNT_UNMAP_PARTIAL], exec_dropped_));
    std::string shallow = shallow_stack_note(r);
    if (!shallow.empty()) r.notes.push_back(shallow);
    if (!syms_.unreadable().empty())
      r.notes.push_back(fmt::format("could not read symbols of {} (frames show addresses)",
                                    syms_.unreadable().front()));
    r.extra["user"] = {{"processes", procs},
                       {"nested_calls", extra[KLEAK_UCNT_NESTED]},
                       {"inflight_full", extra[KLEAK_UCNT_INFLIGHT_FULL]},
                       {"unmap_partial", extra[KLEAK_UCNT_UNMAP_PARTIAL]},
                       {"exec_dropped", exec_dropped_},
                       {"shallow_stacks", !shallow.empty()}};
    if (extra[KLEAK_UCNT_INFLIGHT_FULL] > 0) r.notes.push_back("allocations were lost: the report is incomplete");
  }

  const UserOptions& opts_;
  TraceOptions build_opts_;
  UserLoader& loader_;
  std::vector<uint32_t> pids_;
  FormatOptions format_;
  Output output_;
  ReportContext ctx_;
  StackReclaimer reclaimer_;
  uint64_t last_sweep_ns_ = monotonic_ns();
  GrowthTracker growth_;
  UserSymbolizer syms_;
  Ksyms no_ksyms_;  // the common pipeline resolves nothing; user_report does
  std::unordered_map<uint32_t, std::string> comms_;
  uint64_t exec_dropped_ = 0;
};

}  // namespace

namespace {

// How a run ended, and what a CI verdict makes of it.
struct RunEnd {
  std::string why;          // for -v: "command exited", "duration passed", a signal
  std::string interrupted;  // CI: why the run was cut short (a verdict of "incomplete"), or empty
  std::optional<int> rc;    // an exit status to return at once (an error), or none
};

// Traces until the command exits, --duration passes, every -p process is
// gone, a stop signal, or the last of --count reports (which is then
// printed as the final one: rc set).
RunEnd trace_until_done(const UserOptions& opts, UserSession& session, HeldCommand* command,
                        const sigset_t& signals) {
  const TraceOptions& ro = opts.report;
  ReportSchedule schedule(session.start_ns(), ro.interval_s, ro.count, ro.duration_s);
  constexpr uint64_t kMapsEveryNs = 1000000000ull;  // libraries loaded late, before the process goes
  uint64_t next_maps = session.start_ns() + kMapsEveryNs;
  auto at_exit = [&session](pid_t) { session.refresh_maps(); };
  for (;;) {
    if (command && command->poll(at_exit)) {
      if (!ro.quiet) fmt::print(stderr, "kleak user: the command exited with status {}\n", command->status());
      return {"command exited", {}, std::nullopt};
    }
    int sig = wait_until(signals, schedule.wake(next_maps));
    if (sig == SIGCHLD) continue;
    if (sig != 0) {
      release_stop_signals();
      return {strsignal(sig), fmt::format("interrupted by {}", strsignal(sig)), std::nullopt};
    }
    uint64_t now = monotonic_ns();
    if (schedule.deadline_passed(now)) {
      bool running = command && !command->poll(at_exit);
      return {"duration passed", running ? fmt::format("command still running after {} s", ro.duration_s) : "", std::nullopt};
    }
    if (now >= next_maps) {
      session.refresh_maps();
      next_maps = now + kMapsEveryNs;
      if (!command && !session.any_alive()) return {"every traced process exited", {}, std::nullopt};
    }
    if (!schedule.report_due(now)) {
      session.maintain();
      continue;
    }
    const bool last = schedule.next_is_last();
    if (auto rc = session.report(last); rc || last) return {"report count reached", {}, rc.value_or(kExitOk)};
    schedule.reported(monotonic_ns());
  }
}

// --ci: judges the final report; returns a CiExitCode.
int judge(const UserOptions& opts, UserSession& session, const std::set<std::string>& baseline,
          const RunEnd& end, const HeldCommand* command) {
  const TraceOptions& ro = opts.report;
  auto r = session.build(true, true);
  if (!r) {
    log_error("{}", r.error().message);
    return kCiIncomplete;
  }
  Verdict v;
  v.interrupted = end.interrupted;
  judge_report(*r, ro.ci, baseline, v);
  v.complete = r->complete;
  decide(v, ro.ci);
  CiRun run;
  run.tool = "kleak user --ci";
  run.testcase = "user";
  if (command) run.command_status = command->status();
  run.traced_s = run.elapsed_s = static_cast<double>(monotonic_ns() - session.start_ns()) / 1e9;
  return write_ci_verdict(*r, v, ro, run, session.output());
}

}  // namespace

int run_user(const UserOptions& opts) {
  const TraceOptions& ro = opts.report;
  const bool ci = ro.ci.enabled;
  // CI mode has a verdict's statuses (README "CI mode").
  const int usage_rc = ci ? int{kCiUsage} : int{kExitUsage};
  const int setup_rc = ci ? int{kCiUsage} : int{kExitFailure};  // --output, --baseline, the command
  const int cannot_rc = ci ? int{kCiUnsupported} : int{kExitFailure};  // privileges, attach
  log_set_level(ro.verbosity >= 2 ? LogLevel::debug : ro.verbosity == 1 ? LogLevel::info : LogLevel::warn);
  auto output = open_output(ro.output_path, ro.format);
  if (!output) {
    log_error("{}", output.error().message);
    return setup_rc;
  }
  auto loaded = load_baseline(ro.ci.baseline_path);
  if (!loaded) {
    log_error("{}", loaded.error().message);
    return kCiUsage;
  }
  const std::set<std::string> baseline = std::move(*loaded);
  if (auto why = check_privileges(); !why) {
    log_error("{}", why.error().message);
    return cannot_rc;
  }
  const sigset_t signals = block_stop_signals(SIGCHLD);
  HeldCommand command;
  std::vector<uint32_t> pids = opts.pids;
  const bool with_command = !opts.command.empty();
  if (with_command) {
    if (auto why = command.fork_held(opts.command); !why) {
      log_error("cannot start {}: {}", opts.command[0], why.error().message);
      return setup_rc;
    }
    if (!command.traced()) log_warn("cannot ptrace the command: frames of libraries it loads late may not resolve");
    pids = {static_cast<uint32_t>(command.pid())};
  }
  for (uint32_t pid : pids) {
    if (!alive(pid)) {
      log_error("no process {}", pid);
      return setup_rc;
    }
  }

  install_libbpf_logger();
  UserLoaderConfig cfg;
  cfg.min_size_bytes = ro.min_size_bytes;
  cfg.max_size_bytes = ro.max_size_bytes;
  cfg.max_allocs = ro.max_allocs;
  cfg.stack_storage_size = ro.stack_storage_size;
  cfg.stack_sample_every = ro.stack_sample_every;
  auto loader = UserLoader::create(cfg);
  if (!loader) {
    log_error("{}", loader.error().message);
    return cannot_rc;
  }
  for (uint32_t slot = 0; slot < pids.size(); ++slot) {
    // Before exec the child is a copy of kleak: the libc it maps is the one
    // a dynamically linked command gets too.
    std::string libc = mapped_libc(pids[slot]);
    if (libc.empty() && with_command) libc = system_libc();
    AllocatorLibs libs{opts.obj.empty() ? libc : opts.obj, libc};
    if (libs.alloc.empty()) {
      log_error("process {} maps no libc (statically linked?): name the allocator with --obj PATH", pids[slot]);
      return cannot_rc;
    }
    if (auto st = (*loader)->attach(slot, pids[slot], libs, opts.symbols_prefix); !st) {
      log_error("{}", st.error().message);
      return cannot_rc;
    }
  }
  UserSession session(opts, **loader, pids, std::move(*output));
  if (with_command) {
    if (auto why = command.start(); !why) {
      command.kill_and_reap();
      log_error("cannot run {}: {}", opts.command[0], why.error().message);
      return usage_rc;
    }
  }
  if (!ro.quiet) {
    std::string who;
    for (uint32_t p : pids) who += fmt::format("{}{} ({})", who.empty() ? "" : ", ", p, comm_of(p));
    if (with_command) who = fmt::format("`{}` (pid {})", fmt::join(opts.command, " "), pids[0]);
    std::string when = ci                 ? std::string("Verdict when it ends.")
                       : with_command     ? std::string("Final report when it exits or on Ctrl-C.")
                       : ro.duration_s > 0 ? fmt::format("Final report in {} s or on Ctrl-C.", ro.duration_s)
                                           : std::string("Ctrl-C for the final report.");
    fmt::print(stderr, "kleak user{}: tracing {} through {} probes. {}\n", ci ? " --ci" : "", who,
               (*loader)->attached().size(), when);
  }

  RunEnd end = trace_until_done(opts, session, with_command ? &command : nullptr, signals);
  if (end.rc) return *end.rc;
  log_info("{}: final report", end.why);
  if (ci) {
    command.kill_and_reap();  // cut short: judged as it stands (its status: 128 + SIGKILL)
    return judge(opts, session, baseline, end, with_command ? &command : nullptr);
  }
  return session.report(true).value_or(kExitOk);
}

}  // namespace kleak
