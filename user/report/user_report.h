// Turns a report built by the common pipeline (build_report, with raw
// addresses) into a user-space one: frames symbolized through each
// process's maps and ELF/DWARF, addresses stripped of kleak's key bits, and
// notes on what limits the stacks (no frame pointers).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "report/report.h"
#include "symbols/usyms.h"

namespace kleak {

// Resolves every frame and call site of `r` (innermost first) in the
// address space of the stack's top task, recomputes stack keys, and with
// `hide_addresses` drops raw addresses afterwards.
void symbolize_user_report(Report& r, UserSymbolizer& syms, bool hide_addresses);

// True when a stack's outermost frame is where a thread begins (_start,
// __libc_start_call_main, start_thread, clone3, ...): the walk reached the
// bottom. Stacks that end elsewhere were cut short, usually by code built
// without frame pointers.
bool reaches_thread_start(const std::vector<Frame>& frames);

// The note for a report whose stacks are mostly cut short, or empty.
std::string shallow_stack_note(const Report& r);

}  // namespace kleak
