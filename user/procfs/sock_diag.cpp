#include "procfs/sock_diag.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "util/fd.h"

namespace kleak {
namespace {

constexpr uint32_t kTimeWait = 1u << 6;  // TCP_TIME_WAIT

struct Request {
  nlmsghdr nh;
  inet_diag_req_v2 req;
};

bool loopback(uint8_t family, const __be32 addr[4]) {
  if (family == AF_INET) return (ntohl(addr[0]) >> 24) == 127;
  static const uint8_t v6_loopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(addr, v6_loopback, 16) == 0) return true;
  return std::memcmp(addr, v4_mapped, 12) == 0 && (ntohl(addr[3]) >> 24) == 127;
}

Status send_request(int fd, uint16_t type, uint16_t flags, uint8_t family, const inet_diag_sockid* id) {
  Request r{};
  r.nh.nlmsg_len = sizeof(r);
  r.nh.nlmsg_type = type;
  r.nh.nlmsg_flags = NLM_F_REQUEST | flags;
  r.req.sdiag_family = family;
  r.req.sdiag_protocol = IPPROTO_TCP;
  r.req.idiag_states = kTimeWait;
  if (id) r.req.id = *id;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd, &r, sizeof(r), 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0)
    return make_error("sock_diag request", errno);
  return {};
}

// Reads replies until NLMSG_DONE (a dump) or the first NLMSG_ERROR (an
// ack), handing each inet_diag_msg to `fn`. The ack's error, if any.
template <class Fn>
Status read_replies(int fd, Fn&& fn) {
  alignas(nlmsghdr) static char buf[32768];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0) return make_error("sock_diag reply", errno);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE) return {};
      if (h->nlmsg_type == NLMSG_ERROR) {
        const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
        if (e->error) return make_error("sock_diag", -e->error);
        return {};
      }
      fn(*static_cast<const inet_diag_msg*>(NLMSG_DATA(h)));
    }
  }
}

}  // namespace

Result<uint64_t> end_loopback_time_wait() {
  Fd fd(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!fd.valid()) return make_error("sock_diag socket", errno);
  uint64_t ended = 0;
  for (uint8_t family : {uint8_t{AF_INET}, uint8_t{AF_INET6}}) {
    std::vector<inet_diag_sockid> ids;
    if (auto st = send_request(fd.get(), SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, family, nullptr); !st) return st.error();
    auto listed = read_replies(fd.get(), [&](const inet_diag_msg& m) {
      if (m.idiag_state == 6 && loopback(family, m.id.idiag_src) && loopback(family, m.id.idiag_dst))
        ids.push_back(m.id);
    });
    if (!listed) return listed.error();
    for (const inet_diag_sockid& id : ids) {
      if (auto st = send_request(fd.get(), SOCK_DESTROY, NLM_F_ACK, family, &id); !st) return st.error();
      auto done = read_replies(fd.get(), [](const inet_diag_msg&) {});
      if (!done) {
        if (done.error().err == ENOENT) continue;  // its timer ended it first
        return done.error();
      }
      ++ended;
    }
  }
  return ended;
}

}  // namespace kleak
