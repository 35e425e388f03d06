// The user-space symbolizer: /proc/PID/maps parsing, ELF symbols and file
// offsets of a real binary (the test leaker, built -O0 -g), and resolving
// addresses of this very process (PIE, ASLR) through its maps.
#include "symbols/usyms.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include "report/user_report.h"

namespace kleak {
namespace {

TEST(ProcMaps, ParsesFileAnonymousAndSpecialLines) {
  const char* text =
      "55d0c0a00000-55d0c0a01000 r--p 00000000 fe:01 1234567                    /usr/bin/prog\n"
      "55d0c0a01000-55d0c0a05000 r-xp 00001000 fe:01 1234567                    /usr/bin/prog\n"
      "55d0c1e2a000-55d0c1e4b000 rw-p 00000000 00:00 0                          [heap]\n"
      "7f1e2c000000-7f1e2c021000 rw-p 00000000 00:00 0 \n"
      "garbage line\n"
      "7f1e2d028000-7f1e2d1bd000 r-xp 00028000 fe:01 2345 /usr/lib/x86_64-linux-gnu/libc.so.6 (deleted)\n"
      "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n";
  auto maps = parse_proc_maps(text);
  ASSERT_EQ(maps.size(), 6u);
  EXPECT_EQ(maps[1].start, 0x55d0c0a01000u);
  EXPECT_EQ(maps[1].end, 0x55d0c0a05000u);
  EXPECT_EQ(maps[1].offset, 0x1000u);
  EXPECT_EQ(maps[1].inode, 1234567u);
  EXPECT_TRUE(maps[1].exec);
  EXPECT_FALSE(maps[0].exec);
  EXPECT_EQ(maps[1].path, "/usr/bin/prog");
  EXPECT_EQ(maps[2].path, "[heap]");
  EXPECT_EQ(maps[3].path, "");
  EXPECT_EQ(maps[4].path, "/usr/lib/x86_64-linux-gnu/libc.so.6 (deleted)");
  EXPECT_EQ(maps[5].path, "[vsyscall]");
}

TEST(ProcMaps, EmptyAndTruncatedInputs) {
  EXPECT_TRUE(parse_proc_maps("").empty());
  EXPECT_TRUE(parse_proc_maps("55d0c0a00000-55d0c0a01000 r--p").empty());
  EXPECT_TRUE(parse_proc_maps("2000-1000 r--p 00000000 fe:01 1 /x\n").empty());  // end before start
}

TEST(ElfFile, SymbolsOffsetsAndLinesOfTheTestLeaker) {
  auto f = ElfFile::open(KLEAK_ULEAK_BIN);
  ASSERT_TRUE(f.ok()) << f.error().message;
  auto v = (*f)->symbol_vaddr("leak_malloc");
  ASSERT_TRUE(v);
  const ElfFile::Sym* s = (*f)->find(*v + 4);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->name, "leak_malloc");
  auto off = (*f)->file_offset(*v);
  ASSERT_TRUE(off);
  EXPECT_EQ((*f)->vaddr_of_offset(*off), *v);
  if ((*f)->has_debug_info()) {
    EXPECT_NE((*f)->source_line(*v + 4).find("uleak.c:"), std::string::npos);
  }
  EXPECT_FALSE((*f)->symbol_vaddr("no_such_function_here"));
}

TEST(ElfFile, NotAnElfFileIsAnError) {
  EXPECT_FALSE(ElfFile::open("/proc/self/status").ok());
  EXPECT_FALSE(ElfFile::open("/nonexistent/file").ok());
}

__attribute__((noinline)) int usyms_test_marker(int x) { return x * 3 + 1; }

TEST(UserSymbolizer, ResolvesThisProcessThroughItsMaps) {
  UserSymbolizer syms;
  const uint32_t pid = static_cast<uint32_t>(getpid());
  ASSERT_TRUE(syms.refresh(pid));
  const uint64_t addr = reinterpret_cast<uint64_t>(&usyms_test_marker);
  UserFrame f = syms.resolve(pid, addr + 1, /*return_address=*/false);
  EXPECT_NE(f.symbol.find("usyms_test_marker"), std::string::npos) << f.symbol;
  EXPECT_EQ(f.offset, 1u);
  EXPECT_FALSE(f.module.empty());
  // Unmapped: nothing.
  UserFrame none = syms.resolve(pid, 0x10, false);
  EXPECT_TRUE(none.symbol.empty());
  EXPECT_TRUE(none.module.empty());
}

TEST(UserSymbolizer, KeepsTheLastMapsOfAGoneProcess) {
  UserSymbolizer syms;
  ASSERT_TRUE(syms.refresh(static_cast<uint32_t>(getpid())));
  const size_t n = syms.maps(static_cast<uint32_t>(getpid())).size();
  EXPECT_GT(n, 0u);
  EXPECT_FALSE(syms.refresh(999999999));
  EXPECT_TRUE(syms.maps(999999999).empty());
  EXPECT_EQ(syms.maps(static_cast<uint32_t>(getpid())).size(), n);
}

Frame named(const std::string& s) {
  Frame f;
  f.symbol = s;
  return f;
}

TEST(UserReport, ShallowStacksAreNamed) {
  EXPECT_TRUE(reaches_thread_start({named("leak"), named("main"), named("__libc_start_call_main")}));
  EXPECT_TRUE(reaches_thread_start({named("worker"), named("start_thread")}));
  EXPECT_FALSE(reaches_thread_start({named("leak"), named("libfoo.so")}));
  EXPECT_FALSE(reaches_thread_start({}));

  Report r;
  StackReport deep, cut;
  deep.frames = {named("leak"), named("main"), named("_start")};
  cut.frames = {named("leak")};
  r.stacks = {deep, cut};
  EXPECT_NE(shallow_stack_note(r).find("1 of 2 stacks"), std::string::npos);
  EXPECT_NE(shallow_stack_note(r).find("-fno-omit-frame-pointer"), std::string::npos);
  r.stacks = {deep, deep, cut};
  EXPECT_TRUE(shallow_stack_note(r).empty());
}

}  // namespace
}  // namespace kleak
