// The one way kleak's commands run CLI11: help to `out`, a usage error as a
// single line on `err` naming the command, the documented statuses.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace kleak {

// Parses `args` (args[0] is the program name). nullopt: go on; else the
// status to exit with at once (0 after --help, kExitUsage on an error).
// `command` names the command in messages, e.g. "kleak triage".
std::optional<int> parse_cli(CLI::App& app, const std::vector<std::string>& args, const std::string& command,
                             std::ostream& out, std::ostream& err);

}  // namespace kleak
