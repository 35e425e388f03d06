// `kleak trace`: attach, report every interval, print a final report on
// Ctrl-C / SIGTERM / --duration / the last count, detach.
#pragma once

#include <memory>
#include <optional>

#include "ksyms.h"
#include "loader.h"
#include "options.h"
#include "procfs.h"
#include "report.h"
#include "result.h"
#include "sys.h"

namespace kleak {

// Returns the process exit status (see ExitCode).
int run_trace(const TraceOptions& opts);

// When tracing began, for a report made by another process than the one
// that attached (kleak report on a pinned session).
struct TraceStart {
  uint64_t mono_ns = 0;            // CLOCK_MONOTONIC, the clock of kleak_alloc.ts_ns
  std::optional<Meminfo> meminfo;  // /proc/meminfo then, for the reconciliation line
};

// Prints one report from `handles`, exactly as `kleak trace` prints its
// reports, with the filters `filters` states. Returns the exit status.
int report_once(const TraceOptions& opts, const BpfHandles& handles, const TraceStart& start,
                const LoaderConfig& filters, Ksyms ksyms, Output output, bool final_report);

// What attaching gives a run loop: the programs and the symbolizer.
struct Tracer {
  std::unique_ptr<Loader> loader;
  Ksyms ksyms;  // empty (raw addresses) when /proc/kallsyms is unreadable
};

// --selftest: runs the self-test, prints its matrix on stderr; false when a
// family that should work here did not (or kleak cannot run).
bool selftest_passed();

// The loader settings `opts` asks for; kleak's own process is never traced.
// Fails (a usage error) when --cache names no cache of this kernel.
Result<LoaderConfig> loader_config(const TraceOptions& opts);

// The filters a report states, from the loader settings.
void describe_filters(const LoaderConfig& config, ReportContext& ctx);

// Opens, loads and attaches; loads kallsyms (a warning if it cannot); hands
// the memory of parsing both back to the system.
Result<Tracer> attach_tracer(const LoaderConfig& config);

}  // namespace kleak
