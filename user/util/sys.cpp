#include "util/sys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>

#include <fmt/format.h>

#include "util/clock.h"
#include "util/fd.h"

namespace kleak {

std::string kernel_release() {
  utsname u{};
  if (uname(&u) != 0) return "unknown";
  return u.release;
}

Result<std::string> read_text_file(const std::string& path) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return make_error("open " + path, errno);
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return make_error("read " + path, errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

bool write_stdout(const std::string& s) {
  if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) return false;
  return std::fflush(stdout) == 0;
}

Result<Output> Output::open(const std::string& path) {
  if (path.empty()) return Output(-1, "");
  // Not O_TRUNC yet: a file that must not be written is left as it was.
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    if (errno == ELOOP) return make_error("cannot write " + path + ": a symbolic link (refused: not followed)", 0);
    return make_error("cannot write " + path, errno);
  }
  Output out(fd, path);
  struct stat st;
  if (fstat(fd, &st) != 0) return make_error("cannot write " + path, errno);
  // Devices, pipes and ttys are the caller's choice; a regular file that
  // already existed may be readable by others, or belong to someone else
  // (planted in a shared directory to catch kernel addresses).
  if (!S_ISREG(st.st_mode)) return out;
  if (st.st_uid != geteuid())
    return make_error(fmt::format("cannot write {}: owned by uid {}, not by this user (refused)", path, st.st_uid), 0);
  if ((st.st_mode & 077) != 0 && fchmod(fd, 0600) != 0) return make_error("cannot make " + path + " private", errno);
  if (ftruncate(fd, 0) != 0) return make_error("cannot write " + path, errno);
  return out;
}

namespace {

// A temporary file beside `path`, hidden from textfile collectors (they read
// only *.prom) and from a plain ls: DIR/.NAME.XXXXXX.
std::string temp_template(const std::string& path) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  return dir + "." + base + ".XXXXXX";
}

// Writes all of `s` to `fd`. False on error, errno set.
bool write_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Result<Output> Output::open_replacing(const std::string& path, mode_t mode) {
  Output out(-1, path);
  out.replacing_ = true;
  out.mode_ = mode;
  if (path.empty()) return out;
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    return make_error("cannot write " + path + ": not a regular file (a symlink is refused)", EEXIST);
  // Try the directory now, so a typo fails before anything is attached.
  std::string tmp = temp_template(path);
  Fd probe(mkostemp(tmp.data(), O_CLOEXEC));
  if (!probe.valid()) return make_error("cannot write " + path, errno);
  unlink(tmp.c_str());
  return out;
}

bool Output::replace(const std::string& s) {
  if (path_.empty()) return write_stdout(s);
  std::string tmp = temp_template(path_);
  Fd fd(mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd.valid()) return false;
  bool ok = fchmod(fd.get(), mode_) == 0 && write_all(fd.get(), s);
  int saved = errno;
  if (fd.close() != 0 && ok) {
    ok = false;
    saved = errno;
  }
  if (ok && rename(tmp.c_str(), path_.c_str()) != 0) {
    ok = false;
    saved = errno;
  }
  if (!ok) {
    unlink(tmp.c_str());
    errno = saved;
  }
  return ok;
}

bool Output::write(const std::string& s) {
  if (replacing_) return replace(s);
  if (!fd_.valid()) return write_stdout(s);
  return write_all(fd_.get(), s);
}

Status write_file(const std::string& path, const std::string& s) {
  auto out = Output::open(path);
  if (!out) return out.error();
  if (!out->write(s)) return make_error("cannot write " + path, errno);
  return {};
}

Status write_knob(const std::string& path, const std::string& value) {
  Fd fd(open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return make_error("cannot open " + path, errno);
  ssize_t n = write(fd.get(), value.data(), value.size());
  if (n < 0) return make_error("cannot write " + path, errno);
  if (static_cast<size_t>(n) != value.size()) return make_error("short write to " + path, EIO);
  return {};
}

sigset_t block_stop_signals(int extra) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  if (extra) sigaddset(&set, extra);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  return set;
}

int wait_until(const sigset_t& set, uint64_t deadline_ns) {
  for (;;) {
    int sig;
    if (deadline_ns == 0) {
      sig = sigwaitinfo(&set, nullptr);
    } else {
      // A deadline already passed still polls once, so a pending Ctrl-C is
      // seen even when every step overruns its slot.
      uint64_t now = monotonic_ns();
      uint64_t left = deadline_ns > now ? deadline_ns - now : 0;
      timespec ts{static_cast<time_t>(left / 1000000000ull), static_cast<long>(left % 1000000000ull)};
      sig = sigtimedwait(&set, nullptr, &ts);
    }
    if (sig > 0) return sig;
    if (errno == EAGAIN) return 0;
    // EINTR: another signal interrupted the wait: wait again.
  }
}

void release_stop_signals() {
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  sigprocmask(SIG_UNBLOCK, &stop, nullptr);
}

}  // namespace kleak
