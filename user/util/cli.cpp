#include "util/cli.h"

#include <ostream>

#include "util/exit_status.h"

namespace kleak {

std::optional<int> parse_cli(CLI::App& app, const std::vector<std::string>& args, const std::string& command,
                             std::ostream& out, std::ostream& err) {
  std::vector<const char*> argv;
  argv.reserve(args.size());
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::CallForHelp&) {
    out << app.help();
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    err << command << ": " << e.what() << " (see " << command << " --help)\n";
    return kExitUsage;
  }
  return std::nullopt;
}

}  // namespace kleak
