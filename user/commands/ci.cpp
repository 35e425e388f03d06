#include "commands/ci.h"
#include "util/clock.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include <fmt/format.h>

#include "analysis/aggregate.h"
#include "analysis/reclaim.h"
#include "procfs/sock_diag.h"
#include "pipeline/pipeline.h"
#include "pipeline/run_loop.h"
#include "commands/ci_report.h"
#include "probe/loader.h"
#include "util/fd.h"
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

// Opens a TCP connection to itself on 127.0.0.1; with `burst`, sends up to
// 4 MiB through it and reads it back. Best effort: any failure ends it.
void loopback_exchange(bool burst) {
  Fd listener(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (!listener.valid() || bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener.get(), 1) != 0 || getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return;
  Fd client(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!client.valid() || connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return;
  Fd server(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!server.valid()) return;
  // Small writes, unread until the socket is full: many buffers out at
  // once drain the per-CPU cache, so each buffer in it is handed out again.
  static char buf[1024];
  if (!burst) return;
  if (fcntl(client.get(), F_SETFL, O_NONBLOCK) != 0) return;
  for (int i = 0; i < 4096 && write(client.get(), buf, sizeof(buf)) > 0; ++i) {
  }
  if (fcntl(server.get(), F_SETFL, O_NONBLOCK) != 0) return;
  while (read(server.get(), buf, sizeof(buf)) > 0) {
  }
}

// Runs a short process on every online CPU and waits for them. Two kinds of
// deferred release need other work on a CPU before they happen:
// - an exited process's mm stays referenced as the lazy-TLB active_mm of
//   an idle CPU until that CPU runs another user task (so its mm_struct is
//   not freed);
// - objects freed in bulk (kmem_cache_free_bulk: maple-tree nodes at
//   exit_mmap, kvfree_rcu batches) pass no tracepoint; the slab hands
//   their addresses out again first (LIFO freelists), and an allocation at
//   a recorded address proves that record freed (see kleak.bpf.c).
// - network buffers: socket buffer heads freed in softirq go to a per-CPU
//   cache (the NAPI skb cache) and back to the slab in bulk, unseen.
// The processes map and unmap memory and push data through a loopback TCP
// connection, which allocates from those caches.
void run_on_every_cpu() {
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  std::vector<pid_t> kids;
  for (long cpu = 0; cpu < ncpu && cpu < CPU_SETSIZE; ++cpu) {
    pid_t pid = fork();
    if (pid < 0) break;
    if (pid == 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(static_cast<int>(cpu), &set);
      sched_setaffinity(0, sizeof(set), &set);
      for (int i = 0; i < 64; ++i) {
        void* p = mmap(nullptr, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) munmap(p, 1 << 16);
      }
      // Several connections: each takes a socket and a port's bind buckets,
      // handing out again addresses freed in bulk (kfree_rcu batches).
      for (int i = 0; i < 8; ++i) loopback_exchange(i == 0);
      _exit(0);
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) waitpid(pid, nullptr, 0);
}

uint64_t count_live(const std::vector<int>& live_fds) {
  uint64_t n = 0;
  for (int fd : live_fds) (void)read_live(fd, [&n](const LiveAlloc*, size_t k) { n += k; });
  return n;
}

// Waits until `deadline_ns` for SIGINT or SIGTERM (returned), passing over
// the SIGCHLDs of run_on_every_cpu()'s children; 0 at the deadline.
int wait_for_stop_until(const sigset_t& signals, uint64_t deadline_ns) {
  for (;;) {
    int sig = wait_until(signals, deadline_ns);
    if (sig == SIGINT || sig == SIGTERM) return sig;
    if (monotonic_ns() >= deadline_ns) return 0;
  }
}

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


std::vector<LiveAlloc> live_records(const BpfHandles& handles) {
  std::vector<LiveAlloc> out;
  for (int fd : handles.live_fds()) (void)read_live(fd, [&out](const LiveAlloc* r, size_t n) {
    out.insert(out.end(), r, r + n);
  });
  return out;
}

// Prove by reclaim: asks the kernel to free what its dentry and inode
// caches hold unused (drop_caches 2, after a sync so that dirty inodes can
// go too) and to end the TCP connections between loopback addresses that
// wait out TIME_WAIT (procfs/sock_diag.h), waits for the frees that follow
// through RCU, and counts what of the live set went: cache-owned (a fast
// symlink's target kept with its inode, a dentry's external name, a socket
// and its bind buckets held for 60 s by a timer), not a leak. The live set settles when
// it is empty or has not changed for a second, at most settle_s.
constexpr uint64_t kKfreeRcuDrainNs = 6000000000ull;  // KFREE_DRAIN_JIFFIES (5 s) and a margin

void prove_by_reclaim(const BpfHandles& handles, const sigset_t& signals, double settle_s, Verdict& v) {
  const std::vector<LiveAlloc> before = live_records(handles);
  if (before.empty()) return;  // nothing to prove: the caches stay
  const uint64_t start = monotonic_ns();
  sync();
  if (auto st = write_knob("/proc/sys/vm/drop_caches", "2"); !st) {
    v.reclaim.skipped = st.error().message;
    log_warn("no reclaim before the verdict ({}): reclaimable caches are judged by the rules alone",
             st.error().message);
    return;
  }
  // Settled when what is left of `before` has not changed for a second
  // (others' new allocations do not count), or nothing is left.
  const uint64_t end = start + static_cast<uint64_t>(settle_s * 1e9);
  uint64_t last = 0;
  int unchanged = 0;
  bool time_wait = true;
  while (unchanged < 4) {
    run_on_every_cpu();
    // After the churn, whose own connections may share a port's bucket.
    if (time_wait) {
      if (auto ended = end_loopback_time_wait()) {
        v.reclaim.time_wait_ended += *ended;
      } else {
        log_info("loopback TIME_WAIT sockets left to their timers: {}", ended.error().message);
        time_wait = false;
      }
    }
    int sig = wait_for_stop_until(signals, std::min<uint64_t>(end, monotonic_ns() + 250000000ull));
    if (sig == SIGINT || sig == SIGTERM) {
      v.interrupted = fmt::format("interrupted by {} during reclaim", strsignal(sig));
      release_stop_signals();
      break;
    }
    count_reclaimed(before, live_records(handles), v.reclaim);
    unchanged = v.reclaim.freed_count == last ? unchanged + 1 : 0;
    last = v.reclaim.freed_count;
    if (last == before.size() || monotonic_ns() >= end) break;
    // An ended socket's bind buckets go back through kfree_rcu, whose
    // batches drain every 5 s: wait that out before calling it settled.
    if (v.reclaim.time_wait_ended > 0 && monotonic_ns() < start + kKfreeRcuDrainNs) unchanged = 0;
  }
  v.reclaim.ran = true;
  v.reclaim.seconds = static_cast<double>(monotonic_ns() - start) / 1e9;
  count_reclaimed(before, live_records(handles), v.reclaim);
  log_info("reclaim: {} of {} records freed ({} bytes, {} stacks) in {:.2f} s", v.reclaim.freed_count, before.size(),
           v.reclaim.freed_bytes, v.reclaim.freed_stacks, v.reclaim.seconds);
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
  // One report, judged: no history, no stack sweeps. With a command every
  // record is the command's, and it is over: all that is left counts. With
  // --duration, the usual age threshold applies.
  PipelineStages stages{.growth = false, .reconcile = false, .sweep = false, .min_age_ms = std::nullopt};
  if (with_command) stages.min_age_ms = 0;
  KernelSource source(*tracer->loader, std::move(tracer->ksyms));
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
  Verdict v;
  v.interrupted = run_until_done(signals, schedule, opts.duration_s, hooks).interrupted;
  if (with_command) command.kill_and_reap();
  const uint64_t traced_ns = monotonic_ns() - start;
  if (with_command && v.interrupted.empty()) settle(*tracer->loader, signals, ci.settle_s, v);
  if (ci.reclaim && v.interrupted.empty()) prove_by_reclaim(*tracer->loader, signals, ci.settle_s, v);

  CiRun run;
  run.tool = "kleak --ci";
  if (with_command) run.command_status = command.status();
  run.traced_s = static_cast<double>(traced_ns) / 1e9;
  return judge_final_report(pipeline, opts, *baseline, v, run, *output);
}

}  // namespace kleak
