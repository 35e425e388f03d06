#include "pipeline/peeks.h"

#include <utility>
#include <vector>

#include "probe/peek.h"
#include "report/peek_text.h"

namespace kleak {

Status add_peeks(Report& r, int prog_fd, int map_fd) {
  if (r.opts->peek_addr != 0) {
    auto got = peek(prog_fd, map_fd, {{r.opts->peek_addr, r.opts->peek_addr_len}});
    if (!got) return got.error();
    r.peek_addr = got->front();
  }
  if (r.opts->peek_bytes == 0) return {};
  for (StackReport& s : r.stacks) {
    std::vector<std::pair<uint64_t, uint32_t>> reqs;
    for (size_t i = 0; i < s.allocs.size() && i < r.opts->peek_samples; ++i)
      reqs.emplace_back(s.allocs[i].addr, r.opts->peek_bytes);
    auto got = peek(prog_fd, map_fd, reqs);
    if (!got) return got.error();
    s.peeks = std::move(*got);
    s.peek_groups = group_samples(s.peeks, r.opts->peek_min_string);
  }
  return {};
}

}  // namespace kleak
