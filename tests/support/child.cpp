#include "child.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <thread>

namespace kleak::test {
namespace {

void pipe_or_throw(int fds[2]) {
  if (pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + strerror(errno));
}

}  // namespace

Child::Child(const std::vector<std::string>& argv) : Child(argv, Options{}) {}

Child::Child(const std::vector<std::string>& argv, Options options) {
  int in[2], out[2], err[2] = {-1, -1};
  pipe_or_throw(in);
  pipe_or_throw(out);
  if (options.capture_stderr) pipe_or_throw(err);
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + strerror(errno));
  if (pid_ == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    if (options.capture_stderr) dup2(err[1], 2);
    if (options.drop_privileges && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(126);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  in_ = in[1];
  out_ = out[0];
  if (options.capture_stderr) {
    close(err[1]);
    err_ = err[0];
  }
}

Child::~Child() {
  if (!reaped_ && pid_ > 0) {
    // End of input first: the test programs clean up and exit on EOF (the
    // message holders remove their queues); only a child that does not
    // gets SIGKILL, so tests leave nothing behind in the kernel.
    close_stdin();
    if (!wait(std::chrono::seconds(3))) {
      ::kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  for (int fd : {in_, out_, err_})
    if (fd >= 0) close(fd);
}

void Child::send_line(const std::string& line) {
  std::string s = line + "\n";
  if (write(in_, s.data(), s.size()) != static_cast<ssize_t>(s.size()))
    throw std::runtime_error("write to child failed");
}

void Child::close_stdin() {
  if (in_ >= 0) close(in_);
  in_ = -1;
}

bool Child::fill(int fd, std::string& buf, std::chrono::steady_clock::time_point deadline) {
  if (fd < 0) return false;
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0) return false;
  pollfd p{fd, POLLIN, 0};
  int r = poll(&p, 1, static_cast<int>(left.count()));
  if (r <= 0) return false;
  char tmp[65536];
  ssize_t n = read(fd, tmp, sizeof(tmp));
  if (n <= 0) return false;
  buf.append(tmp, static_cast<size_t>(n));
  return true;
}

namespace {

std::optional<std::string> take_line(std::string& buf) {
  size_t nl = buf.find('\n');
  if (nl == std::string::npos) return std::nullopt;
  std::string line = buf.substr(0, nl);
  buf.erase(0, nl + 1);
  return line;
}

}  // namespace

std::optional<std::string> Child::read_line(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto line = take_line(out_buf_)) return line;
    if (!fill(out_, out_buf_, deadline)) return std::nullopt;
  }
}

std::optional<std::string> Child::read_err_line(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto line = take_line(err_buf_)) return line;
    if (!fill(err_, err_buf_, deadline)) return std::nullopt;
  }
}

std::string Child::read_all(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (fill(out_, out_buf_, deadline)) {
  }
  std::string s;
  s.swap(out_buf_);
  return s;
}

std::string Child::read_stderr(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (fill(err_, err_buf_, deadline)) {
  }
  std::string s;
  s.swap(err_buf_);
  return s;
}

void Child::kill(int sig) {
  if (!reaped_) ::kill(pid_, sig);
}

std::optional<std::string> Child::last_line_after(int sig) {
  kill(sig);
  std::string rest = read_all();
  if (wait() != 0) return std::nullopt;
  while (!rest.empty() && rest.back() == '\n') rest.pop_back();
  if (rest.empty()) return std::nullopt;
  size_t nl = rest.rfind('\n');
  return nl == std::string::npos ? rest : rest.substr(nl + 1);
}

std::optional<int> Child::wait(std::chrono::milliseconds timeout) {
  if (reaped_) return status_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int st = 0;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return status_;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

RunResult run(const std::vector<std::string>& argv, Child::Options options) {
  options.capture_stderr = true;
  Child c(argv, options);
  c.close_stdin();
  RunResult r;
  r.out = c.read_all();
  r.err = c.read_stderr(std::chrono::seconds(5));
  r.status = c.wait().value_or(-1);
  return r;
}

}  // namespace kleak::test
