#include "util/units.h"

#include <cmath>

#include <fmt/format.h>

namespace kleak {

std::string human_bytes(double b) {
  const double a = std::fabs(b);
  const char* sign = b < 0 ? "-" : "";
  if (a >= 1024.0 * 1024 * 1024) return fmt::format("{}{:.1f} GiB", sign, a / (1024.0 * 1024 * 1024));
  if (a >= 1024.0 * 1024) return fmt::format("{}{:.1f} MiB", sign, a / (1024.0 * 1024));
  if (a >= 1024.0) return fmt::format("{}{:.1f} KiB", sign, a / 1024.0);
  return fmt::format("{}{:.0f} B", sign, a);
}

std::string signed_bytes(double b) { return (b > 0 ? "+" : "") + human_bytes(b); }

}  // namespace kleak
