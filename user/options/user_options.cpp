#include "options/user_options.h"

#include <algorithm>
#include <charconv>
#include <ostream>

#include <CLI/CLI.hpp>

#include "util/cli.h"
#include "model/abi.h"

namespace kleak {
namespace {

constexpr const char* kDescription =
    "kleak user: find user-space memory leaks of running processes or of a command.\n"
    "Probes the allocator (glibc malloc, calloc, realloc, reallocarray, posix_memalign,\n"
    "aligned_alloc, memalign, valloc, pvalloc, free, and mmap/munmap/mremap) with\n"
    "uprobes and reports the blocks still outstanding, grouped by user stack.";

constexpr const char* kExamples = R"(
Examples:
  kleak user -p 1234                   report process 1234's outstanding heap every 10 s
  kleak user -p 1234 -o 60000 -d 600   blocks older than a minute, one report after 10 min
  kleak user -c "./server --port 80"   start the command with the probes in place; report at its exit
  kleak user -- ./a.out arg1 'arg 2'   the same, arguments given as they are
  kleak user -p 1234 --obj /usr/lib/x86_64-linux-gnu/libjemalloc.so.2
  kleak user --ci --junit leaks.xml -- ./unit-tests   CI: fail if the tests leave blocks behind
  kleak user --format folded -- ./a.out > a.folded   flame graph input (flamegraph.pl, inferno)
  kleak triage                         first: which process's memory grows?

Stacks are walked with frame pointers: build with -fno-omit-frame-pointer for
deep stacks. With -c (or --) the final report is what was outstanding when the
command exited, like valgrind's "definitely + indirectly + still reachable".
Exit status: 0 ok, 1 runtime failure (privileges, attach, a process gone), 2 usage.
With --ci: 0 no leak, 1 leak found, 2 usage, 3 incomplete (blocks lost, or
interrupted), 4 cannot trace here (privileges, attach).)";

bool parse_pids(const std::string& s, std::vector<uint32_t>& out) {
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    std::string_view w(s.data() + pos, (comma == std::string::npos ? s.size() : comma) - pos);
    uint32_t pid = 0;
    auto [p, ec] = std::from_chars(w.data(), w.data() + w.size(), pid);
    if (w.empty() || ec != std::errc() || p != w.data() + w.size() || pid == 0) return false;
    out.push_back(pid);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return true;
}

}  // namespace

std::optional<std::vector<std::string>> split_command(const std::string& s) {
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quote) {
      if (c == quote) quote = 0;
      else if (c == '\\' && quote == '"' && i + 1 < s.size()) cur += s[++i];
      else cur += c;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(std::move(cur));
      cur.clear();
      in_word = false;
      continue;
    }
    in_word = true;
    if (c == '\'' || c == '"') quote = c;
    else if (c == '\\' && i + 1 < s.size()) cur += s[++i];
    else cur += c;
  }
  if (quote) return std::nullopt;
  if (in_word) words.push_back(std::move(cur));
  return words;
}

Status validate(const UserOptions& o) {
  if (o.pids.empty() && o.command.empty()) return make_error("say what to trace: -p PID, -c \"CMD ARGS\" or -- CMD ARGS", 0);
  if (!o.pids.empty() && !o.command.empty()) return make_error("-p and a command exclude each other", 0);
  if (o.pids.size() > KLEAK_USER_MAX_PIDS) return make_error("at most 64 processes with -p", 0);
  for (size_t i = 0; i < o.pids.size(); ++i)
    if (std::find(o.pids.begin(), o.pids.begin() + static_cast<std::ptrdiff_t>(i), o.pids[i]) !=
        o.pids.begin() + static_cast<std::ptrdiff_t>(i))
      return make_error("-p names a process twice", 0);
  const TraceOptions& r = o.report;
  if (r.interval_s < 0) return make_error("interval must be positive", 0);
  if (r.count > 0 && r.interval_s <= 0) return make_error("a report count needs an interval", 0);
  if (r.duration_s < 0) return make_error("--duration must be positive", 0);
  if (r.top == 0) return make_error("--top must be at least 1", 0);
  if (r.hide_addresses && r.show_allocs) return make_error("--hide-addresses excludes -a", 0);
  if (r.min_size_bytes > r.max_size_bytes) return make_error("--min-size is larger than --max-size", 0);
  if (r.max_allocs == 0) return make_error("--max-allocs must be at least 1", 0);
  if (r.stack_storage_size == 0) return make_error("--stack-storage-size must be at least 1", 0);
  if (r.stack_sample_every == 0 || r.stack_sample_every > 1000000) return make_error("--stack-sample must be 1 to 1000000", 0);
  if (!o.obj.empty() && o.obj[0] != '/') return make_error("--obj wants an absolute path", 0);
  if (r.ci.enabled && o.command.empty() && r.duration_s <= 0) return make_error("--ci needs a command (-c or --) or --duration", 0);
  if (r.ci.enabled && (r.interval_s > 0 || r.count > 0)) return make_error("--ci takes no interval or count", 0);
  if (r.ci.enabled && is_snapshot_format(r.format)) return make_error("--ci reports as text or json (--report-json for a file)", 0);
  if (!r.ci.enabled && (r.ci.fail_on_bytes || r.ci.fail_on_count || !r.ci.baseline_path.empty() ||
                        !r.ci.ignore.empty() || !r.ci.report_json_path.empty() || !r.ci.junit_path.empty() ||
                        !r.ci.ktap_path.empty()))
    return make_error("the CI options need --ci", 0);
  return {};
}

namespace {

void add_target_options(CLI::App& app, UserOptions& o, std::string& pids, std::string& command) {
  const HelpGroup group(app, "What to trace");
  app.add_option("-p,--pid", pids, "Processes to trace: PID or PID,PID,... (at most 64)");
  app.add_option("-c,--command", command,
                 "Start CMD ARGS (split at blanks, quotes kept, PATH searched) with the probes in place; "
                 "or give the command after --");
  app.add_option("--obj", o.obj,
                 "The allocator library to probe (jemalloc, tcmalloc, mimalloc, a static binary); default: "
                 "the libc the process maps");
  app.add_option("--symbols-prefix", o.symbols_prefix, "Prefix of the allocator's function names, e.g. je_");
}

void add_user_report_options(CLI::App& app, TraceOptions& r, OptionStrings& strings) {
  {
    const HelpGroup group(app, "Selection");
    app.add_option("-z,--min-size", r.min_size_bytes, "Only blocks of at least BYTES");
    app.add_option("-Z,--max-size", r.max_size_bytes, "Only blocks of at most BYTES");
    app.add_option("--size", strings.exact_size, "Only blocks of exactly BYTES")
        ->excludes(app.get_option("--min-size"))
        ->excludes(app.get_option("--max-size"));
    app.add_option("-o,--older", r.min_age_ms,
                   "Report only blocks older than MS milliseconds (default 0 with a command, 5000 with -p)");
  }
  {
    const HelpGroup group(app, "Reporting");
    app.add_option("interval", r.interval_s,
                   "Seconds between reports (default 10 with -p; with a command only the final report)");
    app.add_option("count", r.count, "Number of reports, then exit");
    app.add_option("-d,--duration", r.duration_s, "Trace for SECONDS, print the final report, exit 0");
    app.add_option("-T,--top", r.top, "Show the top N stacks (default 10)");
    app.add_option("--sort", strings.sort, "Rank stacks by score (default: steady growth first), bytes, count or growth")
        ->check(CLI::IsMember({"score", "bytes", "count", "growth"}));
    app.add_flag("-a,--show-allocs", r.show_allocs, "List each outstanding block: address, size, age, thread");
    add_output_options(app, r, strings, "blocks");
    app.add_flag("-q,--quiet", r.quiet, "No banner on stderr");
    app.add_flag("--hide-addresses", r.hide_addresses, "No raw addresses in reports (excludes -a)");
  }
  {
    const HelpGroup group(app, "Limits");
    add_map_size_options(app, r, strings, "block");
    app.add_flag("-v,--verbose", r.verbosity, "More logging: -v info, -vv libbpf debug and verifier log");
  }
  {
    const HelpGroup group(app, "CI mode (kleak user --ci [options] -- COMMAND ARGS...)");
    app.add_flag("--ci", r.ci.enabled,
                 "Judge instead of report: run COMMAND (or trace -p for --duration), exit 1 if blocks are left");
    add_ci_verdict_options(app, r.ci);
  }
}

}  // namespace

ParsedUserCommandLine parse_user_command_line(const std::vector<std::string>& args, std::ostream& out,
                                              std::ostream& err) {
  UserOptions o;
  TraceOptions& r = o.report;
  ParsedUserCommandLine result;
  CLI::App app{kDescription, "kleak user"};
  app.footer(kExamples);
  app.get_formatter()->column_width(34);

  std::string pids, command;
  OptionStrings strings;  // --format, --sort, --size: applied as kleak trace applies them
  add_target_options(app, o, pids, command);
  add_user_report_options(app, r, strings);

  std::vector<std::string> own(args);
  if (auto dd = std::find(own.begin(), own.end(), "--"); dd != own.end()) {
    o.command.assign(dd + 1, own.end());
    own.erase(dd, own.end());
    if (o.command.empty()) {
      err << "kleak user: nothing after -- (see kleak user --help)\n";
      result.exit_code = kExitUsage;
      return result;
    }
  }
  if (auto status = parse_cli(app, own, "kleak user", out, err)) {
    result.exit_code = *status;
    return result;
  }
  auto usage = [&](const std::string& why) {
    err << "kleak user: " << why << " (see kleak user --help)\n";
    result.exit_code = kExitUsage;
    return result;
  };
  if (!pids.empty() && !parse_pids(pids, o.pids)) return usage("-p wants PID or PID,PID,... (positive numbers)");
  if (app.count("--command") > 0) {
    if (!o.command.empty()) return usage("-c and a command after -- exclude each other");
    auto words = split_command(command);
    if (!words) return usage("-c: unterminated quote");
    if (words->empty()) return usage("-c: empty command");
    o.command = std::move(*words);
  }
  if (auto why = apply_option_strings(r, strings, app.count("--top") > 0); !why) return usage(why.error().message);
  if (app.count("--older") == 0) r.min_age_ms = o.command.empty() ? 5000 : 0;
  if (app.count("interval") > 0 && r.interval_s <= 0) return usage("interval must be positive");
  if (r.interval_s == 0 && r.duration_s == 0 && app.count("interval") == 0 && o.command.empty() && !r.ci.enabled)
    r.interval_s = 10;
  if (auto why = validate(o); !why) return usage(why.error().message);
  result.user = std::move(o);
  return result;
}

}  // namespace kleak
