// Byte counts as people read them: "4.0 KiB", "+1.2 MiB", "-512 B".
#pragma once

#include <string>

namespace kleak {

// Binary units, one decimal from KiB up; negative counts keep their sign.
std::string human_bytes(double bytes);
// With a sign: "+" for growth, "-" for shrinking, none for zero.
std::string signed_bytes(double bytes);

}  // namespace kleak
