#include "util/fd.h"

#include <unistd.h>

namespace kleak {

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) reset(o.release());
  return *this;
}

int Fd::release() {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

void Fd::reset(int fd) {
  if (fd_ >= 0 && fd_ != fd) ::close(fd_);
  fd_ = fd;
}

int Fd::close() {
  int fd = release();
  return fd >= 0 ? ::close(fd) : 0;
}

}  // namespace kleak
