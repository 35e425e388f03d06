#include "model/degraded.h"

namespace kleak {

std::string degraded_text(const std::vector<Degraded>& d) {
  std::string out;
  for (const Degraded& x : d) out += (out.empty() ? "" : "; ") + x.part + " (" + x.reason + ")";
  return out;
}

}  // namespace kleak
