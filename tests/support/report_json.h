// Reading kleak's JSON reports in tests: which stacks run through a
// function, and what a process holds there.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace kleak::test {

// One of the stack's frames (report "stacks[]" entry) is the function `fn`.
bool stack_runs_through(const nlohmann::json& stack, const std::string& fn);

// Allocations process `tgid` holds at the report's stacks through `fn`.
uint64_t count_through(const nlohmann::json& report, pid_t tgid, const std::string& fn);

// Entries of a report's "attached" that are allocator tracepoints
// ("kmem/kfree"), and those that are the followers' (the bulk-free
// follower's fentry/fexit, the module follower's module/ tracepoints): one
// program each, present where the kernel has them.
size_t tracepoints_attached(const nlohmann::json& report);
size_t followers_attached(const nlohmann::json& report);

// The parts a report lists as degraded, less the one this kernel cannot
// have: the bulk-free follower where kernel_loads_fentry() says no. There
// a kernel tracer's report (not kleak user's, which has no follower) must
// list it, with that reason (a test failure otherwise).
std::vector<std::string> dropped_parts(const nlohmann::json& report, bool kernel_tracer = true);
// 1 where the report must list the follower as a gap of the kernel, else 0.
size_t kernel_gap_parts();

}  // namespace kleak::test
