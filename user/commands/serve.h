// `kleak serve`: trace like `kleak trace`, and answer Prometheus scrapes of
// /metrics with the prometheus format (format_prometheus.h). Each scrape is
// one report: a snapshot of the maps, which also feeds the growth rates.
#pragma once

#include "options/options.h"

namespace kleak {

// Returns the process exit status (see ExitCode).
int run_serve(const TraceOptions& opts);

}  // namespace kleak
