// Command lines of `kleak start`, `kleak report` and `kleak stop` (the
// pinned mode, pinned.h). Their options are trace's own definitions
// (options.h), so --size or --format mean the same in every command.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "options/options.h"

namespace kleak {

enum class PinCommand { start, report, stop };

// Statuses of the pinned commands beyond 0/1/2 (docs/usage.md "Pinned sessions").
enum PinExitCode : int {
  kPinSessionState = 3,  // start: a session is already pinned; report/stop: none is
  kPinIncompatible = 4,  // the session was pinned by another kleak build, or in another boot
};

struct PinOptions {
  PinCommand command = PinCommand::report;
  // start: the filters and limits; report/stop: the report's options.
  TraceOptions trace;
  bool mount_bpffs = false;  // start: mount bpffs at /sys/fs/bpf when it is not
  bool report = true;        // stop: print a final report first
  bool force = false;        // stop: unpin a session this kleak cannot read
  std::vector<std::string> args;  // the command's own words, kept in the session's metadata
};

struct ParsedPinCommandLine {
  std::optional<PinOptions> pin;
  int exit_code = kExitOk;
};

// `command` is "start", "report" or "stop"; args[0] is the program name and
// args[1] onwards the command's options. Help to `out`, errors to `err`.
ParsedPinCommandLine parse_pin_command_line(PinCommand command, const std::vector<std::string>& args,
                                            std::ostream& out, std::ostream& err);

// "start" -> PinCommand::start, ...; nullopt for other words.
std::optional<PinCommand> pin_command(const std::string& word);

}  // namespace kleak
