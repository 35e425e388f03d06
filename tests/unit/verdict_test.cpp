#include "options/options.h"
#include "report/verdict.h"

#include <gtest/gtest.h>

namespace kleak {
namespace {

std::vector<Frame> frames(std::initializer_list<const char*> names) {
  std::vector<Frame> f;
  for (const char* n : names) f.push_back(Frame{0, n, 0, ""});
  return f;
}

TEST(Verdict, StackKeyIsSymbolicWithModules) {
  std::vector<Frame> f = {{0x1, "kmalloc", 0x10, ""}, {0x2, "leaky_open", 0x3, "leaky"}, {0x3, "", 0, ""}};
  EXPECT_EQ(stack_key(f), "kmalloc;leaky_open [leaky];?");
}

TEST(Verdict, BaselineReadsReportsAndJsonLines) {
  std::string error;
  auto keys = parse_baseline(
      R"({"stacks":[{"stack_key":"a;b"},{"frames":[{"symbol":"c","module":null},{"symbol":"d","module":"m"}]}]})"
      "\n\n"
      R"({"stacks":[{"stack_key":"e"}]})"
      "\n",
      &error);
  EXPECT_EQ(error, "");
  EXPECT_EQ(keys, (std::set<std::string>{"a;b", "c;d [m]", "e"}));
}

TEST(Verdict, BaselineRejectsOtherFiles) {
  std::string error;
  EXPECT_TRUE(parse_baseline("not json\n", &error).empty());
  EXPECT_NE(error.find("line 1"), std::string::npos);
  error.clear();
  parse_baseline("{\"x\":1}\n", &error);
  EXPECT_NE(error, "");
  error.clear();
  parse_baseline("", &error);
  EXPECT_EQ(error, "no report in it");
  auto missing = load_baseline("/nonexistent/baseline.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("/nonexistent/baseline.json"), std::string::npos);
}

// Found by tests/fuzz/fuzz_baseline: a stack that is not an object made
// key_of's value() throw type_error, so kleak --ci exited 1 (runtime
// failure) with a json exception instead of 2 (usage) naming the baseline.
TEST(Verdict, BaselineRejectsNonObjectStacks) {
  for (const char* text : {"{\"stacks\":[1]}\n", "{\"stacks\":[{\"stack_key\":\"a\"},\"b\"]}\n",
                           "{\"stacks\":[null]}\n", "{\"stacks\":[[]]}\n"}) {
    std::string error;
    std::set<std::string> keys;
    EXPECT_NO_THROW(keys = parse_baseline(text, &error)) << text;
    EXPECT_TRUE(keys.empty()) << text;
    EXPECT_NE(error.find("line 1"), std::string::npos) << text;
  }
  // Fields of other types are tolerated, as before: the stack has a key.
  std::string error;
  auto keys = parse_baseline(R"({"stacks":[{"stack_key":5,"frames":"x"},{"frames":[1,{"symbol":2}]}]})", &error);
  EXPECT_EQ(error, "");
  EXPECT_EQ(keys, (std::set<std::string>{"?", "?;?"}));
}

TEST(Verdict, SuppressionOrderAndFlags) {
  CiOptions ci;
  std::set<std::string> baseline = {"kmalloc;in_baseline"};
  auto f = frames({"kmalloc", "load_msg"});
  EXPECT_EQ(suppression(f, "kmalloc;load_msg", false, 0, ci, baseline), "");
  EXPECT_EQ(suppression(f, "kmalloc;load_msg", true, 0, ci, baseline), "reclaimable");
  EXPECT_EQ(suppression(f, "kmalloc;load_msg", false, 3, ci, baseline), "unverified");
  EXPECT_EQ(suppression(frames({"kmalloc", "in_baseline"}), "kmalloc;in_baseline", false, 0, ci, baseline),
            "baseline");
  ci.ignore = {"load_*"};
  EXPECT_EQ(suppression(f, "kmalloc;load_msg", false, 0, ci, baseline), "ignored");
  ci.ignore.clear();
  ci.include_reclaimable = ci.include_unverified = true;
  EXPECT_EQ(suppression(f, "kmalloc;load_msg", true, 3, ci, baseline), "");
}

TEST(Verdict, KnownKernelCaches) {
  CiOptions ci;
  auto stack = frames({"__kmalloc_node_noprof", "__vmalloc_node_range_noprof", "copy_process", "kernel_clone"});
  EXPECT_EQ(known_cache(stack), "thread-stack cache");
  EXPECT_EQ(suppression(stack, "", false, 0, ci, {}), "known-cache");
  ci.no_known_caches = true;
  EXPECT_EQ(suppression(stack, "", false, 0, ci, {}), "");
  EXPECT_EQ(known_cache(frames({"copy_process"})), "");
  EXPECT_EQ(known_cache(frames({"__kmalloc_node_noprof", "alloc_slab_obj_exts", "allocate_slab", "___slab_alloc",
                                "__kmalloc_node_noprof", "load_msg"})),
            "slab metadata");
  EXPECT_EQ(known_cache(frames({"kmem_cache_alloc", "security_inode_alloc", "inode_init_always", "alloc_inode",
                                "new_inode", "proc_pid_make_inode", "do_readlinkat"})),
            "inode security blob");
  EXPECT_EQ(known_cache(frames({"kmem_cache_alloc", "security_inode_alloc"})), "");
  EXPECT_EQ(known_cache(frames({"__kmalloc_noprof", "alloc_empty_sheaf", "kmem_cache_prefill_sheaf",
                                "mas_preallocate", "__split_vma"})),
            "slab sheaf");
  EXPECT_EQ(known_cache(frames({"__kmalloc_noprof", "alloc_empty_sheaf"})), "");
  // alloc_empty_sheaf inlined into its caller (seen on Debian's 7.2).
  EXPECT_EQ(known_cache(frames({"__kmalloc_flags_noprof", "__kfree_rcu_sheaf", "kvfree_call_rcu", "mas_wr_node_store",
                                "do_vmi_align_munmap"})),
            "kfree_rcu sheaf");
  EXPECT_EQ(known_cache(frames({"__kmalloc_noprof", "kmem_cache_prefill_sheaf", "mas_preallocate"})), "slab sheaf");
  // The free path's sheaf swap (vmtest sid, ci-fixed, 7.2.13).
  EXPECT_EQ(known_cache(frames({"__kmalloc_flags_noprof", "__pcs_replace_full_main", "kfree", "free_pipe_info",
                                "pipe_release", "__fput"})),
            "slab sheaf");
  EXPECT_EQ(known_cache(frames({"__kmalloc_noprof", "pipe_write", "__pcs_replace_full_main"})), "");
  // ... but only as the allocator's direct caller: deeper, the function is
  // not the one allocating.
  EXPECT_EQ(known_cache(frames({"__kmalloc_noprof", "some_callee", "__kfree_rcu_sheaf"})), "");
  EXPECT_EQ(known_cache(frames({"__kmalloc_noprof", "refill_sheaf", "kmem_cache_prefill_sheaf"})), "");
}

TEST(Verdict, DecideThresholds) {
  CiOptions ci;
  Verdict v;
  decide(v, ci);
  EXPECT_EQ(v.status, kCiPass);
  v.leak_count = 1;
  v.leak_bytes = 64;
  decide(v, ci);
  EXPECT_EQ(v.status, kCiLeak);  // default: any leak
  ci.fail_on_bytes = 100;
  decide(v, ci);
  EXPECT_EQ(v.status, kCiPass);
  ci.fail_on_count = 1;
  decide(v, ci);
  EXPECT_EQ(v.status, kCiLeak);  // either threshold
  ci = CiOptions{};
  v = Verdict{};
  v.complete = false;
  decide(v, ci);
  EXPECT_EQ(v.status, kCiIncomplete);
  v.interrupted = "interrupted by SIGINT";
  decide(v, ci);
  EXPECT_EQ(v.status, kCiIncomplete);
  EXPECT_NE(v.summary.find("SIGINT"), std::string::npos);
  v.leak_count = 2;
  decide(v, ci);
  EXPECT_EQ(v.status, kCiLeak);  // what was found stays found
}

TEST(Verdict, JunitEscapesAndCounts) {
  Verdict v;
  v.status = kCiLeak;
  v.summary = "leak: <1> & \"2\"";
  std::string x = junit_xml(v, "a<b\x01", 1.5);
  EXPECT_NE(x.find("failures=\"1\" errors=\"0\""), std::string::npos);
  EXPECT_NE(x.find("message=\"leak: &lt;1&gt; &amp; &quot;2&quot;\""), std::string::npos) << x;
  EXPECT_NE(x.find(">a&lt;b?</failure>"), std::string::npos) << x;
  v.status = kCiIncomplete;
  EXPECT_NE(junit_xml(v, "", 1).find("<error type=\"incomplete\""), std::string::npos);
  v.status = kCiPass;
  EXPECT_EQ(junit_xml(v, "", 1).find("<failure"), std::string::npos);
}

TEST(Verdict, KtapPrefixesDetails) {
  Verdict v;
  v.summary = "no leak: 0 bytes";
  EXPECT_EQ(ktap(v, "line one\nline two\n"),
            "KTAP version 1\n1..1\n# line one\n# line two\nok 1 kleak_kernel_memory_leaks # no leak: 0 bytes\n");
}

}  // namespace
}  // namespace kleak
