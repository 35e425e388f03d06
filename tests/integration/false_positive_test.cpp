// Ordinary commands leak nothing in the kernel: each, started on a cold
// cache (the state of a freshly booted CI machine, where every file is read
// for the first time), must pass `kleak --ci` with its defaults. What the
// kernel keeps for them afterwards (inodes and what hangs off them, dentry
// names) is proved cache-owned by reclaim, not judged.
#include <unistd.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "child.h"
#include "env.h"

namespace kleak::test {
namespace {

using nlohmann::json;

struct Command {
  const char* name;
  std::string script;  // for sh -c, in a scratch directory
};

// Not here yet: a loopback TCP exchange (tests/progs/loopback_exchange.py).
// Reclaim ends its TIME_WAIT socket, but the port's bind bucket and the
// epoll instance go back through kfree_rcu, whose batches are freed in
// bulk without a tracepoint: their records stay until the slab hands the
// address out again, and in about one run in ten it does not before the
// verdict. bench/false_positives.sh measures it; following the bulk frees
// in BPF is what will bring it here.
std::vector<Command> commands() {
  return {
      {"file_walk", "find /usr/lib /usr/share -name '*.so*' -o -name '*.py' | wc -l"},
      {"archive", "tar -cf - /usr/share/doc | gzip -1 > /dev/null"},
      {"compiler", "printf 'int main(void){return 0;}\\n' > fp.c && gcc -O2 -o fp fp.c && ./fp && rm -f fp fp.c"},
      {"spawn", "for i in $(seq 100); do /bin/true; done"},
      {"proc_reads", "cat /proc/schedstat /proc/meminfo /proc/*/status > /dev/null 2>&1; ls -l /proc/self/fd > /dev/null"},
      {"git", "rm -rf r && git init -q r && cd r && git status > /dev/null && git --version && cd .. && rm -rf r"},
  };
}

void PrintTo(const Command& c, std::ostream* os) { *os << c.name; }

class FalsePositive : public BpfTest, public ::testing::WithParamInterface<Command> {};

void drop_caches() {
  sync();
  std::ofstream("/proc/sys/vm/drop_caches") << "3\n";
}

TEST_P(FalsePositive, PassesOnAColdCache) {
  const Command& c = GetParam();
  const std::string dir = ::testing::TempDir() + "kleak-fp-" + c.name;
  ASSERT_EQ(system(("rm -rf " + dir + " && mkdir -p " + dir).c_str()), 0);
  const std::string rj = dir + "/report.json";
  drop_caches();
  Child kleak({KLEAK_BIN, "--ci", "-q", "-T", "20", "--report-json", rj, "--", "/bin/sh", "-c",
               "cd " + dir + " && " + c.script});
  const std::string out = kleak.read_all(std::chrono::seconds(120));
  const int status = kleak.wait().value_or(-1);
  std::ifstream in(rj);
  const json report = json::parse(in, nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << out;
  const json& ci = report["ci"];
  EXPECT_EQ(ci["command_status"], 0) << out;
  EXPECT_EQ(status, 0) << c.name << " on a cold cache is judged a leak:\n" << out;
  EXPECT_EQ(ci["verdict"], "pass");
  // Reclaim ran and said what it freed (a cold cache always leaves inodes).
  EXPECT_EQ(ci["reclaim"]["ran"], true) << ci.dump();
  std::cout << c.name << ": reclaim freed " << ci["reclaim"]["cache_owned_bytes"] << " bytes in "
            << ci["reclaim"]["cache_owned_count"] << " allocations at " << ci["reclaim"]["cache_owned_stacks"]
            << " stacks, ended " << ci["reclaim"]["time_wait_ended"] << " TIME_WAIT sockets, in "
            << ci["reclaim"]["seconds"] << " s\n";
  EXPECT_EQ(system(("rm -rf " + dir).c_str()), 0);
}

INSTANTIATE_TEST_SUITE_P(OrdinaryCommands, FalsePositive, ::testing::ValuesIn(commands()),
                         [](const ::testing::TestParamInfo<Command>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace kleak::test

namespace kleak::test {
namespace {

class TraceReclaim : public BpfTest {};

// kleak --reclaim: on a cold cache, a file walk while kleak traces leaves
// inodes and what hangs off them; the final report says reclaim freed them.
TEST_F(TraceReclaim, FinalReportCountsWhatReclaimFreed) {
  drop_caches();
  Child kleak({KLEAK_BIN, "-d", "3", "-o", "0", "--reclaim", "--format", "json", "-q"});
  Child walk({"/bin/sh", "-c", "sleep 0.5; find /usr/share -type f | wc -l"});
  const std::string out = kleak.read_all(std::chrono::seconds(60));
  EXPECT_EQ(kleak.wait().value_or(-1), 0);
  json fin = json::parse(out, nullptr, false);
  ASSERT_FALSE(fin.is_discarded()) << out;
  ASSERT_TRUE(fin.contains("reclaim")) << "no reclaim section";
  EXPECT_EQ(fin["reclaim"]["ran"], true) << fin["reclaim"];
  EXPECT_GT(fin["reclaim"]["cache_owned_count"].get<uint64_t>(), 100u) << fin["reclaim"];
  EXPECT_GT(fin["reclaim"]["cache_owned_bytes"].get<uint64_t>(), 0u);
  std::cout << "kleak --reclaim: " << fin["reclaim"].dump() << "\n";
}

// Without --reclaim, a report has no reclaim section and drops no cache.
TEST_F(TraceReclaim, OffByDefault) {
  Child kleak({KLEAK_BIN, "-d", "1", "--format", "json", "-q"});
  json fin = json::parse(kleak.read_all(std::chrono::seconds(30)), nullptr, false);
  EXPECT_EQ(kleak.wait().value_or(-1), 0);
  ASSERT_FALSE(fin.is_discarded());
  EXPECT_FALSE(fin.contains("reclaim"));
}

}  // namespace
}  // namespace kleak::test
