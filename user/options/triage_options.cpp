#include "options/triage_options.h"

#include <ostream>

#include <CLI/CLI.hpp>

#include "util/cli.h"

namespace kleak {
namespace {

constexpr const char* kDescription =
    "kleak triage: which memory grows? Samples /proc/meminfo, /proc/slabinfo and every\n"
    "process's /proc/PID/smaps_rollup, then ranks what grew steadily and names the kleak\n"
    "command to run next. No BPF; as non-root it skips /proc/slabinfo and other users' processes.";

constexpr const char* kExamples = R"(
Examples:
  kleak triage                          sample every 2 s for 60 s, then report
  kleak triage --interval 10 --duration 1800
                                        a slower leak: every 10 s for half an hour
  kleak triage --format json | jq .next_step
                                        the suggested next command, for scripts

Ctrl-C (or SIGTERM) stops sampling early and still prints the report.
Exit status: 0 ok, 1 runtime failure (/proc/meminfo unreadable, output error), 2 usage error.)";

}  // namespace

Status validate(const TriageOptions& o) {
  // Negated comparisons so NaN fails them too.
  if (!(o.interval_s > 0)) return make_error("--interval must be positive", 0);
  if (!(o.interval_s <= TriageOptions::kMaxIntervalS)) return make_error("--interval must be at most 3600 seconds", 0);
  if (!(o.duration_s >= 2 * o.interval_s))
    return make_error("--duration must be at least twice --interval (a trend needs three samples)", 0);
  if (!(o.duration_s <= TriageOptions::kMaxDurationS)) return make_error("--duration must be at most 7 days", 0);
  if (!(o.duration_s / o.interval_s <= TriageOptions::kMaxSamples))
    return make_error("--duration / --interval must be at most 5000 samples", 0);
  if (o.top == 0) return make_error("--top must be at least 1", 0);
  return {};
}

ParsedTriageCommandLine parse_triage_command_line(const std::vector<std::string>& args, std::ostream& out,
                                                  std::ostream& err) {
  TriageOptions o;
  ParsedTriageCommandLine result;
  CLI::App app{kDescription, "kleak triage"};
  app.footer(kExamples);
  app.get_formatter()->column_width(30);
  std::string format = "text";
  app.add_option("-i,--interval", o.interval_s, "Seconds between samples (default 2)");
  app.add_option("-d,--duration", o.duration_s, "Seconds to sample for (default 60; at least twice --interval)");
  app.add_option("-T,--top", o.top, "Growing series shown per section (default 10)");
  app.add_option("--format", format, "Report format: text or json (one document)")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_flag("-q,--quiet", o.quiet, "No banner on stderr");
  app.add_flag("-v,--verbose", o.verbosity, "More logging");

  if (auto status = parse_cli(app, args, "kleak triage", out, err)) {
    result.exit_code = *status;
    return result;
  }
  o.format = format == "json" ? OutputFormat::json : OutputFormat::text;
  if (auto why = validate(o); !why) {
    err << "kleak triage: " << why.error().message << " (see kleak triage --help)\n";
    result.exit_code = kExitUsage;
    return result;
  }
  result.triage = o;
  return result;
}

}  // namespace kleak
