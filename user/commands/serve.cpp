#include "commands/serve.h"
#include "util/clock.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstring>

#include "report/pprof.h"
#include "report/prometheus.h"
#include "util/http_server.h"
#include "util/log.h"
#include "util/privileges.h"
#include "probe/snapshot.h"
#include "util/sys.h"
#include "commands/trace.h"
#include "pipeline/pipeline.h"
#include "pipeline/reclaim.h"

namespace kleak {
namespace {

// serve --reclaim: how long the live set may take to settle.
constexpr double kServeReclaimSettleS = 10;
// How often serve looks for modules loaded since (KernelSource::poll_modules).
constexpr uint64_t kModulePollNs = 1000000000;

constexpr const char* kIndex =
    "kleak serve: outstanding kernel allocations\n"
    "  /metrics             Prometheus metrics\n"
    "  /debug/pprof/kleak   the live set as a pprof profile (go tool pprof, Parca, Pyroscope)\n";
constexpr const char* kProfilePath = "/debug/pprof/kleak";

// Answers scrapes until a stop signal or --duration; with --reclaim,
// proves by reclaim between them. The exit status.
int serve_until_stopped(HttpServer& server, const sigset_t& stop_set, Pipeline& pipeline, KernelSource& source,
                        const TraceOptions& opts, const std::string& url) {
  const BpfHandles& handles = source.handles();
  // --reclaim: proved by reclaim every --reclaim-every, between scrapes
  // (never inside one: it takes seconds); the first one that long after
  // the start, when the live set holds the machine's churn.
  const auto reclaim_step = static_cast<uint64_t>(opts.serve.reclaim_every_s * 1e9);
  uint64_t next_reclaim = opts.reclaim ? pipeline.start_ns() + reclaim_step : 0;
  bool stopped = false;
  uint64_t scrapes = 0;
  auto handler = [&](const HttpRequest& req) -> HttpResponse {
    std::string path = req.target.substr(0, req.target.find('?'));
    if (path == "/") return {200, "text/plain; charset=utf-8", kIndex};
    if (path != "/metrics" && path != kProfilePath)
      return {404, "text/plain; charset=utf-8", fmt::format("not found: try /metrics or {}\n", kProfilePath)};
    // Either one is a report of the live set now: what a profile store
    // scrapes, at its own pace (a `seconds` parameter is not waited for).
    auto r = pipeline.next(false);
    if (!r) {
      log_error("scrape: {}", r.error().message);
      return {500, "text/plain; charset=utf-8", r.error().message + "\n"};
    }
    ++scrapes;
    if (path == kProfilePath) {
      auto profile = render_pprof(*r);
      if (!profile) return {500, "text/plain; charset=utf-8", profile.error().message + "\n"};
      return {200, "application/octet-stream", std::move(*profile)};
    }
    return {200, "text/plain; version=0.0.4; charset=utf-8", render_prometheus(*r)};
  };
  const uint64_t deadline =
      opts.duration_s > 0 ? pipeline.start_ns() + static_cast<uint64_t>(opts.duration_s * 1e9) : 0;
  const auto poll_modules = kernel_tick(source, nullptr);
  int sig = 0;
  for (;;) {
    // Wakes every second to name the modules loaded since, and to let
    // maintain() sweep the stack store when its period has passed (as
    // trace does between reports), so stacks freed between scrapes do not
    // fill it.
    uint64_t wake = monotonic_ns() + kModulePollNs;
    if (deadline && deadline < wake) wake = deadline;
    if (next_reclaim && next_reclaim < wake) wake = next_reclaim;
    sig = server.serve(stop_set, wake, handler);
    poll_modules();
    if (sig != 0 || (deadline && monotonic_ns() >= deadline)) break;
    if (next_reclaim && monotonic_ns() >= next_reclaim) {
      ReclaimTally t;
      std::string cut = prove_by_reclaim(handles, stop_set, kServeReclaimSettleS, t);
      pipeline.set_reclaim(t);
      if (!cut.empty()) {  // a stop signal while it settled
        log_info("{}", cut);
        stopped = true;
        break;
      }
      log_info("reclaim freed {} bytes in {} allocations", t.freed_bytes, t.freed_count);
      next_reclaim = monotonic_ns() + reclaim_step;
    }
    pipeline.maintain();
  }
  if (sig < 0) {
    log_error("serve {}: {}", url, std::strerror(-sig));
    return kExitFailure;
  }
  log_info("{} after {} scrapes: detaching", sig ? strsignal(sig) : stopped ? "stopped" : "--duration", scrapes);
  return kExitOk;
}

}  // namespace

int run_serve(const TraceOptions& opts) {
  log_set_level(opts.verbosity >= 2 ? LogLevel::debug : opts.verbosity == 1 ? LogLevel::info : LogLevel::warn);
  auto addr = parse_listen_address(opts.serve.listen);
  if (!addr) {  // validate() checked it: only a caller that skipped it gets here
    log_error("--listen {}: not ADDR:PORT", opts.serve.listen);
    return kExitUsage;
  }
  if (auto why = check_privileges(); !why) {
    log_error("{}", why.error().message);
    return kExitFailure;
  }
  // Blocked before anything is attached: a Ctrl-C at any point ends in a
  // clean detach. The server reads them from a signalfd.
  const sigset_t stop_set = block_stop_signals();
  // Before attaching: a port in use is a one-line error, no BPF loaded.
  auto server = HttpServer::listen(*addr);
  if (!server) {
    log_error("{}", server.error().message);
    return kExitFailure;
  }
  auto config = loader_config(opts);
  if (!config) {
    log_error("{}", config.error().message);
    return kExitUsage;
  }
  auto tracer = attach_tracer(*config);
  if (!tracer) {
    log_error("{}", tracer.error().message);
    return kExitFailure;
  }
  KernelSource source(*tracer->loader, std::move(tracer->ksyms));
  if (!use_debug_info(opts, source)) return kExitUsage;  // lines in /debug/pprof/kleak
  Pipeline pipeline(opts, source);
  pipeline.describe(*config);
  const std::string url = addr->ipv6 ? fmt::format("http://[{}]:{}/metrics", addr->host, server->port())
                                     : fmt::format("http://{}:{}/metrics", addr->host, server->port());
  if (!opts.quiet)
    fmt::print(stderr, "kleak: tracing {} allocations at most; serving {} until Ctrl-C\n", config->max_allocs, url);

  return serve_until_stopped(*server, stop_set, pipeline, source, opts, url);
}

}  // namespace kleak
