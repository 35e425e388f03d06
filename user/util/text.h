// Splitting the text of /proc files.
#pragma once

#include <string_view>

namespace kleak {

// The next blank-separated field of `line` (blanks: spaces and tabs), which
// then starts just after it; empty at the end of the line.
std::string_view next_field(std::string_view& line);

}  // namespace kleak
