// The base of the tests that load and attach kleak's programs in the test
// process itself (tracer_test, family_test): BPF required, libbpf's messages
// bridged, kernel symbols read once.
#pragma once

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "child.h"
#include "env.h"
#include "symbols/ksyms.h"
#include "probe/loader.h"
#include "probe/snapshot.h"

namespace kleak::test {

// /proc/kallsyms, read once per test process (empty when unreadable).
const Ksyms& kernel_symbols();

class LoaderFixture : public BpfTest {
 protected:
  // BPF required (BpfTest); fails when /proc/kallsyms names too few
  // symbols to resolve stacks.
  void SetUp() override;

  // Loads and attaches with `cfg`, this process excluded (self_tgid); nullptr,
  // with the error recorded as a test failure, when that fails.
  static std::unique_ptr<Loader> attach(LoaderConfig cfg = {});

  // Every live record now; empty, with the error recorded, when the read fails.
  static Snapshot snapshot(Loader& l);

  // Reads c's next line and asserts it is `want`.
  static void expect_line(Child& c, const std::string& want);
};

}  // namespace kleak::test
