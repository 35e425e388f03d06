// The load tier: every BPF object kleak has, in every mode and family
// combination its command line can produce, opened and loaded (never
// attached) on the running kernel, in seconds and without a workload. A
// kernel whose verifier refuses a part shows as one failing case naming the
// program, the mode and the verifier's last line, before any trace test
// runs. What this kernel cannot be expected to load (a tracepoint it lacks,
// a helper the stack cache needs) is asked of the kernel itself, and shown
// as a gap, not a failure. `kleak selftest --loads` prints it; the test
// suite's load tier runs each case as a test.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/degraded.h"
#include "probe/loader.h"
#include "util/result.h"
#include "probe/uprobe_loader.h"

namespace kleak {

struct LoadCase {
  // "kleak.bpf.c families=slab stacks=exact stack-cache=on follow=no filter=none"
  std::string name;
  bool user = false;        // kleak_user.bpf.c, else kleak.bpf.c
  LoaderConfig kernel;      // when !user
  UserLoaderConfig uprobe;  // when user
};

// Every case, in a fixed order; names are unique and usable as test names
// once non-alphanumerics are replaced.
std::vector<LoadCase> load_cases();

// What this kernel lacks that some parts need, asked of the kernel: parts
// (enum kleak_part) it cannot load, each with the reason.
struct KernelGaps {
  uint32_t parts = 0;
  std::vector<Degraded> why;  // one per bit of `parts`
  std::string user_tracer;    // why kleak_user.bpf.c cannot load here, or empty
};
KernelGaps probe_kernel_gaps();

struct LoadOutcome {
  std::string name;
  bool passed = false;
  double ms = 0;
  std::vector<Degraded> gaps;  // dropped, and this kernel lacks what they need
  std::string failure;         // when !passed: the part, the program, the verifier's last line
};

// Loads one case as the command line would (in tiers, nothing asked for by
// name): it passes when everything this kernel can load loaded, and what
// was dropped is only what `gaps` says the kernel lacks.
LoadOutcome run_load_case(const LoadCase& c, const KernelGaps& gaps);

std::string render_load_matrix_text(const std::string& kernel, const std::vector<LoadOutcome>& rows);
nlohmann::json load_matrix_json(const std::string& kernel, const std::vector<LoadOutcome>& rows);

}  // namespace kleak
