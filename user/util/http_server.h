// A minimal HTTP/1.1 server for `kleak serve`: enough for Prometheus to
// scrape /metrics, nothing more.
//
// Why not a library: Debian 12's cpp-httplib is built as a shared library
// with OpenSSL and Brotli (no static archive), which would add five runtime
// libraries to a binary that needs only libelf and zlib and would break the
// static build the qemu guests run; its thread pool is fixed at build time.
//
// Single-threaded: one connection at a time, read with a 5 s timeout, closed
// after one answer (Connection: close). Memory is bounded: a request is at
// most kMaxRequestBytes (larger ones get 431), a response is what the handler
// returns (for /metrics, the top -T stacks: about 1 KiB per stack plus 4 KiB).
// Connections beyond the one being answered wait in the kernel's backlog.
#pragma once

#include <signal.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "util/fd.h"
#include "util/result.h"

namespace kleak {

// An ADDR:PORT for --listen: IPv4 "127.0.0.1:9745", IPv6 "[::1]:9745", or
// "localhost:9745" (127.0.0.1). Port 0: the kernel picks one (kleak says which).
struct ListenAddress {
  std::string host;  // numeric, without brackets
  uint16_t port = 0;
  bool ipv6 = false;
  bool loopback = false;  // 127.0.0.0/8 or ::1
};
// nullopt when `text` is not such an address.
std::optional<ListenAddress> parse_listen_address(const std::string& text);


struct HttpRequest {
  std::string method;  // "GET", "HEAD", ...
  std::string target;  // "/metrics", query string included
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class HttpServer {
 public:
  static constexpr size_t kMaxRequestBytes = 8192;

  // Binds and listens on `addr`. The error names the address (EADDRINUSE, ...).
  static Result<HttpServer> listen(const ListenAddress& addr);
  HttpServer(HttpServer&& o) noexcept = default;
  HttpServer& operator=(HttpServer&&) = delete;

  // The bound port (the kernel's pick for port 0).
  uint16_t port() const { return port_; }

  // Answers requests with `handler` until a signal in `stop` arrives (they
  // must be blocked: they are read from a signalfd) or `deadline_ns`
  // (CLOCK_MONOTONIC, 0 = none) passes. Returns the signal, or 0 at the
  // deadline, or -errno when waiting fails.
  int serve(const sigset_t& stop, uint64_t deadline_ns, const HttpHandler& handler);

 private:
  HttpServer(int fd, uint16_t port) : fd_(fd), port_(port) {}
  void answer(int conn, const HttpHandler& handler);
  Fd fd_;
  uint16_t port_;
};

// "HTTP/1.1 200 OK\r\n..." with Content-Length and Connection: close; the
// body is left out for HEAD.
std::string http_response_bytes(const HttpResponse& r, bool head);

// Parses a request head ("GET /metrics HTTP/1.1\r\n..."): nullopt when the
// request line is malformed.
std::optional<HttpRequest> parse_http_request(const std::string& head);

}  // namespace kleak
