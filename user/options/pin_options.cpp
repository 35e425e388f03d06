#include "options/pin_options.h"

#include <ostream>

#include <CLI/CLI.hpp>

#include "util/cli.h"

namespace kleak {
namespace {

constexpr const char* kStartHelp =
    "kleak start: attach kleak's programs and leave them running after kleak exits, pinned in bpffs\n"
    "(/sys/fs/bpf/kleak), for slow leaks tracked over hours or days. `kleak report` reads them,\n"
    "`kleak stop` ends them.";
constexpr const char* kReportHelp =
    "kleak report: one report from the session `kleak start` pinned, as kleak trace prints them\n"
    "(symbolized now). Run it any number of times.";
constexpr const char* kStopHelp =
    "kleak stop: print a final report, then detach and unpin the session `kleak start` pinned.";

constexpr const char* kFooter = R"(
Examples:
  kleak start --size 4096            track 4096-byte allocations from now on, then exit
  kleak report -o 3600000 -T 5       the top 5 stacks of allocations older than an hour
  kleak report --format json         one JSON report (kleak/report/v1)
  kleak stop                         final report, then unpin and detach

Exit status: 0 ok, 1 runtime failure (privileges, bpffs not mounted, load/pin/read
failure), 2 usage error, 3 start: a session is already pinned / report, stop: none is,
4 the session was pinned by another kleak build or in another boot (kleak stop --force
removes it without reading it).)";

const char* name_of(PinCommand c) {
  switch (c) {
    case PinCommand::start: return "start";
    case PinCommand::report: return "report";
    case PinCommand::stop: return "stop";
  }
  return "?";
}

}  // namespace

std::optional<PinCommand> pin_command(const std::string& word) {
  if (word == "start") return PinCommand::start;
  if (word == "report") return PinCommand::report;
  if (word == "stop") return PinCommand::stop;
  return std::nullopt;
}

ParsedPinCommandLine parse_pin_command_line(PinCommand command, const std::vector<std::string>& args,
                                            std::ostream& out, std::ostream& err) {
  const std::string name = std::string("kleak ") + name_of(command);
  PinOptions p;
  p.command = command;
  TraceOptions& o = p.trace;
  OptionStrings strings;
  ParsedPinCommandLine result;
  CLI::App app{command == PinCommand::start    ? kStartHelp
               : command == PinCommand::report ? kReportHelp
                                               : kStopHelp,
               name};
  app.footer(kFooter);
  app.get_formatter()->column_width(34);
  bool no_report = false;
  switch (command) {
    case PinCommand::start:
      add_selection_options(app, o, strings);
      add_limit_options(app, o, strings);
      app.add_flag("--mount-bpffs", p.mount_bpffs,
                   "Mount bpffs at /sys/fs/bpf first when it is not (mount -t bpf bpf /sys/fs/bpf)")
          ->group("Pinning");
      app.add_flag("-q,--quiet", o.quiet, "No banner on stderr")->group("Reporting");
      break;
    case PinCommand::report:
      strings.sort = "bytes";  // the history of a few reports ranks poorly: --sort score asks for it
      add_age_option(app, o, "-o,--older,--min-age");
      add_report_options(app, o, strings);
      {
        const HelpGroup group(app, "Reporting");
        add_reclaim_option(app, o, "Before the report");
      }
      break;
    case PinCommand::stop:
      strings.sort = "bytes";
      add_age_option(app, o, "-o,--older,--min-age");
      add_report_options(app, o, strings);
      {
        const HelpGroup group(app, "Reporting");
        add_reclaim_option(app, o, "Before the final report");
      }
      app.add_flag("--no-report", no_report, "No final report (-q also prints none)")->group("Pinning");
      app.add_flag("--force", p.force,
                   "Unpin even a session another kleak build started (or whose metadata is unreadable), "
                   "without a report")
          ->group("Pinning");
      break;
  }
  add_verbose_option(app, o);
  if (auto status = parse_cli(app, args, name, out, err)) {
    result.exit_code = *status;
    return result;
  }
  const CLI::Option* top = app.get_option_no_throw("--top");  // start has no -T
  Status why = apply_option_strings(o, strings, top && top->count() > 0);
  if (why) why = validate(o);
  if (!why) {
    err << name << ": " << why.error().message << " (see " << name << " --help)\n";
    result.exit_code = kExitUsage;
    return result;
  }
  if (command == PinCommand::stop) p.report = !no_report && !o.quiet && !p.force;
  p.args.assign(args.begin() + (args.empty() ? 0 : 1), args.end());
  result.pin = p;
  return result;
}

}  // namespace kleak
