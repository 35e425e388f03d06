// Pinned mode: `kleak start` leaves the tracer running in the kernel and
// exits, `kleak report` reports from it (any number of times, from new
// processes), `kleak stop` ends it. See pin.h for what is pinned where.
#pragma once

#include "options/pin_options.h"

namespace kleak {

// Returns the process exit status (ExitCode, PinExitCode).
int run_pinned(const PinOptions& opts);

}  // namespace kleak
