// TCP sockets in TIME_WAIT between two loopback addresses, ended through
// the kernel's socket diagnostics (sock_diag SOCK_DESTROY, what `ss -K`
// does). Such a socket only waits out 2*MSL (60 s on Linux) for segments
// of a connection whose both ends are this machine; it holds the socket and
// its port's bind buckets until then.
#pragma once

#include <cstdint>

#include "util/result.h"

namespace kleak {

// Ends every loopback TIME_WAIT socket (IPv4 127/8, IPv6 ::1 and mapped
// 127/8); returns how many. An error when the kernel cannot list or destroy
// them (no CONFIG_INET_DIAG_DESTROY: EOPNOTSUPP; not root: EPERM).
Result<uint64_t> end_loopback_time_wait();

}  // namespace kleak
