// `kleak trace`: attach, report every interval, print a final report on
// Ctrl-C / SIGTERM / --duration / the last count, detach.
#pragma once

#include "options.h"

namespace kleak {

// Returns the process exit status (see ExitCode).
int run_trace(const TraceOptions& opts);

}  // namespace kleak
