#include "pipeline/run_loop.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "probe/stack_reclaim.h"
#include "util/clock.h"
#include "util/exit_status.h"
#include "util/sys.h"

namespace kleak {
namespace {

// The earlier of two deadlines, 0 meaning none.
uint64_t earliest(uint64_t a, uint64_t b) { return !a ? b : !b ? a : std::min(a, b); }

}  // namespace

RunEnd run_until_done(const sigset_t& signals, ReportSchedule& schedule, double duration_s, const RunHooks& hooks) {
  using Why = RunEnd::Why;
  // Without reports the loop still wakes to sweep the stack store.
  const uint64_t maint_step = hooks.maintain ? static_cast<uint64_t>(kReclaimPeriodS * 1e9) : 0;
  uint64_t next_tick = hooks.tick ? monotonic_ns() + hooks.tick_ns : 0;
  auto reaped = [&hooks] { return hooks.command && hooks.command->poll(hooks.at_exit); };
  for (;;) {
    if (reaped()) return {Why::command_exited, "command exited", {}, std::nullopt};
    const uint64_t other = earliest(next_tick, maint_step ? monotonic_ns() + maint_step : 0);
    const int sig = wait_until(signals, schedule.wake(other));
    if (sig == SIGCHLD) continue;
    if (sig != 0) {
      release_stop_signals();
      return {Why::signal, strsignal(sig), fmt::format("interrupted by {}", strsignal(sig)), std::nullopt};
    }
    const uint64_t now = monotonic_ns();
    if (schedule.deadline_passed(now)) {
      const bool running = hooks.command && !reaped();
      return {Why::duration, "duration passed",
              running ? fmt::format("command still running after {} s", duration_s) : std::string(), std::nullopt};
    }
    if (next_tick && now >= next_tick) {
      next_tick = now + hooks.tick_ns;
      if (auto why = hooks.tick()) return {Why::tick, *why, {}, std::nullopt};
    }
    if (!hooks.report || !schedule.report_due(now)) {
      if (hooks.maintain) hooks.maintain();
      continue;
    }
    const bool last = schedule.next_is_last();
    if (auto rc = hooks.report(last); rc || last) return {Why::count, "report count reached", {}, rc.value_or(kExitOk)};
    schedule.reported(monotonic_ns());
  }
}

}  // namespace kleak
