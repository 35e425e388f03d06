// `kleak trace`: attach, report every interval, print a final report on
// Ctrl-C / SIGTERM / --duration / the last count, detach.
#pragma once

#include <memory>

#include "options/options.h"
#include "pipeline/pipeline.h"
#include "probe/handles.h"
#include "probe/loader.h"
#include "report/output.h"
#include "symbols/ksyms.h"
#include "util/result.h"

namespace kleak {

// Returns the process exit status (see ExitCode).
int run_trace(const TraceOptions& opts);

// Where a report made by another process than the tracer's keeps its
// growth history (Pipeline::load_history), and whose history it is.
struct HistoryFile {
  std::string path;
  std::string tag;
};

// Writes one report from `handles` as `kleak trace` writes its reports (every
// --format), with the filters `filters` states; growth verdicts from the
// history in `history` (which it extends), none without; with --reclaim,
// proves by reclaim first. Returns the exit status.
int report_once(const TraceOptions& opts, const BpfHandles& handles, const TraceStart& start,
                const LoaderConfig& filters, Ksyms ksyms, Output output, bool final_report,
                const HistoryFile* history = nullptr);

// Gives `source` the source lines of kernel frames: --vmlinux, else the
// usual places for the running kernel, and the modules' .ko files. False
// (the error logged; exit kExitUsage) for a --vmlinux that cannot be used;
// a vmlinux not found costs the lines alone, said at -v.
bool use_debug_info(const TraceOptions& opts, KernelSource& source);

// What attaching gives a run loop: the programs and the symbolizer.
struct Tracer {
  std::unique_ptr<Loader> loader;
  Ksyms ksyms;  // empty (raw addresses) when /proc/kallsyms is unreadable
};

// --selftest: runs the self-test, prints its matrix on stderr; false when a
// family that should work here did not (or kleak cannot run).
bool selftest_passed();

// What every tracing run checks before it loads anything: privileges, root
// for --peek, --selftest. False (each reason logged) when it cannot go on.
bool ready_to_trace(const TraceOptions& opts);

// The loader settings `opts` asks for; kleak's own process is never traced.
// Fails (a usage error) when --cache names no cache of this kernel.
Result<LoaderConfig> loader_config(const TraceOptions& opts);

// Opens, loads and attaches; loads kallsyms (a warning if it cannot); hands
// the memory of parsing both back to the system.
Result<Tracer> attach_tracer(const LoaderConfig& config);

}  // namespace kleak
