// Writing a CI verdict: the report with its `ci` section (text or JSON, to
// --output or stdout), then --report-json, --junit and --ktap. Shared by
// `kleak --ci` (ci.cpp) and `kleak user --ci` (user_space.cpp), so both
// print and exit the same way.
#pragma once

#include <optional>
#include <set>
#include <string>

#include "options/options.h"
#include "pipeline/pipeline.h"
#include "report/report.h"
#include "util/sys.h"
#include "report/verdict.h"

namespace kleak {

struct CiRun {
  std::string tool;                  // "kleak --ci", "kleak user --ci": prefixes the verdict line
  std::string testcase = "kernel";   // JUnit/KTAP test name: kernel-memory-leaks, user-memory-leaks
  std::optional<int> command_status;  // the command's exit status (or 128 + signal); none without one
  double traced_s = 0;                // from attach to the command's exit (or --duration)
  double elapsed_s = 0;               // the whole run, for JUnit
};

// Writes `r` with the verdict `v` as `opts.format` (text, or json/jsonl)
// to `out`, then the verdict files `opts.ci` names. Returns the exit
// status: v.status, or kCiIncomplete when something could not be written.
int write_ci_verdict(const Report& r, const Verdict& v, const TraceOptions& opts, const CiRun& run, Output& out);

// --ci's last step, kernel and user alike: the final report of `pipeline`,
// its stacks judged against `baseline` into `v`, the verdict decided and
// written. `run` comes without elapsed_s (set here, from the pipeline's
// start); a traced_s of 0 means the whole run. Returns a CiExitCode.
int judge_final_report(Pipeline& pipeline, const TraceOptions& opts, const std::set<std::string>& baseline,
                       Verdict& v, CiRun run, Output& out);

}  // namespace kleak
