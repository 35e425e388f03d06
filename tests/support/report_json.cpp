#include "report_json.h"

namespace kleak::test {

bool stack_runs_through(const nlohmann::json& stack, const std::string& fn) {
  for (const auto& f : stack["frames"])
    if (f["symbol"].is_string() && f["symbol"] == fn) return true;
  return false;
}

uint64_t count_through(const nlohmann::json& report, pid_t tgid, const std::string& fn) {
  uint64_t n = 0;
  for (const auto& s : report["stacks"]) {
    if (!stack_runs_through(s, fn)) continue;
    for (const auto& t : s["tasks"])
      if (t["tgid"] == tgid) n += t["count"].get<uint64_t>();
  }
  return n;
}

}  // namespace kleak::test
