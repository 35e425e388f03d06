// Command-line options for `kleak triage`: parsed into one value struct and
// validated in one place, beside the trace options in options.h.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "options/options.h"

namespace kleak {

struct TriageOptions {
  double interval_s = 2;   // between samples
  double duration_s = 60;  // sample for this long (about a minute by default)
  uint32_t top = 10;       // growing series shown per section
  OutputFormat format = OutputFormat::text;
  int verbosity = 0;
  bool quiet = false;

  // Bounds that keep the sample count, and so memory, reasonable: 5000
  // samples of ~1000 series is ~80 MB.
  static constexpr double kMaxIntervalS = 3600;
  static constexpr double kMaxDurationS = 7 * 24 * 3600;
  static constexpr double kMaxSamples = 5000;
};

struct ParsedTriageCommandLine {
  std::optional<TriageOptions> triage;
  int exit_code = kExitOk;
};

// args[0] is the program name; "triage" itself already removed. Prints help
// to `out`, one-line errors to `err`.
ParsedTriageCommandLine parse_triage_command_line(const std::vector<std::string>& args, std::ostream& out,
                                                  std::ostream& err);

// Whether the options are consistent; the error is a one-line reason.
Status validate(const TriageOptions& opts);

}  // namespace kleak
