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

namespace kleak {

class HeldCommand {
 public:
  enum class Trace { exit_stop, none };
  explicit HeldCommand(Trace trace = Trace::exit_stop) : trace_(trace) {}
  ~HeldCommand();  // kills and reaps a child still running
  HeldCommand(const HeldCommand&) = delete;
  HeldCommand& operator=(const HeldCommand&) = delete;

  // Forks; the child waits for start(). Empty on success, else why not.
  std::string fork_held(const std::vector<std::string>& argv);
  // Lets the child exec. Empty on success, else why exec failed.
  std::string start();
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
  int go_ = -1, err_ = -1;
  bool traced_ = false;
  bool reaped_ = false;
  int status_ = -1;
};

}  // namespace kleak
