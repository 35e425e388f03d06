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

// Options added to `app` while a HelpGroup lives are listed under `name` in
// --help (CLI11's option defaults); the group before it comes back after.
class HelpGroup {
 public:
  HelpGroup(CLI::App& app, const std::string& name) : app_(app), before_(app.option_defaults()->get_group()) {
    app.option_defaults()->group(name);
  }
  ~HelpGroup() { app_.option_defaults()->group(before_); }
  HelpGroup(const HelpGroup&) = delete;
  HelpGroup& operator=(const HelpGroup&) = delete;

 private:
  CLI::App& app_;
  std::string before_;
};

}  // namespace kleak
