// `kleak triage`: which memory grows? Samples /proc at an interval for a
// duration (or until SIGINT/SIGTERM), then prints what grew and the kleak
// command to run next. No BPF, no privileges needed (root adds slabinfo and
// every process).
#pragma once

#include "options/triage_options.h"

namespace kleak {

// Returns the process exit status (see ExitCode).
int run_triage(const TriageOptions& opts);

}  // namespace kleak
