#include "util/http_server.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <cerrno>
#include <cstring>

#include "util/clock.h"

namespace kleak {
namespace {

const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    default:
      return "Unknown";
  }
}

bool send_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

std::string http_response_bytes(const HttpResponse& r, bool head) {
  std::string out = fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                r.status, reason_phrase(r.status), r.content_type, r.body.size());
  if (!head) out += r.body;
  return out;
}

std::optional<HttpRequest> parse_http_request(const std::string& head) {
  auto eol = head.find("\r\n");
  std::string line = head.substr(0, eol);
  auto sp1 = line.find(' ');
  if (sp1 == std::string::npos || sp1 == 0) return std::nullopt;
  auto sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string::npos || sp2 == sp1 + 1) return std::nullopt;
  if (line.compare(sp2 + 1, 5, "HTTP/") != 0) return std::nullopt;
  HttpRequest req{line.substr(0, sp1), line.substr(sp1 + 1, sp2 - sp1 - 1)};
  if (req.target[0] != '/') return std::nullopt;
  return req;
}

std::optional<ListenAddress> parse_listen_address(const std::string& text) {
  ListenAddress a;
  std::string port;
  if (!text.empty() && text[0] == '[') {
    auto close = text.find("]:");
    if (close == std::string::npos) return std::nullopt;
    a.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    a.ipv6 = true;
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) return std::nullopt;
    a.host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (a.host == "localhost") a.host = "127.0.0.1";
  }
  unsigned p = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || p > 65535)
    return std::nullopt;
  a.port = static_cast<uint16_t>(p);
  if (a.ipv6) {
    in6_addr v6{};
    if (inet_pton(AF_INET6, a.host.c_str(), &v6) != 1) return std::nullopt;
    a.loopback = IN6_IS_ADDR_LOOPBACK(&v6);
  } else {
    in_addr v4{};
    if (inet_pton(AF_INET, a.host.c_str(), &v4) != 1) return std::nullopt;
    a.loopback = (ntohl(v4.s_addr) >> 24) == 127;
  }
  return a;
}

Result<HttpServer> HttpServer::listen(const ListenAddress& addr) {
  const std::string where =
      addr.ipv6 ? fmt::format("[{}]:{}", addr.host, addr.port) : fmt::format("{}:{}", addr.host, addr.port);
  int fd = ::socket(addr.ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return make_error("listen " + where + ": socket", errno);
  HttpServer server(fd, addr.port);  // closes fd on every return below
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_storage ss{};
  socklen_t len;
  if (addr.ipv6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(addr.port);
    inet_pton(AF_INET6, addr.host.c_str(), &a->sin6_addr);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(addr.port);
    inet_pton(AF_INET, addr.host.c_str(), &a->sin_addr);
    len = sizeof(*a);
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) return make_error("listen " + where, errno);
  if (::listen(fd, 16) != 0) return make_error("listen " + where, errno);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0)
    server.port_ = ntohs(addr.ipv6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                   : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return server;
}

void HttpServer::answer(int conn, const HttpHandler& handler) {
  timeval tv{5, 0};
  setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  std::string head;
  char buf[2048];
  while (head.find("\r\n\r\n") == std::string::npos) {
    if (head.size() >= kMaxRequestBytes) {
      send_all(conn, http_response_bytes({431, "text/plain; charset=utf-8", "request too large\n"}, false));
      return;
    }
    ssize_t n = ::recv(conn, buf, std::min(sizeof(buf), kMaxRequestBytes - head.size()), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        send_all(conn, http_response_bytes({408, "text/plain; charset=utf-8", "timeout\n"}, false));
      return;  // the client went away
    }
    head.append(buf, static_cast<size_t>(n));
  }
  auto req = parse_http_request(head);
  if (!req) {
    send_all(conn, http_response_bytes({400, "text/plain; charset=utf-8", "bad request\n"}, false));
    return;
  }
  const bool is_head = req->method == "HEAD";
  if (req->method != "GET" && !is_head) {
    send_all(conn, http_response_bytes({405, "text/plain; charset=utf-8", "only GET and HEAD\n"}, false));
    return;
  }
  send_all(conn, http_response_bytes(handler(*req), is_head));
}

int HttpServer::serve(const sigset_t& stop, uint64_t deadline_ns, const HttpHandler& handler) {
  Fd sfd(signalfd(-1, &stop, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sfd.valid()) return -errno;
  for (;;) {
    int timeout_ms = -1;
    if (deadline_ns) {
      uint64_t now = monotonic_ns();
      if (now >= deadline_ns) return 0;
      timeout_ms = static_cast<int>(std::min<uint64_t>((deadline_ns - now + 999999) / 1000000, 60000));
    }
    pollfd fds[2] = {{sfd.get(), POLLIN, 0}, {fd_.get(), POLLIN, 0}};
    int n = poll(fds, 2, timeout_ms);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si{};
      if (read(sfd.get(), &si, sizeof(si)) == static_cast<ssize_t>(sizeof(si))) return static_cast<int>(si.ssi_signo);
    }
    if (fds[1].revents & POLLIN) {
      Fd conn(accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn.valid()) continue;  // the client gave up already, or EMFILE: the next poll retries
      answer(conn.get(), handler);
    }
  }
}

}  // namespace kleak
