#include "probe/modules.h"

#include <bpf/bpf.h>

#include <cerrno>
#include <cstring>

#include "model/abi.h"

namespace kleak {

Result<std::vector<ModuleRecord>> read_modules(int fd) {
  std::vector<ModuleRecord> out;
  if (fd < 0) return out;
  uint64_t key = 0, next = 0;
  const uint64_t* prev = nullptr;
  // A record the kernel evicts meanwhile (LRU) ends one walk early; the
  // next read sees the rest.
  for (int n = 0; n <= KLEAK_MAX_MODULES; ++n) {
    if (bpf_map_get_next_key(fd, prev, &next) != 0) {
      if (errno != ENOENT) return make_error("read map kleak_modules", errno);
      break;
    }
    key = next;
    prev = &key;
    kleak_module m{};
    if (bpf_map_lookup_elem(fd, &key, &m) != 0) continue;
    ModuleRecord r;
    r.name.assign(m.name, strnlen(m.name, sizeof(m.name)));
    r.text_base = m.text_base;
    r.text_size = m.text_size;
    r.init_base = m.init_base;
    r.init_size = m.init_size;
    r.load_ns = m.load_ns;
    r.free_ns = m.free_ns;
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace kleak
