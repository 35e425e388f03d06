// Walks the BPF objects loaded on the machine (programs, maps, links): what
// the tests use to see whether kleak left anything behind.
#pragma once

#include <bpf/bpf.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

namespace kleak::test {

// Calls fn(id, info) for every loaded object of one kind, given that kind's
// libbpf id walker and opener (bpf_prog_get_next_id and
// bpf_prog_get_fd_by_id with bpf_prog_info, likewise for maps and links).
// Objects unloaded during the walk, or whose info cannot be read, are skipped.
template <typename Info, typename Fn>
void for_each_bpf_object(int (*next_id)(__u32, __u32*), int (*fd_by_id)(__u32), Fn fn) {
  __u32 id = 0;
  while (next_id(id, &id) == 0) {
    int fd = fd_by_id(id);
    if (fd < 0) continue;
    Info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) fn(id, info);
    close(fd);
  }
}

// kleak names its programs and maps kleak_*.
inline bool kleak_named(const char* name) { return std::strncmp(name, "kleak_", 6) == 0; }

}  // namespace kleak::test
