// What kleak needs from the process's credentials, checked before any BPF
// call so the user gets one clear line instead of an EPERM from deep inside
// libbpf.
#pragma once

#include <string>

namespace kleak {

// Empty when the effective capabilities allow loading kleak's programs
// (CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN), else the one-line reason.
std::string missing_privileges();

}  // namespace kleak
