// The run loop of every tracing command (kleak trace, kleak user, --ci):
// waits for the next interval report, the --duration deadline, a stop
// signal or the workload's exit, and keeps the stack store swept between
// reports. `kleak serve`'s loop is its HTTP server's (http_server.h).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "pipeline/report_schedule.h"
#include "util/spawn.h"

namespace kleak {

// How a run ended.
struct RunEnd {
  enum class Why { command_exited, duration, signal, count, tick };
  Why why = Why::duration;
  std::string what;         // for -v: "command exited", "duration passed", the signal, ...
  std::string interrupted;  // why the run was cut short (a CI verdict of "incomplete"), or empty
  std::optional<int> rc;    // an exit status to return at once (the last --count report's), or none
};

struct RunHooks {
  // An interval report, the last of --count when `last`: an exit status
  // to stop with, or none to go on. Unset: the run has no interval reports.
  std::function<std::optional<int>(bool last)> report;
  // Between reports (Pipeline::maintain). Unset: nothing.
  std::function<void()> maintain;
  // The workload, polled at every wake (SIGCHLD wakes the loop when it is
  // in the signal set); the run ends when it is reaped. `at_exit` runs at
  // its exit stop (HeldCommand::poll).
  HeldCommand* command = nullptr;
  std::function<void(pid_t)> at_exit;
  // Runs every tick_ns; a reason it returns ends the run (kleak user -p:
  // every traced process exited).
  uint64_t tick_ns = 0;
  std::function<std::optional<std::string>()> tick;
};

// Runs until one of the ends of RunEnd::Why. A stop signal re-arms the
// default action (release_stop_signals), so a second one ends kleak while
// the final report is made.
RunEnd run_until_done(const sigset_t& signals, ReportSchedule& schedule, double duration_s, const RunHooks& hooks);

}  // namespace kleak
