#include "analysis/reclaim.h"

#include <gtest/gtest.h>

namespace kleak {
namespace {

LiveAlloc rec(uint64_t addr, uint64_t ts, uint64_t stack, uint64_t bytes, uint64_t site = 0x1000) {
  LiveAlloc la{};
  la.addr = addr;
  la.a.ts_ns = ts;
  la.a.stack_id = stack;
  la.a.bytes_alloc = bytes;
  la.a.call_site = site;
  return la;
}

TEST(CacheReclaim, CountsWhatLeftTheLiveSetByStack) {
  std::vector<LiveAlloc> before = {rec(0xa0, 1, 7, 32), rec(0xb0, 2, 7, 32), rec(0xc0, 3, 9, 4096),
                                   rec(0xd0, 4, 0, 64, 0x2000)};
  std::vector<LiveAlloc> after = {rec(0xc0, 3, 9, 4096)};
  ReclaimTally t;
  count_reclaimed(before, after, t);
  EXPECT_EQ(t.freed_count, 3u);
  EXPECT_EQ(t.freed_bytes, 128u);
  EXPECT_EQ(t.freed_stacks, 2u);  // stack 7, and call site 0x2000 without a stack
}

TEST(CacheReclaim, AnAddressHandedOutAgainIsAnotherRecord) {
  std::vector<LiveAlloc> before = {rec(0xa0, 1, 7, 32)};
  std::vector<LiveAlloc> after = {rec(0xa0, 5, 8, 32)};  // freed, then allocated again
  ReclaimTally t;
  count_reclaimed(before, after, t);
  EXPECT_EQ(t.freed_count, 1u);
  EXPECT_EQ(t.freed_stacks, 1u);
}

TEST(CacheReclaim, NothingFreedNothingCounted) {
  std::vector<LiveAlloc> both = {rec(0xa0, 1, 7, 32), rec(0xb0, 2, 0, 8, 0x3000)};
  ReclaimTally t;
  t.freed_count = 99;  // a tally is recomputed, not added to
  count_reclaimed(both, both, t);
  EXPECT_EQ(t.freed_count, 0u);
  EXPECT_EQ(t.freed_bytes, 0u);
  EXPECT_EQ(t.freed_stacks, 0u);
}

}  // namespace
}  // namespace kleak
