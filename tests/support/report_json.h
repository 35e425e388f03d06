// Reading kleak's JSON reports in tests: which stacks run through a
// function, and what a process holds there.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace kleak::test {

// One of the stack's frames (report "stacks[]" entry) is the function `fn`.
bool stack_runs_through(const nlohmann::json& stack, const std::string& fn);

// Allocations process `tgid` holds at the report's stacks through `fn`.
uint64_t count_through(const nlohmann::json& report, pid_t tgid, const std::string& fn);

}  // namespace kleak::test
