#include "util/result.h"

#include <cstring>

#include <fmt/format.h>

namespace kleak {
namespace {

const char* errno_name(int e) {
  switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case E2BIG: return "E2BIG";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EINVAL: return "EINVAL";
    case ENOSPC: return "ENOSPC";
    case EPIPE: return "EPIPE";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EROFS: return "EROFS";
    case EISDIR: return "EISDIR";
    case ENOTDIR: return "ENOTDIR";
    default: return nullptr;
  }
}

}  // namespace

Error make_error(std::string what, int err) {
  if (err < 0) err = -err;
  if (err == 0) return Error{std::move(what), 0};
  const char* name = errno_name(err);
  std::string msg = name ? fmt::format("{}: {} (-{})", what, std::strerror(err), name)
                         : fmt::format("{}: {} (errno {})", what, std::strerror(err), err);
  return Error{std::move(msg), err};
}

}  // namespace kleak
