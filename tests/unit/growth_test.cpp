#include "analysis/growth.h"

#include <cmath>
#include <sstream>

#include <gtest/gtest.h>

namespace kleak {
namespace {

// One report's aggregate with the given stacks' totals (key -> bytes), each
// also a reported group so rank_groups has something to order.
Aggregate report(std::initializer_list<std::pair<uint64_t, uint64_t>> stacks) {
  Aggregate a;
  for (auto [key, bytes] : stacks) {
    if (bytes == 0) continue;
    a.totals.push_back({key, bytes, bytes / 4096 + 1});
    StackGroup g;
    g.stack_id = key;
    g.bytes = bytes;
    g.count = bytes / 4096 + 1;
    a.groups.push_back(g);
  }
  return a;
}

constexpr uint64_t kLeak = 1, kCache = 2, kChurn = 3, kBig = 4;

// 12 reports, 1 s apart: a leak growing 40 KiB/s; a cache that fills to
// 800 KiB in 3 s and stays; churn jumping around 200 KiB; a big stable stack.
GrowthTracker run_series() {
  GrowthTracker t;
  for (int i = 0; i < 12; ++i) {
    uint64_t leak = 40960ull * i;
    uint64_t cache = std::min<uint64_t>(i, 3) * 270000ull;
    uint64_t churn = (i % 2) ? 300000 : 100000;
    t.observe(i, report({{kLeak, leak}, {kCache, cache}, {kChurn, churn}, {kBig, 5000000}}));
  }
  return t;
}

TEST(Growth, LinearLeakIsGrowingAtItsRate) {
  Growth g = run_series().growth(kLeak);
  EXPECT_EQ(g.verdict, TrendClass::growing);
  EXPECT_NEAR(g.bytes.slope_per_s, 40960, 40960 * 0.01);
  EXPECT_GT(g.score, 0);
  EXPECT_EQ(growth_label(g), "growing");
}

TEST(Growth, CacheThatFilledIsNotALeak) {
  Growth g = run_series().growth(kCache);
  EXPECT_NE(g.verdict, TrendClass::growing);
  EXPECT_EQ(g.score, 0);
}

TEST(Growth, ChurnIsNotALeak) {
  Growth g = run_series().growth(kChurn);
  EXPECT_NE(g.verdict, TrendClass::growing);
  EXPECT_EQ(g.score, 0);
}

TEST(Growth, ScoreRanksTheLeakAboveBiggerStacks) {
  GrowthTracker t = run_series();
  Aggregate a = report({{kBig, 5000000}, {kCache, 810000}, {kChurn, 300000}, {kLeak, 450560}});
  rank_groups(a, SortKey::score, t);
  EXPECT_EQ(a.groups[0].stack_id, kLeak);
  // The rest by bytes.
  EXPECT_EQ(a.groups[1].stack_id, kBig);
  EXPECT_EQ(a.groups[2].stack_id, kCache);
  Aggregate by_bytes = a;
  rank_groups(by_bytes, SortKey::count, t);
  EXPECT_EQ(by_bytes.groups[0].stack_id, kBig);
}

TEST(Growth, ScoreRanksUnreclaimableGrowthAboveFasterReclaimableGrowth) {
  // Buffer heads growing 3x faster than the leak, during file I/O.
  constexpr uint64_t kBufferHeads = 5;
  GrowthTracker t;
  for (int i = 0; i < 12; ++i)
    t.observe(i, report({{kLeak, 40960ull * i}, {kBufferHeads, 3 * 40960ull * i}, {kBig, 5000000}}));
  Aggregate a = report({{kLeak, 450560}, {kBufferHeads, 3 * 450560}, {kBig, 5000000}});
  a.groups[1].flags = KLEAK_ALLOC_RECLAIMABLE;
  rank_groups(a, SortKey::score, t);
  EXPECT_EQ(a.groups[0].stack_id, kLeak);
  EXPECT_EQ(a.groups[1].stack_id, kBufferHeads);
  EXPECT_EQ(a.groups[2].stack_id, kBig);
  // By growth alone the faster one is first.
  rank_groups(a, SortKey::growth, t);
  EXPECT_EQ(a.groups[0].stack_id, kBufferHeads);
}

TEST(Growth, FreedStackDropsToZeroOnce) {
  GrowthTracker t;
  for (int i = 0; i < 5; ++i) t.observe(i, report({{kLeak, 100000ull * (i + 1)}, {kBig, 1}}));
  t.observe(5, report({{kBig, 1}}));  // kLeak freed
  Growth g = t.growth(kLeak);
  EXPECT_EQ(g.points, 6u);
  EXPECT_EQ(g.bytes.end, 0);
  t.observe(6, report({{kBig, 1}}));
  EXPECT_EQ(t.growth(kLeak).points, 6u);  // no second zero
}

TEST(Growth, NewStacksHaveNoVerdictYet) {
  GrowthTracker t;
  t.observe(0, report({{kLeak, 4096}}));
  t.observe(1, report({{kLeak, 8192 * 100}}));
  EXPECT_EQ(growth_label(t.growth(kLeak)), "new");
  EXPECT_EQ(t.growth(kLeak).score, 0);
  EXPECT_EQ(t.growth(999).points, 0u);
}

TEST(Growth, MemoryIsBounded) {
  GrowthTracker t(/*max_stacks=*/4, /*max_points=*/3);
  for (int i = 0; i < 10; ++i) t.observe(i, report({{1, 4096}, {2, 4096}, {3, 4096}, {4, 4096}, {5, 4096}}));
  EXPECT_LE(t.stacks(), 4u);
  EXPECT_GT(t.dropped_stacks(), 0u);
  EXPECT_EQ(t.growth(1).points, 3u);
  // Stacks that went away make room for new ones.
  for (int i = 10; i < 13; ++i) t.observe(i, report({{6, 4096}}));
  EXPECT_GT(t.growth(6).points, 0u);
}


// What kleak report keeps between runs: the history comes back as it was,
// and goes on from there (a stack gone since gets its one zero point).
TEST(Growth, HistorySurvivesSaveAndLoad) {
  GrowthTracker t = run_series();
  std::stringstream file;
  t.save(file);
  GrowthTracker back;
  ASSERT_TRUE(back.load(file));
  for (uint64_t key : {kLeak, kCache, kChurn, kBig}) {
    Growth a = t.growth(key), b = back.growth(key);
    EXPECT_EQ(a.points, b.points) << key;
    EXPECT_EQ(a.verdict, b.verdict) << key;
    EXPECT_DOUBLE_EQ(a.bytes.slope_per_s, b.bytes.slope_per_s) << key;
  }
  const size_t leak_points = t.growth(kLeak).points, cache_points = t.growth(kCache).points;
  back.observe(12, report({{kLeak, 40960ull * 12}, {kBig, 5000000}}));
  EXPECT_EQ(back.growth(kLeak).points, leak_points + 1);
  EXPECT_EQ(back.growth(kCache).points, cache_points + 1);  // its drop to zero
  EXPECT_EQ(back.growth(kCache).bytes.end, 0);
  back.observe(13, report({{kLeak, 40960ull * 13}}));
  EXPECT_EQ(back.growth(kCache).points, cache_points + 1);  // once
}

TEST(Growth, HistoryThatIsNotOneLoadsEmpty) {
  for (const char* bad : {"zz 1 2 0 1 1", "1 1 2 0 4096", "1 1 0", "1 1 99999 0 1 1"}) {
    std::stringstream file(bad);
    GrowthTracker t;
    EXPECT_FALSE(t.load(file)) << bad;
    EXPECT_EQ(t.stacks(), 0u) << bad;
  }
  std::stringstream empty;
  GrowthTracker t;
  EXPECT_TRUE(t.load(empty));
  EXPECT_EQ(t.stacks(), 0u);
}

}  // namespace
}  // namespace kleak
