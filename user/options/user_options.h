// Command-line options for `kleak user`: user-space leaks of chosen
// processes (-p) or of a command kleak starts (-c / --). Parsed into one
// value struct and validated in one place. The reporting options are those
// of `kleak trace` (TraceOptions), so reports are built the same way.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "options/options.h"

namespace kleak {

struct UserOptions {
  // Reporting and limits, as for kernel tracing (pid, cache, peek unused).
  TraceOptions report;
  std::vector<uint32_t> pids;        // -p PID[,PID...]
  std::vector<std::string> command;  // -c "CMD ARGS" or after --
  std::string obj;                   // --obj PATH: the allocator library; empty: the libc each process maps
  std::string symbols_prefix;        // --symbols-prefix: e.g. "je_" for a prefixed jemalloc
};

struct ParsedUserCommandLine {
  std::optional<UserOptions> user;
  int exit_code = kExitOk;
};

// args[0] is the program name ("kleak"), the "user" word already removed.
ParsedUserCommandLine parse_user_command_line(const std::vector<std::string>& args, std::ostream& out,
                                              std::ostream& err);

// Splits -c's string into words: blanks separate, '...' and "..." quote,
// backslash escapes. nullopt on an unterminated quote.
std::optional<std::vector<std::string>> split_command(const std::string& s);

// Whether the options are consistent; the error is a one-line reason.
Status validate(const UserOptions& opts);

}  // namespace kleak
