#include "commands/selftest.h"

#include <fcntl.h>
#include <linux/bpf.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <map>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "probe/bpf_load.h"
#include "util/cli.h"
#include "util/fd.h"
#include "symbols/ksyms.h"
#include "probe/load_matrix.h"
#include "probe/loader.h"
#include "util/log.h"
#include "util/privileges.h"
#include "report/report.h"
#include "util/sys.h"

namespace kleak {
namespace {

// One allocate/free pair the child can cause, and where kleak must see it.
struct Trigger {
  const char* family;
  std::vector<const char*> hooks;   // attach points it needs (labels as in Loader::attached)
  const char* what;                 // the trigger, for the matrix
  std::vector<uint32_t> record_families;  // enum kleak_family of the records
  std::vector<const char*> functions;     // one of them is in the record's stack (or is its call site)
  double free_timeout_s;
  bool by_call_site = false;  // match `functions` against the call site only: that object, not its neighbours
};

// free_timeout_s: a map is freed by a kernel worker after its last fd
// closes; an RCU callback waits a grace period, or up to 10 s with lazy
// RCU (CONFIG_RCU_LAZY, on no-callback CPUs).
const Trigger kTriggers[] = {
    {"kmalloc", {"kmem/kmalloc", "kmem/kfree"}, "SysV msgsnd/msgrcv of 4000 bytes", {KLEAK_FAMILY_KMALLOC},
     {"load_msg", "alloc_msg"}, 5, true},
    {"kmem_cache", {"kmem/kmem_cache_alloc", "kmem/kmem_cache_free"}, "pipe() files, closed",
     {KLEAK_FAMILY_KMEM_CACHE}, {"alloc_empty_file"}, 5},
    {"page", {"kmem/mm_page_alloc", "kmem/mm_page_free"}, "a page in a pipe, closed", {KLEAK_FAMILY_PAGE},
     {"pipe_write", "anon_pipe_write"}, 5},
    {"percpu", {"percpu/percpu_alloc_percpu", "percpu/percpu_free_percpu"}, "BPF per-CPU array, closed",
     {KLEAK_FAMILY_PERCPU}, {"array_map_alloc", "bpf_map_alloc_percpu"}, 5},
    {"vmalloc", {"vmalloc/alloc_vmap_area", "vmalloc/free_vmap_area_noflush"}, "1 MiB BPF array, closed",
     {KLEAK_FAMILY_VMALLOC}, {"array_map_alloc", "bpf_map_area_alloc"}, 5},
    {"rcu", {"kmem/kmalloc", "kmem/kfree"}, "SysV msgget, IPC_RMID (call_rcu free)",
     {KLEAK_FAMILY_KMALLOC, KLEAK_FAMILY_KMEM_CACHE}, {"newque"}, 12, true},
};

int bpf_map_create_raw(uint32_t type, uint32_t value_size, uint32_t max_entries) {
  union bpf_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.map_type = type;
  attr.key_size = 4;
  attr.value_size = value_size;
  attr.max_entries = max_entries;
  return static_cast<int>(syscall(__NR_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)));
}

// What the child holds between a trigger's allocation and its free.
struct ChildState {
  int queue = -1, rcu_queue = -1;
  Fd fds[2];

  void close_fds() {
    for (Fd& fd : fds) fd.reset();
  }
  int open_pipe() {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return errno;
    fds[0].reset(p[0]);
    fds[1].reset(p[1]);
    return 0;
  }
  // 0 or an errno: `fd` (or -1 with errno) kept as fds[0].
  int hold(int fd) {
    if (fd < 0) return errno;
    fds[0].reset(fd);
    return 0;
  }
  void cleanup() {
    close_fds();
    for (int q : {queue, rcu_queue})
      if (q >= 0) msgctl(q, IPC_RMID, nullptr);
  }

  // Returns 0 or an errno.
  int alloc(size_t i) {
    static char buf[sizeof(long) + 4096];
    switch (i) {
      case 0: {
        if ((queue = msgget(IPC_PRIVATE, IPC_CREAT | 0600)) < 0) return errno;
        long type = 1;
        std::memcpy(buf, &type, sizeof(type));
        return msgsnd(queue, buf, 4000, 0) == 0 ? 0 : errno;
      }
      case 1: return open_pipe();
      case 2: {
        if (int rc = open_pipe(); rc != 0) return rc;
        std::memset(buf, 'k', sizeof(buf));
        return write(fds[1].get(), buf, 4096) == 4096 ? 0 : errno;
      }
      case 3: return hold(bpf_map_create_raw(BPF_MAP_TYPE_PERCPU_ARRAY, 64, 1));
      case 4: return hold(bpf_map_create_raw(BPF_MAP_TYPE_ARRAY, 1024, 1024));
      case 5: return (rcu_queue = msgget(IPC_PRIVATE, IPC_CREAT | 0600)) >= 0 ? 0 : errno;
    }
    return EINVAL;
  }

  int release(size_t i) {
    switch (i) {
      case 0: return msgrcv(queue, buf_, 4000, 0, IPC_NOWAIT) >= 0 ? 0 : errno;
      case 5: {
        int rc = msgctl(rcu_queue, IPC_RMID, nullptr) == 0 ? 0 : errno;
        rcu_queue = -1;
        return rc;
      }
      default: close_fds(); return 0;
    }
  }
  char buf_[sizeof(long) + 4096];
};

// The trigger process: forked before kleak attaches (so it can be the only
// task traced), driven over two pipes: [op, index] in, an errno out. Exits
// at EOF after removing its queues.
class TriggerChild {
 public:
  ~TriggerChild() {
    // EOF on its command pipe ends the child's loop; then it is reaped.
    cmd_.reset();
    res_.reset();
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
  }

  std::string start() {
    int cmd[2], res[2];
    if (pipe2(cmd, O_CLOEXEC) != 0) return std::strerror(errno);
    Fd cmd_read(cmd[0]), cmd_write(cmd[1]);
    if (pipe2(res, O_CLOEXEC) != 0) return std::strerror(errno);
    Fd res_read(res[0]), res_write(res[1]);
    pid_ = fork();
    if (pid_ < 0) return std::strerror(errno);
    if (pid_ == 0) {
      cmd_write.reset();
      res_read.reset();
      // Before v5.11 a BPF map's memory counts against RLIMIT_MEMLOCK (not
      // the memcg), whose default is too small for the 1 MiB array: EPERM
      // (Debian's 5.10 under scripts/vmtest). libbpf raises it for kleak
      // itself; the triggers' maps are this child's own.
      const rlimit unlimited{RLIM_INFINITY, RLIM_INFINITY};
      setrlimit(RLIMIT_MEMLOCK, &unlimited);
      ChildState st;
      unsigned char op[2];
      while (read(cmd_read.get(), op, 2) == 2) {
        int rc = op[0] == 'a' ? st.alloc(op[1]) : st.release(op[1]);
        if (write(res_write.get(), &rc, sizeof(rc)) != sizeof(rc)) break;
      }
      st.cleanup();
      _exit(0);
    }
    cmd_ = std::move(cmd_write);
    res_ = std::move(res_read);
    return {};
  }

  // Asks the child to allocate ('a') or free ('f') for trigger i: 0 or an errno.
  int ask(char op, size_t i) {
    unsigned char msg[2] = {static_cast<unsigned char>(op), static_cast<unsigned char>(i)};
    int rc = EPIPE;
    if (write(cmd_.get(), msg, 2) != 2 || read(res_.get(), &rc, sizeof(rc)) != sizeof(rc)) return EPIPE;
    return rc;
  }

  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  Fd cmd_, res_;  // commands to the child, its answers
};

// Addresses of the child's records of `t`: right family, and a stack
// through one of its functions.
// Records under a page fault are left out: a first touch of a user page
// allocates memory that lives with the process (page tables, anon_vma),
// whatever syscall touched it.
std::map<std::pair<uint32_t, uint64_t>, uint64_t> find_records(Loader& l, const Ksyms& ksyms, const Trigger& t,
                                                              uint32_t tgid, std::string* error) {
  std::map<std::pair<uint32_t, uint64_t>, uint64_t> found;  // (family, addr) -> call site
  auto snap = take_snapshot(l.fds());
  if (!snap) {
    *error = snap.error().message;
    return found;
  }
  for (const LiveAlloc& la : snap->allocs) {
    if (la.a.tgid != tgid) continue;
    if (std::find(t.record_families.begin(), t.record_families.end(), la.a.family) == t.record_families.end())
      continue;
    std::vector<uint64_t> ips{la.a.call_site};
    if (la.a.stack_id != 0 && !t.by_call_site)
      if (auto s = read_stack(l.stacks_fd(), la.a.stack_id)) ips = *s;
    bool through = false, fault = false;
    for (uint64_t ip : ips) {
      auto sym = ksyms.resolve(ip);
      if (!sym) continue;
      fault |= sym->name == "exc_page_fault";
      for (const char* f : t.functions) through |= sym->name == f;
    }
    if (through && !fault) found.emplace(std::pair{la.a.family, la.addr}, la.a.call_site);
  }
  return found;
}

// The part of kleak a trigger's records come through (enum kleak_part).
uint32_t trigger_part(const Trigger& t) {
  uint32_t part = KLEAK_PART_CORE;
  for (uint32_t fam : t.record_families) part = std::max(part, family_part(fam));
  return t.record_families.size() > 1 ? uint32_t{KLEAK_PART_CORE} : part;
}

CoverageRow check(Loader& l, const Ksyms& ksyms, TriggerChild& child, size_t i) {
  const Trigger& t = kTriggers[i];
  CoverageRow row{t.family, "", t.what, Coverage::missed, 0, 0, 0, ""};
  for (const char* h : t.hooks) row.attach += (row.attach.empty() ? "" : ", ") + std::string(h);
  // Dropped by the loader: lacking on this kernel is a gap; refused by it
  // (the kernel has the attach point) is kleak not working here.
  for (const Degraded& d : l.degraded()) {
    if (d.part != part_name(trigger_part(t))) continue;
    row.result = d.refused ? Coverage::missed : Coverage::not_covered;
    row.detail = (d.refused ? "dropped: " : "") + d.reason;
    return row;
  }
  for (const char* h : t.hooks) {
    if (std::find(l.attached().begin(), l.attached().end(), h) == l.attached().end() &&
        row.result != Coverage::not_covered) {
      row.result = Coverage::not_covered;
      row.detail = fmt::format("this kernel has no {} tracepoint", h);
    }
  }
  if (row.result == Coverage::not_covered) return row;
  // Only what this trigger adds counts: earlier triggers' objects (a queue
  // kept for later, say) may match the same functions.
  const uint32_t tgid = static_cast<uint32_t>(child.pid());
  auto before = find_records(l, ksyms, t, tgid, &row.detail);
  if (int rc = child.ask('a', i); rc != 0) {
    row.result = Coverage::not_covered;
    row.detail = fmt::format("the trigger cannot run here: {}", std::strerror(rc));
    return row;
  }
  auto held = find_records(l, ksyms, t, tgid, &row.detail);
  for (const auto& [r, site] : before) held.erase(r);
  row.recorded = held.size();
  if (held.empty()) {
    if (row.detail.empty()) row.detail = "not recorded: the allocation did not reach kleak";
    (void)child.ask('f', i);
    return row;
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (int rc = child.ask('f', i); rc != 0) {
    row.detail = fmt::format("the trigger's free failed: {}", std::strerror(rc));
    return row;
  }
  const auto deadline = t0 + std::chrono::milliseconds(static_cast<int64_t>(t.free_timeout_s * 1000));
  size_t left = held.size();
  std::string sites;
  for (;;) {
    auto now_held = find_records(l, ksyms, t, tgid, &row.detail);
    left = 0;
    sites.clear();
    for (const auto& [r, site] : held) {
      if (!now_held.count(r)) continue;
      ++left;
      sites += (sites.empty() ? "" : ", ") + format_symbol(ksyms, site);
    }
    if (left == 0 || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  row.freed = held.size() - left;
  row.free_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (left == 0) {
    row.result = Coverage::ok;
  } else {
    row.detail = fmt::format("{} of {} records still live {:.0f} s after the free (allocated at {})", left,
                             held.size(), t.free_timeout_s, sites);
  }
  return row;
}

}  // namespace

bool SelftestReport::passed() const {
  return std::none_of(rows.begin(), rows.end(), [](const CoverageRow& r) { return r.result == Coverage::missed; });
}

const char* coverage_name(Coverage c) {
  switch (c) {
    case Coverage::ok: return "paired ok";
    case Coverage::not_covered: return "not covered";
    case Coverage::missed: return "missed";
  }
  return "?";
}

Result<SelftestReport> run_selftest_checks() {
  if (auto st = check_privileges(); !st) return Error{st.error().message, EPERM};
  install_libbpf_logger();
  TriggerChild child;
  if (auto why = child.start(); !why.empty()) return make_error("start the trigger process: " + why, 0);
  Ksyms ksyms;
  if (auto k = Ksyms::load()) ksyms = std::move(*k);
  else return make_error("selftest needs symbols: " + k.error().message, k.error().err);
  LoaderConfig cfg;
  cfg.self_tgid = static_cast<uint32_t>(getpid());
  cfg.target_tgid = static_cast<uint32_t>(child.pid());
  cfg.families = FamilySet{true, true, true, true};
  cfg.max_allocs = 4096;
  cfg.stack_storage_size = 1024;
  cfg.ksyms = &ksyms;
  auto loader = Loader::create(cfg);
  if (!loader) return loader.error();
  SelftestReport r;
  r.kernel = kernel_release();
  for (size_t i = 0; i < std::size(kTriggers); ++i) r.rows.push_back(check(**loader, ksyms, child, i));
  r.degraded = (*loader)->degraded();
  r.recursion = read_recursion_misses((*loader)->fds().progs);
  for (const auto& [prog, n] : r.recursion.by_program) log_info("recursion misses: {} {}", prog, n);
  return r;
}

std::string render_selftest_text(const SelftestReport& r) {
  std::string out = fmt::format("kleak selftest: kernel {}: one allocate/free pair per family, from a child process\n",
                                r.kernel);
  out += fmt::format("  {:<11} {:<58} {:<40} {}\n", "family", "attach point", "trigger", "result");
  for (const CoverageRow& row : r.rows) {
    std::string result = coverage_name(row.result);
    if (row.result == Coverage::ok)
      result += fmt::format(" ({} recorded, freed in {:.0f} ms)", row.recorded, row.free_ms);
    else if (!row.detail.empty())
      result += ": " + row.detail;
    out += fmt::format("  {:<11} {:<58} {:<40} {}\n", row.family, row.attach, row.trigger, result);
  }
  out += r.recursion.available
             ? fmt::format("  recursion: the kernel skipped {} program runs (recursion): up to {} frees may be missed\n",
                           r.recursion.total, r.recursion.total)
             : std::string("  recursion: this kernel does not report skipped program runs\n");
  if (!r.degraded.empty()) out += "  degraded: " + degraded_text(r.degraded) + "\n";
  size_t ok = 0, nc = 0;
  for (const CoverageRow& row : r.rows) {
    ok += row.result == Coverage::ok;
    nc += row.result == Coverage::not_covered;
  }
  out += fmt::format("selftest {}: {} paired ok, {} not covered on this kernel, {} missed\n",
                     r.passed() ? "passed" : "FAILED", ok, nc, r.rows.size() - ok - nc);
  return out;
}

nlohmann::json selftest_json(const SelftestReport& r) {
  nlohmann::json rows = nlohmann::json::array();
  for (const CoverageRow& row : r.rows) {
    rows.push_back({{"family", row.family},
                    {"attach", row.attach},
                    {"trigger", row.trigger},
                    {"result", row.result == Coverage::ok            ? "ok"
                               : row.result == Coverage::not_covered ? "not_covered"
                                                                     : "missed"},
                    {"recorded", row.recorded},
                    {"freed", row.freed},
                    {"free_ms", row.free_ms},
                    {"detail", row.detail.empty() ? nlohmann::json(nullptr) : nlohmann::json(row.detail)}});
  }
  nlohmann::json degraded = nlohmann::json::array();
  for (const Degraded& d : r.degraded) degraded.push_back({{"part", d.part}, {"reason", d.reason}});
  return {{"schema", "kleak/selftest/v1"},
          {"kernel", r.kernel},
          {"passed", r.passed()},
          {"degraded", degraded},
          {"recursion_misses", r.recursion.available ? nlohmann::json(r.recursion.total) : nlohmann::json(nullptr)},
          {"results", rows}};
}

namespace {

// --loads: every case of the load matrix, loaded in this process.
int run_load_matrix(const SelftestOptions& opts) {
  if (auto why = check_privileges(); !why) {
    log_error("selftest: {}", why.error().message);
    return kExitFailure;
  }
  install_libbpf_logger();
  const KernelGaps gaps = probe_kernel_gaps();
  std::vector<LoadOutcome> rows;
  {
    // Refusals are the matrix's results, not warnings of a run.
    QuietLibbpf quiet;
    const LogLevel level = log_level();
    if (level < LogLevel::info) log_set_level(LogLevel::error);
    for (const LoadCase& c : load_cases()) rows.push_back(run_load_case(c, gaps));
    log_set_level(level);
  }
  const std::string kernel = kernel_release();
  std::string out = opts.format == OutputFormat::json ? load_matrix_json(kernel, rows).dump() + "\n"
                                                      : render_load_matrix_text(kernel, rows);
  if (!write_stdout(out) && errno != EPIPE) {
    log_error("write selftest report: {}", std::strerror(errno));
    return kExitFailure;
  }
  bool passed = std::all_of(rows.begin(), rows.end(), [](const LoadOutcome& r) { return r.passed; });
  return passed ? kExitOk : kExitFailure;
}

}  // namespace

int run_selftest(const SelftestOptions& opts) {
  log_set_level(opts.verbosity >= 2 ? LogLevel::debug : opts.verbosity == 1 ? LogLevel::info : LogLevel::warn);
  if (opts.loads) return run_load_matrix(opts);
  auto r = run_selftest_checks();
  if (!r) {
    log_error("selftest: {}", r.error().message);
    return kExitFailure;
  }
  std::string out = opts.format == OutputFormat::json ? selftest_json(*r).dump() + "\n" : render_selftest_text(*r);
  if (!write_stdout(out) && errno != EPIPE) {
    log_error("write selftest report: {}", std::strerror(errno));
    return kExitFailure;
  }
  return r->passed() ? kExitOk : kExitFailure;
}

ParsedSelftestCommandLine parse_selftest_command_line(const std::vector<std::string>& args, std::ostream& out,
                                                      std::ostream& err) {
  SelftestOptions o;
  ParsedSelftestCommandLine result;
  CLI::App app{"kleak selftest: trigger one known allocate/free pair in every allocator family kleak traces\n"
               "(kmalloc, kmem_cache, page, percpu, vmalloc, an RCU-deferred free) and check each is recorded\n"
               "and paired. Prints a coverage matrix; exit 0 when passed, 1 when a family that should work\n"
               "here did not (or kleak cannot run), 2 on a usage error. Needs root.",
               "kleak selftest"};
  std::string format = "text";
  app.add_option("--format", format, "text or json")->check(CLI::IsMember({"text", "json"}));
  app.add_flag("--loads", o.loads,
               "Instead: load (never attach) every BPF program in every mode and family combination, and print "
               "which load, which this kernel refuses (program, mode, the verifier's last line) and what it lacks");
  app.add_flag("-v,--verbose", o.verbosity, "More logging (-vv: libbpf debug output)");
  if (auto status = parse_cli(app, args, "kleak selftest", out, err)) {
    result.exit_code = *status;
    return result;
  }
  o.format = format == "json" ? OutputFormat::json : OutputFormat::text;
  result.selftest = o;
  return result;
}

}  // namespace kleak
