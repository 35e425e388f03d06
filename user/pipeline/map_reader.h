// A tracer's live maps, read in batches, into an Aggregator: the first
// step of every report.
#pragma once

#include <vector>

#include "analysis/aggregate.h"
#include "util/result.h"

namespace kleak {

// Feeds every entry of the live map (read in batches) to `a`.
Status aggregate_map(int live_fd, Aggregator& a);
// The same for several live maps (one per family traced).
Status aggregate_maps(const std::vector<int>& live_fds, Aggregator& a);

}  // namespace kleak
