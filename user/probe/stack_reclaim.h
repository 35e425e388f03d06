// Keeping the stack store from filling with dead stacks on long runs.
//
// kleak_stacks only grows in the kernel: a stack stays stored after the last
// allocation that used it is freed. Every report (and, on runs without
// interval reports, every kReclaimPeriodS) user space deletes the stacks no
// live allocation references. A stack must be unreferenced at two sweeps in
// a row before it goes: an allocation between its stack capture and its
// live-map insert is not in the snapshot, and neither is one inserted while
// the live map is being read. If one still slips through, the next
// allocation with the same stack stores it again under the same key (the key
// is a hash of the frames), and until then its report shows the stack as
// reclaimed (ENOENT).
#pragma once

#include <cstdint>
#include <unordered_set>

#include "util/result.h"

namespace kleak {

constexpr double kReclaimPeriodS = 30;

struct SweepResult {
  uint64_t stored = 0;     // stacks in the store before the sweep
  uint64_t reclaimed = 0;  // deleted by this sweep
};

class StackReclaimer {
 public:
  // `referenced`: every stack id the live map referenced in the snapshot just
  // taken. `sites_fd` (or -1): the sampled mode's call-site cache, cleared
  // when stacks were deleted, so no new allocation takes a deleted stack as
  // its hint.
  Result<SweepResult> sweep(int stacks_fd, int sites_fd, const std::unordered_set<uint64_t>& referenced);
  uint64_t reclaimed_total() const { return reclaimed_total_; }
  uint64_t stored() const { return stored_; }

 private:
  std::unordered_set<uint64_t> candidates_;  // unreferenced at the last sweep
  uint64_t reclaimed_total_ = 0;
  uint64_t stored_ = 0;
};

}  // namespace kleak
