// --peek: the contents of outstanding allocations, read in the kernel by
// kleak_peek_run (only live tracked allocations, at most their size). What
// a person reads in them is report/peek_text.h.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/abi.h"
#include "model/records.h"
#include "util/result.h"

namespace kleak {

// Runs the peek program over (address, length) requests, KLEAK_PEEK_SLOTS at
// a time. Addresses kleak does not track come back "gone", with no data.
Result<std::vector<PeekResult>> peek(int prog_fd, int map_fd, const std::vector<std::pair<uint64_t, uint32_t>>& reqs);

}  // namespace kleak
