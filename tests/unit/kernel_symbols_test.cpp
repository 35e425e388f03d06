// The kernel symbolizer over a run: modules loaded after kleak started are
// named from kallsyms while loaded, keep their names once unloaded, a
// re-load at another address is another image, and an address no symbol
// covers says why. kallsyms here is text (Ksyms::parse): the records are
// what the module follower (bpf/kleak.bpf.c) stores.
#include "symbols/kernel_symbols.h"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace kleak {
namespace {

constexpr const char* kCore =
    "ffffffff81000000 T _stext\n"
    "ffffffff81000100 T do_one_initcall\n"
    "ffffffff81000400 T kmalloc_trace\n"
    "ffffffffc0200000 t foo_fn\t[foo]\n"
    "ffffffffc0200100 t foo_other\t[foo]\n";

ModuleRecord leaky(uint64_t load_ns, uint64_t base, uint64_t free_ns = 0) {
  ModuleRecord r;
  r.name = "leaky";
  r.text_base = base;
  r.text_size = 0x2000;
  r.init_base = 0xffffffffc0500000;
  r.init_size = 0x1000;
  r.load_ns = load_ns;
  r.free_ns = free_ns;
  return r;
}

// kallsyms now: the core, and leaky at `base`.
std::string kallsyms_with_leaky(uint64_t base) {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "%lx t leaky_show\t[leaky]\n%lx t leaky_open\t[leaky]\n",
                static_cast<unsigned long>(base), static_cast<unsigned long>(base + 0x100));
  return std::string(kCore) + buf;
}

struct Fixture {
  uint64_t leaky_base = 0xffffffffc0000000;
  int reads = 0;
  KernelSymbols syms{Ksyms::parse(kCore), [this]() -> Result<Ksyms> {
                       ++reads;
                       return Ksyms::parse(kallsyms_with_leaky(leaky_base));
                     }};
};

TEST(KernelSymbols, ModuleLoadedAfterStartIsNamedAndKeepsItsNamesWhenUnloaded) {
  Fixture fx;
  EXPECT_EQ(fx.syms.update({leaky(5, fx.leaky_base)}), 1u);
  Frame f = fx.syms.frame(fx.leaky_base + 0x132, 0);
  EXPECT_EQ(f.symbol, "leaky_open");
  EXPECT_EQ(f.offset, 0x32u);
  EXPECT_EQ(f.module, "leaky");
  EXPECT_FALSE(f.unloaded);
  // Unloaded: the same name, marked, and kallsyms is not read again.
  EXPECT_EQ(fx.syms.update({leaky(5, fx.leaky_base, 9)}), 0u);
  f = fx.syms.frame(fx.leaky_base + 0x132, 0);
  EXPECT_EQ(f.symbol, "leaky_open");
  EXPECT_TRUE(f.unloaded);
  EXPECT_EQ(fx.reads, 1);
  // The core is as it was.
  EXPECT_EQ(fx.syms.frame(0xffffffff81000110, 0).symbol, "do_one_initcall");
}

TEST(KernelSymbols, ReloadAtAnotherAddressDoesNotMixTheTwo) {
  Fixture fx;
  fx.syms.update({leaky(5, fx.leaky_base)});
  const uint64_t old_base = fx.leaky_base;
  fx.leaky_base = 0xffffffffc0100000;
  EXPECT_EQ(fx.syms.update({leaky(5, old_base, 9), leaky(12, fx.leaky_base)}), 1u);
  Frame old_frame = fx.syms.frame(old_base + 0x110, 0), new_frame = fx.syms.frame(fx.leaky_base + 0x110, 0);
  EXPECT_EQ(old_frame.symbol, "leaky_open");
  EXPECT_TRUE(old_frame.unloaded);
  EXPECT_EQ(new_frame.symbol, "leaky_open");
  EXPECT_FALSE(new_frame.unloaded);
  EXPECT_EQ(fx.syms.images(), 2u);
}

TEST(KernelSymbols, GoneBeforeAnyLookKeepsItsNameAndOffset) {
  Fixture fx;
  EXPECT_EQ(fx.syms.update({leaky(5, fx.leaky_base, 6)}), 0u);
  EXPECT_EQ(fx.reads, 0);  // nothing loaded to read
  Frame f = fx.syms.frame(fx.leaky_base + 0x132, 0);
  EXPECT_EQ(f.symbol, "");
  EXPECT_EQ(f.module, "leaky");
  EXPECT_EQ(f.offset, 0x132u);
  EXPECT_TRUE(f.unloaded);
  EXPECT_EQ(f.unknown, "module text not in kallsyms");
}

TEST(KernelSymbols, InitTextIsNamedAsSuch) {
  Fixture fx;
  fx.syms.update({leaky(5, fx.leaky_base)});
  Frame f = fx.syms.frame(0xffffffffc0500040, 0);
  EXPECT_EQ(f.symbol, "");  // init symbols leave kallsyms when init ends
  EXPECT_EQ(f.module, "leaky");
  EXPECT_EQ(f.offset, 0x40u);
  EXPECT_EQ(f.unknown, "module init text");
}

TEST(KernelSymbols, ModuleLoadedBeforeStartIsMarkedUnloaded) {
  Fixture fx;
  ModuleRecord foo;
  foo.name = "foo";
  foo.text_base = 0xffffffffc0200000;
  foo.text_size = 0x1000;
  foo.free_ns = 7;  // load_ns 0: loaded before kleak
  Frame before = fx.syms.frame(0xffffffffc0200108, 0);
  EXPECT_EQ(before.symbol, "foo_other");
  EXPECT_FALSE(before.unloaded);
  fx.syms.update({foo});
  Frame after = fx.syms.frame(0xffffffffc0200108, 0);
  EXPECT_EQ(after.symbol, "foo_other");
  EXPECT_EQ(after.module, "foo");
  EXPECT_TRUE(after.unloaded);
}

TEST(KernelSymbols, AnAddressNoSymbolCoversSaysWhy) {
  Fixture fx;
  Frame f = fx.syms.frame(0xffffffffa0000000, 0);
  EXPECT_EQ(f.symbol, "");
  EXPECT_EQ(f.unknown, "not in kallsyms");
  KernelSymbols hidden(Ksyms::parse("0000000000000000 T _stext\n0000000000000000 T kmalloc_trace\n"));
  EXPECT_EQ(hidden.frame(0xffffffff81000110, 0).unknown, "hidden by kptr_restrict");
}

TEST(KernelSymbols, AReadThatFailsIsTriedAgainAtTheNextUpdate) {
  int reads = 0;
  bool fail = true;
  KernelSymbols syms(Ksyms::parse(kCore), [&]() -> Result<Ksyms> {
    ++reads;
    if (fail) return make_error("open /proc/kallsyms", EACCES);
    return Ksyms::parse(kallsyms_with_leaky(0xffffffffc0000000));
  });
  EXPECT_EQ(syms.update({leaky(5, 0xffffffffc0000000)}), 0u);
  fail = false;
  EXPECT_EQ(syms.update({leaky(5, 0xffffffffc0000000)}), 1u);
  EXPECT_EQ(reads, 2);
  EXPECT_EQ(syms.frame(0xffffffffc0000100, 0).symbol, "leaky_open");
}

// A load kallsyms never lists is not read for again and again: each read
// costs tens of milliseconds, and update() runs every 250 ms.
TEST(KernelSymbols, AModuleKallsymsNeverListsIsNotReadForForever) {
  int reads = 0;
  KernelSymbols syms(Ksyms::parse(kCore), [&]() -> Result<Ksyms> {
    ++reads;
    return Ksyms::parse(kCore);  // no [leaky] symbols
  });
  for (int i = 0; i < 10; ++i) syms.update({leaky(5, 0xffffffffc0000000)});
  EXPECT_EQ(reads, 3);
  EXPECT_EQ(syms.frame(0xffffffffc0000100, 0).unknown, "module text not in kallsyms");
  // Hidden addresses: kallsyms would name nothing, so it is not read.
  int hidden_reads = 0;
  KernelSymbols hidden(Ksyms::parse("0000000000000000 T _stext\n"), [&]() -> Result<Ksyms> {
    ++hidden_reads;
    return Ksyms::parse("");
  });
  hidden.update({leaky(5, 0xffffffffc0000000)});
  EXPECT_EQ(hidden_reads, 0);
}

}  // namespace
}  // namespace kleak
