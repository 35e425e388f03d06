// Growth verdicts on the real kernel: a process that keeps one more System V
// message every 100 ms (a leak), one that fills a fixed set of pipes (a cache)
// and one that churns /proc/stat reads, all traced together. The leak must
// rank first with a growth rate within 20% of the true one; the cache and the
// churn must not be called growing.
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "child.h"
#include "env.h"

namespace kleak::test {
namespace {

// Loads kleak's programs: BPF required (env.h).
class Growth : public BpfTest {};

using nlohmann::json;

bool has_frame(const json& stack, const std::string& fn) {
  for (const auto& f : stack["frames"])
    if (f["symbol"].is_string() && f["symbol"] == fn) return true;
  return false;
}

TEST_F(Growth, LeakRanksFirstCacheAndChurnAreNotLeaks) {
  Child leak({KLEAK_MSGHOLD_BIN, "10000"});
  Child cache({KLEAK_PIPES_BIN, "300"});
  Child churn({KLEAK_CHURN_BIN, "proc", "100000000"});
  for (Child* c : {&leak, &cache, &churn}) ASSERT_TRUE(c->read_line());
  Child kleak({KLEAK_BIN, "0.5", "-o", "0", "--format", "json", "-q", "-T", "30"});
  ASSERT_TRUE(kleak.read_line(std::chrono::seconds(30))) << "no first report";
  auto t0 = std::chrono::steady_clock::now();
  cache.send_line("hold");
  ASSERT_EQ(cache.read_line(), "held 300");
  churn.send_line("go");
  leak.send_line("drip 100");
  // About 7 s of reports (14).
  std::this_thread::sleep_for(std::chrono::seconds(7));
  leak.send_line("stop");
  auto dripped_line = leak.read_line();
  double drip_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(dripped_line);
  long dripped = std::stol(dripped_line->substr(std::string("dripped ").size()));
  auto last = kleak.last_line_after(SIGINT);
  ASSERT_TRUE(last) << "kleak did not end with a final report and status 0";
  json fin = json::parse(*last);
  ASSERT_EQ(fin["final"], true);
  ASSERT_FALSE(fin["stacks"].empty());

  const json& top = fin["stacks"][0];
  EXPECT_TRUE(has_frame(top, "load_msg")) << top["stack_key"];
  EXPECT_EQ(top["growth"]["verdict"], "growing") << top.dump();
  const double true_rate = dripped * 4096.0 / drip_s;
  EXPECT_GT(dripped, 40) << "the leak did not drip";
  std::printf("leak: measured %.0f B/s (%s), true %.0f B/s over %.1f s; top stack %s\n",
              top["growth"]["bytes_per_s"].get<double>(), top["growth"]["verdict"].dump().c_str(), true_rate, drip_s,
              top["stack_key"].get<std::string>().substr(0, 80).c_str());
  EXPECT_NEAR(top["growth"]["bytes_per_s"].get<double>(), true_rate, 0.2 * true_rate) << top.dump();

  // The kernel's own counters moved too, and kleak accounts the held
  // messages as unreclaimable slab.
  ASSERT_TRUE(fin.contains("reconciliation")) << "no /proc/meminfo reconciliation";
  EXPECT_GE(fin["reconciliation"]["tracked_unreclaimable_bytes"].get<int64_t>(), dripped * 4096);
  EXPECT_GT(fin["reconciliation"]["slab_delta_bytes"].get<int64_t>(), 0);

  int cache_stacks = 0;
  for (const auto& s : fin["stacks"]) {
    if (has_frame(s, "alloc_pipe_info") || has_frame(s, "create_pipe_files")) {
      ++cache_stacks;
      EXPECT_NE(s["growth"]["verdict"], "growing") << s["stack_key"] << " " << s["growth"];
    }
    if (has_frame(s, "seq_read_iter") || has_frame(s, "single_open")) {
      EXPECT_NE(s["growth"]["verdict"], "growing") << s["stack_key"] << " " << s["growth"];
    }
  }
  EXPECT_GT(cache_stacks, 0) << "the pipes were not seen: the test proves nothing about caches";
}

}  // namespace
}  // namespace kleak::test

namespace kleak::test {
namespace {

// The fleet form, one report at the end (-d, no interval): kleak samples
// the live set while it traces, so that one report still ranks a steady
// leak (20 messages a second, 80 KiB/s) above a larger fixed set (300
// pipes, filled just after kleak attached), with its rate within 10%.
TEST_F(Growth, OneShotRunRanksTheLeakWithItsRate) {
  Child leak({KLEAK_MSGHOLD_BIN, "10000"});
  Child cache({KLEAK_PIPES_BIN, "300"});
  for (Child* c : {&leak, &cache}) ASSERT_TRUE(c->read_line());
  leak.send_line("drip 50");
  // The banner says the programs are attached: the pipes are filled after
  // it, so kleak sees them (a fixed set from its first sample on).
  Child kleak({KLEAK_BIN, "-d", "10", "-o", "0", "--format", "json", "-T", "30"}, {.capture_stderr = true});
  ASSERT_TRUE(kleak.read_err_line(std::chrono::seconds(30))) << "no banner";
  cache.send_line("hold");
  ASSERT_EQ(cache.read_line(), "held 300");
  const std::string out = kleak.read_all(std::chrono::seconds(60));
  EXPECT_EQ(kleak.wait().value_or(-1), 0);
  leak.send_line("stop");
  ASSERT_TRUE(leak.read_line());
  json fin = json::parse(out, nullptr, false);
  ASSERT_FALSE(fin.is_discarded()) << out;
  ASSERT_FALSE(fin["stacks"].empty());
  const json& top = fin["stacks"][0];
  EXPECT_TRUE(has_frame(top, "load_msg")) << top["stack_key"];
  ASSERT_TRUE(top.contains("growth")) << top.dump();
  EXPECT_EQ(top["growth"]["verdict"], "growing") << top["growth"];
  EXPECT_GE(top["growth"]["points"].get<int>(), 10) << top["growth"];
  const double true_rate = 20 * 4096.0;
  std::printf("one-shot: leak measured %.0f B/s (r2 %.2f, %d points), true %.0f B/s\n",
              top["growth"]["bytes_per_s"].get<double>(), top["growth"]["r2"].get<double>(),
              top["growth"]["points"].get<int>(), true_rate);
  EXPECT_NEAR(top["growth"]["bytes_per_s"].get<double>(), true_rate, 0.1 * true_rate) << top["growth"];
  bool pipes_seen = false;
  for (const auto& s : fin["stacks"])
    if (has_frame(s, "alloc_pipe_info") || has_frame(s, "create_pipe_files")) {
      pipes_seen = true;
      EXPECT_NE(s["growth"]["verdict"], "growing") << s["stack_key"] << " " << s["growth"];
    }
  EXPECT_TRUE(pipes_seen) << "the pipes were not seen: the ranking proves nothing";
}

}  // namespace
}  // namespace kleak::test
