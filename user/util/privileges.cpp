#include "util/privileges.h"

#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace kleak {
namespace {

// Not in older uapi headers.
constexpr int kCapPerfmon = 38;
constexpr int kCapBpf = 39;

bool has_cap(const __user_cap_data_struct (&data)[2], int cap) {
  return (data[cap / 32].effective & (1u << (cap % 32))) != 0;
}

}  // namespace

Status check_privileges() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (syscall(SYS_capget, &hdr, data) != 0)
    return make_error(fmt::format("cannot read capabilities: {}", std::strerror(errno)), 0);
  if (has_cap(data, CAP_SYS_ADMIN)) return {};
  const bool bpf = has_cap(data, kCapBpf), perfmon = has_cap(data, kCapPerfmon);
  if (bpf && perfmon) return {};
  // CAP_SYS_ADMIN alone would also do, but naming the two a service needs
  // is the useful advice.
  return make_error(fmt::format("need root, or CAP_BPF and CAP_PERFMON: missing {} (try: sudo kleak ...)",
                     !bpf && !perfmon ? "CAP_BPF, CAP_PERFMON" : !bpf ? "CAP_BPF" : "CAP_PERFMON"), 0);
}

}  // namespace kleak
