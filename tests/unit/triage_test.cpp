// kleak triage without /proc: option validation, ranking, the next-step
// suggestion and the report shapes, on synthetic series.
#include <algorithm>
#include <functional>
#include <sstream>

#include <gtest/gtest.h>

#include "options/triage_options.h"
#include "triage/triage_report.h"

namespace kleak {
namespace {

// --- options -------------------------------------------------------------------

struct Parsed {
  ParsedTriageCommandLine cl;
  std::string out, err;
};

Parsed parse(std::vector<std::string> args) {
  args.insert(args.begin(), "kleak");
  std::ostringstream out, err;
  Parsed p{parse_triage_command_line(args, out, err), "", ""};
  p.out = out.str();
  p.err = err.str();
  return p;
}

TEST(TriageOptions, DefaultsFinishInAboutAMinute) {
  Parsed p = parse({});
  ASSERT_TRUE(p.cl.triage) << p.err;
  EXPECT_EQ(p.cl.triage->interval_s, 2);
  EXPECT_EQ(p.cl.triage->duration_s, 60);
  EXPECT_EQ(p.cl.triage->top, 10u);
  EXPECT_EQ(p.cl.triage->format, OutputFormat::text);
}

TEST(TriageOptions, AllOptions) {
  Parsed p = parse({"--interval", "0.5", "--duration", "2", "--top", "3", "--format", "json", "-q"});
  ASSERT_TRUE(p.cl.triage) << p.err;
  EXPECT_EQ(p.cl.triage->interval_s, 0.5);
  EXPECT_EQ(p.cl.triage->duration_s, 2);
  EXPECT_EQ(p.cl.triage->top, 3u);
  EXPECT_EQ(p.cl.triage->format, OutputFormat::json);
  EXPECT_TRUE(p.cl.triage->quiet);
  Parsed s = parse({"-i", "1", "-d", "2", "-T", "1"});
  ASSERT_TRUE(s.cl.triage) << s.err;
  EXPECT_EQ(s.cl.triage->duration_s, 2);  // exactly twice the interval: three samples
}

struct BadCase {
  std::vector<std::string> args;
  std::string says;
};

class BadTriageOptions : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadTriageOptions, UsageErrorWithOneLine) {
  Parsed p = parse(GetParam().args);
  EXPECT_FALSE(p.cl.triage);
  EXPECT_EQ(p.cl.exit_code, kExitUsage);
  EXPECT_NE(p.err.find(GetParam().says), std::string::npos) << p.err;
  EXPECT_EQ(std::count(p.err.begin(), p.err.end(), '\n'), 1) << p.err;
  EXPECT_EQ(p.err.rfind("kleak triage: ", 0), 0u) << p.err;
}

INSTANTIATE_TEST_SUITE_P(All, BadTriageOptions,
                         ::testing::Values(BadCase{{"--interval", "0"}, "--interval must be positive"},
                                           BadCase{{"--interval", "-1"}, "--interval must be positive"},
                                           BadCase{{"--interval", "nan"}, "--interval"},
                                           BadCase{{"--interval", "7200", "--duration", "20000"}, "at most 3600"},
                                           BadCase{{"--interval", "2", "--duration", "3"}, "at least twice --interval"},
                                           BadCase{{"--duration", "inf"}, "at most 7 days"},
                                           BadCase{{"--interval", "0.01", "--duration", "600"}, "5000 samples"},
                                           BadCase{{"--top", "0"}, "--top"}, BadCase{{"--format", "xml"}, "xml"},
                                           BadCase{{"--interval", "soon"}, "soon"},
                                           BadCase{{"--size", "4096"}, "--size"}, BadCase{{"extra"}, "extra"}));

TEST(TriageOptions, Help) {
  Parsed p = parse({"--help"});
  EXPECT_FALSE(p.cl.triage);
  EXPECT_EQ(p.cl.exit_code, kExitOk);
  EXPECT_NE(p.out.find("--interval"), std::string::npos);
  EXPECT_NE(p.out.find("Exit status"), std::string::npos);
}

// --- report --------------------------------------------------------------------

using Shape = std::function<double(int)>;

std::vector<TrendPoint> points(const Shape& f, int n = 31) {
  std::vector<TrendPoint> p;
  for (int i = 0; i < n; ++i) p.push_back({2.0 * i, f(i)});
  return p;
}

const Shape kFlat = [](int) { return 5e6; };
Shape linear(double per_sample) {
  return [per_sample](int i) { return 5e6 + per_sample * i; };
}

TriageData base_data() {
  TriageData d;
  d.kernel = "6.18.0-test";
  d.interval_s = 2;
  d.duration_s = 60;
  d.elapsed_s = 60;
  d.samples = 31;
  d.last_sample_t_s = 60;
  d.meminfo_status.readable = d.slabinfo_status.readable = d.process_status.readable = true;
  for (const std::string& f : kTriageMeminfoFields) d.meminfo[f] = points(kFlat);
  d.slab["dentry"] = {points(kFlat), 192};
  d.slab["kmalloc-64"] = {points(kFlat), 64};
  d.processes[1] = {"init", points(kFlat), 8000000};
  return d;
}

TEST(TriageReport, NothingGrows) {
  TriageData d = base_data();
  TriageReport r = analyze(d, 10);
  EXPECT_TRUE(r.meminfo.growing.empty());
  EXPECT_TRUE(r.slab.growing.empty());
  EXPECT_EQ(r.next.kind, "none");
  EXPECT_EQ(r.next.command, "kleak triage --interval 10 --duration 600");
}

TEST(TriageReport, KmallocCacheSuggestsItsCache) {
  struct Case {
    const char* cache;
    const char* command;
  };
  for (const Case& c :
       {Case{"kmalloc-4k", "kleak trace --cache kmalloc-4k"}, Case{"kmalloc-96", "kleak trace --cache kmalloc-96"},
        Case{"kmalloc-cg-4k", "kleak trace --cache kmalloc-cg-4k"},
        Case{"kmalloc-rcl-1k", "kleak trace --cache kmalloc-rcl-1k"},
        // Old SLAB: no kmalloc type to select, the size is the filter.
        Case{"size-4096", "kleak trace --size 4096"}, Case{"size-2048(DMA)", "kleak trace --size 2048"},
        Case{"kmalloc-rnd-03-4k", "kleak trace --size 4096"}}) {
    TriageData d = base_data();
    d.slab[c.cache] = {points(linear(8192)), 4096};
    TriageReport r = analyze(d, 10);
    EXPECT_EQ(r.next.kind, "kmalloc") << c.cache;
    EXPECT_EQ(r.next.series, c.cache);
    EXPECT_EQ(r.next.command, c.command);
    EXPECT_NEAR(r.next.slope_bytes_per_s, 4096, 1e-6);
  }
}

TEST(TriageReport, NamedCacheSuggestsItsCache) {
  TriageData d = base_data();
  d.slab["dentry"] = {points(linear(192 * 100)), 192};
  d.slab_aliases["dentry"] = {"ext4_dentry_thing"};
  TriageReport r = analyze(d, 10);
  ASSERT_EQ(r.slab.growing.size(), 1u);
  EXPECT_EQ(r.slab.series[r.slab.growing[0]].aliases, std::vector<std::string>{"ext4_dentry_thing"});
  EXPECT_EQ(r.next.kind, "slab_cache");
  EXPECT_EQ(r.next.command, "kleak trace --cache dentry");
  EXPECT_EQ(r.next.planned_command, "");
  EXPECT_NE(render_triage_text(r).find("merged with: ext4_dentry_thing"), std::string::npos);
}

TEST(TriageReport, UnaccountedSuggestsPageTracing) {
  TriageData d = base_data();
  d.meminfo[kUnaccountedSeries] = points(linear(1 << 20));
  TriageReport r = analyze(d, 10);
  EXPECT_EQ(r.next.kind, "unaccounted");
  EXPECT_EQ(r.next.command, "");
  EXPECT_EQ(r.next.planned_command, "kleak trace --family page");
  EXPECT_NE(r.next.text.find("page-allocator tracing"), std::string::npos);
}

TEST(TriageReport, ProcessSuggestsUserSpace) {
  TriageData d = base_data();
  d.processes[4242] = {"leaky", points(linear(1 << 20)), 99};
  TriageReport r = analyze(d, 10);
  EXPECT_EQ(r.next.kind, "process");
  EXPECT_EQ(r.next.series, "4242 (leaky)");
  EXPECT_EQ(r.next.command, "kleak user -p 4242");
  EXPECT_TRUE(r.next.planned_command.empty());
  EXPECT_NE(r.next.text.find("user-space leak in 4242 (leaky)"), std::string::npos);
}

TEST(TriageReport, ExitedProcessIsNotRanked) {
  TriageData d = base_data();
  d.processes[77] = {"gone", points(linear(1 << 20), 20), 0};  // last seen at 38 s of 60
  TriageReport r = analyze(d, 10);
  EXPECT_TRUE(r.processes.growing.empty());
  EXPECT_EQ(r.next.kind, "none");
}

TEST(TriageReport, FastestGrowthDecidesAndRankingIsBySlope) {
  TriageData d = base_data();
  d.slab["kmalloc-64"] = {points(linear(64 * 1000)), 64};     // 32 KB/s
  d.slab["kmalloc-4k"] = {points(linear(4096 * 100)), 4096};  // 200 KB/s
  d.slab["filp"] = {points(linear(256 * 200)), 256};          // 25 KB/s
  d.slab["plateau"] = {points([](int i) { return 1e6 * std::min(i, 5); }), 64};
  d.processes[9] = {"slowleak", points(linear(200000)), 0};  // 100 KB/s
  TriageReport r = analyze(d, 2);
  ASSERT_EQ(r.slab.growing.size(), 3u);
  EXPECT_EQ(r.slab.series[r.slab.growing[0]].name, "kmalloc-4k");
  EXPECT_EQ(r.slab.series[r.slab.growing[1]].name, "kmalloc-64");
  EXPECT_EQ(r.slab.series[r.slab.growing[2]].name, "filp");
  EXPECT_EQ(r.next.command, "kleak trace --cache kmalloc-4k");
  std::string text = render_triage_text(r);
  EXPECT_NE(text.find("top 2 of 3 growing"), std::string::npos) << text;
  EXPECT_EQ(text.find("filp"), std::string::npos) << "--top 2 shows two";
  EXPECT_EQ(text.find("plateau"), std::string::npos);
  EXPECT_NE(text.find("Next step: kleak trace --cache kmalloc-4k"), std::string::npos);
}

TEST(TriageReport, SlabGrowsButNoCache) {
  TriageData d = base_data();
  d.meminfo["SUnreclaim"] = points(linear(1 << 20));
  d.meminfo["Slab"] = points(linear(1 << 20));
  d.slab.clear();
  d.slabinfo_status = {false, "open /proc/slabinfo: Permission denied (-EACCES)", 0};
  TriageReport r = analyze(d, 10);
  EXPECT_EQ(r.next.kind, "slab_unknown");
  EXPECT_EQ(r.next.command, "sudo kleak triage");
  d.slabinfo_status.readable = true;
  TriageReport rooted = analyze(d, 10);
  EXPECT_EQ(rooted.next.kind, "slab_unknown");
  EXPECT_EQ(rooted.next.command, "kleak trace");
}

TEST(TriageReport, MemFreeGrowingIsNotALeak) {
  TriageData d = base_data();
  d.meminfo["MemFree"] = points(linear(1 << 20));
  TriageReport r = analyze(d, 10);
  EXPECT_TRUE(r.meminfo.growing.empty());
  EXPECT_EQ(r.next.kind, "none");
}

TEST(TriageReport, JsonShape) {
  TriageData d = base_data();
  d.slab["kmalloc-4k"] = {points(linear(8192)), 4096};
  d.slab_aliases["kmalloc-4k"] = {};
  d.unaccounted_absent = {"Percpu"};
  d.interrupted = true;
  TriageReport r = analyze(d, 10);
  nlohmann::json j = triage_to_json(r);
  EXPECT_EQ(j["schema"], "kleak/triage/v1");
  for (const char* k : {"kernel", "interval_s", "duration_s", "elapsed_s", "samples", "interrupted", "top", "sources",
                        "processes_unreadable", "kernel_threads", "unaccounted_absent_fields", "thresholds", "meminfo",
                        "slab", "processes", "growing", "next_step"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["interrupted"], true);
  EXPECT_EQ(j["samples"], 31);
  EXPECT_EQ(j["sources"]["slabinfo"]["readable"], true);
  EXPECT_TRUE(j["sources"]["slabinfo"]["error"].is_null());
  ASSERT_EQ(j["meminfo"].size(), kTriageMeminfoFields.size());
  EXPECT_EQ(j["meminfo"][0]["name"], "unaccounted");
  const nlohmann::json* k4 = nullptr;
  for (const auto& s : j["slab"])
    if (s["name"] == "kmalloc-4k") k4 = &s;
  ASSERT_TRUE(k4);
  for (const char* k : {"name", "verdict", "points", "start_bytes", "end_bytes", "delta_bytes", "slope_bytes_per_s",
                        "recent_slope_bytes_per_s", "r2", "monotonic_fraction", "objsize", "kmalloc_size", "aliases"})
    EXPECT_TRUE(k4->contains(k)) << k;
  EXPECT_EQ((*k4)["verdict"], "growing");
  EXPECT_EQ((*k4)["kmalloc_size"], 4096);
  EXPECT_EQ((*k4)["start_bytes"], 5000000);
  EXPECT_EQ((*k4)["delta_bytes"], 8192 * 30);
  EXPECT_EQ((*k4)["points"], 31);
  EXPECT_EQ(j["growing"]["slab"], nlohmann::json::array({"kmalloc-4k"}));
  const nlohmann::json& p = j["processes"][0];
  for (const char* k : {"pid", "name", "rss_end_bytes", "alive_at_end", "verdict", "slope_bytes_per_s"})
    EXPECT_TRUE(p.contains(k)) << k;
  EXPECT_EQ(p["pid"], 1);
  EXPECT_EQ(j["next_step"]["kind"], "kmalloc");
  EXPECT_EQ(j["next_step"]["command"], "kleak trace --cache kmalloc-4k");
  EXPECT_TRUE(j["next_step"]["planned_command"].is_null());
  EXPECT_EQ(j["unaccounted_absent_fields"], nlohmann::json::array({"Percpu"}));
}

TEST(TriageReport, TextNamesUnreadableSlabinfo) {
  TriageData d = base_data();
  d.slab.clear();
  d.slabinfo_status = {false, "open /proc/slabinfo: Permission denied (-EACCES)", 0};
  std::string text = render_triage_text(analyze(d, 10));
  EXPECT_NE(text.find("slabinfo unreadable (open /proc/slabinfo: Permission denied"), std::string::npos) << text;
  EXPECT_NE(text.find("Next step: kleak triage --interval 10"), std::string::npos);
}

}  // namespace
}  // namespace kleak
