#include "report_json.h"

#include <gtest/gtest.h>

#include "env.h"

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

size_t followers_attached(const nlohmann::json& report) {
  size_t n = 0;
  for (const auto& a : report["attached"]) {
    const std::string s = a.get<std::string>();
    n += s.starts_with("fentry/") || s.starts_with("fexit/") || s.starts_with("module/");
  }
  return n;
}

size_t kernel_gap_parts() { return kernel_loads_fentry() ? 0 : 1; }

std::vector<std::string> dropped_parts(const nlohmann::json& report, bool kernel_tracer) {
  std::vector<std::string> parts;
  bool gap_listed = false;
  for (const auto& d : report["degraded"]) {
    const std::string part = d["part"], reason = d["reason"];
    if (!kernel_loads_fentry() && part == "bulk-free-follower" &&
        reason.starts_with("this kernel refuses fentry programs")) {
      gap_listed = true;
      continue;
    }
    parts.push_back(part);
  }
  if (kernel_tracer && !kernel_loads_fentry() && !gap_listed)
    ADD_FAILURE() << "this kernel refuses fentry programs, but the report does not say so: "
                  << report["degraded"].dump();
  return parts;
}

size_t tracepoints_attached(const nlohmann::json& report) {
  return report["attached"].size() - followers_attached(report);
}

}  // namespace kleak::test
