// kleak user on real processes: kleak-uleak leaks known blocks from known
// functions through every allocator path and frees as many others; kleak
// must name each leaking function with the exact count and bytes, show
// nothing of what was freed, and agree with valgrind memcheck.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "child.h"
#include "env.h"

namespace kleak::test {
namespace {

// Loads kleak's programs: BPF required (env.h).
class User : public BpfTest {};
// Loads kleak's programs: BPF required (env.h).
class UserCi : public BpfTest {};
// Loads kleak's programs: BPF required (env.h).
class UserFormats : public BpfTest {};

using nlohmann::json;

const std::string kKleak = KLEAK_BIN;
const std::string kUleak = KLEAK_ULEAK_BIN;

struct Expected {
  uint64_t count;
  uint64_t bytes;
};

// What kleak-uleak says it leaks, per function (its --expect output).
std::map<std::string, Expected> expected_leaks() {
  auto r = run({kUleak, "--expect"});
  std::map<std::string, Expected> out;
  std::istringstream in(r.out);
  std::string fn;
  Expected e{};
  while (in >> fn >> e.count >> e.bytes) out[fn] = e;
  return out;
}

// The report's stacks by innermost frame: the function that called the allocator.
std::map<std::string, Expected> leaks_by_function(const json& report) {
  std::map<std::string, Expected> out;
  for (const auto& s : report["stacks"]) {
    std::string fn = s["frames"].empty() ? "?" : s["frames"][0]["symbol"].get<std::string>();
    out[fn].count += s["count"].get<uint64_t>();
    out[fn].bytes += s["bytes"].get<uint64_t>();
  }
  return out;
}

bool any_frame(const json& report, const std::string& fn) {
  for (const auto& s : report["stacks"])
    for (const auto& f : s["frames"])
      if (f["symbol"].is_string() && f["symbol"] == fn) return true;
  return false;
}

void expect_counts(const std::map<std::string, Expected>& got, const std::map<std::string, Expected>& want) {
  for (const auto& [fn, e] : want) {
    auto it = got.find(fn);
    ASSERT_NE(it, got.end()) << fn << " not reported";
    EXPECT_EQ(it->second.count, e.count) << fn;
    EXPECT_EQ(it->second.bytes, e.bytes) << fn;
  }
  EXPECT_EQ(got.size(), want.size()) << "stacks other than the leaking functions were reported";
}

// -c: the probes are in place before exec, so even main's first statement
// (leak_first) is seen; the final report is what was outstanding at exit.
TEST_F(User, CommandLeaksNamedWithExactCountsFromMainsFirstStatement) {
  auto want = expected_leaks();
  ASSERT_EQ(want.size(), 7u);
  auto r = run({kKleak, "user", "--format", "json", "-q", "-T", "50", "-c", kUleak});
  ASSERT_EQ(r.status, 0) << r.err;
  json rep = json::parse(r.out);
  EXPECT_EQ(rep["final"], true);
  expect_counts(leaks_by_function(rep), want);
  EXPECT_FALSE(any_frame(rep, "churn")) << "freed blocks reported";
  // Whole stacks, with file:line from the test program's DWARF.
  for (const auto& s : rep["stacks"]) {
    EXPECT_TRUE(s["frames"].size() >= 3) << s.dump();
    EXPECT_EQ(s["tasks"][0]["comm"], "kleak-uleak");
    ASSERT_TRUE(s["frames"][0].contains("source")) << s.dump();
    EXPECT_NE(s["frames"][0]["source"].get<std::string>().find("uleak.c:"), std::string::npos);
  }
  EXPECT_TRUE(any_frame(rep, "main"));
  EXPECT_EQ(rep["counters"]["live_map_full"], 0);
  EXPECT_EQ(rep["user"]["inflight_full"], 0);
  EXPECT_FALSE(rep["user"]["shallow_stacks"].get<bool>());
  // malloc(1 MiB) mmaps inside malloc: counted once, as the malloc.
  EXPECT_GT(rep["user"]["nested_calls"].get<uint64_t>(), 0u);
  EXPECT_TRUE(loaded_kleak_programs().empty());
}

// exec replaces the address space: what the shell allocated before it
// exec'd the leaker is gone, and only the leaker's blocks are reported.
TEST_F(User, ExecDropsTheOldAddressSpacesBlocks) {
  auto want = expected_leaks();
  auto r = run({kKleak, "user", "--format", "json", "-q", "-T", "50", "-c", "sh -c 'exec " + kUleak + "'"});
  ASSERT_EQ(r.status, 0) << r.err;
  json rep = json::parse(r.out);
  expect_counts(leaks_by_function(rep), want);
  EXPECT_GT(rep["user"]["exec_dropped"].get<uint64_t>(), 0u) << "sh allocated nothing before exec?";
  bool aliased = false;
  for (const auto& a : rep["attached"]) aliased = aliased || a.get<std::string>().find('=') != std::string::npos;
  EXPECT_TRUE(aliased) << rep["attached"].dump() << ": glibc's memalign and aligned_alloc are one function";
}

// -p: attach to a running process; only what it leaks afterwards shows.
TEST_F(User, PidAttachSeesLeaksAfterAttachOnly) {
  auto want = expected_leaks();
  want.erase("leak_first");  // before kleak attached
  Child target({kUleak, "--hold"});
  Child kleak({kKleak, "user", "-p", std::to_string(target.pid()), "1", "-o", "0", "--format", "json", "-q", "-T",
               "50"});
  auto first = kleak.read_line(std::chrono::seconds(30));
  ASSERT_TRUE(first) << "no first report";
  target.send_line("go");
  ASSERT_EQ(target.read_line(), "leaked");
  auto last = kleak.last_line_after(SIGINT);
  ASSERT_TRUE(last) << "kleak did not end with a final report and status 0";
  json rep = json::parse(*last);
  expect_counts(leaks_by_function(rep), want);
  EXPECT_FALSE(any_frame(rep, "churn"));
  EXPECT_EQ(rep["user"]["processes"][0]["pid"], target.pid());
}

// A one-shot run (-d) samples the live set while it traces, so its one
// report has growth: kleak-grow mallocs 4 KiB every 10 ms (400 KiB/s at
// most; the loop's own time makes it a little less).
TEST_F(User, OneShotRunHasTheGrowthOfASteadyLeak) {
  Child grow({KLEAK_GROW_BIN, "400", "64"});
  ASSERT_TRUE(grow.read_line()) << "kleak-grow did not start";
  auto r = run({kKleak, "user", "-p", std::to_string(grow.pid()), "-d", "5", "-o", "0", "--format", "json", "-q",
                "-T", "5"});
  ASSERT_EQ(r.status, 0) << r.err;
  json rep = json::parse(r.out);
  ASSERT_FALSE(rep["stacks"].empty()) << r.out.substr(0, 2000);
  const json& top = rep["stacks"][0];
  EXPECT_EQ(top["tasks"][0]["tgid"], grow.pid()) << top.dump();
  ASSERT_TRUE(top.contains("growth")) << top.dump();
  EXPECT_GE(top["growth"]["points"].get<int>(), 10) << top["growth"];
  EXPECT_EQ(top["growth"]["verdict"], "growing") << top["growth"];
  // The fitted rate against what the stack gained over the run, and
  // against the nominal rate.
  const double rate = top["growth"]["bytes_per_s"].get<double>();
  const double gained = top["bytes"].get<double>() / rep["elapsed_s"].get<double>();
  std::printf("kleak user -d 5: fitted %.0f B/s, bytes/elapsed %.0f B/s, nominal %.0f B/s, %d points\n", rate,
              gained, 400 * 1024.0, top["growth"]["points"].get<int>());
  EXPECT_NEAR(rate, gained, 0.15 * gained) << top["growth"];
  EXPECT_NEAR(rate, 400 * 1024.0, 0.3 * 400 * 1024.0) << top["growth"];
}

// valgrind memcheck counts heap blocks (malloc family), not mmap: its
// "in use at exit" (definitely + indirectly + possibly lost + still
// reachable) must equal kleak's outstanding bytes and blocks less mmap's.
TEST_F(User, AgreesWithValgrindInUseAtExit) {
  auto vg = run({"/usr/bin/valgrind", "--leak-check=full", "--show-leak-kinds=all", kUleak});
  const bool ran = vg.status != 127 && vg.err.find("in use at exit") != std::string::npos;
  KLEAK_REQUIRE(ran ? std::string() : "valgrind did not run (scripts/install-deps.sh installs it): " + vg.err);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(vg.err, m, std::regex(R"(in use at exit: ([0-9,]+) bytes in ([0-9,]+) blocks)")));
  auto num = [](std::string s) {
    s.erase(std::remove(s.begin(), s.end(), ','), s.end());
    return std::stoull(s);
  };
  const uint64_t vg_bytes = num(m[1]), vg_blocks = num(m[2]);

  auto r = run({kKleak, "user", "--format", "json", "-q", "-T", "50", "-c", kUleak});
  ASSERT_EQ(r.status, 0) << r.err;
  json rep = json::parse(r.out);
  uint64_t bytes = 0, blocks = 0;
  for (const auto& s : rep["stacks"]) {
    if (s["frames"][0]["symbol"] == "leak_mmap") continue;  // mmap: not a heap block to valgrind
    bytes += s["bytes"].get<uint64_t>();
    blocks += s["count"].get<uint64_t>();
  }
  EXPECT_EQ(bytes, vg_bytes);
  EXPECT_EQ(blocks, vg_blocks);
}

uint64_t expected_total_bytes() {
  uint64_t total = 0;
  for (const auto& [fn, e] : expected_leaks()) total += e.bytes;
  return total;
}

// --ci: a command that leaves blocks behind fails (status 1) with exactly
// its leaked bytes and a JUnit failure; one that frees everything passes.
TEST_F(UserCi, LeakingCommandFailsCleanOnePasses) {
  const std::string junit = ::testing::TempDir() + "/kleak-user-ci.xml";
  std::remove(junit.c_str());
  auto r = run({kKleak, "user", "--ci", "--format", "json", "-q", "--junit", junit, "--", kUleak});
  ASSERT_EQ(r.status, 1) << r.err;
  json rep = json::parse(r.out);
  EXPECT_EQ(rep["ci"]["verdict"], "leak");
  EXPECT_EQ(rep["ci"]["leak_bytes"].get<uint64_t>(), expected_total_bytes());
  EXPECT_EQ(rep["ci"]["leak_stacks"].get<uint64_t>(), expected_leaks().size());
  EXPECT_EQ(rep["ci"]["command_status"], 0);
  expect_counts(leaks_by_function(rep), expected_leaks());
  std::ifstream junit_file(junit);
  const std::string xml((std::istreambuf_iterator<char>(junit_file)), std::istreambuf_iterator<char>());
  EXPECT_NE(xml.find("failures=\"1\""), std::string::npos) << xml;
  EXPECT_NE(xml.find("user-memory-leaks"), std::string::npos) << xml;

  auto clean = run({kKleak, "user", "--ci", "-q", "--", kUleak, "--clean"});
  EXPECT_EQ(clean.status, 0) << clean.out << clean.err;
  EXPECT_NE(clean.out.find("kleak user --ci: no leak: 0 bytes"), std::string::npos) << clean.out;

  // Under the threshold: the leak is reported, the verdict passes.
  auto under = run({kKleak, "user", "--ci", "-q", "--fail-on-bytes", "2000000", "--", kUleak});
  EXPECT_EQ(under.status, 0) << under.out << under.err;
  EXPECT_TRUE(test::loaded_kleak_programs().empty());
}

// --format folded: one line per stack, leaf last, adding up to the bytes
// the leaker left.
TEST_F(UserFormats, FoldedSumsToTheLeakedBytes) {
  auto r = run({kKleak, "user", "--format", "folded", "-q", "--", kUleak});
  ASSERT_EQ(r.status, 0) << r.err;
  auto want = expected_leaks();
  std::istringstream in(r.out);
  std::string line;
  uint64_t total = 0;
  size_t lines = 0;
  while (std::getline(in, line)) {
    size_t sp = line.rfind(' ');
    ASSERT_NE(sp, std::string::npos) << line;
    total += std::stoull(line.substr(sp + 1));
    std::string stack = line.substr(0, sp);
    std::string leaf = stack.substr(stack.rfind(';') + 1);
    leaf = leaf.substr(0, leaf.find(' '));
    EXPECT_TRUE(want.count(leaf)) << line;
    EXPECT_LT(stack.find("main [kleak-uleak]"), stack.find(leaf)) << "root first: " << line;
    ++lines;
  }
  EXPECT_EQ(lines, want.size()) << r.out;
  EXPECT_EQ(total, expected_total_bytes()) << r.out;
}

// A -p run reclaims the stacks of freed blocks (the churn's) from the
// stack store, and keeps those the leaks use.
TEST_F(User, StackStoreReclaimsTheStacksOfFreedBlocks) {
  Child target({kUleak, "--hold"});
  Child kleak({kKleak, "user", "-p", std::to_string(target.pid()), "0.5", "-o", "0", "--format", "json", "-q", "-T",
               "50"});
  ASSERT_TRUE(kleak.read_line(std::chrono::seconds(30))) << "no first report";
  target.send_line("go");
  ASSERT_EQ(target.read_line(), "leaked");
  // A stack goes at the second sweep that finds it unused: two more reports.
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(kleak.read_line(std::chrono::seconds(10)));
  auto last = kleak.last_line_after(SIGINT);
  ASSERT_TRUE(last);
  json rep = json::parse(*last);
  EXPECT_GT(rep["live"]["stacks_reclaimed"].get<uint64_t>(), 0u) << rep["live"].dump();
  auto want = expected_leaks();
  want.erase("leak_first");
  expect_counts(leaks_by_function(rep), want);
  for (const auto& s : rep["stacks"]) EXPECT_TRUE(s["stack_error"].is_null()) << s.dump();
}

// --stack-sample: most blocks take their call site's last stack instead of
// walking their own; every leaking function is still named with exact bytes
// (per-caller totals are exact, and each leaking caller has one stack).
TEST_F(User, SampledStacksKeepExactPerCallerBytes) {
  auto r = run({kKleak, "user", "--format", "json", "-q", "-T", "50", "--stack-sample", "1000", "--", kUleak});
  ASSERT_EQ(r.status, 0) << r.err;
  json rep = json::parse(r.out);
  EXPECT_EQ(rep["stack_sample_every"], 1000);
  expect_counts(leaks_by_function(rep), expected_leaks());
  bool sampled = false;
  for (const auto& s : rep["stacks"])
    if (s["estimated"].get<bool>() && s["estimate"]["sampled"].get<uint64_t>() < s["count"].get<uint64_t>())
      sampled = true;
  EXPECT_TRUE(sampled) << "no stack shared out from hints: was the stack walk sampled at all?";
  EXPECT_FALSE(any_frame(rep, "churn"));
}

TEST(UserOffline, UsageErrorsAreOneLineAndStatus2) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"user"}, {"user", "-p", "abc"}, {"user", "-p", "1", "-c", "true"},
        {"user", "-c", "'unterminated"}, {"user", "--obj", "relative.so", "-p", "1"}, {"user", "--"}}) {
    std::vector<std::string> argv = {kKleak};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run(argv);
    EXPECT_EQ(r.status, 2) << args.back() << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

TEST_F(User, CommandThatCannotRunIsStatus2AndGoneProcessStatus1) {
  auto r = run({kKleak, "user", "-q", "-c", "/nonexistent/kleak-no-such-program"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("cannot run /nonexistent/kleak-no-such-program"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  auto g = run({kKleak, "user", "-q", "-p", "999999999"});
  EXPECT_EQ(g.status, 1) << g.err;
  EXPECT_NE(g.err.find("no process 999999999"), std::string::npos) << g.err;
  EXPECT_TRUE(loaded_kleak_programs().empty());
}

}  // namespace
}  // namespace kleak::test
