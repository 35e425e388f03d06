// What the root/BPF test tiers need from the environment, and how they react
// when it is missing: skip with the reason when run by hand, fail under
// CI=true, where a skip would hide a regression.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace kleak::test {

// Empty if this process can load and attach BPF programs (root with BTF),
// else why not.
std::string bpf_unavailable_reason();
bool running_in_ci();

// What the running kernel has, asked of its BTF (never of its version):
// a tracepoint (its btf_trace_<name> typedef), a member of a struct.
bool kernel_has_tracepoint(const std::string& name);
bool kernel_has_member(const std::string& type, const std::string& member);
// Whether the kernel loads an fentry program on kmem_cache_free_bulk (the
// bulk-free follower's program type), asked with a program of the test's
// own, not kleak's: some kernels forbid the type (EPERM).
bool kernel_loads_fentry();

// Names of loaded BPF programs whose name starts with "kleak_", except those
// already loaded when this test process took the machine lock (not a test's:
// e.g. bench/soak.py runs for an hour without the lock).
std::vector<std::string> loaded_kleak_programs();

// Polls until loaded_kleak_programs() is empty (program teardown after the
// last fd closes is deferred by RCU) or the timeout passes.
bool no_kleak_programs_within(std::chrono::milliseconds timeout);

}  // namespace kleak::test

// In a TEST body or SetUp: when `why` (a std::string) is not empty, the
// test cannot run here: skipped with that reason when run by hand, failed
// under CI=true, where a skip would hide a regression. The one way a test
// of kleak skips.
#define KLEAK_REQUIRE(why)                                                             \
  do {                                                                                 \
    const std::string why_ = (why);                                                    \
    if (!why_.empty()) {                                                               \
      if (::kleak::test::running_in_ci()) FAIL() << "CI=true, but cannot run: " << why_; \
      GTEST_SKIP() << why_;                                                            \
    }                                                                                  \
  } while (0)

namespace kleak::test {

// Why the test cannot run without root (`what` it needs root for), or empty.
std::string root_unavailable_reason(const std::string& what);

// The base of every test that loads kleak's programs: BPF required
// (KLEAK_REQUIRE) before its body runs.
class BpfTest : public ::testing::Test {
 protected:
  void SetUp() override { KLEAK_REQUIRE(bpf_unavailable_reason()); }
};

}  // namespace kleak::test
