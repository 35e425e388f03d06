#include "options/options.h"
#include "report/report.h"
#include "symbols/kernel_symbols.h"
#include "symbols/ksyms.h"

#include <cstring>

#include <gtest/gtest.h>

namespace kleak {
namespace {

constexpr uint64_t kSec = 1000000000ull;

const char* kSyms =
    "ffffffff81000000 T bpf_trace_run6\n"
    "ffffffff81000100 T __bpf_trace_kmalloc\n"
    "ffffffff81001000 T __kmalloc_noprof\n"
    "ffffffff81002000 T load_msg\n"
    "ffffffff81003000 T do_msgsnd\n"
    "ffffffff81004000 T entry_SYSCALL_64\n"
    "ffffffffc0000000 t bpf_prog_0123456789abcdef_kleak_kmalloc [bpf]\n";

struct Fixture {
  Snapshot snap;
  TraceOptions opts;
  ReportContext ctx;
  Ksyms ksyms = Ksyms::parse(kSyms);

  Fixture() {
    snap.mono_ns = 20 * kSec;
    snap.realtime_ns = 1700000000ull * kSec;
    snap.counters.v[KLEAK_CNT_ALLOC_SEEN] = 50;
    snap.counters.v[KLEAK_CNT_ALLOC_RECORDED] = 40;
    snap.counters.v[KLEAK_CNT_FREE_SEEN] = 30;
    snap.counters.v[KLEAK_CNT_FREE_MATCHED] = 25;
    snap.counters.v[KLEAK_CNT_STACK_ENOMEM] = 2;
    for (int i = 0; i < 3; ++i) {
      LiveAlloc la{0xffff888000001000ull + 0x1000ull * i, {}};
      la.a.stack_id = 4;
      la.a.bytes_alloc = 4096;
      la.a.bytes_req = 4048;
      la.a.ts_ns = 5 * kSec + i;
      la.a.tgid = la.a.pid = 77;
      la.a.call_site = 0xffffffff81002010;
      std::strcpy(la.a.comm, "kleak-msghold");
      snap.allocs.push_back(la);
    }
    LiveAlloc nostack{0xffff888000100000ull, {}};
    nostack.a.stack_id = 0;
    nostack.a.stack_err = -12;
    nostack.a.bytes_alloc = 64;
    nostack.a.ts_ns = 1 * kSec;
    nostack.a.call_site = 0xffffffff81003004;
    snap.allocs.push_back(nostack);
    opts.min_age_ms = 0;
    ctx.seq = 2;
    ctx.kernel = "6.18.0-test";
    ctx.live_capacity = 1000;
    ctx.start_mono_ns = 10 * kSec;
  }

  Report build() {
    Aggregate agg = aggregate(snap.allocs, snap.mono_ns, opts.min_age_ms * 1000000ull, opts.show_allocs);
    auto stacks = [](uint64_t id) -> Result<std::vector<uint64_t>> {
      if (id != 4) return make_error("no such stack", ENOENT);
      return std::vector<uint64_t>{0xffffffffc0000040, 0xffffffff81000110, 0xffffffff81000010, 0xffffffff81001020,
                                   0xffffffff81002010, 0xffffffff81003030, 0xffffffff81004000};
    };
    return build_report(snap, agg, opts, ctx, ksyms, stacks);
  }
};

TEST(Report, StripsTracingFramesAndSymbolizes) {
  Fixture f;
  Report r = f.build();
  ASSERT_EQ(r.stacks.size(), 2u);
  const StackReport& s = r.stacks[0];
  EXPECT_EQ(s.bytes, 3u * 4096);
  EXPECT_EQ(s.count, 3u);
  ASSERT_EQ(s.frames.size(), 4u);
  EXPECT_EQ(s.frames[0].symbol, "__kmalloc_noprof");
  EXPECT_EQ(s.frames[1].symbol, "load_msg");
  EXPECT_EQ(s.frames[2].symbol, "do_msgsnd");
  EXPECT_EQ(s.frames[2].offset, 0x30u);
  EXPECT_EQ(s.oldest_age_ms, 15000u);
  ASSERT_FALSE(s.tasks.empty());
  EXPECT_EQ(s.tasks[0].comm, "kleak-msghold");
  EXPECT_EQ(r.stacks[1].stack_error, "ENOMEM");
  EXPECT_EQ(r.stacks[1].call_site.symbol, "do_msgsnd");
  EXPECT_DOUBLE_EQ(r.elapsed_s, 10.0);
}

TEST(Report, TopLimitsStacks) {
  Fixture f;
  f.opts.top = 1;
  Report r = f.build();
  EXPECT_EQ(r.stacks.size(), 1u);
  EXPECT_EQ(r.stacks_total, 2u);
}

TEST(Report, TextShowsCountersFramesAndMissingStacks) {
  Fixture f;
  std::string t = render_text(f.build());
  EXPECT_NE(t.find("report #2"), std::string::npos) << t;
  EXPECT_NE(t.find("12288 bytes in 3 allocations"), std::string::npos) << t;
  EXPECT_NE(t.find("load_msg+0x10"), std::string::npos) << t;
  EXPECT_NE(t.find("kleak-msghold/77"), std::string::npos) << t;
  EXPECT_NE(t.find("seen 50 recorded 40"), std::string::npos) << t;
  EXPECT_NE(t.find("unmatched 5"), std::string::npos) << t;
  EXPECT_NE(t.find("ENOMEM 2"), std::string::npos) << t;
  EXPECT_NE(t.find("do_msgsnd+0x4 (no stack: ENOMEM)"), std::string::npos) << t;
  EXPECT_EQ(t.find("bpf_trace_run"), std::string::npos) << t;
}

TEST(Report, ReconciliationLine) {
  Fixture f;
  Report r = f.build();
  EXPECT_EQ(render_text(r).find("vs kernel"), std::string::npos);  // not measured: not shown
  EXPECT_FALSE(to_json(r).contains("reconciliation"));
  r.reconciliation = Reconciliation{true, 8192, 409600, -4096, 204800, 0, 0};
  std::string t = render_text(r);
  EXPECT_NE(t.find("SUnreclaim +400.0 KiB (200.0 KiB tracked, covers 50% of it)"), std::string::npos) << t;
  EXPECT_NE(t.find("SReclaimable -4.0 KiB"), std::string::npos) << t;
  r.reconciliation.tracked_unreclaimable = 500000;
  EXPECT_NE(render_text(r).find("covers all of it"), std::string::npos);
  nlohmann::json j = to_json(r);
  EXPECT_EQ(j["reconciliation"]["sunreclaim_delta_bytes"], 409600);
  EXPECT_EQ(j["reconciliation"]["sreclaimable_delta_bytes"], -4096);
  EXPECT_EQ(j["reconciliation"]["tracked_unreclaimable_bytes"], 500000);
}

TEST(Report, TextWarnsWhenTheMapFilled) {
  Fixture f;
  f.snap.counters.v[KLEAK_CNT_LIVE_FULL] = 9;
  std::string t = render_text(f.build());
  EXPECT_NE(t.find("WARNING: the live map filled up and 9"), std::string::npos) << t;
}

TEST(Report, JsonShape) {
  Fixture f;
  f.opts.show_allocs = true;
  nlohmann::json j = to_json(f.build());
  EXPECT_EQ(j["schema"], "kleak/report/v1");
  EXPECT_EQ(j["seq"], 2);
  EXPECT_EQ(j["kernel"], "6.18.0-test");
  EXPECT_EQ(j["counters"]["allocs_seen"], 50);
  EXPECT_EQ(j["counters"]["frees_unmatched"], 5);
  EXPECT_EQ(j["counters"]["stack_errors"]["ENOMEM"], 2);
  EXPECT_EQ(j["complete"], true);
  EXPECT_EQ(j["filters"]["cache"], nullptr);
  EXPECT_EQ(j["filters"]["min_size_bytes"], 0);
  f.ctx.cache = "kmalloc-cg-4k";
  f.ctx.min_size_bytes = f.ctx.max_size_bytes = 4096;
  nlohmann::json jc = to_json(f.build());
  EXPECT_EQ(jc["filters"]["cache"], "kmalloc-cg-4k");
  EXPECT_EQ(jc["filters"]["max_size_bytes"], 4096);
  EXPECT_EQ(j["live"]["allocations"], 4);
  EXPECT_EQ(j["live"]["capacity"], 1000);
  EXPECT_EQ(j["totals"]["bytes"], 3 * 4096 + 64);
  ASSERT_EQ(j["stacks"].size(), 2u);
  const auto& s = j["stacks"][0];
  EXPECT_EQ(s["rank"], 1);
  EXPECT_EQ(s["bytes"], 3 * 4096);
  EXPECT_EQ(s["sizes"][0]["bytes_alloc"], 4096);
  EXPECT_EQ(s["sizes"][0]["count"], 3);
  EXPECT_EQ(s["tasks"][0]["comm"], "kleak-msghold");
  EXPECT_EQ(s["frames"][1]["symbol"], "load_msg");
  EXPECT_EQ(s["frames"][1]["module"], nullptr);
  EXPECT_EQ(s["frames"][1]["addr"], "0xffffffff81002010");
  ASSERT_EQ(s["allocations"].size(), 3u);
  EXPECT_EQ(s["allocations"][0]["addr"], "0xffff888000001000");
  EXPECT_EQ(s["allocations"][0]["bytes_req"], 4048);
  EXPECT_EQ(j["stacks"][1]["stack_error"], "ENOMEM");
  EXPECT_EQ(j["stacks"][0]["stack_id"], "0x0000000000000004");
  // Round trip: what we print parses back to the same document.
  EXPECT_EQ(nlohmann::json::parse(j.dump()), j);
}

TEST(Report, HideAddressesLeavesOnlySymbols) {
  Fixture f;
  f.opts.hide_addresses = true;
  Report r = f.build();
  std::string text = render_text(r);
  std::string json = to_json(r).dump();
  for (const std::string& out : {text, json}) {
    EXPECT_EQ(out.find("0xffffffff"), std::string::npos) << out;
    EXPECT_EQ(out.find("0xffff8880"), std::string::npos) << out;
  }
  EXPECT_NE(text.find("load_msg+0x10"), std::string::npos) << text;
  EXPECT_EQ(to_json(r)["stacks"][0]["stack_id"], nullptr);
  EXPECT_EQ(to_json(r)["stacks"][0]["frames"][1]["addr"], nullptr);
  EXPECT_EQ(to_json(r)["stacks"][0]["frames"][1]["symbol"], "load_msg");
}

// A frame in a module unloaded since, and one no symbol covers: text and
// JSON say so, and the report counts the latter.
TEST(Report, UnloadedModuleAndUnknownFramesSaySo) {
  Fixture f;
  std::string syms = std::string(kSyms) + "ffffffffc0100100 t leaky_open\t[leaky]\n";
  KernelSymbols ks(Ksyms::parse(kSyms), [&syms]() -> Result<Ksyms> { return Ksyms::parse(syms); });
  ModuleRecord leaky;
  leaky.name = "leaky";
  leaky.text_base = 0xffffffffc0100000;
  leaky.text_size = 0x1000;
  leaky.load_ns = 3;
  ks.update({leaky});
  leaky.free_ns = 9;
  ks.update({leaky});
  Aggregate agg = aggregate(f.snap.allocs, f.snap.mono_ns, 0, false);
  auto stacks = [](uint64_t id) -> Result<std::vector<uint64_t>> {
    if (id != 4) return make_error("no such stack", ENOENT);
    return std::vector<uint64_t>{0xffffffff81001020, 0xffffffffc0100132, 0xffffffffa0000000, 0xffffffff81004000};
  };
  Report r = build_report(f.snap, agg, f.opts, f.ctx, ks, stacks);
  const std::string text = render_text(r);
  EXPECT_NE(text.find("leaky_open+0x32 [leaky, unloaded]"), std::string::npos) << text;
  EXPECT_NE(text.find("0xffffffffa0000000 [unknown: not in kallsyms]"), std::string::npos) << text;
  EXPECT_NE(text.find("frames without a symbol: 1 not in kallsyms"), std::string::npos) << text;
  nlohmann::json j = to_json(r);
  const nlohmann::json& frames = j["stacks"][0]["frames"];
  ASSERT_GE(frames.size(), 3u) << frames.dump();
  EXPECT_EQ(frames[1]["symbol"], "leaky_open");
  EXPECT_EQ(frames[1]["module"], "leaky");
  EXPECT_EQ(frames[1]["unloaded"], true);
  EXPECT_EQ(frames[1]["unknown"], nullptr);
  EXPECT_EQ(frames[2]["symbol"], nullptr);
  EXPECT_EQ(frames[2]["unknown"], "not in kallsyms");
  EXPECT_EQ(frames[0]["unloaded"], false);
  EXPECT_EQ(j["frames_unknown"]["not in kallsyms"], 1);
}

TEST(Report, JsonMarksIncompleteWhenAllocationsWereLost) {
  Fixture f;
  f.snap.counters.v[KLEAK_CNT_LIVE_FULL] = 1;
  EXPECT_EQ(to_json(f.build())["complete"], false);
}

TEST(Report, StripTracingFramesKeepsAllWhenNoneMatch) {
  std::vector<Frame> frames = {{1, "kmalloc", 0, ""}, {2, "foo", 0, "mod"}};
  EXPECT_EQ(strip_tracing_frames(frames).size(), 2u);
  std::vector<Frame> all_bpf = {{1, "bpf_prog_x", 0, "bpf"}, {2, "bpf_trace_run2", 0, ""}};
  EXPECT_TRUE(strip_tracing_frames(all_bpf).empty());
  // bpf_jit_kallsyms off: the program's frame is a bare address.
  std::vector<Frame> unlisted = {{0xffffffffa0001000, "", 0, ""}, {2, "bpf_trace_run5", 0, ""}, {3, "kmalloc", 0, ""}};
  auto kept = strip_tracing_frames(unlisted);
  ASSERT_EQ(kept.size(), 1u);
  EXPECT_EQ(kept[0].symbol, "kmalloc");
}

// Records of a family beyond slab carry their family into the report: a
// tag in text (pages also counted as pages), a field in JSON, their own
// counters and totals; slab-only reports keep their old shape.
TEST(Report, FamiliesBeyondSlabAreLabelledAndCounted) {
  Fixture f;
  LiveAlloc page{0xffffea0000001000ull, {}};
  page.a.family = KLEAK_FAMILY_PAGE;
  page.a.stack_id = 4;
  page.a.bytes_alloc = 16384;  // order 2
  page.a.bytes_req = 2;
  page.a.ts_ns = 2 * kSec;
  f.snap.allocs.push_back(page);
  f.snap.family_counters[KLEAK_FAMILY_PAGE].v[KLEAK_CNT_ALLOC_SEEN] = 9;
  f.snap.family_counters[KLEAK_FAMILY_PAGE].v[KLEAK_CNT_EXCL_MOVABLE] = 5;
  f.snap.family_counters[KLEAK_FAMILY_PAGE].v[KLEAK_CNT_EXCL_MOVABLE_BYTES] = 5 * 4096;
  f.snap.recursion.available = true;
  f.snap.recursion.total = 3;
  f.snap.recursion.by_program = {{"kleak_kfree", 3}};
  std::string before = render_text(f.build());
  EXPECT_EQ(before.find("page:"), std::string::npos) << "page counters shown only when pages are traced";
  f.ctx.families = FamilySet{true, true, false, false};
  f.ctx.traced_families = {KLEAK_FAMILY_PAGE};
  Report r = f.build();
  r.page_size = 4096;
  std::string text = render_text(r);
  EXPECT_NE(text.find("[page] 16384 bytes (4 pages) in 1 allocations"), std::string::npos) << text;
  EXPECT_NE(text.find("  page: seen 9 "), std::string::npos) << text;
  EXPECT_NE(text.find("movable (user/page cache) 5 (20.0 KiB)"), std::string::npos) << text;
  EXPECT_NE(text.find("the kernel skipped 3 program runs (recursion): up to 3 frees may be missed"),
            std::string::npos)
      << text;
  nlohmann::json j = to_json(r);
  EXPECT_EQ(j["families"], nlohmann::json({"slab", "page"}));
  EXPECT_EQ(j["family_counters"]["page"]["allocs_seen"], 9);
  EXPECT_EQ(j["family_counters"]["page"]["excluded"]["movable"]["bytes"], 5 * 4096);
  EXPECT_EQ(j["counters"]["recursion_misses"], 3);
  EXPECT_EQ(j["counters"]["recursion_misses_by_program"]["kleak_kfree"], 3);
  EXPECT_EQ(j["totals"]["by_family"]["page"]["bytes"], 16384);
  EXPECT_EQ(j["totals"]["by_family"]["slab"]["count"], 4);
  bool page_stack = false;
  for (const auto& s : j["stacks"]) page_stack |= s["family"] == "page" && s["bytes"] == 16384;
  EXPECT_TRUE(page_stack) << j.dump();
}

}  // namespace
}  // namespace kleak
