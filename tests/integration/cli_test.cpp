// End to end: the kleak binary as a user runs it, its output, exit statuses
// and what it leaves behind.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "child.h"
#include "env.h"
#include "msghold.h"
#include "report_json.h"

namespace kleak::test {
namespace {

// Loads kleak's programs: BPF required (env.h).
class Cli : public BpfTest {};

using nlohmann::json;

const std::string kKleak = KLEAK_BIN;

bool stack_has(const json& stack, const std::string& fn) { return stack_runs_through(stack, fn); }

TEST(CliOffline, HelpAndVersion) {
  auto h = run({kKleak, "--help"});
  EXPECT_EQ(h.status, 0);
  EXPECT_NE(h.out.find("Examples:"), std::string::npos);
  auto v = run({kKleak, "--version"});
  EXPECT_EQ(v.status, 0);
  EXPECT_EQ(v.out.rfind("kleak ", 0), 0u);
  auto t = run({kKleak, "trace", "--help"});
  EXPECT_EQ(t.status, 0);
}

TEST(CliOffline, UsageErrorIsOneLineAndStatus2) {
  auto r = run({kKleak, "--top", "zero"});
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST(CliOffline, RefusesWithoutPrivileges) {
  KLEAK_REQUIRE(root_unavailable_reason("to drop privileges"));
  auto r = run({kKleak, "-d", "1"}, Child::Options{false, true});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("need root, or CAP_BPF and CAP_PERFMON"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST_F(Cli, MissingBtfFileIsOneClearLine) {
  auto r = run({kKleak, "-d", "1", "--btf", "/nonexistent/vmlinux"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("--btf /nonexistent/vmlinux"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(3)));
}

TEST_F(Cli, DurationPrintsOneFinalJsonReportAndDetaches) {
  auto t0 = std::chrono::steady_clock::now();
  auto r = run({kKleak, "-d", "2", "-o", "0", "--format", "json", "-q"});
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;
  EXPECT_GE(secs, 2.0);
  EXPECT_LT(secs, 15.0);
  std::istringstream lines(r.out);
  std::string line;
  int n = 0;
  json last;
  while (std::getline(lines, line)) {
    last = json::parse(line);
    ++n;
  }
  ASSERT_EQ(n, 1) << r.out;
  EXPECT_EQ(last["final"], true);
  EXPECT_EQ(last["schema"], "kleak/report/v1");
  EXPECT_GE(last["elapsed_s"].get<double>(), 2.0);
  EXPECT_EQ(tracepoints_attached(last), 4u) << last["attached"].dump();
  EXPECT_TRUE(dropped_parts(last).empty()) << "the default mode lost a part here: " << last["degraded"].dump();
  EXPECT_GT(last["counters"]["allocs_seen"].get<uint64_t>(), 0u);
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(3)));
}

// Periodic reports, a leak held by a real process, Ctrl-C: the final report
// still comes, names the stack and the task, and kleak detaches.
TEST_F(Cli, SigintPrintsFinalReportWithTheHeldMessages) {
  const int n = 40;
  MsgHold holder(n);
  ASSERT_TRUE(holder.ready());
  Child kleak({kKleak, "1", "-o", "0", "-p", std::to_string(holder.pid()), "--format", "json", "-q"});
  auto first = kleak.read_line(std::chrono::seconds(30));
  ASSERT_TRUE(first) << "no first report";
  EXPECT_EQ(json::parse(*first)["final"], false);
  EXPECT_FALSE(loaded_kleak_programs().empty());
  ASSERT_TRUE(holder.send());
  auto last = kleak.last_line_after(SIGINT);
  ASSERT_TRUE(last) << "kleak did not end with a final report and status 0";
  json fin = json::parse(*last);
  EXPECT_EQ(fin["final"], true);
  ASSERT_FALSE(fin["stacks"].empty()) << fin.dump();
  const json& top = fin["stacks"][0];
  EXPECT_TRUE(stack_has(top, "load_msg")) << top.dump();
  EXPECT_TRUE(stack_has(top, "do_msgsnd")) << top.dump();
  EXPECT_EQ(top["count"], n);
  EXPECT_EQ(top["bytes"], n * 4096);
  EXPECT_EQ(top["tasks"][0]["comm"], "kleak-msghold");
  EXPECT_EQ(top["tasks"][0]["tgid"], holder.pid());
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(3)));
}

// Runs `kleak 1 -o 0 --format json -q EXTRA...`; once it has reported, runs
// `act`, then stops kleak with SIGINT and returns its final report.
json trace_around(const std::vector<std::string>& extra, const std::function<void()>& act) {
  std::vector<std::string> argv = {kKleak, "1", "-o", "0", "--format", "json", "-q", "-T", "50"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  Child kleak(argv);
  auto first = kleak.read_line(std::chrono::seconds(30));
  if (!first) return json();
  act();
  auto last = kleak.last_line_after(SIGINT);
  return last ? json::parse(*last) : json();
}


// --low-overhead: stacks are sampled, yet the leak's full stack ranks first
// and its call site's bytes and count are exact.
TEST_F(Cli, LowOverheadNamesTheLeakStackWithExactCallSiteTotals) {
  const int n = 2000;
  MsgHold holder(n);
  ASSERT_TRUE(holder.ready());
  // -p: the call site's totals are the holder's alone (other tests may hold
  // messages too: the triage tests run beside these).
  json fin = trace_around({"--low-overhead", "--sort", "bytes", "-p", std::to_string(holder.pid())},
                          [&] { ASSERT_TRUE(holder.send()); });
  ASSERT_TRUE(fin.is_object()) << "no final report";
  EXPECT_EQ(fin["stack_sample_every"], 64);
  ASSERT_FALSE(fin["stacks"].empty());
  const json& top = fin["stacks"][0];
  EXPECT_TRUE(stack_has(top, "load_msg")) << top.dump();
  EXPECT_TRUE(stack_has(top, "do_msgsnd")) << top.dump();
  ASSERT_TRUE(top["estimated"].get<bool>()) << top.dump();
  EXPECT_EQ(top["estimate"]["site_count"], n) << top.dump();
  EXPECT_EQ(top["estimate"]["site_bytes"], static_cast<uint64_t>(n) * 4096) << top.dump();
  EXPECT_GT(top["estimate"]["sampled"].get<uint64_t>(), 0u);
  EXPECT_LT(top["estimate"]["sampled"].get<uint64_t>(), static_cast<uint64_t>(n) / 4);
  EXPECT_EQ(fin["counters"]["live_map_full"], 0);
}

TEST_F(Cli, CacheSelectsOneSlabtopRow) {
  const int n = 30;
  // System V messages live in msg_msg-4k on kernels with kmalloc buckets
  // (v6.11+), in kmalloc-cg-4k before: either way a kmalloc of 4096 bytes.
  std::ifstream slabinfo("/proc/slabinfo");
  std::string all((std::istreambuf_iterator<char>(slabinfo)), std::istreambuf_iterator<char>());
  const bool buckets = all.find("\nmsg_msg-4k ") != std::string::npos;
  const std::string home = buckets ? "msg_msg-4k" : "kmalloc-cg-4k";
  for (const std::string& cache : {home, std::string("kmalloc-rcl-4k")}) {
    MsgHold holder(n);
    ASSERT_TRUE(holder.ready());
    json fin = trace_around({"--cache", cache}, [&] { ASSERT_TRUE(holder.send()); });
    ASSERT_TRUE(fin.is_object()) << "kleak --cache " << cache << " gave no final report";
    EXPECT_EQ(fin["filters"]["min_size_bytes"], 4096) << cache;
    uint64_t held = count_through(fin, holder.pid(), "load_msg");
    if (cache == home)
      EXPECT_EQ(held, static_cast<uint64_t>(n)) << cache;
    else
      EXPECT_EQ(held, 0u) << "messages are not from a reclaimable cache";  // kmalloc type differs
  }
}

TEST_F(Cli, CacheByNameTracesOnlyThatCache) {
  Child pipes({KLEAK_PIPES_BIN, "50"});
  ASSERT_TRUE(pipes.read_line());
  json fin = trace_around({"--cache", "filp"}, [&] {
    pipes.send_line("hold");
    ASSERT_EQ(pipes.read_line(), "held 50");
  });
  ASSERT_TRUE(fin.is_object());
  uint64_t files = 0;
  for (const auto& s : fin["stacks"]) {
    // Only kmem_cache_alloc records: no kmalloc frame leads any stack.
    ASSERT_FALSE(s["frames"].empty());
    EXPECT_EQ(s["frames"][0]["symbol"].get<std::string>().rfind("kmem_cache_alloc", 0), 0u) << s["stack_key"];
    for (const auto& t : s["tasks"])
      if (t["tgid"] == pipes.pid()) files += t["count"].get<uint64_t>();
  }
  EXPECT_EQ(files, 100u) << "a pipe is two files";
  auto bad = run({kKleak, "--cache", "no_such_cache", "-d", "1"});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("no such slab cache"), std::string::npos) << bad.err;
}

TEST_F(Cli, PeekShowsTheLeakedBuffersAndGroupsThem) {
  const int n = 12;
  MsgHold holder(n);
  ASSERT_TRUE(holder.ready());
  json fin = trace_around({"--peek", "256", "--peek-samples", "5", "-p", std::to_string(holder.pid())},
                          [&] { ASSERT_TRUE(holder.send()); });
  ASSERT_TRUE(fin.is_object());
  const json* msg = nullptr;
  for (const auto& s : fin["stacks"])
    if (stack_has(s, "load_msg") && s["count"] == n) msg = &s;
  ASSERT_NE(msg, nullptr) << fin.dump();
  const json& p = (*msg)["peek"];
  EXPECT_EQ(p["bytes"], 256);
  ASSERT_EQ(p["samples"].size(), 5u);
  for (const auto& sample : p["samples"]) {
    EXPECT_EQ(sample["status"], "ok");
    EXPECT_EQ(sample["hex"].get<std::string>().size(), 512u);
    ASSERT_FALSE(sample["strings"].empty());
    EXPECT_EQ(sample["strings"][0].get<std::string>().rfind("LEAKMARK-", 0), 0u);
  }
  EXPECT_EQ(p["groups"][0]["count"], 5);
  EXPECT_EQ(p["groups"][0]["shape"].get<std::string>().rfind("LEAKMARK-#", 0), 0u);
}

TEST_F(Cli, PeekAddrRefusesWhatKleakDoesNotTrack) {
  // The direct map's first page: readable kernel memory, never a record.
  auto r = run({kKleak, "-q", "-d", "1", "--format", "json", "--peek-addr", "0xffff888000000000,64"});
  ASSERT_EQ(r.status, 0) << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["peek_addr"]["addr"], "0xffff888000000000");
  EXPECT_EQ(j["peek_addr"]["status"], "gone");
  EXPECT_EQ(j["peek_addr"]["hex"], "");
}

TEST_F(Cli, HideAddressesPrintsNoKernelAddress) {
  for (const char* format : {"json", "text"}) {
    // Something to report: messages held while kleak runs.
    MsgHold holder(10000);
    ASSERT_TRUE(holder.ready());
    holder.send_line("drip 20");
    auto r = run({kKleak, "-q", "-d", "2", "-o", "0", "-T", "20", "--hide-addresses", "--format", format});
    holder.send_line("stop");
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("load_msg"), std::string::npos) << format << ": the held messages are not in the report";
    const std::string symbolized = std::string(format) == "json" ? "\"symbol\":\"" : "+0x";
    EXPECT_NE(r.out.find(symbolized), std::string::npos) << format;
    size_t at = r.out.find("0xffff");
    EXPECT_EQ(at, std::string::npos) << format << ": " << r.out.substr(at == std::string::npos ? 0 : at, 80);
  }
}

TEST_F(Cli, OutputFileIsPrivateAndFailuresAreOneLine) {
  const std::string dir = ::testing::TempDir() + "/kleak-out-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  const std::string file = dir + "/report.json";
  auto ok = run({kKleak, "-q", "-d", "1", "--format", "json", "--output", file});
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_TRUE(ok.out.empty());
  std::ifstream in(file);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  EXPECT_EQ(json::parse(line)["final"], true);
  EXPECT_EQ(std::filesystem::status(file).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);

  // A symlink planted at the path is not followed.
  const std::string target = dir + "/target", link = dir + "/link";
  std::ofstream(target) << "untouched\n";
  std::filesystem::create_symlink(target, link);
  auto sym = run({kKleak, "-q", "-d", "1", "--output", link});
  EXPECT_EQ(sym.status, 1);
  EXPECT_NE(sym.err.find("cannot write " + link), std::string::npos) << sym.err;
  EXPECT_EQ(std::count(sym.err.begin(), sym.err.end(), '\n'), 1) << sym.err;
  std::ifstream t(target);
  std::getline(t, line);
  EXPECT_EQ(line, "untouched");

  // ENOSPC at the first report.
  auto full = run({kKleak, "-q", "-d", "1", "--output", "/dev/full"});
  EXPECT_EQ(full.status, 1);
  EXPECT_NE(full.err.find("write report to /dev/full: No space left on device"), std::string::npos) << full.err;

  // EACCES, as a user who may not write there: refused before anything else.
  auto denied = run({kKleak, "-q", "-d", "1", "--output", dir + "/denied"}, Child::Options{false, true});
  EXPECT_EQ(denied.status, 1);
  EXPECT_NE(denied.err.find("Permission denied"), std::string::npos) << denied.err;
  std::filesystem::remove_all(dir);
}

TEST(CliOffline, PeekIsRootOnlyAndBounded) {
  KLEAK_REQUIRE(root_unavailable_reason("to drop privileges"));
  auto big = run({kKleak, "--peek", "5000"});
  EXPECT_EQ(big.status, 2);
  EXPECT_NE(big.err.find("4096"), std::string::npos) << big.err;
  auto r = run({kKleak, "--peek", "64", "-d", "1"}, Child::Options{false, true});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("need root"), std::string::npos) << r.err;
}

TEST_F(Cli, CountEndsAfterThatManyReports) {
  auto r = run({kKleak, "0.5", "3", "-q"});
  ASSERT_EQ(r.status, 0) << r.err;
  size_t reports = 0;
  for (size_t pos = 0; (pos = r.out.find("kleak ", pos)) != std::string::npos; ++pos)
    if (r.out.compare(pos, 13, "kleak report ") == 0 || r.out.compare(pos, 19, "kleak final report ") == 0) ++reports;
  EXPECT_EQ(reports, 3u) << r.out;
  EXPECT_NE(r.out.find("final report #3"), std::string::npos) << r.out;
}

// RssAnon of `pid` in KiB (/proc/PID/status), 0 if unreadable.
uint64_t rss_anon_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("RssAnon:", 0) == 0) return std::stoull(line.substr(8));
  return 0;
}

// A report's tables grow with the (stack, process) pairs of the live set;
// once it shrinks, kleak's heap must shrink too, not stay at the peak.
// 100,000 messages from 20,000 processes: before each report returned its
// freed heap, RssAnon stayed 5.4 MiB above the floor after the release.
TEST_F(Cli, RssComesBackDownWhenTheLiveSetShrinks) {
  const int n = 100000, tasks = 20000;
  Child holder({KLEAK_MSGHOLD_BIN, std::to_string(n), "64"});
  auto ready = holder.read_line();
  ASSERT_TRUE(ready && ready->rfind("ready ", 0) == 0);
  Child kleak({kKleak, "1", "-o", "0", "--format", "json", "-q", "-T", "5", "--max-allocs", "400000"});
  // The next report printed from now on (older ones wait in the pipe).
  auto fresh_report = [&]() -> json {
    while (kleak.read_line(std::chrono::milliseconds(50))) {
    }
    auto line = kleak.read_line(std::chrono::seconds(30));
    return line ? json::parse(*line) : json();
  };
  auto live = [](const json& r) { return r.is_null() ? 0 : r["live"]["allocations"].get<uint64_t>(); };
  // Sampled 300 ms after a report is printed: between reports (each takes
  // ~50 ms here at most, one a second).
  auto rss_between_reports = [&]() {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return rss_anon_kib(kleak.pid());
  };
  for (int i = 0; i < 3; ++i) ASSERT_FALSE(fresh_report().is_null()) << "no reports";
  const uint64_t floor_kib = rss_between_reports();
  holder.send_line("spread " + std::to_string(tasks));
  ASSERT_EQ(holder.read_line(), "held " + std::to_string(n));
  json held = fresh_report();
  EXPECT_GE(live(held), static_cast<uint64_t>(n)) << held.dump().substr(0, 2000);
  const uint64_t held_kib = rss_between_reports();
  holder.send_line("release");
  ASSERT_EQ(holder.read_line(), "released " + std::to_string(n));
  json after = fresh_report();
  EXPECT_LT(live(after), live(held)) << after.dump().substr(0, 2000);
  ASSERT_FALSE(fresh_report().is_null()) << "no reports after the release";
  const uint64_t after_kib = rss_between_reports();
  ASSERT_GT(floor_kib, 0u);
  EXPECT_LE(after_kib, floor_kib + 1536) << "floor " << floor_kib << " KiB, held " << held_kib << " KiB, after "
                                         << after_kib << " KiB";
  EXPECT_TRUE(kleak.last_line_after(SIGINT)) << "kleak did not end with a final report and status 0";
}

TEST_F(Cli, SigkillLeavesNoProgramBehind) {
  Child kleak({kKleak, "1", "-q", "--format", "json"});
  auto line = kleak.read_line(std::chrono::seconds(30));
  ASSERT_TRUE(line) << "no first report";
  // The default (--family slab): the four slab hooks, the backups of the two
  // frees, the on-demand peek reader and the bulk-free follower's programs
  // the kernel has, nothing of the other families.
  const json j = json::parse(*line);
  EXPECT_EQ(loaded_kleak_programs().size(), 7u + followers_attached(j)) << j["attached"].dump();
  kleak.kill(SIGKILL);
  EXPECT_EQ(kleak.wait(), 128 + SIGKILL);
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(5)));
}

TEST_F(Cli, FamilyAllLoadsEveryFamilyAndReportsIt) {
  Child kleak({kKleak, "1", "-q", "--family", "all", "--format", "json"});
  auto line = kleak.read_line(std::chrono::seconds(30));
  ASSERT_TRUE(line) << "no first report";
  // 4 slab hooks, mm_page_alloc/free, mm_filemap_add_to_page_cache,
  // percpu alloc/free, vmap alloc/free where the kernel has them, the 5
  // free hooks' backups, peek.
  json j = json::parse(*line);
  // Each free hook brings its backup (kleak_*_b): a missing free
  // tracepoint takes both.
  size_t missing_frees = 0;
  for (const auto& m : j["missing"])
    for (const char* f : {"kmem/kfree", "kmem/kmem_cache_free", "kmem/mm_page_free", "percpu/percpu_free_percpu",
                          "vmalloc/free_vmap_area_noflush"})
      missing_frees += m == f;
  const size_t want = 17 - j["missing"].size() - missing_frees + followers_attached(j);
  EXPECT_EQ(loaded_kleak_programs().size(), want) << j["missing"].dump();
  kleak.kill(SIGKILL);
  kleak.wait();
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(5)));
  json families = {"slab", "page", "percpu"};
  if (std::find(j["missing"].begin(), j["missing"].end(), "vmalloc/alloc_vmap_area") == j["missing"].end())
    families.push_back("vmalloc");
  EXPECT_EQ(j["families"], families);
  for (const auto& fam : families)
    if (fam != "slab") {
      EXPECT_TRUE(j["family_counters"].contains(fam)) << j["family_counters"].dump();
    }
  // Pages are allocated all the time; percpu and vmap areas may not be in 1 s.
  EXPECT_GT(j["family_counters"]["page"]["allocs_seen"].get<uint64_t>(), 0u);
  // bpf_prog_info.recursion_misses (v5.12): a number where the kernel has it.
  EXPECT_EQ(j["counters"]["recursion_misses"].is_number(), kernel_has_member("bpf_prog_info", "recursion_misses"));
}

// kleak selftest on this kernel: every family it has paired, none missed.
TEST_F(Cli, SelftestPairsEveryFamilyHere) {
  auto r = run({kKleak, "selftest", "--format", "json"});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  json j = json::parse(r.out);
  EXPECT_EQ(j["schema"], "kleak/selftest/v1");
  EXPECT_EQ(j["passed"], true);
  std::map<std::string, std::string> result;
  for (const auto& row : j["results"]) result[row["family"]] = row["result"];
  // Each family whose tracepoints this kernel has must pair; the others are
  // not covered, and say why.
  const std::map<std::string, std::vector<std::string>> tracepoints = {
      {"kmalloc", {"kmalloc", "kfree"}},
      {"kmem_cache", {"kmem_cache_alloc", "kmem_cache_free"}},
      {"page", {"mm_page_alloc", "mm_page_free"}},
      {"percpu", {"percpu_alloc_percpu", "percpu_free_percpu"}},
      {"vmalloc", {"alloc_vmap_area", "free_vmap_area_noflush"}},
      {"rcu", {"kmalloc", "kfree"}}};
  for (const auto& [fam, tps] : tracepoints) {
    bool here = std::all_of(tps.begin(), tps.end(), [](const std::string& tp) { return kernel_has_tracepoint(tp); });
    EXPECT_EQ(result[fam], here ? "ok" : "not_covered") << fam << ": " << r.out;
  }
  EXPECT_TRUE(dropped_parts(j).empty()) << "a part this kernel has was dropped: " << j["degraded"].dump();
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(5)));
}

TEST_F(Cli, ClosedPipeEndsQuietly) {
  // Like `kleak | head -1`: the reader leaves after one line; kleak must end
  // with status 0 at its next write, print no error, and detach.
  auto r = run({"/bin/bash", "-c", kKleak + " 0.2 -q 2>/tmp/kleak-pipe.err | head -n1 >/dev/null; "
                                       "echo ${PIPESTATUS[0]}; cat /tmp/kleak-pipe.err; rm -f /tmp/kleak-pipe.err"});
  EXPECT_EQ(r.out, "0\n");
  EXPECT_TRUE(no_kleak_programs_within(std::chrono::seconds(3)));
}

}  // namespace
}  // namespace kleak::test
