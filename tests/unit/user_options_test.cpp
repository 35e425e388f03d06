// `kleak user` command line: what it accepts, its defaults, and one-line
// usage errors.
#include "options/user_options.h"

#include <sstream>

#include <gtest/gtest.h>

namespace kleak {
namespace {

ParsedUserCommandLine parse(std::vector<std::string> args, std::string* err_text = nullptr) {
  args.insert(args.begin(), "kleak");
  std::ostringstream out, err;
  auto r = parse_user_command_line(args, out, err);
  if (err_text) *err_text = err.str();
  return r;
}

TEST(UserOptions, PidsAndDefaults) {
  auto r = parse({"-p", "12,34"});
  ASSERT_TRUE(r.user);
  EXPECT_EQ(r.user->pids, (std::vector<uint32_t>{12, 34}));
  EXPECT_EQ(r.user->report.interval_s, 10);
  EXPECT_EQ(r.user->report.min_age_ms, 5000u);
  EXPECT_TRUE(r.user->command.empty());
}

TEST(UserOptions, CommandFromDashCOrAfterDoubleDash) {
  auto c = parse({"-c", "./prog 'a b' \"c\\\"d\" e\\ f"});
  ASSERT_TRUE(c.user);
  EXPECT_EQ(c.user->command, (std::vector<std::string>{"./prog", "a b", "c\"d", "e f"}));
  EXPECT_EQ(c.user->report.interval_s, 0);  // only the final report
  EXPECT_EQ(c.user->report.min_age_ms, 0u);
  auto d = parse({"-o", "7", "--", "./prog", "-p", "1"});
  ASSERT_TRUE(d.user);
  EXPECT_EQ(d.user->command, (std::vector<std::string>{"./prog", "-p", "1"}));
  EXPECT_EQ(d.user->report.min_age_ms, 7u);
}

TEST(UserOptions, ObjPrefixSizeAndFormat) {
  auto r = parse({"-p", "1", "--obj", "/usr/lib/libjemalloc.so.2", "--symbols-prefix", "je_", "--size", "64",
                  "--format", "json"});
  ASSERT_TRUE(r.user);
  EXPECT_EQ(r.user->obj, "/usr/lib/libjemalloc.so.2");
  EXPECT_EQ(r.user->symbols_prefix, "je_");
  EXPECT_EQ(r.user->report.min_size_bytes, 64u);
  EXPECT_EQ(r.user->report.max_size_bytes, 64u);
  EXPECT_EQ(r.user->report.format, OutputFormat::json);
}

TEST(UserOptions, UsageErrorsAreOneLine) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{}, {"-p", "x"}, {"-p", "0"}, {"-p", "1,,2"}, {"-p", "1,1"}, {"-p", "1", "-c", "ls"},
        {"-c", "'open"}, {"-c", "  "}, {"--obj", "lib.so", "-p", "1"}, {"-p", "1", "-T", "0"},
        {"-c", "ls", "--", "ls"}, {"--"}, {"-p", "1", "--min-size", "9", "--max-size", "3"}}) {
    std::string err;
    auto r = parse(args, &err);
    EXPECT_FALSE(r.user) << (args.empty() ? "(none)" : args[0]);
    EXPECT_EQ(r.exit_code, kExitUsage);
    EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
    EXPECT_EQ(err.rfind("kleak user: ", 0), 0u) << err;
  }
}

TEST(UserOptions, SplitCommand) {
  EXPECT_EQ(split_command("a  b\tc"), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(split_command("''"), (std::vector<std::string>{""}));
  EXPECT_EQ(split_command(""), (std::vector<std::string>{}));
  EXPECT_FALSE(split_command("\"x"));
}

}  // namespace
}  // namespace kleak
