// `kleak --ci`: run a workload under tracing (or trace for --duration), wait
// for deferred frees, and return a test verdict as the exit status.
#pragma once

#include "options/options.h"

namespace kleak {

// Returns a CiExitCode.
int run_ci(const TraceOptions& opts);

}  // namespace kleak
