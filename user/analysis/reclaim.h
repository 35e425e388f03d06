// Prove by reclaim: what the kernel frees when asked to reclaim its caches
// (and to end loopback TCP connections waiting out TIME_WAIT) was owned by
// a cache or a timer (an inode's symlink target, a dentry's external name,
// a socket and its port's bind buckets), not leaked. Pure: the live sets
// come from the caller.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/records.h"

namespace kleak {

struct ReclaimTally {
  bool ran = false;      // reclaim was asked for and done
  std::string skipped;   // why not, when it was wanted but could not run
  uint64_t freed_stacks = 0;  // distinct stacks (call site without one) of what it freed
  uint64_t freed_count = 0;
  uint64_t freed_bytes = 0;
  double seconds = 0;    // from the request to the settled live set
  uint64_t time_wait_ended = 0;  // loopback TCP sockets in TIME_WAIT ended with it
};

// What of `before` is not in `after`: records are the same when both their
// address and their allocation time are (an address handed out again is
// another record). Fills the freed_* fields of `tally`.
void count_reclaimed(const std::vector<LiveAlloc>& before, const std::vector<LiveAlloc>& after, ReclaimTally& tally);

}  // namespace kleak
