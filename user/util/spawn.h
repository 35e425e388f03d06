// A command kleak starts (`kleak user -c`, `kleak --ci -- CMD`): forked and
// held at a pipe until the programs are attached to its pid, then exec'd
// (PATH searched), so its allocations are traced from the first
// instruction. With Trace::exit_stop (kleak user) kleak follows it with
// ptrace (PTRACE_SEIZE, PTRACE_O_TRACEEXIT) only to stop it once at exit,
// while its address space still exists: that is when its memory maps are
// read for symbolization. With Trace::none (--ci) it is not ptraced.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "util/fd.h"
#include "util/result.h"

namespace kleak {

class HeldCommand {
 public:
  enum class Trace { exit_stop, none };
  explicit HeldCommand(Trace trace = Trace::exit_stop) : trace_(trace) {}
  ~HeldCommand();  // kills and reaps a child still running
  HeldCommand(const HeldCommand&) = delete;
  HeldCommand& operator=(const HeldCommand&) = delete;

  // Forks; the child waits for start(). The error says why not.
  Status fork_held(const std::vector<std::string>& argv);
  // Lets the child exec. The error says why exec failed.
  Status start();
  // Handles the child's ptrace stops without blocking; `at_exit` runs at its
  // exit stop (address space still there). True once the child is reaped.
  bool poll(const std::function<void(pid_t)>& at_exit = {});
  void kill_and_reap();

  pid_t pid() const { return pid_; }
  // Exit status, or 128 + signal; -1 while running.
  int status() const { return status_; }
  bool traced() const { return traced_; }

 private:
  Trace trace_;
  pid_t pid_ = -1;
  Fd go_, err_;  // the child's go-ahead pipe, and its exec error
  bool traced_ = false;
  bool reaped_ = false;
  int status_ = -1;
};

}  // namespace kleak
