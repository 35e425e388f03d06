// What kleak needs from the process's credentials, checked before any BPF
// call so the user gets one clear line instead of an EPERM from deep inside
// libbpf.
#pragma once

#include "util/result.h"

#include <string>

namespace kleak {

// Whether the effective capabilities allow loading kleak's programs
// (CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN); the error is the one-line reason.
Status check_privileges();

}  // namespace kleak
