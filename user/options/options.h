// Command-line options for `kleak [trace]`: parsed into one value struct and
// validated in one place. Units are in the names.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

#include "analysis/growth.h"
#include "model/family.h"
#include "model/sampling.h"
#include "report/output.h"
#include "report/report.h"
#include "report/verdict.h"
#include "util/exit_status.h"
#include "util/http_server.h"

namespace kleak {

// `kleak --ci`: trace a command (or a duration), then judge what it left.
// The verdict rules (report/verdict.h) are its base: opts.ci.fail_on_bytes.
struct CiOptions : VerdictRules {
  bool enabled = false;
  std::vector<std::string> command;  // after "--"; empty: trace for --duration
  double settle_s = 10;              // after the command: wait for deferred (RCU) frees
  bool reclaim = true;               // prove by reclaim before judging (--no-reclaim: off)
  std::string baseline_path;          // earlier JSON report: its stacks are known, not new
  std::string report_json_path;
  std::string junit_path;
  std::string ktap_path;
};

// `kleak serve`: trace, and answer Prometheus scrapes of /metrics.
struct ServeOptions {
  bool enabled = false;
  std::string listen = "127.0.0.1:9745";  // ADDR:PORT, loopback unless listen_any
  bool listen_any = false;                // --listen-any: allow a non-loopback address
  double reclaim_every_s = 600;           // --reclaim-every: with --reclaim, seconds between reclaims
};

// What a report shows (top, sort, age, peek: report/report.h) is its base:
// opts.top, opts.min_age_ms.
struct TraceOptions : ReportSettings {
  // Report every interval_s seconds; 0 = only a final report.
  double interval_s = 0;
  // Stop after this many interval reports; 0 = no limit.
  uint64_t count = 0;
  // Stop after this many seconds and print a final report; 0 = until a signal.
  double duration_s = 0;
  uint64_t min_size_bytes = 0;
  uint64_t max_size_bytes = std::numeric_limits<uint64_t>::max();
  FamilySet families;  // --family: slab only by default
  bool selftest = false;  // --selftest: run `kleak selftest` first, stop if it fails
  bool reclaim = false;   // --reclaim: prove by reclaim before the final report
  std::string cache;  // --cache NAME, as slabtop shows it; empty = every cache
  std::string output_path;  // --output FILE; empty = stdout
  OutputFormat format = OutputFormat::text;
  bool folded_count = false;  // --folded-count: folded lines count allocations, not bytes
  int verbosity = 0;
  bool quiet = false;
  uint32_t max_allocs = 262144;
  uint32_t stack_storage_size = 8192;
  // 1: every allocation gets its own stack (exact). N > 1 (--low-overhead:
  // kLowOverheadSampleEvery): stacks are captured for each call site's
  // first allocation on a CPU and then one in N; per-stack totals are
  // estimated from them, per-call-site totals stay exact.
  uint32_t stack_sample_every = 1;
  // --stack-cache: the verified stack cache (bpf/stack_cache.bpf.h), a
  // KLEAK_SC_* of bpf/kleak.h: on (default), off, or verify (also walk
  // every cached stack and count mismatches: for tests and benchmarks).
  uint32_t stack_cache = 1;
  // What the command line named (--stack-cache MODE, --family NAME; not
  // --family all): a part the kernel refuses is dropped with a warning,
  // one named here is an error instead.
  bool stack_cache_named = false;
  FamilySet families_named{false, false, false, false};
  std::string btf_path;  // empty: the running kernel's /sys/kernel/btf/vmlinux
  std::string vmlinux_path;  // --vmlinux: DWARF for source lines; empty: the usual places
  CiOptions ci;
  ServeOptions serve;
};

// Either options to run with, or a status to exit with at once (after --help,
// --version or a usage error, already printed to `out`/`err`).
struct ParsedCommandLine {
  std::optional<TraceOptions> trace;
  int exit_code = kExitOk;
};

enum class CommandKind { trace, serve };

// The format a command's options ask for (report/output.h).
FormatOptions format_options(const TraceOptions& opts);

// argv[0] is the program name. Prints help/version to `out`, errors to `err`.
// CommandKind::serve adds `kleak serve`'s options (--listen, --listen-any).
ParsedCommandLine parse_command_line(const std::vector<std::string>& args, std::ostream& out,
                                     std::ostream& err, CommandKind command = CommandKind::trace);

// Whether the options are consistent; the error is a one-line reason.
Status validate(const TraceOptions& opts);

// The option definitions `kleak trace` shares with `kleak start` and `kleak
// report` (pin_options.cpp), so each option means the same everywhere.
// Options parsed as text first, then applied by apply_option_strings.
struct OptionStrings {
  std::optional<uint64_t> exact_size;  // --size
  std::string format = "text";
  std::string sort = "score";
  std::string peek_addr;
  bool low_overhead = false;  // --low-overhead: stack_sample_every = kLowOverheadSampleEvery
  std::string families = "slab";  // --family
  std::string stack_cache;  // --stack-cache: TraceOptions::stack_cache; empty: not given (on)
};
// -p, -z, -Z, --size, --cache: filters that run in the kernel.
void add_selection_options(CLI::App& app, TraceOptions& o, OptionStrings& s);
// --older (min_age_ms) under the given CLI11 names, e.g. "-o,--older".
void add_age_option(CLI::App& app, TraceOptions& o, const std::string& names);
// -T, --sort, -a, --hide-addresses, --peek*, -q; with_format: --format,
// --folded-count, --output (kleak serve has neither: it always serves
// prometheus).
void add_report_options(CLI::App& app, TraceOptions& o, OptionStrings& s, bool with_format = true);
// --format, --folded-count, --output; `what` names the records counted
// ("allocations", "blocks"). In the caller's help group.
void add_output_options(CLI::App& app, TraceOptions& o, OptionStrings& s, const std::string& what);
// --max-allocs, --stack-storage-size, --low-overhead, --stack-sample; `what`
// names a record in the help ("allocation", "block"). In the caller's help group.
void add_map_size_options(CLI::App& app, TraceOptions& o, OptionStrings& s, const std::string& what);
// Those and --btf, in the "Limits" group.
void add_limit_options(CLI::App& app, TraceOptions& o, OptionStrings& s);
void add_verbose_option(CLI::App& app, TraceOptions& o);
// --reclaim (o.reclaim), done `when` ("Before the final report", "Before
// the report", ...). In the caller's help group.
void add_reclaim_option(CLI::App& app, TraceOptions& o, const std::string& when);
// The verdict options every CI mode has: --fail-on-bytes, --fail-on-count,
// --baseline, --ignore, --report-json, --junit, --ktap (in the caller's
// HelpGroup).
void add_ci_verdict_options(CLI::App& app, CiOptions& ci);
// Applies `s` to `o`; the error is the one-line reason `s` is invalid. top_given: -T was on the
// command line (else folded and pprof show every stack).
Status apply_option_strings(TraceOptions& o, const OptionStrings& s, bool top_given);

}  // namespace kleak
