#include "analysis/reclaim.h"

#include <unordered_set>

namespace kleak {
namespace {

struct RecordId {
  uint64_t addr, ts_ns;
  bool operator==(const RecordId&) const = default;
};

struct RecordIdHash {
  size_t operator()(const RecordId& r) const { return std::hash<uint64_t>()(r.addr * 0x9e3779b97f4a7c15ull ^ r.ts_ns); }
};

}  // namespace

void count_reclaimed(const std::vector<LiveAlloc>& before, const std::vector<LiveAlloc>& after, ReclaimTally& tally) {
  std::unordered_set<RecordId, RecordIdHash> still;
  still.reserve(after.size());
  for (const LiveAlloc& la : after) still.insert({la.addr, la.a.ts_ns});
  std::unordered_set<uint64_t> stacks;
  tally.freed_count = tally.freed_bytes = 0;
  for (const LiveAlloc& la : before) {
    if (still.count({la.addr, la.a.ts_ns})) continue;
    ++tally.freed_count;
    tally.freed_bytes += la.a.bytes_alloc;
    // A stack, or for a record without one its call site (tagged apart).
    stacks.insert(la.a.stack_id ? la.a.stack_id : la.a.call_site ^ (1ull << 63));
  }
  tally.freed_stacks = stacks.size();
}

}  // namespace kleak
