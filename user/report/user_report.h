// What a user-space report has beyond the common one: addresses stripped
// of kleak's key bits, and notes on what limits the stacks (no frame
// pointers). Its frames are named by build_report through UserSymbolizer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "report/report.h"

namespace kleak {

// The live map's keys carry the process slot in their top bits: -a lists
// the addresses without it.
void strip_user_keys(Report& r);

// True when a stack's outermost frame is where a thread begins (_start,
// __libc_start_call_main, start_thread, clone3, ...): the walk reached the
// bottom. Stacks that end elsewhere were cut short, usually by code built
// without frame pointers.
bool reaches_thread_start(const std::vector<Frame>& frames);

// The note for a report whose stacks are mostly cut short, or empty.
std::string shallow_stack_note(const Report& r);

}  // namespace kleak
