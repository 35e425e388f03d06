// The tiered load's decisions (bpf_load.h) against a simulated kernel, and
// the reading of verifier logs: no BPF needed. The real refusals are the
// root tests' (tests/integration/degrade_test.cpp) and the load tier's.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "model/abi.h"
#include "probe/bpf_load.h"
#include "model/pin_meta.h"

namespace kleak {
namespace {

// The tail of a real verifier log: kleak_kmalloc refused on
// 6.18.44-fc-v1098 when the stack cache loaded task->stack directly.
const char* kRefusedLog =
    "func#0 @0\n"
    "0: R1=ctx() R10=fp0\n"
    "; slot = (kleak_sc_hash(call_site ^ (off << 48)) & sc_sets_mask) * KLEAK_SC_WAYS; @ stack_cache.bpf.h:579\n"
    "606: (bf) r1 = r4                     ; R1=rdonly_untrusted_mem(sz=0) R4=rdonly_untrusted_mem(sz=0)\n"
    "607: (67) r1 <<= 48                   ; R1=rdonly_untrusted_mem(sz=0)\n"
    "608: (af) r1 ^= r9                    ; R1=rdonly_untrusted_mem(sz=0) R9=scalar(id=2)\n"
    "; x ^= x >> 33; @ stack_cache.bpf.h:165\n"
    "609: (bf) r2 = r1                     ; R1=rdonly_untrusted_mem(sz=0) R2=rdonly_untrusted_mem(sz=0)\n"
    "610: (77) r2 >>= 33                   ; R2=rdonly_untrusted_mem(sz=0)\n"
    "611: (af) r2 ^= r1\n"
    "R2 pointer ^= pointer prohibited\n"
    "processed 4147 insns (limit 1000000) max_states_per_insn 4 total_states 108 peak_states 89 mark_read 0\n";

TEST(VerifierLog, LastLineIsTheErrorWithItsSourceLine) {
  EXPECT_EQ(verifier_last_line(kRefusedLog), "R2 pointer ^= pointer prohibited (stack_cache.bpf.h:165)");
  auto tail = verifier_tail(kRefusedLog, 2);
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_EQ(tail[0], "611: (af) r2 ^= r1");
  EXPECT_EQ(tail[1], "R2 pointer ^= pointer prohibited");
}

TEST(VerifierLog, WithoutSourceLinesOrLog) {
  EXPECT_EQ(verifier_last_line("0: (85) call unknown#181\ninvalid func unknown#181\nprocessed 1 insns\n"),
            "invalid func unknown#181");
  EXPECT_EQ(verifier_last_line(""), "no verifier log");
  EXPECT_EQ(verifier_last_line("\n\nprocessed 3 insns (limit 1000000)\n"), "no verifier log");
  EXPECT_TRUE(verifier_tail("", 3).empty());
}

TEST(Parts, NamesRoundTrip) {
  auto m = parse_parts("stack-cache,percpu");
  ASSERT_TRUE(m) << m.error().message;
  EXPECT_EQ(*m, uint32_t{KLEAK_PART_STACK_CACHE | KLEAK_PART_PERCPU});
  EXPECT_STREQ(part_name(KLEAK_PART_EXIT_FOLLOWER), "exit-follower");
  for (uint32_t bit = 1; bit <= KLEAK_PART_FREE_BACKUP; bit <<= 1) {
    auto back = parse_parts(part_name(bit));
    ASSERT_TRUE(back) << bit;
    EXPECT_EQ(*back, bit);
  }
  auto bad = parse_parts("stack-cache,bogus");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("unknown part 'bogus'"), std::string::npos) << bad.error().message;
  EXPECT_NE(bad.error().message.find("exit-follower"), std::string::npos) << bad.error().message;
}

// A simulated kernel: each program is refused with a line while any part
// of its `refused_with` set is loaded (the part holds the bad code).
struct FakeKernel {
  std::map<std::string, std::vector<std::pair<uint32_t, std::string>>> refusals;  // program -> (part, line)
  std::vector<uint32_t> attempts;  // the dropped mask of each attempt

  Result<std::optional<Refusal>> load(uint32_t dropped) {
    attempts.push_back(dropped);
    for (const auto& [prog, why] : refusals) {
      for (const auto& [part, line] : why)
        if (!(dropped & part)) return std::optional<Refusal>{Refusal{prog, "log", line}};
    }
    return std::optional<Refusal>{};
  }
};

TierPlan plan_for(FakeKernel& k, std::map<std::string, std::vector<uint32_t>> causes, uint32_t required = 0) {
  TierPlan p;
  p.what = "test object";
  p.required = required;
  p.attempt = [&k](uint32_t dropped) { return k.load(dropped); };
  p.causes = [causes](const std::string& prog) {
    auto it = causes.find(prog);
    return it == causes.end() ? std::vector<uint32_t>{} : it->second;
  };
  return p;
}

TEST(Tiers, NothingRefusedLoadsOnce) {
  FakeKernel k;
  auto r = load_in_tiers(plan_for(k, {}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->dropped, 0u);
  EXPECT_TRUE(r->degraded.empty());
  EXPECT_EQ(k.attempts.size(), 1u);
}

TEST(Tiers, TheRefusedPartIsDroppedAndNamed) {
  FakeKernel k;
  k.refusals["kleak_kmalloc"] = {{KLEAK_PART_STACK_CACHE, "R2 pointer ^= pointer prohibited"}};
  auto r = load_in_tiers(plan_for(k, {{"kleak_kmalloc", {KLEAK_PART_STACK_CACHE, KLEAK_PART_DIRECT_PTR}}}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->dropped, uint32_t{KLEAK_PART_STACK_CACHE});
  ASSERT_EQ(r->degraded.size(), 1u);
  EXPECT_EQ(r->degraded[0].part, "stack-cache");
  EXPECT_EQ(r->degraded[0].reason, "the verifier refused kleak_kmalloc: R2 pointer ^= pointer prohibited");
  EXPECT_TRUE(r->degraded[0].refused);
  EXPECT_EQ(k.attempts, (std::vector<uint32_t>{0, KLEAK_PART_STACK_CACHE}));
}

// The first suspect is innocent: its drop is undone, the next one is tried.
TEST(Tiers, ADropThatDoesNotHelpIsUndone) {
  FakeKernel k;
  k.refusals["kleak_pc_alloc"] = {{KLEAK_PART_PERCPU, "invalid read from stack"}};
  auto r = load_in_tiers(plan_for(
      k, {{"kleak_pc_alloc", {KLEAK_PART_STACK_CACHE, KLEAK_PART_DIRECT_PTR, KLEAK_PART_PERCPU}}}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->dropped, uint32_t{KLEAK_PART_PERCPU});
  ASSERT_EQ(r->degraded.size(), 1u);
  EXPECT_EQ(r->degraded[0].part, "percpu");
  EXPECT_EQ(k.attempts,
            (std::vector<uint32_t>{0, KLEAK_PART_STACK_CACHE, KLEAK_PART_DIRECT_PTR, KLEAK_PART_PERCPU}));
}

// Two faults in one program: each drop that changes the refusal is kept.
TEST(Tiers, TwoFaultsInOneProgramDropBoth) {
  FakeKernel k;
  k.refusals["kleak_kmalloc"] = {{KLEAK_PART_STACK_CACHE, "first"}, {KLEAK_PART_DIRECT_PTR, "second"}};
  auto r = load_in_tiers(plan_for(k, {{"kleak_kmalloc", {KLEAK_PART_STACK_CACHE, KLEAK_PART_DIRECT_PTR}}}));
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->dropped, uint32_t{KLEAK_PART_STACK_CACHE | KLEAK_PART_DIRECT_PTR});
  ASSERT_EQ(r->degraded.size(), 2u);
  EXPECT_EQ(r->degraded[0].reason, "the verifier refused kleak_kmalloc: first");
  EXPECT_EQ(r->degraded[1].reason, "the verifier refused kleak_kmalloc: second");
}

TEST(Tiers, ACoreRefusalIsAnErrorNamingTheProgram) {
  FakeKernel k;
  k.refusals["kleak_kmalloc"] = {{KLEAK_PART_CORE, "invalid func unknown#181"}};
  auto r = load_in_tiers(plan_for(k, {{"kleak_kmalloc", {KLEAK_PART_STACK_CACHE}}}));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("the verifier refused kleak_kmalloc (test object): invalid func unknown#181"),
            std::string::npos)
      << r.error().message;
  // The stack cache was tried and undone: nothing else was dropped.
  EXPECT_EQ(k.attempts, (std::vector<uint32_t>{0, KLEAK_PART_STACK_CACHE}));
}

TEST(Tiers, APartAskedForByNameIsAnError) {
  FakeKernel k;
  k.refusals["kleak_kmalloc"] = {{KLEAK_PART_STACK_CACHE, "R2 pointer ^= pointer prohibited"}};
  auto r = load_in_tiers(plan_for(k, {{"kleak_kmalloc", {KLEAK_PART_STACK_CACHE}}}, KLEAK_PART_STACK_CACHE));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message,
            "stack-cache was asked for by name, but this kernel refuses it: the verifier refused kleak_kmalloc: "
            "R2 pointer ^= pointer prohibited");
}

TEST(Tiers, AFailureThatIsNotARefusalIsReturnedAsIs) {
  TierPlan p;
  p.what = "test object";
  p.attempt = [](uint32_t) -> Result<std::optional<Refusal>> { return make_error("size map kleak_live", ENOMEM); };
  p.causes = [](const std::string&) { return std::vector<uint32_t>{}; };
  auto r = load_in_tiers(p);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, ENOMEM);
}

TEST(Degraded, TextAndPinnedMetadata) {
  std::vector<Degraded> d = {{"stack-cache", "the verifier refused kleak_kmalloc: x", true},
                             {"vmalloc", "this kernel has no vmalloc/alloc_vmap_area tracepoint", false}};
  EXPECT_EQ(degraded_text(d),
            "stack-cache (the verifier refused kleak_kmalloc: x); vmalloc (this kernel has no "
            "vmalloc/alloc_vmap_area tracepoint)");
  PinMeta m;
  m.version = "0.1.0";
  m.max_allocs = 1;
  m.stack_storage_size = 1;
  m.degraded = d;
  auto back = parse_pin_meta(pin_meta_to_json(m));
  ASSERT_TRUE(back) << back.error().message;
  ASSERT_EQ(back->degraded.size(), 2u);
  EXPECT_EQ(back->degraded[0].part, "stack-cache");
  EXPECT_EQ(back->degraded[1].reason, d[1].reason);
  // Metadata of a session started before parts could be dropped has none.
  PinMeta whole = m;
  whole.degraded.clear();
  std::string old = pin_meta_to_json(whole);
  old.erase(old.find(",\"degraded\":[]"), std::string(",\"degraded\":[]").size());
  auto older = parse_pin_meta(old);
  ASSERT_TRUE(older) << older.error().message << " in " << old;
  EXPECT_TRUE(older->degraded.empty());
  std::string bad = pin_meta_to_json(m);
  bad.replace(bad.find("\"part\":\"vmalloc\""), std::string("\"part\":\"vmalloc\"").size(), "\"part\":7");
  EXPECT_FALSE(parse_pin_meta(bad));
}

}  // namespace
}  // namespace kleak
