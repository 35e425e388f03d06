#include "options/options.h"

#include <algorithm>
#include <sstream>

#include <gtest/gtest.h>

namespace kleak {
namespace {

struct Parsed {
  ParsedCommandLine cl;
  std::string out, err;
};

Parsed parse(std::vector<std::string> args) {
  args.insert(args.begin(), "kleak");
  std::ostringstream out, err;
  Parsed p{parse_command_line(args, out, err), "", ""};
  p.out = out.str();
  p.err = err.str();
  return p;
}

TEST(Options, Defaults) {
  Parsed p = parse({});
  ASSERT_TRUE(p.cl.trace);
  const TraceOptions& o = *p.cl.trace;
  EXPECT_EQ(o.interval_s, 10);
  EXPECT_EQ(o.count, 0u);
  EXPECT_EQ(o.top, 10u);
  EXPECT_EQ(o.min_age_ms, 10000u);
  EXPECT_EQ(o.format, OutputFormat::text);
  EXPECT_EQ(o.min_size_bytes, 0u);
  EXPECT_EQ(o.max_size_bytes, UINT64_MAX);
}

TEST(Options, IntervalAndCountPositionals) {
  Parsed p = parse({"5", "3"});
  ASSERT_TRUE(p.cl.trace);
  EXPECT_EQ(p.cl.trace->interval_s, 5);
  EXPECT_EQ(p.cl.trace->count, 3u);
}

TEST(Options, DurationAloneMeansOnlyAFinalReport) {
  Parsed p = parse({"-d", "2"});
  ASSERT_TRUE(p.cl.trace);
  EXPECT_EQ(p.cl.trace->interval_s, 0);
  EXPECT_EQ(p.cl.trace->duration_s, 2);
}

TEST(Options, ExactSizeSetsBothBounds) {
  Parsed p = parse({"--size", "4096"});
  ASSERT_TRUE(p.cl.trace);
  EXPECT_EQ(p.cl.trace->min_size_bytes, 4096u);
  EXPECT_EQ(p.cl.trace->max_size_bytes, 4096u);
}

TEST(Options, LongAndShortForms) {
  Parsed p = parse({"-T", "3", "-o", "0", "-z", "8", "-Z", "64", "-p", "42", "-a", "--format", "json", "-vv"});
  ASSERT_TRUE(p.cl.trace) << p.err;
  const TraceOptions& o = *p.cl.trace;
  EXPECT_EQ(o.top, 3u);
  EXPECT_EQ(o.min_age_ms, 0u);
  EXPECT_EQ(o.min_size_bytes, 8u);
  EXPECT_EQ(o.max_size_bytes, 64u);
  EXPECT_EQ(o.pid, 42u);
  EXPECT_TRUE(o.show_allocs);
  EXPECT_EQ(o.format, OutputFormat::json);
  EXPECT_EQ(o.verbosity, 2);
  Parsed l = parse({"--top", "3", "--older", "5", "--min-size", "8", "--max-size", "64", "--pid", "42",
                    "--show-allocs", "--duration", "1.5"});
  ASSERT_TRUE(l.cl.trace) << l.err;
  EXPECT_EQ(l.cl.trace->top, 3u);
  EXPECT_EQ(l.cl.trace->min_age_ms, 5u);
  EXPECT_EQ(l.cl.trace->duration_s, 1.5);
}

struct BadCase {
  std::vector<std::string> args;
  std::string says;
};

class BadOptions : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadOptions, UsageErrorWithOneLine) {
  Parsed p = parse(GetParam().args);
  EXPECT_FALSE(p.cl.trace);
  EXPECT_EQ(p.cl.exit_code, kExitUsage);
  EXPECT_NE(p.err.find(GetParam().says), std::string::npos) << p.err;
  EXPECT_EQ(std::count(p.err.begin(), p.err.end(), '\n'), 1) << p.err;
  EXPECT_EQ(p.err.rfind("kleak: ", 0), 0u) << p.err;
}

INSTANTIATE_TEST_SUITE_P(
    All, BadOptions,
    ::testing::Values(BadCase{{"--size", "4096", "-z", "8"}, "excludes"},
                      BadCase{{"-z", "100", "-Z", "10"}, "--min-size is larger"},
                      BadCase{{"-T", "0"}, "--top"},
                      BadCase{{"-T", "many"}, "many"},
                      BadCase{{"--format", "xml"}, "xml"},
                      BadCase{{"0"}, "interval must be positive"},
                      BadCase{{"-1"}, "kleak:"},
                      BadCase{{"-d", "-3"}, "--duration"},
                      BadCase{{"--max-allocs", "0"}, "--max-allocs"},
                      BadCase{{"--no-such-option"}, "no-such-option"},
                      BadCase{{"-p", "abc"}, "abc"},
                      BadCase{{"1", "2", "3"}, "kleak:"},
                      BadCase{{"--peek", "5000"}, "4096"},
                      BadCase{{"--peek-samples", "0"}, "--peek-samples"},
                      BadCase{{"--peek-addr", "xyz"}, "--peek-addr"},
                      BadCase{{"--peek-addr", "0xffff8880,0"}, "--peek-addr"},
                      BadCase{{"--peek-addr", "0xffff8880,5000"}, "--peek-addr"},
                      BadCase{{"--cache", "dentry", "--size", "64"}, "excludes"},
                      BadCase{{"--sort", "age"}, "age"},
                      BadCase{{"--hide-addresses", "-a"}, "--hide-addresses"},
                      BadCase{{"--hide-addresses", "--peek", "64"}, "--hide-addresses"}));

TEST(Options, PeekAddr) {
  Parsed p = parse({"--peek-addr", "0xffff888012345000,128"});
  ASSERT_TRUE(p.cl.trace) << p.err;
  EXPECT_EQ(p.cl.trace->peek_addr, 0xffff888012345000u);
  EXPECT_EQ(p.cl.trace->peek_addr_len, 128u);
  Parsed d = parse({"--peek-addr", "ffff888012345000"});
  ASSERT_TRUE(d.cl.trace) << d.err;
  EXPECT_EQ(d.cl.trace->peek_addr_len, 256u);
}

TEST(Options, HelpHasExamplesAndExitStatus) {
  Parsed p = parse({"--help"});
  EXPECT_FALSE(p.cl.trace);
  EXPECT_EQ(p.cl.exit_code, kExitOk);
  EXPECT_NE(p.out.find("Examples:"), std::string::npos);
  EXPECT_NE(p.out.find("Exit status"), std::string::npos);
  EXPECT_NE(p.out.find("--older"), std::string::npos);
}

TEST(Options, Version) {
  Parsed p = parse({"--version"});
  EXPECT_FALSE(p.cl.trace);
  EXPECT_EQ(p.cl.exit_code, kExitOk);
  EXPECT_EQ(p.out.rfind("kleak ", 0), 0u);
}

TEST(Options, ValidateRejectsCountWithoutInterval) {
  TraceOptions o;
  o.count = 3;
  EXPECT_FALSE(validate(o));
  o.interval_s = 1;
  EXPECT_TRUE(validate(o));
}

TEST(Options, FamilyDefaultsToSlabAndParsesLists) {
  EXPECT_TRUE(parse({}).cl.trace->families.only_slab());
  Parsed p = parse({"--family", "page,percpu"});
  ASSERT_TRUE(p.cl.trace) << p.err;
  EXPECT_EQ(p.cl.trace->families, (FamilySet{false, true, true, false}));
  EXPECT_EQ(families_text(p.cl.trace->families), "page,percpu");
  Parsed all = parse({"--family", "all"});
  ASSERT_TRUE(all.cl.trace);
  EXPECT_EQ(all.cl.trace->families, (FamilySet{true, true, true, true}));
}

TEST(Options, StackCacheModes) {
  EXPECT_EQ(parse({}).cl.trace->stack_cache, uint32_t{KLEAK_SC_ON});
  EXPECT_EQ(parse({"--stack-cache", "off"}).cl.trace->stack_cache, uint32_t{KLEAK_SC_OFF});
  EXPECT_EQ(parse({"--stack-cache", "verify"}).cl.trace->stack_cache, uint32_t{KLEAK_SC_VERIFY});
  Parsed bad = parse({"--stack-cache", "1"});
  EXPECT_FALSE(bad.cl.trace);
  EXPECT_EQ(bad.cl.exit_code, kExitUsage);
  EXPECT_NE(bad.err.find("--stack-cache"), std::string::npos) << bad.err;
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << "one line: " << bad.err;
}

TEST(Options, BadFamilyIsAUsageError) {
  for (auto bad : {"pages", "", "slab,", "slab,,page"}) {
    Parsed p = parse({"--family", bad});
    EXPECT_FALSE(p.cl.trace) << bad;
    EXPECT_EQ(p.cl.exit_code, kExitUsage) << bad;
    EXPECT_NE(p.err.find("--family"), std::string::npos) << p.err;
    EXPECT_EQ(std::count(p.err.begin(), p.err.end(), '\n'), 1) << "one line: " << p.err;
  }
  Parsed cache = parse({"--family", "slab,page", "--cache", "dentry"});
  EXPECT_EQ(cache.cl.exit_code, kExitUsage);
  EXPECT_NE(cache.err.find("--cache"), std::string::npos) << cache.err;
}

}  // namespace
}  // namespace kleak
