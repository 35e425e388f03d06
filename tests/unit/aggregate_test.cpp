#include "analysis/aggregate.h"

#include <cstring>

#include <gtest/gtest.h>

namespace kleak {
namespace {

constexpr uint64_t kSec = 1000000000ull;

// stack < 0: no stack, with that -errno.
LiveAlloc make(uint64_t addr, int32_t stack, uint64_t bytes, uint64_t ts, uint32_t tgid = 100,
               const char* comm = "task", uint64_t call_site = 0xffffffff81000000) {
  LiveAlloc la{addr, {}};
  la.a.stack_id = stack >= 0 ? static_cast<uint64_t>(stack) : 0;
  la.a.stack_err = stack >= 0 ? 0 : stack;
  la.a.bytes_alloc = bytes;
  la.a.bytes_req = static_cast<uint32_t>(bytes);
  la.a.ts_ns = ts;
  la.a.tgid = tgid;
  la.a.pid = tgid;
  la.a.call_site = call_site;
  std::strncpy(la.a.comm, comm, sizeof(la.a.comm));
  return la;
}

TEST(Aggregate, GroupsByStackAndRanksByBytes) {
  std::vector<LiveAlloc> v;
  for (int i = 0; i < 10; ++i) v.push_back(make(0x1000 + i, 7, 64, 1 * kSec));    // 640 B
  for (int i = 0; i < 3; ++i) v.push_back(make(0x2000 + i, 9, 4096, 2 * kSec));  // 12288 B
  v.push_back(make(0x3000, 11, 640, 3 * kSec));                                   // 640 B, 1 alloc
  Aggregate a = aggregate(v, 100 * kSec, 0, false);
  ASSERT_EQ(a.groups.size(), 3u);
  EXPECT_EQ(a.groups[0].stack_id, 9u);
  EXPECT_EQ(a.groups[0].bytes, 12288u);
  EXPECT_EQ(a.groups[0].count, 3u);
  // Equal bytes: more allocations first.
  EXPECT_EQ(a.groups[1].stack_id, 7u);
  EXPECT_EQ(a.groups[2].stack_id, 11u);
  EXPECT_EQ(a.bytes, 12288u + 640u + 640u);
  EXPECT_EQ(a.count, 14u);
}

TEST(Aggregate, AgeThresholdSeparatesYoungAllocations) {
  std::vector<LiveAlloc> v = {make(1, 1, 100, 1 * kSec), make(2, 1, 100, 9 * kSec), make(3, 2, 50, 9500000000ull)};
  Aggregate a = aggregate(v, 10 * kSec, 2 * kSec, false);
  ASSERT_EQ(a.groups.size(), 1u);
  EXPECT_EQ(a.groups[0].count, 1u);
  EXPECT_EQ(a.young_count, 2u);
  EXPECT_EQ(a.young_bytes, 150u);
  EXPECT_EQ(a.live_count, 3u);
  EXPECT_EQ(a.groups[0].oldest_ts_ns, 1 * kSec);
}

TEST(Aggregate, FailedStacksGroupByCallSite) {
  std::vector<LiveAlloc> v = {make(1, -12, 32, 0, 1, "a", 0xaaa), make(2, -12, 32, 0, 1, "a", 0xaaa),
                              make(3, -14, 32, 0, 1, "a", 0xbbb), make(4, 5, 32, 0, 1, "a", 0xaaa)};
  Aggregate a = aggregate(v, kSec, 0, false);
  ASSERT_EQ(a.groups.size(), 3u);
  EXPECT_EQ(a.groups[0].count, 2u);
  EXPECT_EQ(a.groups[0].call_site, 0xaaau);
  EXPECT_EQ(a.groups[0].stack_id, 0u);
  EXPECT_EQ(a.groups[0].stack_err, -12);
}

TEST(Aggregate, SizesAndTasksAreTalliedAndBounded) {
  std::vector<LiveAlloc> v;
  for (int i = 0; i < 20; ++i) v.push_back(make(100 + i, 3, 8 * (i + 1), 0, 1000 + i % 10, "w"));
  for (int i = 0; i < 5; ++i) v.push_back(make(200 + i, 3, 8, 0, 1000, "w"));
  Aggregate a = aggregate(v, kSec, 0, false);
  ASSERT_EQ(a.groups.size(), 1u);
  const StackGroup& g = a.groups[0];
  EXPECT_EQ(g.count, 25u);
  ASSERT_LE(g.sizes.size(), StackGroup::kMaxSizes + 1);
  EXPECT_EQ(g.sizes[0].bytes_alloc, 8u);
  EXPECT_EQ(g.sizes[0].count, 6u);
  uint64_t sum = 0;
  for (auto& s : g.sizes) sum += s.count;
  EXPECT_EQ(sum, 25u);  // the "other" bucket keeps the total exact
  ASSERT_LE(g.tasks.size(), StackGroup::kMaxTasks);
  EXPECT_EQ(g.tasks[0].tgid, 1000u);
  EXPECT_EQ(g.tasks[0].count, 7u);
}

TEST(Aggregate, TopTasksAreTheBusiestNotTheFirstSeen) {
  std::vector<LiveAlloc> v;
  uint64_t addr = 1;
  // Ten tasks with one allocation each come first; task 77 then makes 50.
  for (uint32_t t = 0; t < 10; ++t) v.push_back(make(addr++, 3, 8, 0, 500 + t, "early"));
  for (int i = 0; i < 50; ++i) v.push_back(make(addr++, 3, 8, 0, 77, "busy"));
  Aggregate a = aggregate(v, kSec, 0, false);
  const StackGroup& g = a.groups[0];
  ASSERT_EQ(g.tasks.size(), StackGroup::kMaxTasks);
  EXPECT_EQ(g.tasks[0].tgid, 77u);
  EXPECT_EQ(g.tasks[0].comm, "busy");
  EXPECT_EQ(g.tasks[0].count, 50u);
}

TEST(Aggregate, KeepsAllocationsOldestFirstWhenAsked) {
  std::vector<LiveAlloc> v = {make(0x30, 1, 8, 3), make(0x10, 1, 8, 1), make(0x20, 1, 8, 2)};
  Aggregate none = aggregate(v, kSec, 0, false);
  EXPECT_TRUE(none.groups[0].allocs.empty());
  Aggregate a = aggregate(v, kSec, 0, true);
  ASSERT_EQ(a.groups[0].allocs.size(), 3u);
  EXPECT_EQ(a.groups[0].allocs[0].addr, 0x10u);
  EXPECT_EQ(a.groups[0].allocs[2].addr, 0x30u);
}

TEST(Aggregate, LiveBytesByKernelAccounting) {
  std::vector<LiveAlloc> v = {make(1, 1, 4096, 0), make(2, 1, 16384, 0), make(3, 2, 192, 0)};
  v[0].a.family = v[1].a.family = KLEAK_FAMILY_KMALLOC;
  v[2].a.family = KLEAK_FAMILY_KMEM_CACHE;
  v[2].a.flags = KLEAK_ALLOC_RECLAIMABLE;
  Aggregate a = aggregate(v, kSec, 2 * kSec, false);  // all young: still counted
  EXPECT_EQ(a.live_unreclaimable_bytes, 4096u);
  EXPECT_EQ(a.live_large_kmalloc_bytes, 16384u);  // > 8 KiB: page allocator, not Slab
  EXPECT_EQ(a.live_reclaimable_bytes, 192u);
  EXPECT_EQ(a.totals.size(), 2u);
}

TEST(Aggregate, EmptyInput) {
  Aggregate a = aggregate({}, kSec, 0, true);
  EXPECT_TRUE(a.groups.empty());
  EXPECT_EQ(a.bytes, 0u);
}

TEST(Aggregate, LargeInputIsLinear) {
  std::vector<LiveAlloc> v;
  v.reserve(200000);
  for (uint64_t i = 0; i < 200000; ++i) v.push_back(make(i, static_cast<int32_t>(i % 500), 64, 0));
  Aggregate a = aggregate(v, kSec, 0, false);
  EXPECT_EQ(a.groups.size(), 500u);
  EXPECT_EQ(a.count, 200000u);
}

// The sampled mode: an allocation without its own stack carries a hint.
LiveAlloc hinted(uint64_t addr, uint64_t hint, uint64_t bytes, uint64_t ts, uint64_t call_site) {
  LiveAlloc la = make(addr, static_cast<int32_t>(hint), bytes, ts, 100, "", call_site);
  la.a.flags |= KLEAK_ALLOC_STACK_HINT;
  return la;
}

const StackGroup* find_group(const Aggregate& a, uint64_t stack_id) {
  for (const StackGroup& g : a.groups)
    if (g.stack_id == stack_id) return &g;
  return nullptr;
}

TEST(Aggregate, SampledModeSharesCallSiteTotalsByOutstandingSamples) {
  std::vector<LiveAlloc> v;
  // Call site 0xaaa: stack 1 has 3 sampled outstanding, stack 2 has 1; 12
  // more allocations there carry hints (whichever stack was last sampled).
  for (int i = 0; i < 3; ++i) v.push_back(make(0x100 + i, 1, 64, kSec, 100, "t", 0xaaa));
  v.push_back(make(0x200, 2, 32, kSec, 100, "t", 0xaaa));
  for (int i = 0; i < 12; ++i) v.push_back(hinted(0x300 + i, i % 2 ? 1 : 2, 64, kSec, 0xaaa));
  Aggregate a = aggregate(v, 10 * kSec, 0, false);
  const StackGroup* g1 = find_group(a, 1);
  const StackGroup* g2 = find_group(a, 2);
  ASSERT_TRUE(g1 && g2);
  // Counts split 3:1, bytes 192:32 of the 12 x 64 unsampled bytes.
  EXPECT_EQ(g1->count, 3u + 9u);
  EXPECT_EQ(g2->count, 1u + 3u);
  EXPECT_EQ(g1->bytes + g2->bytes, 3u * 64 + 32 + 12u * 64);
  EXPECT_EQ(g1->bytes, 192u + 658u);  // 768 * 192/224 = 658.3
  EXPECT_TRUE(g1->estimate.estimated);
  EXPECT_EQ(g1->estimate.sampled, 3u);
  EXPECT_EQ(g1->estimate.site_sampled, 4u);
  EXPECT_EQ(g1->estimate.site_count, 16u);
  EXPECT_EQ(g1->estimate.site_bytes, 3u * 64 + 32 + 12u * 64);
  EXPECT_GT(g1->estimate.count_error95, 0);
  // The report's totals count every allocation once.
  EXPECT_EQ(a.count, 16u);
  EXPECT_EQ(a.bytes, 3u * 64 + 32 + 12u * 64);
  // Growth totals follow the same split.
  uint64_t total_count = 0;
  for (const StackTotal& t : a.totals) total_count += t.count;
  EXPECT_EQ(total_count, 16u);
}

TEST(Aggregate, SampledModeWithoutOutstandingSampleInfersTheHintStack) {
  std::vector<LiveAlloc> v;
  for (int i = 0; i < 5; ++i) v.push_back(hinted(0x100 + i, 42, 128, kSec, 0xbbb));
  Aggregate a = aggregate(v, 10 * kSec, 0, false);
  ASSERT_EQ(a.groups.size(), 1u);
  EXPECT_EQ(a.groups[0].stack_id, 42u);
  EXPECT_TRUE(a.groups[0].estimate.stack_inferred);
  EXPECT_EQ(a.groups[0].count, 5u);
  EXPECT_EQ(a.groups[0].bytes, 640u);
}

TEST(Aggregate, ExactModeGroupsAreNotEstimates) {
  std::vector<LiveAlloc> v = {make(1, 3, 10, kSec), make(2, 3, 10, kSec)};
  Aggregate a = aggregate(v, 10 * kSec, 0, false);
  ASSERT_EQ(a.groups.size(), 1u);
  EXPECT_FALSE(a.groups[0].estimate.estimated);
  EXPECT_EQ(a.groups[0].estimate.sampled, 2u);
}

TEST(Aggregate, SampledModeYoungHintsCountOnlyInTotals) {
  std::vector<LiveAlloc> v = {make(1, 7, 100, kSec, 100, "t", 0xccc), hinted(2, 7, 100, 9 * kSec, 0xccc)};
  Aggregate a = aggregate(v, 10 * kSec, 5 * kSec, false);
  ASSERT_EQ(a.groups.size(), 1u);
  EXPECT_EQ(a.groups[0].count, 1u);
  EXPECT_EQ(a.young_count, 1u);
  ASSERT_EQ(a.totals.size(), 1u);
  EXPECT_EQ(a.totals[0].count, 2u);
}

}  // namespace
}  // namespace kleak
