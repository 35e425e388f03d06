#include "user_trace.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <bpf/bpf.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "abi.h"
#include "aggregate.h"
#include "growth.h"
#include "ksyms.h"
#include "loader.h"
#include "log.h"
#include "privileges.h"
#include "report.h"
#include "snapshot.h"
#include "spawn.h"
#include "sys.h"
#include "uprobe_loader.h"
#include "user_report.h"
#include "usyms.h"

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
      : opts_(opts), loader_(loader), pids_(std::move(pids)), output_(std::move(output)) {
    build_opts_ = opts.report;
    build_opts_.hide_addresses = false;  // symbolize first, hide after
    ctx_.kernel = kernel_release();
    ctx_.interval_s = opts.report.interval_s;
    ctx_.start_mono_ns = monotonic_ns();
    ctx_.live_capacity = loader.live_capacity();
    ctx_.stack_capacity = loader.stack_capacity();
    ctx_.attached = loader.attached();
    ctx_.missing = loader.missing();
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

  // Prints one report. Returns an exit status to stop with, or -1 to go on.
  int report(bool final_report) {
    ++ctx_.seq;
    ctx_.final_report = final_report;
    refresh_maps();
    auto snap = snapshot_info(loader_.fds());
    if (!snap) {
      log_error("{}", snap.error().message);
      return kExitFailure;
    }
    auto execs = read_exec_times(loader_.exec_fd());
    auto extra = read_user_counters(loader_.extra_counters_fd());
    if (!execs || !extra) {
      log_error("{}", !execs ? execs.error().message : extra.error().message);
      return kExitFailure;
    }
    Aggregator aggregator(snap->mono_ns, opts_.report.min_age_ms * 1000000ull, opts_.report.show_allocs);
    std::vector<uint64_t> stale;
    auto read = read_live(loader_.live_fd(), [&](const LiveAlloc* a, size_t n) {
      for (size_t i = 0; i < n; ++i) {
        const size_t slot = static_cast<size_t>(a[i].addr >> KLEAK_USER_SLOT_SHIFT) % KLEAK_USER_MAX_PIDS;
        // Made before its process exec'd: that address space is gone.
        if (a[i].a.ts_ns < (*execs)[slot]) stale.push_back(a[i].addr);
        else aggregator.add(a[i]);
      }
    });
    if (!read) {
      log_error("{}", read.error().message);
      return kExitFailure;
    }
    for (uint64_t key : stale) bpf_map_delete_elem(loader_.live_fd(), &key);
    exec_dropped_ += stale.size();
    Aggregate agg = std::move(aggregator).finish();
    growth_.observe(static_cast<double>(snap->mono_ns - ctx_.start_mono_ns) / 1e9, agg);
    rank_groups(agg, opts_.report.sort, growth_);
    int fd = loader_.stacks_fd();
    Report r = build_report(*snap, agg, build_opts_, ctx_, no_ksyms_,
                            [fd](uint64_t id) { return read_stack(fd, id); },
                            ctx_.seq > 1 ? &growth_ : nullptr);  // one report has no trend
    r.opts = &opts_.report;
    symbolize_user_report(r, syms_, opts_.report.hide_addresses);
    add_notes(r, *extra);
    std::string out = opts_.report.format == OutputFormat::json
                          ? to_json(r).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"
                          : render_text(r) + "\n";
    if (!output_.write(out)) {
      if (errno == EPIPE) return kExitOk;
      log_error("write report{}: {}", output_.path().empty() ? "" : " to " + output_.path(), std::strerror(errno));
      return kExitFailure;
    }
    return -1;
  }

 private:
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
  Output output_;
  ReportContext ctx_;
  GrowthTracker growth_;
  UserSymbolizer syms_;
  Ksyms no_ksyms_;  // the common pipeline resolves nothing; user_report does
  std::unordered_map<uint32_t, std::string> comms_;
  uint64_t exec_dropped_ = 0;
};

}  // namespace

int run_user(const UserOptions& opts) {
  const TraceOptions& ro = opts.report;
  log_set_level(ro.verbosity >= 2 ? LogLevel::debug : ro.verbosity == 1 ? LogLevel::info : LogLevel::warn);
  auto output = Output::open(ro.output_path);
  if (!output) {
    log_error("{}", output.error().message);
    return kExitFailure;
  }
  if (auto why = missing_privileges(); !why.empty()) {
    log_error("{}", why);
    return kExitFailure;
  }
  const sigset_t signals = block_stop_signals(SIGCHLD);
  HeldCommand command;
  std::vector<uint32_t> pids = opts.pids;
  const bool with_command = !opts.command.empty();
  if (with_command) {
    if (auto why = command.fork_held(opts.command); !why.empty()) {
      log_error("cannot start {}: {}", opts.command[0], why);
      return kExitFailure;
    }
    if (!command.traced()) log_warn("cannot ptrace the command: frames of libraries it loads late may not resolve");
    pids = {static_cast<uint32_t>(command.pid())};
  }
  for (uint32_t pid : pids) {
    if (!alive(pid)) {
      log_error("no process {}", pid);
      return kExitFailure;
    }
  }

  install_libbpf_logger();
  UserLoaderConfig cfg;
  cfg.min_size_bytes = ro.min_size_bytes;
  cfg.max_size_bytes = ro.max_size_bytes;
  cfg.max_allocs = ro.max_allocs;
  cfg.stack_storage_size = ro.stack_storage_size;
  auto loader = UserLoader::create(cfg);
  if (!loader) {
    log_error("{}", loader.error().message);
    return kExitFailure;
  }
  for (uint32_t slot = 0; slot < pids.size(); ++slot) {
    // Before exec the child is a copy of kleak: the libc it maps is the one
    // a dynamically linked command gets too.
    std::string libc = mapped_libc(pids[slot]);
    if (libc.empty() && with_command) libc = system_libc();
    AllocatorLibs libs{opts.obj.empty() ? libc : opts.obj, libc};
    if (libs.alloc.empty()) {
      log_error("process {} maps no libc (statically linked?): name the allocator with --obj PATH", pids[slot]);
      return kExitFailure;
    }
    if (auto st = (*loader)->attach(slot, pids[slot], libs, opts.symbols_prefix); !st) {
      log_error("{}", st.error().message);
      return kExitFailure;
    }
  }
  UserSession session(opts, **loader, pids, std::move(*output));
  if (with_command) {
    if (auto why = command.start(); !why.empty()) {
      command.kill_and_reap();
      log_error("cannot run {}: {}", opts.command[0], why);
      return kExitUsage;
    }
  }
  if (!ro.quiet) {
    std::string who;
    for (uint32_t p : pids) who += fmt::format("{}{} ({})", who.empty() ? "" : ", ", p, comm_of(p));
    if (with_command) who = fmt::format("`{}` (pid {})", fmt::join(opts.command, " "), pids[0]);
    fmt::print(stderr, "kleak user: tracing {} through {} probes. {}\n", who, (*loader)->attached().size(),
               with_command ? std::string("Final report when it exits or on Ctrl-C.")
               : ro.duration_s > 0 ? fmt::format("Final report in {} s or on Ctrl-C.", ro.duration_s)
                                   : std::string("Ctrl-C for the final report."));
  }

  const uint64_t start = session.start_ns();
  const uint64_t deadline = ro.duration_s > 0 ? start + static_cast<uint64_t>(ro.duration_s * 1e9) : 0;
  const uint64_t step = ro.interval_s > 0 ? static_cast<uint64_t>(ro.interval_s * 1e9) : 0;
  constexpr uint64_t kMapsEveryNs = 1000000000ull;  // libraries loaded late, before the process goes
  uint64_t next = step ? start + step : 0;
  uint64_t next_maps = start + kMapsEveryNs;
  uint64_t reports = 0;
  auto at_exit = [&session](pid_t) { session.refresh_maps(); };
  auto finish = [&](const std::string& why) {
    log_info("{}: final report", why);
    int rc = session.report(true);
    return rc < 0 ? kExitOk : rc;
  };
  for (;;) {
    if (with_command && command.poll(at_exit)) {
      if (!ro.quiet) fmt::print(stderr, "kleak user: the command exited with status {}\n", command.status());
      return finish("command exited");
    }
    uint64_t wake = next_maps;
    if (next) wake = std::min(wake, next);
    if (deadline) wake = std::min(wake, deadline);
    int sig = wait_until(signals, wake);
    if (sig == SIGCHLD) continue;
    if (sig != 0) {
      release_stop_signals();
      return finish(strsignal(sig));
    }
    uint64_t now = monotonic_ns();
    if (deadline && now >= deadline) return finish("duration passed");
    if (now >= next_maps) {
      session.refresh_maps();
      next_maps = now + kMapsEveryNs;
      if (!with_command && !session.any_alive()) return finish("every traced process exited");
    }
    if (next && now >= next) {
      ++reports;
      bool last = ro.count > 0 && reports >= ro.count;
      if (int rc = session.report(last); rc >= 0) return rc;
      if (last) return kExitOk;
      while (next <= monotonic_ns()) next += step;
    }
  }
}

}  // namespace kleak
