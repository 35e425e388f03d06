// The load tier: every BPF object in every mode and family combination the
// command line can produce, opened and loaded (not attached) on this
// kernel (user/probe/load_matrix.h). It needs no workload and runs first
// (scripts/test.sh), so a kernel whose verifier refuses a part shows as the
// cases that name it: the program, the mode, the verifier's last line.
#include <cctype>
#include <iostream>

#include <gtest/gtest.h>

#include "probe/bpf_load.h"
#include "env.h"
#include "probe/load_matrix.h"

namespace kleak::test {
namespace {

class Loads : public ::testing::TestWithParam<LoadCase> {
 protected:
  static void SetUpTestSuite() {
    install_libbpf_logger();
    gaps_ = probe_kernel_gaps();
  }
  static KernelGaps gaps_;
};
KernelGaps Loads::gaps_;

TEST_P(Loads, EveryPartThisKernelCanHaveLoads) {
  KLEAK_REQUIRE(bpf_unavailable_reason());
  const LoadCase& c = GetParam();
  LoadOutcome o = run_load_case(c, gaps_);
  EXPECT_TRUE(o.passed) << c.name << ": " << o.failure;
  // What this kernel lacks is not a failure, but it is said.
  for (const Degraded& g : o.gaps) std::cout << c.name << ": without " << g.part << ": " << g.reason << "\n";
}

std::string case_name(const ::testing::TestParamInfo<LoadCase>& info) {
  std::string n;
  for (char ch : info.param.name) n += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(Matrix, Loads, ::testing::ValuesIn(load_cases()), case_name);

}  // namespace
}  // namespace kleak::test
