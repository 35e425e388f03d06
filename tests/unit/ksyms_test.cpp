#include "symbols/ksyms.h"

#include <string>

#include <gtest/gtest.h>

namespace kleak {
namespace {

Ksyms fixture() {
  auto k = Ksyms::load(KLEAK_FIXTURE_DIR "/kallsyms.txt");
  EXPECT_TRUE(k.ok()) << (k.ok() ? "" : k.error().message);
  return k.ok() ? std::move(*k) : Ksyms{};
}

// The name addr resolves to, or "(unresolved)".
std::string name_at(const Ksyms& k, uint64_t addr) {
  auto r = k.resolve(addr);
  return r ? std::string(r->name) : "(unresolved)";
}

TEST(Ksyms, KeepsTextSymbolsOnly) {
  Ksyms k = fixture();
  // 3 at one address fold into one; data (D), absolute (A) and garbage lines are dropped.
  EXPECT_EQ(k.size(), 12u);
  EXPECT_FALSE(k.addresses_hidden());
}

TEST(Ksyms, ResolvesInsideAFunction) {
  Ksyms k = fixture();
  auto r = k.resolve(0xffffffff81002810);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->name, "load_msg");
  EXPECT_EQ(r->offset, 0x10u);
  EXPECT_TRUE(r->module.empty());
  EXPECT_EQ(format_symbol(k, 0xffffffff81002810), "load_msg+0x10");
}

TEST(Ksyms, ExactAddressHasZeroOffset) {
  EXPECT_EQ(format_symbol(fixture(), 0xffffffff81002400), "alloc_msg+0x0");
}

TEST(Ksyms, DataSymbolsDoNotSplitFunctions) {
  // some_data_object (D) sits inside load_msg's range: it must not win.
  EXPECT_EQ(name_at(fixture(), 0xffffffff81003050), "load_msg");
}

TEST(Ksyms, FunctionPaddingSymbolsAreDropped) {
  // __pfx_X: the 16 bytes before X (call thunks, FineIBT). Not kept, so X's
  // own addresses still resolve to X and the padding to the function before.
  Ksyms k = Ksyms::parse(
      "ffffffff81001000 T first\n"
      "ffffffff81001ff0 t __pfx_second\n"
      "ffffffff81002000 T second\n");
  EXPECT_EQ(k.size(), 2u);
  EXPECT_EQ(name_at(k, 0xffffffff81002004), "second");
  EXPECT_EQ(name_at(k, 0xffffffff81001ff8), "first");
}

TEST(Ksyms, DuplicateAddressesPreferGlobalInFileOrder) {
  EXPECT_EQ(name_at(fixture(), 0xffffffff81000008), "srso_alias_untrain_ret");
}

TEST(Ksyms, KeepsModuleNames) {
  Ksyms k = fixture();
  EXPECT_EQ(format_symbol(k, 0xffffffffc0200042), "leaky_open+0x42 [leaky]");
  EXPECT_EQ(format_symbol(k, 0xffffffffc0200100), "leaky_release+0x0 [leaky]");
  EXPECT_EQ(format_symbol(k, 0xffffffffc0300060), "nft_register+0x10 [nf_tables]");
}

TEST(Ksyms, WeakSymbolsAreText) {
  EXPECT_EQ(name_at(fixture(), 0xffffffff81004004), "weak_helper");
}

TEST(Ksyms, BelowFirstSymbolIsUnresolved) {
  Ksyms k = fixture();
  EXPECT_FALSE(k.resolve(0xffffffff80000000));
  EXPECT_EQ(format_symbol(k, 0xffffffff80000000), "0xffffffff80000000");
}

TEST(Ksyms, PastTheLastSymbol) {
  Ksyms k = fixture();
  const uint64_t last = 0xffffffffc0400000;
  auto near = k.resolve(last + 0x100);
  ASSERT_TRUE(near);
  EXPECT_EQ(near->module, "bpf");
  EXPECT_FALSE(k.resolve(last + Ksyms::kMaxOffsetBytes + 1));
}

TEST(Ksyms, GapsBetweenTextRegionsAreUnresolved) {
  // JIT images sit between core text and modules; with bpf_jit_kallsyms off
  // they are not listed and must not resolve to the last core symbol.
  Ksyms k = fixture();
  EXPECT_FALSE(k.resolve(0xffffffffa0001234));
}

TEST(Ksyms, HiddenAddresses) {
  Ksyms k = Ksyms::parse("0000000000000000 T _stext\n0000000000000000 t load_msg\n");
  EXPECT_TRUE(k.addresses_hidden());
  EXPECT_EQ(k.size(), 0u);
  EXPECT_FALSE(k.resolve(0xffffffff81002810));
}

TEST(Ksyms, EmptyAndMissing) {
  EXPECT_EQ(Ksyms::parse("").size(), 0u);
  EXPECT_FALSE(Ksyms::parse("").addresses_hidden());
  auto missing = Ksyms::load("/nonexistent/kallsyms");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("/nonexistent/kallsyms"), std::string::npos);
  EXPECT_EQ(missing.error().err, ENOENT);
}

TEST(Ksyms, NoTrailingNewline) {
  Ksyms k = Ksyms::parse("ffffffff81000000 T a\nffffffff81000100 T b");
  EXPECT_EQ(k.size(), 2u);
  EXPECT_EQ(format_symbol(k, 0xffffffff81000101), "b+0x1");
}

}  // namespace
}  // namespace kleak
