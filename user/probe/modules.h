// The module follower's records (bpf/kleak.bpf.c, kleak_modules), read from
// a live tracer's or a pinned session's map.
#pragma once

#include <vector>

#include "model/modules.h"
#include "util/result.h"

namespace kleak {

// Every record of the kleak_modules map `fd`; none when fd < 0 (a kernel
// without loadable modules, or a session pinned before the follower).
Result<std::vector<ModuleRecord>> read_modules(int fd);

}  // namespace kleak
