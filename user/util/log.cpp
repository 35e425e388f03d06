#include "util/log.h"

#include <cstdio>
#include <string>

namespace kleak {
namespace {
LogLevel g_level = LogLevel::warn;
}

void log_set_level(LogLevel level) { g_level = level; }
LogLevel log_level() { return g_level; }
bool log_enabled(LogLevel level) { return static_cast<int>(level) <= static_cast<int>(g_level); }

void log_write(LogLevel level, std::string_view msg) {
  if (!log_enabled(level)) return;
  static constexpr const char* kPrefix[] = {"kleak: error: ", "kleak: warning: ", "kleak: ", "kleak: debug: "};
  std::string line = kPrefix[static_cast<int>(level)];
  line.append(msg);
  while (!line.empty() && line.back() == '\n') line.pop_back();
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace kleak
