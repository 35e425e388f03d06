#include "probe/stack_reclaim.h"

#include "probe/snapshot.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <vector>

namespace kleak {

Result<SweepResult> StackReclaimer::sweep(int stacks_fd, int sites_fd, const std::unordered_set<uint64_t>& referenced) {
  std::vector<uint64_t> keys;
  if (auto st = for_each_key(stacks_fd, "read kleak_stacks keys", [&](uint64_t k) { keys.push_back(k); }); !st)
    return st.error();
  SweepResult r;
  r.stored = keys.size();
  std::unordered_set<uint64_t> unreferenced;
  for (uint64_t k : keys) {
    if (referenced.count(k)) continue;
    if (candidates_.count(k)) {
      // -ENOENT: gone meanwhile (e.g. a second sweeper); nothing to do.
      if (bpf_map_delete_elem(stacks_fd, &k) == 0) ++r.reclaimed;
    } else {
      unreferenced.insert(k);
    }
  }
  candidates_ = std::move(unreferenced);
  if (r.reclaimed > 0 && sites_fd >= 0) {
    // A per-CPU value for every possible CPU, all zero: no hints left.
    int ncpu = libbpf_num_possible_cpus();
    __u32 zero = 0;
    struct bpf_map_info info {};
    __u32 len = sizeof(info);
    if (ncpu > 0 && bpf_obj_get_info_by_fd(sites_fd, &info, &len) == 0) {
      std::vector<char> blank(static_cast<size_t>(ncpu) * ((info.value_size + 7) / 8 * 8), 0);
      if (bpf_map_update_elem(sites_fd, &zero, blank.data(), BPF_ANY) != 0)
        return make_error("clear kleak_sites", errno);
    }
  }
  reclaimed_total_ += r.reclaimed;
  stored_ = r.stored - r.reclaimed;
  return r;
}

}  // namespace kleak
