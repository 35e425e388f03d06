#include "pipeline/map_reader.h"

#include "probe/snapshot.h"

namespace kleak {

Status aggregate_map(int live_fd, Aggregator& a) {
  return read_live(live_fd, [&a](const LiveAlloc* allocs, size_t n) {
    for (size_t i = 0; i < n; ++i) a.add(allocs[i]);
  });
}

Status aggregate_maps(const std::vector<int>& live_fds, Aggregator& a) {
  for (int fd : live_fds)
    if (auto st = aggregate_map(fd, a); !st) return st;
  return {};
}

}  // namespace kleak
