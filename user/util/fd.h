// The one owner of a file descriptor: closed when it goes, moved not copied.
#pragma once

namespace kleak {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives the descriptor up without closing it.
  int release();
  // Closes the one held (its close error is lost: use close() to see it)
  // and holds `fd` instead.
  void reset(int fd = -1);
  // Closes it now: 0, or -1 with errno (a write-back error of a file).
  int close();

 private:
  int fd_ = -1;
};

}  // namespace kleak
