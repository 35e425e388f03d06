// `kleak selftest` (and `kleak --selftest` before tracing): from a child
// process, trigger one known allocate/free pair in every family kleak
// traces, check each is recorded at the expected stack and paired with its
// free, and print a coverage matrix for this kernel.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/degraded.h"
#include "options/options.h"
#include "probe/snapshot.h"

namespace kleak {

struct SelftestOptions {
  OutputFormat format = OutputFormat::text;
  int verbosity = 0;
  bool loads = false;  // --loads: the load matrix (load_matrix.h) instead of the pairs
};

struct ParsedSelftestCommandLine {
  std::optional<SelftestOptions> selftest;
  int exit_code = kExitOk;
};

// args[0] is the program name; "selftest" itself already removed.
ParsedSelftestCommandLine parse_selftest_command_line(const std::vector<std::string>& args, std::ostream& out,
                                                      std::ostream& err);

enum class Coverage {
  ok,           // recorded at the expected stack, then paired with its free
  not_covered,  // this kernel lacks the attach point, or the trigger cannot run here
  missed,       // should work here but was not recorded, or its free was not seen
};

struct CoverageRow {
  std::string family;   // "kmalloc", "kmem_cache", "page", "percpu", "vmalloc", "rcu"
  std::string attach;   // "kmem/kmalloc, kmem/kfree"
  std::string trigger;  // what the child did
  Coverage result = Coverage::missed;
  uint64_t recorded = 0;  // records found at the expected stack
  uint64_t freed = 0;     // of those, gone after the free
  double free_ms = 0;     // from the free's trigger to the last record gone
  std::string detail;     // why not covered / missed
};

struct SelftestReport {
  std::string kernel;
  std::vector<CoverageRow> rows;
  std::vector<Degraded> degraded;  // parts the loader dropped on this kernel
  RecursionMisses recursion;
  // True when no family that should work here failed.
  bool passed() const;
};

const char* coverage_name(Coverage c);
std::string render_selftest_text(const SelftestReport& r);
nlohmann::json selftest_json(const SelftestReport& r);

// Attaches every family for a child process, runs the triggers, detaches.
// Fails only when kleak cannot run at all (privileges, BTF, load).
Result<SelftestReport> run_selftest_checks();

// `kleak selftest`: prints the matrix; 0 when passed, 1 when a family that
// should work did not (or kleak cannot run here).
int run_selftest(const SelftestOptions& opts);

}  // namespace kleak
