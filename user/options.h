// Command-line options for `kleak [trace]`: parsed into one value struct and
// validated in one place. Units are in the names.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace kleak {

// Documented exit statuses (README "Exit status").
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,  // runtime failure: privileges, BTF, attach, I/O
  kExitUsage = 2,    // bad command line
};

enum class OutputFormat { text, json };

struct TraceOptions {
  // Report every interval_s seconds; 0 = only a final report.
  double interval_s = 0;
  // Stop after this many interval reports; 0 = no limit.
  uint64_t count = 0;
  // Stop after this many seconds and print a final report; 0 = until a signal.
  double duration_s = 0;
  uint32_t top = 10;
  // Allocations younger than this are not reported. The default covers
  // kfree_rcu()'s batching (KFREE_DRAIN_JIFFIES, 5 s since v6.0,
  // commit 51824b780b71) plus a
  // grace period and lazy RCU's 10 s flush, so RCU-deferred frees are not
  // reported as leaks.
  uint64_t min_age_ms = 10000;
  uint64_t min_size_bytes = 0;
  uint64_t max_size_bytes = std::numeric_limits<uint64_t>::max();
  uint32_t pid = 0;  // 0 = every task
  bool show_allocs = false;
  OutputFormat format = OutputFormat::text;
  int verbosity = 0;
  bool quiet = false;
  uint32_t max_allocs = 262144;
  uint32_t stack_storage_size = 16384;
  std::string btf_path;  // empty: the running kernel's /sys/kernel/btf/vmlinux
};

// Either options to run with, or a status to exit with at once (after --help,
// --version or a usage error, already printed to `out`/`err`).
struct ParsedCommandLine {
  std::optional<TraceOptions> trace;
  int exit_code = kExitOk;
};

// argv[0] is the program name. Prints help/version to `out`, errors to `err`.
ParsedCommandLine parse_command_line(const std::vector<std::string>& args, std::ostream& out,
                                     std::ostream& err);

// Empty when valid, else a one-line reason.
std::string validate(const TraceOptions& opts);

}  // namespace kleak
