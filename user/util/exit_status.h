// kleak's documented exit statuses (docs/usage.md "Exit status"), shared by every
// command.
#pragma once

namespace kleak {

// Documented exit statuses (docs/usage.md "Exit status").
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,  // runtime failure: privileges, BTF, attach, I/O
  kExitUsage = 2,    // bad command line
};

// In CI mode (--ci) the statuses are those of a test verdict instead.
enum CiExitCode : int {
  kCiPass = 0,         // no leak above the thresholds
  kCiLeak = 1,         // leak found
  kCiUsage = 2,        // bad command line, baseline file or command
  kCiIncomplete = 3,   // allocations were lost, or the run was cut short: no verdict
  kCiUnsupported = 4,  // cannot trace here: privileges, BTF, tracepoints (kselftest's skip)
};

}  // namespace kleak
