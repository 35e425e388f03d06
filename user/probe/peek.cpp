#include "probe/peek.h"

#include <bpf/bpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include <fmt/format.h>

namespace kleak {

Result<std::vector<PeekResult>> peek(int prog_fd, int map_fd, const std::vector<std::pair<uint64_t, uint32_t>>& reqs) {
  std::vector<PeekResult> out;
  kleak_peek_slot slot{};
  for (size_t base = 0; base < reqs.size(); base += KLEAK_PEEK_SLOTS) {
    size_t n = std::min<size_t>(KLEAK_PEEK_SLOTS, reqs.size() - base);
    for (uint32_t i = 0; i < KLEAK_PEEK_SLOTS; ++i) {
      std::memset(&slot, 0, offsetof(kleak_peek_slot, data));
      if (i < n) {
        slot.addr = reqs[base + i].first;
        slot.len = std::min<uint32_t>(reqs[base + i].second, KLEAK_PEEK_MAX_BYTES);
        slot.status = KLEAK_PEEK_ASKED;
      }
      if (bpf_map_update_elem(map_fd, &i, &slot, BPF_ANY) != 0) return make_error("write peek request", errno);
    }
    uint64_t args[1] = {0};
    LIBBPF_OPTS(bpf_test_run_opts, run, .ctx_in = args, .ctx_size_in = sizeof(args));
    if (bpf_prog_test_run_opts(prog_fd, &run) != 0) return make_error("run kleak_peek_run", errno);
    for (uint32_t i = 0; i < n; ++i) {
      if (bpf_map_lookup_elem(map_fd, &i, &slot) != 0) return make_error("read peek result", errno);
      PeekResult r;
      r.addr = slot.addr;
      r.status = slot.status;
      if (slot.status == KLEAK_PEEK_OK || slot.status == KLEAK_PEEK_FREED)
        r.data.assign(slot.data, slot.data + std::min<uint32_t>(slot.len, KLEAK_PEEK_MAX_BYTES));
      out.push_back(std::move(r));
    }
  }
  return out;
}

}  // namespace kleak
