// kleak triage end to end: the real binary on this machine, its real JSON.
// No BPF is loaded, so these run beside the root tests without disturbing
// them.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "child.h"
#include "env.h"
#include "msghold.h"

namespace kleak::test {
namespace {

using nlohmann::json;

const std::string kKleak = KLEAK_BIN;

const json* find_named(const json& arr, const std::string& name) {
  for (const auto& s : arr)
    if (s["name"] == name) return &s;
  return nullptr;
}

TEST(TriageLive, JsonOnThisMachine) {
  auto r = run({kKleak, "triage", "--interval", "0.5", "--duration", "2", "--format", "json"});
  ASSERT_EQ(r.status, 0) << r.err;
  json j = json::parse(r.out);  // one document
  EXPECT_EQ(j["schema"], "kleak/triage/v1");
  EXPECT_EQ(j["samples"], 5);
  EXPECT_EQ(j["interrupted"], false);
  EXPECT_NEAR(j["elapsed_s"].get<double>(), 2.0, 0.5);
  EXPECT_EQ(j["sources"]["meminfo"]["readable"], true);
  for (const char* f : {"unaccounted", "Slab", "SUnreclaim", "AnonPages", "Cached", "MemFree"}) {
    const json* s = find_named(j["meminfo"], f);
    ASSERT_TRUE(s) << f;
    EXPECT_EQ((*s)["points"], 5) << f;
  }
  EXPECT_GT((*find_named(j["meminfo"], "MemFree"))["end_bytes"].get<int64_t>(), 0);
  if (geteuid() == 0) {
    EXPECT_EQ(j["sources"]["slabinfo"]["readable"], true) << j["sources"];
    const json* k = find_named(j["slab"], "kmalloc-64");
    ASSERT_TRUE(k);
    EXPECT_EQ((*k)["kmalloc_size"], 64);
    EXPECT_GT((*k)["end_bytes"].get<int64_t>(), 0);
  }
  size_t with_pss = 0;
  for (const auto& p : j["processes"])
    if (p["end_bytes"].get<int64_t>() > 0) ++with_pss;
  EXPECT_GT(with_pss, 0u);
  // This test process was alive for the whole run.
  bool self = false;
  for (const auto& p : j["processes"])
    if (p["pid"] == getpid()) self = p["points"] == 5 && p["alive_at_end"] == true;
  EXPECT_TRUE(self);
  EXPECT_TRUE(j["next_step"]["kind"].is_string());
  EXPECT_FALSE(j["next_step"]["text"].get<std::string>().empty());
}

TEST(TriageLive, FindsAGrowingProcess) {
  // 8 MiB/s of never-freed heap.
  Child grow({KLEAK_GROW_BIN, "8192"});
  auto ready = grow.read_line();
  ASSERT_TRUE(ready && ready->rfind("ready ", 0) == 0);
  int pid = std::stoi(ready->substr(6));
  auto r = run({kKleak, "triage", "--interval", "0.5", "--duration", "3", "--format", "json", "-q"});
  grow.close_stdin();
  ASSERT_EQ(r.status, 0) << r.err;
  json j = json::parse(r.out);
  const json* p = nullptr;
  for (const auto& s : j["processes"])
    if (s["pid"] == pid) p = &s;
  ASSERT_TRUE(p);
  EXPECT_EQ((*p)["verdict"], "growing") << *p;
  EXPECT_NEAR((*p)["slope_bytes_per_s"].get<double>(), 8 << 20, 3 << 20) << *p;
  // Ranked among the growing processes, by slope. Other work on this
  // machine (a compiler) may grow faster, so only the order is asserted.
  std::vector<double> slopes;
  bool ranked = false;
  for (const auto& g : j["growing"]["processes"]) {
    for (const auto& s : j["processes"])
      if (s["pid"] == g) slopes.push_back(s["slope_bytes_per_s"].get<double>());
    ranked = ranked || g == pid;
  }
  EXPECT_TRUE(ranked) << j["growing"];
  EXPECT_TRUE(std::is_sorted(slopes.rbegin(), slopes.rend())) << j["growing"];
  // The fastest growth decides the next step; when it is ours, it names us.
  EXPECT_GE(j["next_step"]["slope_bytes_per_s"].get<double>(), (*p)["slope_bytes_per_s"].get<double>());
  if (j["next_step"]["kind"] == "process" && j["growing"]["processes"][0] == pid) {
    EXPECT_EQ(j["next_step"]["command"], "kleak user -p " + std::to_string(pid));
  }
}

// A kernel leak: a process keeps one more System V message every 20 ms
// (~200 KB/s of 4 KiB slab objects). Triage must see that slab cache and
// SUnreclaim grow and name the cache in the next command. Reading
// /proc/slabinfo needs root.
TEST(TriageLive, FindsAGrowingSlabCacheAndNamesIt) {
  KLEAK_REQUIRE(root_unavailable_reason("to read /proc/slabinfo"));
  std::ifstream in("/proc/slabinfo");
  std::string slabinfo((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // v6.11+ keeps messages in kmalloc buckets (msg_msg-4k), older kernels in kmalloc-cg-4k.
  const std::string cache = slabinfo.find("\nmsg_msg-4k ") != std::string::npos ? "msg_msg-4k" : "kmalloc-cg-4k";
  MsgHold leak(100000);
  ASSERT_TRUE(leak.ready());
  leak.send_line("drip 20");
  auto r = run({kKleak, "triage", "--interval", "0.5", "--duration", "5", "--format", "json", "-q"});
  leak.send_line("stop");
  auto dripped = leak.read_line();
  ASSERT_EQ(r.status, 0) << r.err;
  ASSERT_TRUE(dripped);
  json j = json::parse(r.out);
  const json* s = find_named(j["slab"], cache);
  ASSERT_TRUE(s) << cache << " not in the report";
  EXPECT_EQ((*s)["verdict"], "growing") << *s;
  // 50 messages/s of 4096 bytes: 200 KiB/s, give or take the timer.
  EXPECT_NEAR((*s)["slope_bytes_per_s"].get<double>(), 50 * 4096, 0.3 * 50 * 4096) << *s;
  const json* unreclaim = find_named(j["meminfo"], "SUnreclaim");
  ASSERT_TRUE(unreclaim);
  EXPECT_EQ((*unreclaim)["verdict"], "growing") << *unreclaim;
  ASSERT_FALSE(j["growing"]["slab"].empty());
  EXPECT_EQ(j["growing"]["slab"][0], cache) << j["growing"];
  if (j["next_step"]["series"] == cache) {
    EXPECT_EQ(j["next_step"]["command"], "kleak trace --cache " + cache) << j["next_step"];
  }
}

TEST(TriageLive, SigintStopsEarlyAndStillReports) {
  Child c({kKleak, "triage", "--interval", "0.5", "--duration", "60", "--format", "json", "-q"});
  std::this_thread::sleep_for(std::chrono::milliseconds(1700));
  auto t0 = std::chrono::steady_clock::now();
  c.kill(SIGINT);
  std::string out = c.read_all(std::chrono::seconds(10));
  auto status = c.wait(std::chrono::seconds(10));
  ASSERT_TRUE(status);
  EXPECT_EQ(*status, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  json j = json::parse(out);
  EXPECT_EQ(j["interrupted"], true);
  EXPECT_GE(j["samples"].get<int>(), 3);
  EXPECT_LE(j["samples"].get<int>(), 6);
}

TEST(TriageLive, TextReportAndUsageError) {
  auto r = run({kKleak, "triage", "--interval", "0.5", "--duration", "1", "-q"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("Kernel memory (/proc/meminfo)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("unaccounted"), std::string::npos);
  EXPECT_NE(r.out.find("\nNext step: "), std::string::npos);
  auto bad = run({kKleak, "triage", "--interval", "2", "--duration", "3"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_EQ(std::count(bad.err.begin(), bad.err.end(), '\n'), 1) << bad.err;
  EXPECT_TRUE(bad.out.empty());
}

TEST(TriageLive, WorksWithoutRoot) {
  KLEAK_REQUIRE(root_unavailable_reason("to drop privileges to nobody"));
  Child::Options o;
  o.drop_privileges = true;
  auto r = run({kKleak, "triage", "--interval", "0.5", "--duration", "1", "--format", "json", "-q"}, o);
  ASSERT_EQ(r.status, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["sources"]["slabinfo"]["readable"], false);
  EXPECT_TRUE(j["slab"].empty());
  EXPECT_EQ(j["sources"]["meminfo"]["readable"], true);
  EXPECT_GT(j["processes_unreadable"].get<int>(), 0);  // other users' processes
  // Said once, not once per sample.
  size_t says = 0;
  for (size_t at = r.err.find("slabinfo"); at != std::string::npos; at = r.err.find("slabinfo", at + 1)) ++says;
  EXPECT_EQ(says, 1u) << r.err;
  EXPECT_NE(r.err.find("root only"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kleak::test
