// Where uprobes go on an allocator function: past instructions the kernel
// would single-step, only when that changes nothing the probe sees.
#include <gtest/gtest.h>

#include <vector>

#include "probe/probe_site.h"

namespace kleak {
namespace {

constexpr uint64_t kAt = 0x98ef0;

ProbeSite site(const std::vector<uint8_t>& code) { return choose_probe_site(code.data(), code.size(), kAt); }

TEST(ProbeSite, GlibcFreeMovesPastItsTestToTheBranch) {
  // Debian 12 glibc 2.36 __libc_free: test %rdi,%rdi; je ...; push %rbp; ...
  auto s = site({0x48, 0x85, 0xff, 0x0f, 0x84, 0xbf, 0x00, 0x00, 0x00, 0x55, 0x48, 0x8d, 0x77, 0xf0, 0x53, 0xc3});
  EXPECT_EQ(s.offset, 3u);
  EXPECT_TRUE(s.emulated);
  EXPECT_EQ(s.insn.rfind("je", 0), 0u) << s.insn;
  EXPECT_EQ(s.entry_insn.rfind("test", 0), 0u) << s.entry_insn;
}

TEST(ProbeSite, EmulatedEntryStaysAtTheEntry) {
  // __libc_malloc: push %r12; push %rbp; push %rbx
  auto s = site({0x41, 0x54, 0x55, 0x53, 0xc3});
  EXPECT_EQ(s.offset, 0u);
  EXPECT_TRUE(s.emulated);
}

TEST(ProbeSite, RipRelativeCompareIsMovedOver) {
  // __libc_valloc: cmpb $0x0,0x140e31(%rip); push %rbx
  auto s = site({0x80, 0x3d, 0x31, 0x0e, 0x14, 0x00, 0x00, 0x53, 0xc3});
  EXPECT_EQ(s.offset, 7u);
  EXPECT_TRUE(s.emulated);
}

TEST(ProbeSite, NotPastAWriteToAnArgument) {
  // __libc_reallocarray: mov %rsi,%rax; mul %rdx (writes rdx, the third
  // argument); mov %rax,%rsi; jo ...
  auto s = site({0x48, 0x89, 0xf0, 0x48, 0xf7, 0xe2, 0x48, 0x89, 0xc6, 0x70, 0x05, 0xc3});
  EXPECT_EQ(s.offset, 0u);
  EXPECT_FALSE(s.emulated);
}

TEST(ProbeSite, NotPastAStackPointerChange) {
  // __mremap: sub $0x58,%rsp (a return probe takes the return address at [rsp])
  auto s = site({0x48, 0x83, 0xec, 0x58, 0x90, 0xc3});
  EXPECT_EQ(s.offset, 0u);
  EXPECT_FALSE(s.emulated);
}

TEST(ProbeSite, NotPastControlFlow) {
  // mov $0xb,%eax; syscall; ... (munmap): the syscall cannot be moved over
  auto s = site({0xb8, 0x0b, 0x00, 0x00, 0x00, 0x0f, 0x05, 0x90, 0xc3});
  EXPECT_EQ(s.offset, 0u);
}

TEST(ProbeSite, NotWhereABranchOfTheFunctionLandsInTheMovedOverRange) {
  // 0: test %rdi,%rdi; 3: je 6; 5: ret; 6: jmp 3 -- code reaching 3 from 6
  // would hit a probe there without having entered.
  auto s = site({0x48, 0x85, 0xff, 0x74, 0x01, 0xc3, 0xeb, 0xfb});
  EXPECT_EQ(s.offset, 0u);
  EXPECT_FALSE(s.emulated);
}

TEST(ProbeSite, NothingDecodableStaysAtTheEntry) {
  EXPECT_EQ(site({}).offset, 0u);
  EXPECT_EQ(site({0x0f, 0x0b}).offset, 0u);  // ud2
  EXPECT_EQ(site({0xff}).offset, 0u);        // truncated
}

}  // namespace
}  // namespace kleak
