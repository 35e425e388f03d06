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
#include "pipeline/pipeline.h"
#include "pipeline/report_schedule.h"
#include "pipeline/run_loop.h"
#include "commands/session.h"
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

// kleak user's records: the uprobe tracer's live map, read without the
// blocks of address spaces an exec replaced, named through each traced
// process's maps and ELF files.
class UserSource : public LiveSource {
 public:
  UserSource(UserLoader& loader, std::vector<uint32_t> pids) : loader_(loader), pids_(std::move(pids)) {
    refresh_maps();
  }

  const BpfHandles& handles() const override { return loader_; }
  Symbolizer& symbolizer() override { return syms_; }
  Status prepare() override {
    refresh_maps();
    return {};
  }
  Status read(Aggregator& a) override {
    auto execs = read_exec_times(loader_.exec_fd());
    if (!execs) return execs.error();
    return read_current(*execs, a);
  }
  Status annotate(Report& r) override {
    auto extra = read_user_counters(loader_.extra_counters_fd());
    if (!extra) return extra.error();
    strip_user_keys(r);
    add_notes(r, *extra);
    if ((*extra)[KLEAK_UCNT_INFLIGHT_FULL] > 0) r.complete = false;
    return {};
  }

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

  UserLoader& loader_;
  std::vector<uint32_t> pids_;
  UserSymbolizer syms_;
  std::unordered_map<uint32_t, std::string> comms_;
  uint64_t exec_dropped_ = 0;
};

using UserSession = Session<UserSource>;

constexpr PipelineStages kUserStages{.growth = true, .reconcile = false, .sweep = true, .min_age_ms = std::nullopt};

}  // namespace

namespace {

// Traces until the command exits, --duration passes, every -p process is
// gone, a stop signal, or the last of --count reports (printed as the
// final one: rc set).
RunEnd trace_until_done(const UserOptions& opts, UserSession& session, HeldCommand* command,
                        const sigset_t& signals) {
  const TraceOptions& ro = opts.report;
  ReportSchedule schedule(session.pipeline().start_ns(), ro.interval_s, ro.count, ro.duration_s);
  UserSource& source = session.source();
  RunHooks hooks;
  hooks.report = [&session](bool last) { return session.report(last); };
  hooks.maintain = [&session] { session.pipeline().maintain(); };
  hooks.command = command;
  hooks.at_exit = [&source](pid_t) { source.refresh_maps(); };
  // Without interval reports (a command, or -d), growth samples while it
  // runs, so the final report has rates: at the sampler's pace (a 1 s tick
  // gave a 5 s run 5 points, not 20).
  GrowthSampler sampler(session.pipeline(), ro.duration_s);
  const bool sample = ro.interval_s <= 0;
  constexpr uint64_t kMapsEveryNs = 1000000000ull;
  hooks.tick_ns = sample ? GrowthSampler::kTickNs : kMapsEveryNs;
  uint64_t maps_read_ns = 0;
  hooks.tick = [&source, &sampler, command, sample, &maps_read_ns]() -> std::optional<std::string> {
    // Libraries loaded late are read before the process goes: once a second.
    if (const uint64_t now = monotonic_ns(); now - maps_read_ns >= kMapsEveryNs) {
      source.refresh_maps();
      maps_read_ns = now;
    }
    if (!command && !source.any_alive()) return "every traced process exited";
    if (sample) sampler.due();
    return std::nullopt;
  };
  RunEnd end = run_until_done(signals, schedule, ro.duration_s, hooks);
  if (end.why == RunEnd::Why::command_exited && !ro.quiet)
    fmt::print(stderr, "kleak user: the command exited with status {}\n", command->status());
  return end;
}

// --ci: judges the final report; returns a CiExitCode.
int judge(const UserOptions& opts, UserSession& session, const std::set<std::string>& baseline,
          const RunEnd& end, const HeldCommand* command) {
  const TraceOptions& ro = opts.report;
  Verdict v;
  v.interrupted = end.interrupted;
  CiRun run;
  run.tool = "kleak user --ci";
  run.testcase = "user";
  if (command) run.command_status = command->status();
  return judge_final_report(session.pipeline(), ro, baseline, v, run, session.output());
}

}  // namespace

namespace {

// CI mode has a verdict's statuses (docs/ci.md "CI mode").
struct UserStatuses {
  int usage, setup, cannot;  // bad options; --output, --baseline, the command; privileges, attach
  explicit UserStatuses(bool ci)
      : usage(ci ? int{kCiUsage} : int{kExitUsage}),
        setup(ci ? int{kCiUsage} : int{kExitFailure}),
        cannot(ci ? int{kCiUnsupported} : int{kExitFailure}) {}
};

// The processes to trace: the named pids, or the command's, forked held.
std::optional<int> targets(const UserOptions& opts, const UserStatuses& rcs, HeldCommand& command,
                           std::vector<uint32_t>& pids) {
  pids = opts.pids;
  if (!opts.command.empty()) {
    if (auto why = command.fork_held(opts.command); !why) {
      log_error("cannot start {}: {}", opts.command[0], why.error().message);
      return rcs.setup;
    }
    if (!command.traced()) log_warn("cannot ptrace the command: frames of libraries it loads late may not resolve");
    pids = {static_cast<uint32_t>(command.pid())};
  }
  for (uint32_t pid : pids) {
    if (!alive(pid)) {
      log_error("no process {}", pid);
      return rcs.setup;
    }
  }
  return std::nullopt;
}

Result<std::unique_ptr<UserLoader>> load_and_attach(const UserOptions& opts, const std::vector<uint32_t>& pids) {
  const TraceOptions& ro = opts.report;
  install_libbpf_logger();
  UserLoaderConfig cfg;
  cfg.min_size_bytes = ro.min_size_bytes;
  cfg.max_size_bytes = ro.max_size_bytes;
  cfg.max_allocs = ro.max_allocs;
  cfg.stack_storage_size = ro.stack_storage_size;
  cfg.stack_sample_every = ro.stack_sample_every;
  auto loader = UserLoader::create(cfg);
  if (!loader) return loader;
  for (uint32_t slot = 0; slot < pids.size(); ++slot) {
    // Before exec the child is a copy of kleak: the libc it maps is the one
    // a dynamically linked command gets too.
    std::string libc = mapped_libc(pids[slot]);
    if (libc.empty() && !opts.command.empty()) libc = system_libc();
    AllocatorLibs libs{opts.obj.empty() ? libc : opts.obj, libc};
    if (libs.alloc.empty())
      return Error{fmt::format("process {} maps no libc (statically linked?): name the allocator with --obj PATH",
                               pids[slot])};
    if (auto st = (*loader)->attach(slot, pids[slot], libs, opts.symbols_prefix); !st) return st.error();
  }
  return loader;
}

void print_user_banner(const UserOptions& opts, const std::vector<uint32_t>& pids, size_t probes) {
  const TraceOptions& ro = opts.report;
  const bool ci = ro.ci.enabled, with_command = !opts.command.empty();
  std::string who;
  for (uint32_t p : pids) who += fmt::format("{}{} ({})", who.empty() ? "" : ", ", p, comm_of(p));
  if (with_command) who = fmt::format("`{}` (pid {})", fmt::join(opts.command, " "), pids[0]);
  std::string when = ci                 ? std::string("Verdict when it ends.")
                     : with_command     ? std::string("Final report when it exits or on Ctrl-C.")
                     : ro.duration_s > 0 ? fmt::format("Final report in {} s or on Ctrl-C.", ro.duration_s)
                                         : std::string("Ctrl-C for the final report.");
  fmt::print(stderr, "kleak user{}: tracing {} through {} probes. {}\n", ci ? " --ci" : "", who, probes, when);
}

}  // namespace

int run_user(const UserOptions& opts) {
  const TraceOptions& ro = opts.report;
  const bool ci = ro.ci.enabled;
  const UserStatuses rcs(ci);
  log_set_level(ro.verbosity >= 2 ? LogLevel::debug : ro.verbosity == 1 ? LogLevel::info : LogLevel::warn);
  auto output = open_output(ro.output_path, ro.format);
  if (!output) {
    log_error("{}", output.error().message);
    return rcs.setup;
  }
  auto loaded = load_baseline(ro.ci.baseline_path);
  if (!loaded) {
    log_error("{}", loaded.error().message);
    return kCiUsage;
  }
  const std::set<std::string> baseline = std::move(*loaded);
  if (auto why = check_privileges(); !why) {
    log_error("{}", why.error().message);
    return rcs.cannot;
  }
  const sigset_t signals = block_stop_signals(SIGCHLD);
  HeldCommand command;
  std::vector<uint32_t> pids;
  if (auto rc = targets(opts, rcs, command, pids)) return *rc;
  const bool with_command = !opts.command.empty();
  auto loader = load_and_attach(opts, pids);
  if (!loader) {
    log_error("{}", loader.error().message);
    return rcs.cannot;
  }
  UserSession session(opts.report, kUserStages, std::nullopt, std::move(*output), **loader, pids);
  session.pipeline().describe(ro.min_size_bytes, ro.max_size_bytes, "");
  if (with_command) {
    if (auto why = command.start(); !why) {
      command.kill_and_reap();
      log_error("cannot run {}: {}", opts.command[0], why.error().message);
      return rcs.usage;
    }
  }
  if (!ro.quiet) print_user_banner(opts, pids, (*loader)->attached().size());

  RunEnd end = trace_until_done(opts, session, with_command ? &command : nullptr, signals);
  if (end.rc) return *end.rc;
  log_info("{}: final report", end.what);
  if (ci) {
    command.kill_and_reap();  // cut short: judged as it stands (its status: 128 + SIGKILL)
    return judge(opts, session, baseline, end, with_command ? &command : nullptr);
  }
  return session.report(true).value_or(kExitOk);
}

}  // namespace kleak
