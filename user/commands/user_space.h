// `kleak user`: attach uprobes to the allocator of processes (-p) or of a
// command kleak starts (-c / --), report outstanding blocks by user stack
// every interval and at the end (Ctrl-C, --duration, the command's exit,
// every traced process gone).
#pragma once

#include "options/user_options.h"

namespace kleak {

// Returns the process exit status (see ExitCode): 0, 1 runtime failure,
// 2 usage (including a command that cannot be run).
int run_user(const UserOptions& opts);

}  // namespace kleak
