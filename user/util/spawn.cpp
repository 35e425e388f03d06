#include "util/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <utility>

namespace kleak {

HeldCommand::~HeldCommand() { kill_and_reap(); }

Status HeldCommand::fork_held(const std::vector<std::string>& argv) {
  if (argv.empty()) return make_error("empty command", 0);
  int go_fds[2], err_fds[2];
  if (pipe2(go_fds, O_CLOEXEC) != 0) return make_error(std::strerror(errno), 0);
  Fd go_read(go_fds[0]), go_write(go_fds[1]);
  if (pipe2(err_fds, O_CLOEXEC) != 0) return make_error(std::strerror(errno), 0);
  Fd err_read(err_fds[0]), err_write(err_fds[1]);
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  pid_ = fork();
  if (pid_ < 0) return make_error(std::strerror(errno), 0);
  if (pid_ == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    std::signal(SIGPIPE, SIG_DFL);
    // Named after what it is about to become, not "kleak": what the kernel
    // allocates for its exec (alloc_bprm, the new mm) is the command's.
    const char* base = std::strrchr(cargv[0], '/');
    prctl(PR_SET_NAME, base ? base + 1 : cargv[0], 0, 0, 0);
    char c;
    if (read(go_read.get(), &c, 1) != 1) _exit(127);  // kleak went away
    execvp(cargv[0], cargv.data());
    int e = errno;
    ssize_t ignored = write(err_write.get(), &e, sizeof(e));
    (void)ignored;
    _exit(127);
  }
  go_ = std::move(go_write);
  err_ = std::move(err_read);
  // Seize without stopping it: no stop at exec (PTRACE_O_TRACEEXEC unset and
  // seized, so no SIGTRAP either), one stop at exit.
  if (trace_ == Trace::exit_stop)
    traced_ = ptrace(PTRACE_SEIZE, pid_, nullptr, reinterpret_cast<void*>(PTRACE_O_TRACEEXIT)) == 0;
  return {};
}

Status HeldCommand::start() {
  char c = 1;
  if (write(go_.get(), &c, 1) != 1) return make_error(std::strerror(errno), 0);
  go_.reset();
  int e = 0;
  ssize_t n = read(err_.get(), &e, sizeof(e));  // EOF (0) when exec succeeded
  err_.reset();
  if (n == static_cast<ssize_t>(sizeof(e))) return make_error(std::strerror(e), 0);
  return {};
}

bool HeldCommand::poll(const std::function<void(pid_t)>& at_exit) {
  while (!reaped_ && pid_ > 0) {
    int st = 0;
    pid_t got = waitpid(pid_, &st, WNOHANG | __WALL);
    if (got != pid_) return false;
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
      reaped_ = true;
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return true;
    }
    if (!WIFSTOPPED(st)) continue;
    const int event = st >> 16;
    if (event == PTRACE_EVENT_EXIT) {
      if (at_exit) at_exit(pid_);
      ptrace(PTRACE_CONT, pid_, nullptr, nullptr);
    } else if (event == PTRACE_EVENT_STOP) {
      // A group stop (SIGSTOP, SIGTSTP): stay stopped, as without kleak.
      ptrace(PTRACE_LISTEN, pid_, nullptr, nullptr);
    } else {
      // A signal on its way to the command: deliver it.
      ptrace(PTRACE_CONT, pid_, nullptr, reinterpret_cast<void*>(static_cast<long>(WSTOPSIG(st))));
    }
  }
  return reaped_;
}

void HeldCommand::kill_and_reap() {
  if (reaped_ || pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int st = 0;
  while (waitpid(pid_, &st, __WALL) == pid_) {
    if (WIFEXITED(st) || WIFSIGNALED(st)) break;
    ptrace(PTRACE_CONT, pid_, nullptr, nullptr);  // a stop before the kill landed
  }
  reaped_ = true;
  status_ = 128 + SIGKILL;
}

}  // namespace kleak
