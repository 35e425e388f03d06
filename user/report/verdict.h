// CI verdicts: which outstanding stacks count as leaks (after the baseline,
// --ignore patterns and reclaimable caches are set aside), whether they pass
// the thresholds, and the verdict as JUnit XML or KTAP. Pure: no BPF here.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/aggregate.h"
#include "analysis/reclaim.h"
#include "report/report.h"
#include "util/exit_status.h"
#include "util/result.h"

namespace kleak {

// What counts as a leak and when it fails a CI run (--fail-on-bytes,
// --ignore, ...): options/options.h's CiOptions is one of these.
struct VerdictRules {
  std::optional<uint64_t> fail_on_bytes;
  std::optional<uint64_t> fail_on_count;
  std::vector<std::string> ignore;    // fnmatch patterns on frame functions
  bool include_reclaimable = false;   // judge reclaimable caches (dentries, inodes) too
  bool include_unverified = false;    // judge stacks whose cache/site showed missed (bulk) frees
  bool no_known_caches = false;       // judge the built-in bounded kernel caches too
};

// Stack keys of an earlier kleak JSON report (one document, or JSON lines:
// every stack of every report counts). An empty path (no --baseline): none.
Result<std::set<std::string>> load_baseline(const std::string& path);
std::set<std::string> parse_baseline(const std::string& text, std::string* error);

// The name of the bounded kernel cache a stack fills (see verdict.cpp), or
// empty.
std::string known_cache(const std::vector<Frame>& frames);

// Why a stack is not judged ("reclaimable", "unverified", "known-cache",
// "baseline", "ignored"), or empty when it is. `missed_frees`: frees seen to bypass
// kleak's hooks for the stack's cache or call site.
std::string suppression(const std::vector<Frame>& frames, const std::string& key, bool reclaimable,
                        uint64_t missed_frees, const VerdictRules& ci, const std::set<std::string>& baseline);

struct Verdict {
  CiExitCode status = kCiPass;
  std::string summary;  // one line
  uint64_t leak_bytes = 0;
  uint64_t leak_count = 0;
  uint64_t leak_stacks = 0;
  uint64_t suppressed_baseline = 0;  // stacks
  uint64_t suppressed_ignored = 0;
  uint64_t suppressed_reclaimable = 0;
  uint64_t suppressed_unverified = 0;
  uint64_t suppressed_known_cache = 0;
  bool complete = true;
  std::string interrupted;  // why the run was cut short, if it was
  ReclaimTally reclaim;     // what reclaim freed before the verdict: cache-owned, never judged
};

// Counts a stack set aside for `why` (a suppression() reason; empty: none).
void count_suppressed(Verdict& v, const std::string& why);

// Splits `agg` into the groups that are judged (returned, ranked, totals
// recomputed) and tallies the rest into `v`.
Aggregate judged_groups(const Aggregate& agg, const SnapshotInfo& snap, const VerdictRules& ci,
                        const std::set<std::string>& baseline, Symbolizer& syms, const StackSource& stacks,
                        Verdict& v);

// Fills status and summary from the judged totals and thresholds.
void decide(Verdict& v, const VerdictRules& ci);

nlohmann::json verdict_json(const Verdict& v, const VerdictRules& ci, const std::vector<std::string>& command);
// `testcase`: what was judged, "kernel" or "user" (kernel-memory-leaks,
// kleak_kernel_memory_leaks).
std::string junit_xml(const Verdict& v, const std::string& details, double seconds,
                      const std::string& testcase = "kernel");
std::string ktap(const Verdict& v, const std::string& details, const std::string& testcase = "kernel");

}  // namespace kleak
