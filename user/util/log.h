// One logger for kleak: everything human-facing that is not a report goes to
// stderr through it.
//
// Levels: error and warn are always shown; info with -v; debug with -vv
// (which also turns on libbpf's debug output and the verifier log).
#pragma once

#include <string_view>

#include <fmt/format.h>

namespace kleak {

enum class LogLevel { error = 0, warn = 1, info = 2, debug = 3 };

void log_set_level(LogLevel level);
LogLevel log_level();
bool log_enabled(LogLevel level);
void log_write(LogLevel level, std::string_view msg);

template <typename... Args>
void log_error(fmt::format_string<Args...> f, Args&&... args) {
  log_write(LogLevel::error, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... args) {
  log_write(LogLevel::warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_info(fmt::format_string<Args...> f, Args&&... args) {
  if (log_enabled(LogLevel::info)) log_write(LogLevel::info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_debug(fmt::format_string<Args...> f, Args&&... args) {
  if (log_enabled(LogLevel::debug)) log_write(LogLevel::debug, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace kleak
