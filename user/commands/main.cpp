// kleak: parse, build, run. Everything else lives in its own file.
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "commands/ci.h"
#include "util/log.h"
#include "options/options.h"
#include "commands/selftest.h"
#include "options/pin_options.h"
#include "commands/pinned.h"
#include "commands/serve.h"
#include "commands/trace.h"
#include "commands/triage.h"
#include "options/triage_options.h"
#include "options/user_options.h"
#include "commands/user_space.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  try {
    if (args.size() > 1 && args[1] == "triage") {
      args.erase(args.begin() + 1);
      kleak::ParsedTriageCommandLine cl = kleak::parse_triage_command_line(args, std::cout, std::cerr);
      if (!cl.triage) return cl.exit_code;
      return kleak::run_triage(*cl.triage);
    }
    if (args.size() > 1 && args[1] == "selftest") {
      args.erase(args.begin() + 1);
      kleak::ParsedSelftestCommandLine cl = kleak::parse_selftest_command_line(args, std::cout, std::cerr);
      if (!cl.selftest) return cl.exit_code;
      return kleak::run_selftest(*cl.selftest);
    }
    if (args.size() > 1 && args[1] == "serve") {
      args.erase(args.begin() + 1);
      kleak::ParsedCommandLine cl = kleak::parse_command_line(args, std::cout, std::cerr, kleak::CommandKind::serve);
      if (!cl.trace) return cl.exit_code;
      return kleak::run_serve(*cl.trace);
    }
    if (auto pin = args.size() > 1 ? kleak::pin_command(args[1]) : std::nullopt) {
      args.erase(args.begin() + 1);
      kleak::ParsedPinCommandLine cl = kleak::parse_pin_command_line(*pin, args, std::cout, std::cerr);
      if (!cl.pin) return cl.exit_code;
      return kleak::run_pinned(*cl.pin);
    }
    if (args.size() > 1 && args[1] == "user") {
      args.erase(args.begin() + 1);
      kleak::ParsedUserCommandLine cl = kleak::parse_user_command_line(args, std::cout, std::cerr);
      if (!cl.user) return cl.exit_code;
      return kleak::run_user(*cl.user);
    }
    // `kleak trace ...` and `kleak ...` are the same command.
    if (args.size() > 1 && args[1] == "trace") args.erase(args.begin() + 1);
    kleak::ParsedCommandLine cl = kleak::parse_command_line(args, std::cout, std::cerr);
    if (!cl.trace) return cl.exit_code;
    if (cl.trace->ci.enabled) return kleak::run_ci(*cl.trace);
    return kleak::run_trace(*cl.trace);
  } catch (const std::exception& e) {
    kleak::log_error("{}", e.what());
    return kleak::kExitFailure;
  }
}
