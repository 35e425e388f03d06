#include "pipeline/reclaim.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>

#include <fmt/format.h>

#include "probe/snapshot.h"
#include "procfs/sock_diag.h"
#include "util/clock.h"
#include "util/fd.h"
#include "util/log.h"
#include "util/sys.h"

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
  // Closed with a reset, not into TIME_WAIT: the sockets reclaim ends are
  // then others' only, and it waits for their bind buckets only when
  // there were some.
  const linger reset{1, 0};
  for (int fd : {client.get(), server.get()}) setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
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

}  // namespace

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

std::string prove_by_reclaim(const BpfHandles& handles, const sigset_t& signals, double settle_s, ReclaimTally& t) {
  const std::vector<LiveAlloc> before = live_records(handles);
  if (before.empty()) return {};  // nothing to prove: the caches stay
  const uint64_t start = monotonic_ns();
  sync();
  if (auto st = write_knob("/proc/sys/vm/drop_caches", "2"); !st) {
    t.skipped = st.error().message;
    log_warn("no reclaim ({}): reclaimable caches are judged by the rules alone", st.error().message);
    return {};
  }
  // Settled when what is left of `before` has not changed for a second
  // (others' new allocations do not count), or nothing is left.
  const uint64_t end = start + static_cast<uint64_t>(settle_s * 1e9);
  uint64_t last = 0;
  int unchanged = 0;
  bool time_wait = true;
  std::string interrupted;
  while (unchanged < 4) {
    run_on_every_cpu();
    // After the churn, whose own connections may share a port's bucket.
    if (time_wait) {
      if (auto ended = end_loopback_time_wait()) {
        t.time_wait_ended += *ended;
      } else {
        log_info("loopback TIME_WAIT sockets left to their timers: {}", ended.error().message);
        time_wait = false;
      }
    }
    int sig = wait_for_stop_until(signals, std::min<uint64_t>(end, monotonic_ns() + 250000000ull));
    count_reclaimed(before, live_records(handles), t);  // also what an interrupted wait leaves
    if (sig == SIGINT || sig == SIGTERM) {
      interrupted = fmt::format("interrupted by {} during reclaim", strsignal(sig));
      release_stop_signals();
      break;
    }
    unchanged = t.freed_count == last ? unchanged + 1 : 0;
    last = t.freed_count;
    if (last == before.size() || monotonic_ns() >= end) break;
    // An ended socket's bind buckets go back through kfree_rcu, whose
    // batches drain every 5 s: wait that out before calling it settled.
    if (t.time_wait_ended > 0 && monotonic_ns() < start + kKfreeRcuDrainNs) unchanged = 0;
  }
  t.ran = true;
  t.seconds = static_cast<double>(monotonic_ns() - start) / 1e9;
  log_info("reclaim: {} of {} records freed ({} bytes, {} stacks) in {:.2f} s", t.freed_count, before.size(),
           t.freed_bytes, t.freed_stacks, t.seconds);
  return interrupted;
}

}  // namespace kleak
