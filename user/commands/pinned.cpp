#include "commands/pinned.h"
#include "util/clock.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "symbols/ksyms.h"
#include "report/output.h"
#include "probe/loader.h"
#include "util/log.h"
#include "probe/pin.h"
#include "util/privileges.h"
#include "procfs/procfs.h"
#include "probe/snapshot.h"
#include "util/sys.h"
#include "commands/trace.h"
#include "version.h"

namespace kleak {
namespace {

// A pinned tracer outlives `kleak start`, whose pid another process may get:
// exclude no process (tgids stay below PID_MAX_LIMIT, 2^22). Allocations a
// `kleak report` makes are freed before it exits.
constexpr uint32_t kNoTask = std::numeric_limits<uint32_t>::max();

// Where `kleak report` keeps the session's growth history between runs
// (bpffs holds no plain files): each report adds a point, so the second
// report on has rates and verdicts. `kleak stop` removes it.
constexpr const char* kHistoryDir = "/run/kleak";
constexpr const char* kHistoryPath = "/run/kleak/pinned-growth";

// The history's first line: the session it belongs to.
std::string history_tag(const PinMeta& meta) {
  return fmt::format("kleak-growth 1 {} {} {}", meta.boot_id, meta.start_mono_ns, meta.start_pid);
}

// The meminfo fields the reconciliation line compares against.
constexpr const char* kMeminfoFields[] = {"Slab", "SUnreclaim", "SReclaimable"};

// Privileges and bpffs: what every pinned command needs. Empty, or why not.
Status environment_problem() {
  if (auto st = check_privileges(); !st) return st;
  return bpffs_problem();
}

// What `kleak report` needs to know of the session `start` pins.
PinMeta pin_meta(const PinOptions& p, const LoaderConfig& cfg, const Loader& loader) {
  PinMeta meta;
  meta.version = kVersion;
  meta.abi = abi_fingerprint();
  meta.boot_id = current_boot_id();
  meta.kernel = kernel_release();
  meta.start_mono_ns = monotonic_ns();
  meta.start_unix_ns = realtime_ns();
  meta.start_pid = static_cast<uint32_t>(getpid());
  meta.args = p.args;
  meta.min_size_bytes = cfg.min_size_bytes;
  meta.max_size_bytes = cfg.max_size_bytes;
  meta.pid = cfg.target_tgid;
  meta.cache = cfg.cache_label;
  meta.max_allocs = cfg.max_allocs;
  meta.stack_storage_size = cfg.stack_storage_size;
  meta.stack_sample_every = cfg.stack_sample_every;
  meta.attached = loader.attached();
  meta.missing = loader.missing();
  meta.degraded = loader.degraded();
  if (auto mi = load_meminfo())
    for (const char* f : kMeminfoFields)
      if (auto v = mi->get(f)) meta.meminfo[f] = *v;
  return meta;
}

// bpffs mounted at kBpffsRoot, or mounted there with --mount-bpffs.
Status ensure_bpffs(bool mount) {
  auto why = bpffs_problem();
  if (why) return why;
  if (!mount) return why;
  if (auto failed = mount_bpffs(); !failed) return failed;
  log_info("mounted bpffs at {}", kBpffsRoot);
  return {};
}

int start(const PinOptions& p) {
  const TraceOptions& opts = p.trace;
  if (auto why = check_privileges(); !why) {
    log_error("{}", why.error().message);
    return kExitFailure;
  }
  if (auto why = ensure_bpffs(p.mount_bpffs); !why) {
    log_error("{}", why.error().message);
    return kExitFailure;
  }
  // Ctrl-C while pinning would leave a half-built directory: take the
  // signals synchronously (and ignore them) until start is done.
  block_stop_signals();
  remove_stale_sessions();
  if (session_exists()) {
    auto meta = read_pin_meta(session_dir());
    std::string since = meta ? fmt::format(" (started by kleak {}, pid {})", meta->version, meta->start_pid) : "";
    log_error("a kleak session is already pinned at {}{}: use kleak report, or kleak stop first", session_dir(),
              since);
    return kPinSessionState;
  }
  auto config = loader_config(opts);
  if (!config) {
    log_error("{}", config.error().message);
    return kExitUsage;
  }
  LoaderConfig cfg = *config;
  cfg.self_tgid = kNoTask;
  install_libbpf_logger();
  auto loader = Loader::create(cfg);
  if (!loader) {
    log_error("{}", loader.error().message);
    return kExitFailure;
  }
  const PinMeta meta = pin_meta(p, cfg, **loader);
  if (auto st = pin_session((*loader)->skeleton(), meta); !st) {
    if (st.error().err == EEXIST || st.error().err == ENOTEMPTY) {
      log_error("a kleak session is already pinned at {} (another kleak start won): use kleak report, or kleak "
                "stop first",
                session_dir());
      return kPinSessionState;
    }
    log_error("{}", st.error().message);
    return kExitFailure;
  }
  if (!opts.quiet) {
    std::string what;
    for (const auto& a : meta.attached) what += (what.empty() ? "" : ", ") + a;
    fmt::print(stderr,
               "kleak: tracing {} (up to {} live allocations), pinned at {}. It keeps tracing after this exits: "
               "`kleak report` shows what is outstanding, `kleak stop` ends it.\n",
               what, cfg.max_allocs, session_dir());
  }
  return kExitOk;  // the Loader closes its fds; the pins keep everything
}

// Opens the pinned session for report or stop. The error's err says what
// kind of failure it is: ENOENT no session, ESTALE one this kleak cannot
// read (session_status() turns them into exit statuses).
Result<std::unique_ptr<PinnedSession>> open_session() {
  if (auto st = environment_problem(); !st) return st.error();
  remove_stale_sessions();
  const std::string dir = session_dir();
  const Error missing{fmt::format("no kleak session is pinned at {} (kleak start pins one)", dir), ENOENT};
  if (!session_exists()) return missing;
  auto session = PinnedSession::open(dir);
  if (!session) {
    if (session.error().err == ENOENT && !session_exists()) return missing;  // stopped meanwhile
    return Error{session.error().message + " (kleak stop --force removes the session)", ESTALE};
  }
  if (auto why = pin_incompatibility((*session)->meta(), kVersion, abi_fingerprint(), current_boot_id()); !why)
    return Error{why.error().message + " (use that kleak, or kleak stop --force to remove the session)", ESTALE};
  return session;
}

// The exit status of an open_session() failure.
int session_status(const Error& e) {
  if (e.err == ENOENT) return kPinSessionState;
  if (e.err == ESTALE) return kPinIncompatible;
  return kExitFailure;
}

// One report from the session, as kleak trace prints them.
int report_from(const PinnedSession& session, const PinOptions& p, bool final_report) {
  TraceOptions opts = p.trace;
  const PinMeta& meta = session.meta();
  opts.pid = meta.pid;
  auto output = open_output(opts.output_path, opts.format);
  if (!output) {
    log_error("{}", output.error().message);
    return kExitFailure;
  }
  if ((opts.peek_bytes > 0 || opts.peek_addr != 0) && geteuid() != 0) {
    log_error("--peek shows kernel memory: root only");
    return kExitFailure;
  }
  TraceStart start{meta.start_mono_ns, std::nullopt};
  if (!meta.meminfo.empty()) {
    Meminfo mi;
    mi.bytes = meta.meminfo;
    start.meminfo = std::move(mi);
  }
  LoaderConfig filters;
  filters.min_size_bytes = meta.min_size_bytes;
  filters.max_size_bytes = meta.max_size_bytes;
  filters.cache_label = meta.cache;
  Ksyms ksyms;
  if (auto k = Ksyms::load()) ksyms = std::move(*k);
  else log_warn("{}: frames will be raw addresses", k.error().message);
  if (mkdir(kHistoryDir, 0700) != 0 && errno != EEXIST)
    log_warn("{}: no growth history kept", make_error(std::string("create ") + kHistoryDir, errno).message);
  const HistoryFile history{kHistoryPath, history_tag(meta)};
  return report_once(opts, session, start, filters, std::move(ksyms), std::move(*output), final_report, &history);
}

int report(const PinOptions& p) {
  auto session = open_session();
  if (!session) {
    log_error("{}", session.error().message);
    return session_status(session.error());
  }
  return report_from(**session, p, false);
}

int stop(const PinOptions& p) {
  auto session = open_session();
  const std::string dir = session_dir();
  if (!session && !(p.force && session_status(session.error()) == kPinIncompatible)) {
    log_error("{}", session.error().message);
    return session_status(session.error());
  }
  if (session && p.report) {
    if (int rc = report_from(**session, p, true); rc != kExitOk) return rc;
  }
  // Out of sight first, so a report started now finds no session; then
  // unpin. A stop killed in between leaves kleak-old-PID for the next one.
  const std::string doomed = fmt::format("{}/kleak-old-{}", kBpffsRoot, getpid());
  if (rename(dir.c_str(), doomed.c_str()) != 0) {
    log_error("{}", make_error("move " + dir + " to " + doomed, errno).message);
    return kExitFailure;
  }
  if (auto st = unpin_session(doomed); !st) {
    log_error("{}", st.error().message);
    return kExitFailure;
  }
  std::remove(kHistoryPath);
  if (!p.trace.quiet) fmt::print(stderr, "kleak: session stopped: programs detached, {} removed\n", dir);
  return kExitOk;
}

}  // namespace

int run_pinned(const PinOptions& p) {
  const int v = p.trace.verbosity;
  log_set_level(v >= 2 ? LogLevel::debug : v == 1 ? LogLevel::info : LogLevel::warn);
  switch (p.command) {
    case PinCommand::start: return start(p);
    case PinCommand::report: return report(p);
    case PinCommand::stop: return stop(p);
  }
  return kExitUsage;
}

}  // namespace kleak
