// Brendan Gregg's folded stacks, for flamegraph.pl, inferno and speedscope:
// one line per stack, frames root first joined by ';', a space, the value.
#pragma once

#include <string>

#include "report/report.h"

namespace kleak {

enum class FoldedValue { bytes, count };

// Every stack of the report (kleak shows them all in this format unless -T
// says otherwise), its outstanding bytes or allocations as the value. A
// frame is its function name ("func [module]" for a module, the raw address
// or "?" when unresolved), never an offset, so lines from different runs
// add up. A group without a stack is "[no stack: ERR];call_site".
std::string render_folded(const Report& r, FoldedValue value);

}  // namespace kleak
