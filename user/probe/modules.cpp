#include "probe/modules.h"

#include <bpf/bpf.h>

#include <cstring>

#include "model/abi.h"
#include "probe/snapshot.h"

namespace kleak {

Result<std::vector<ModuleRecord>> read_modules(int fd) {
  std::vector<ModuleRecord> out;
  if (fd < 0) return out;
  // A record the kernel evicts meanwhile (LRU) ends one walk early; the
  // next read sees the rest.
  auto st = for_each_key(fd, "read map kleak_modules", [&](uint64_t key) {
    kleak_module m{};
    if (bpf_map_lookup_elem(fd, &key, &m) != 0) return;
    ModuleRecord r;
    r.name.assign(m.name, strnlen(m.name, sizeof(m.name)));
    r.text_base = m.text_base;
    r.text_size = m.text_size;
    r.init_base = m.init_base;
    r.init_size = m.init_size;
    r.load_ns = m.load_ns;
    r.free_ns = m.free_ns;
    out.push_back(std::move(r));
  }, KLEAK_MAX_MODULES + 1);
  if (!st) return st.error();
  return out;
}

}  // namespace kleak
