// Tier 3/4: load and attach the real programs in this process, drive known
// kernel allocations from child processes, and assert on what the live map
// holds. Needs root and BTF: skips by hand without them, fails under CI=true.
#include <unistd.h>

#include <algorithm>
#include <set>
#include <string>
#include <thread>
#include <tuple>

#include <gtest/gtest.h>

#include "child.h"
#include "env.h"
#include "loader_fixture.h"
#include "msghold.h"
#include "options/options.h"
#include "probe/peek.h"
#include "probe/snapshot.h"

namespace kleak::test {
namespace {

class Tracer : public LoaderFixture {
 protected:
  // Function names of a record's stack, or of its call site when the stack
  // walk failed (so a lost stack cannot hide an allocation from the count).
  static std::vector<std::string> functions(Loader& l, const kleak_alloc& a) {
    std::vector<uint64_t> ips;
    if (a.stack_id != 0) {
      auto r = read_stack(l.stacks_fd(), a.stack_id);
      if (r) ips = *r;
    }
    if (ips.empty()) ips.push_back(a.call_site);
    std::vector<std::string> names;
    for (uint64_t ip : ips)
      if (auto s = kernel_symbols().resolve(ip)) names.emplace_back(s->name);
    return names;
  }

  static bool has(const std::vector<std::string>& v, const std::string& name) {
    return std::find(v.begin(), v.end(), name) != v.end();
  }

  // The message buffers `tgid` holds: allocations whose call site (the
  // kmalloc caller) is alloc_msg, or load_msg where it is inlined. Other
  // allocations under load_msg are slab metadata, e.g. the 64-byte obj_exts
  // vector a new kmalloc-cg-4k slab gets (alloc_slab_obj_exts), which lives
  // as long as the slab.
  static bool is_msg_buffer(const kleak_alloc& a) {
    auto site = kernel_symbols().resolve(a.call_site);
    return site && (site->name == "alloc_msg" || site->name == "load_msg");
  }

  struct MsgCount {
    uint64_t count = 0;
    std::set<uint64_t> sizes;
    bool do_msgsnd_in_every_stack = true;
  };
  static MsgCount msg_allocations(Loader& l, const Snapshot& s, uint32_t tgid) {
    MsgCount m;
    std::unordered_map<uint64_t, std::vector<std::string>> cache;
    for (const auto& la : s.allocs) {
      if (la.a.tgid != tgid) continue;
      auto it = cache.find(la.a.stack_id);
      if (la.a.stack_id == 0 || it == cache.end()) it = cache.insert_or_assign(la.a.stack_id, functions(l, la.a)).first;
      const auto& fn = it->second;
      if (!is_msg_buffer(la.a)) continue;
      ++m.count;
      m.sizes.insert(la.a.bytes_alloc);
      if (la.a.stack_id != 0 && !has(fn, "do_msgsnd")) m.do_msgsnd_in_every_stack = false;
    }
    return m;
  }

  // The holder's n messages, all 4 KiB and each at a stack through do_msgsnd.
  static void expect_held_messages(Loader& l, const Snapshot& s, const MsgHold& holder, int n) {
    MsgCount m = msg_allocations(l, s, static_cast<uint32_t>(holder.pid()));
    EXPECT_EQ(m.count, static_cast<uint64_t>(n));
    EXPECT_EQ(m.sizes, std::set<uint64_t>{4096});
    EXPECT_TRUE(m.do_msgsnd_in_every_stack);
  }

  static std::string churn() { return KLEAK_CHURN_BIN; }
};

// (messages held, stack_sample_every): exact stacks, and the sampled
// (--low-overhead) mode, where pairing and call-site counts stay exact.
class HeldMessages : public Tracer, public ::testing::WithParamInterface<std::tuple<int, uint32_t>> {};

TEST_P(HeldMessages, ExactCountAtLoadMsgThenGone) {
  const auto [n, sample_every] = GetParam();
  MsgHold holder(n);
  ASSERT_TRUE(holder.ready());
  LoaderConfig cfg;
  cfg.stack_sample_every = sample_every;
  auto loader = attach(cfg);
  ASSERT_TRUE(loader);
  ASSERT_TRUE(holder.send());

  Snapshot held = snapshot(*loader);
  expect_held_messages(*loader, held, holder, n);
  uint64_t own_stacks = 0;
  for (const auto& la : held.allocs) {
    if (la.a.tgid != static_cast<uint32_t>(holder.pid())) continue;
    if (la.a.flags & KLEAK_ALLOC_STACK_HINT) {
      EXPECT_GT(sample_every, 1u);  // only the sampled mode leaves stacks out
      continue;
    }
    ++own_stacks;
    EXPECT_EQ(std::string(la.a.comm, strnlen(la.a.comm, sizeof(la.a.comm))), "kleak-msghold");
  }
  // Sampled: the call site's first allocation per CPU, then about 1 in N.
  if (sample_every > 1 && n >= 1000) {
    EXPECT_LT(own_stacks, static_cast<uint64_t>(n) / 4);
  }
  EXPECT_GT(own_stacks, 0u);
  EXPECT_EQ(held.counters[KLEAK_CNT_LIVE_FULL], 0u);

  holder.send_line("release");
  expect_line(holder, "released " + std::to_string(n));
  Snapshot released = snapshot(*loader);
  EXPECT_EQ(msg_allocations(*loader, released, static_cast<uint32_t>(holder.pid())).count, 0u);
  EXPECT_GE(released.counters[KLEAK_CNT_FREE_MATCHED], static_cast<uint64_t>(n));
}

INSTANTIATE_TEST_SUITE_P(Counts, HeldMessages,
                         ::testing::Values(std::make_tuple(10, 1u), std::make_tuple(1000, 1u),
                                           std::make_tuple(1000, kLowOverheadSampleEvery)),
                         [](const auto& info) {
                           return std::to_string(std::get<0>(info.param)) + "_sample" +
                                  std::to_string(std::get<1>(info.param));
                         });

// The verified stack cache (bpf/stack_cache.bpf.h) in verify mode: every
// cached stack is also walked, and any difference counted. Held messages are
// one call path repeated, so most of their stacks come from the cache, and
// each must be the stack the walk finds.
TEST_F(Tracer, StackCacheHitsAreTheWalkedStacks) {
  const int n = 2000;
  MsgHold holder(n);
  ASSERT_TRUE(holder.ready());
  LoaderConfig cfg;
  cfg.stack_cache = KLEAK_SC_VERIFY;
  auto loader = attach(cfg);
  ASSERT_TRUE(loader);
  ASSERT_TRUE(holder.send());

  Snapshot held = snapshot(*loader);
  expect_held_messages(*loader, held, holder, n);
  const Counters& c = held.counters;
  EXPECT_GT(c[KLEAK_CNT_SC_HIT], static_cast<uint64_t>(n) / 2) << "the held messages' stacks were not reused";
  EXPECT_EQ(c[KLEAK_CNT_SC_MISMATCH], 0u) << "a cached stack differed from the walked one";
  EXPECT_EQ(c[KLEAK_CNT_STACK_EFAULT] + c[KLEAK_CNT_STACK_ENOMEM] + c[KLEAK_CNT_STACK_OTHER], 0u);

  holder.send_line("release");
  expect_line(holder, "released " + std::to_string(n));
  Snapshot released = snapshot(*loader);
  EXPECT_EQ(msg_allocations(*loader, released, static_cast<uint32_t>(holder.pid())).count, 0u);
  EXPECT_EQ(released.counters[KLEAK_CNT_SC_MISMATCH], 0u);
}

TEST_F(Tracer, PidFilterRecordsOnlyThatProcess) {
  const int n = 20;
  MsgHold target(n);
  MsgHold other(n);
  ASSERT_TRUE(target.ready());
  ASSERT_TRUE(other.ready());
  LoaderConfig cfg;
  cfg.target_tgid = static_cast<uint32_t>(target.pid());
  auto loader = attach(cfg);
  ASSERT_TRUE(loader);
  ASSERT_TRUE(other.send());
  ASSERT_TRUE(target.send());

  Snapshot s = snapshot(*loader);
  EXPECT_EQ(msg_allocations(*loader, s, static_cast<uint32_t>(target.pid())).count, static_cast<uint64_t>(n));
  EXPECT_EQ(msg_allocations(*loader, s, static_cast<uint32_t>(other.pid())).count, 0u);
  for (const auto& la : s.allocs) EXPECT_EQ(la.a.tgid, static_cast<uint32_t>(target.pid()));
  EXPECT_GE(s.counters[KLEAK_CNT_ALLOC_FILTERED], static_cast<uint64_t>(n));
  EXPECT_EQ(s.counters[KLEAK_CNT_ALLOC_SEEN],
            s.counters[KLEAK_CNT_ALLOC_FILTERED] + s.counters[KLEAK_CNT_ALLOC_RECORDED] +
                s.counters[KLEAK_CNT_ALLOC_FAILED] + s.counters[KLEAK_CNT_LIVE_FULL] +
                s.counters[KLEAK_CNT_LIVE_ERROR]);
}

TEST_F(Tracer, SizeFilterRecordsOnlyThatSize) {
  const int n = 15;
  MsgHold holder(n);
  Child load({churn(), "proc", "500"});
  ASSERT_TRUE(holder.ready());
  expect_line(load, "ready " + std::to_string(load.pid()));
  LoaderConfig cfg;
  cfg.min_size_bytes = cfg.max_size_bytes = 4096;
  auto loader = attach(cfg);
  ASSERT_TRUE(loader);
  load.send_line("go");
  ASSERT_TRUE(load.read_line());  // "done OPS"
  ASSERT_TRUE(holder.send());

  Snapshot s = snapshot(*loader);
  EXPECT_EQ(msg_allocations(*loader, s, static_cast<uint32_t>(holder.pid())).count, static_cast<uint64_t>(n));
  for (const auto& la : s.allocs) EXPECT_EQ(la.a.bytes_alloc, 4096u);
  // /proc/stat's open/read/close allocates objects of other sizes: filtered in the kernel.
  EXPECT_GT(s.counters[KLEAK_CNT_ALLOC_FILTERED], 500u);
  EXPECT_GE(s.counters[KLEAK_CNT_ALLOC_RECORDED], static_cast<uint64_t>(n));
}

// The reverse of HeldMessages: a workload that frees all it allocates must
// leave nothing behind at its own stacks.
class Churn : public Tracer, public ::testing::WithParamInterface<std::tuple<const char*, uint32_t>> {};

TEST_P(Churn, LeavesNothingOutstanding) {
  const std::string mode = std::get<0>(GetParam());
  const int ops = 10000;
  Child work({churn(), mode, std::to_string(ops)});
  expect_line(work, "ready " + std::to_string(work.pid()));
  LoaderConfig cfg;
  cfg.target_tgid = static_cast<uint32_t>(work.pid());
  cfg.stack_sample_every = std::get<1>(GetParam());
  auto loader = attach(cfg);
  ASSERT_TRUE(loader);
  work.send_line("go");
  auto done = work.read_line(std::chrono::seconds(120));
  ASSERT_TRUE(done);
  ASSERT_EQ(done->rfind("done ", 0), 0u) << *done;

  Snapshot s = snapshot(*loader);
  // The workload really was traced: many allocations recorded and freed.
  EXPECT_GE(s.counters[KLEAK_CNT_ALLOC_RECORDED], static_cast<uint64_t>(ops));
  EXPECT_GE(s.counters[KLEAK_CNT_FREE_MATCHED], static_cast<uint64_t>(ops));
  EXPECT_EQ(s.counters[KLEAK_CNT_LIVE_FULL], 0u);
  // What may stay: nothing of the work itself. Every open/read/close and
  // send/receive pair frees its buffers before returning to user space
  // (files are released by task_work before the syscall returns), so any
  // record left at the workload's stacks would be a pairing bug. The one
  // thing the kernel really keeps is memory for the process's own address
  // space when a syscall touches a user page first (anon_vma, page tables,
  // under exc_page_fault): it lives until the process exits. And a new slab
  // page's metadata (e.g. its obj_exts vector, allocated inside
  // allocate_slab) lives as long as the slab page, which stays cached after
  // its objects are freed.
  std::vector<std::string> left;
  for (const auto& la : s.allocs) {
    auto fn = functions(*loader, la.a);
    if (has(fn, "exc_page_fault") || has(fn, "allocate_slab")) continue;
    bool workload = has(fn, "load_msg") || has(fn, "do_msgsnd") || has(fn, "do_msgrcv") || has(fn, "seq_read_iter") ||
                    has(fn, "single_open") || has(fn, "proc_reg_open") || has(fn, "do_sys_openat2");
    if (!workload) continue;
    std::string desc = std::to_string(la.a.bytes_alloc) + " bytes:";
    for (const auto& f : fn) desc += " " + f;
    left.push_back(desc);
  }
  EXPECT_TRUE(left.empty()) << left.size() << " allocations left, first: " << (left.empty() ? "" : left[0]);
}

INSTANTIATE_TEST_SUITE_P(Workloads, Churn,
                         ::testing::Combine(::testing::Values("proc", "msg"),
                                            ::testing::Values(1u, kLowOverheadSampleEvery)),
                         [](const auto& info) {
                           return std::string(std::get<0>(info.param)) + "_sample" +
                                  std::to_string(std::get<1>(info.param));
                         });

// --peek's reader: the held messages' text is read in place; once they are
// received the same addresses read as gone, and an address kleak does not
// track is never read.
TEST_F(Tracer, PeekReadsLiveTrackedAllocationsOnly) {
  const int n = 6;
  MsgHold holder(n);
  ASSERT_TRUE(holder.ready());
  auto loader = attach();
  ASSERT_TRUE(loader);
  ASSERT_TRUE(holder.send());
  Snapshot s = snapshot(*loader);
  std::vector<std::pair<uint64_t, uint32_t>> reqs;
  for (const auto& la : s.allocs) {
    if (la.a.tgid == static_cast<uint32_t>(holder.pid()) && is_msg_buffer(la.a)) reqs.emplace_back(la.addr, 256);
  }
  ASSERT_EQ(reqs.size(), static_cast<size_t>(n));
  auto live = peek(loader->peek_prog_fd(), loader->peek_map_fd(), reqs);
  ASSERT_TRUE(live.ok()) << live.error().message;
  std::set<std::string> marks;
  for (const PeekResult& r : *live) {
    EXPECT_STREQ(peek_status_name(r.status), "ok");
    EXPECT_EQ(r.data.size(), 256u);
    for (const std::string& str : printable_strings(r.data, 4))
      if (str.rfind("LEAKMARK-", 0) == 0) marks.insert(str.substr(0, str.find('.')));
  }
  EXPECT_EQ(marks.size(), static_cast<size_t>(n)) << "each message's own text";
  EXPECT_TRUE(marks.count("LEAKMARK-0"));
  auto groups = group_samples(*live, 4);
  ASSERT_FALSE(groups.empty());
  EXPECT_EQ(groups[0].count, static_cast<size_t>(n));

  // An address that is not a tracked allocation is not read, even inside
  // one: only record keys count.
  auto untracked = peek(loader->peek_prog_fd(), loader->peek_map_fd(), {{reqs[0].first + 8, 64}});
  ASSERT_TRUE(untracked.ok());
  EXPECT_STREQ(peek_status_name((*untracked)[0].status), "gone");
  EXPECT_TRUE((*untracked)[0].data.empty());

  holder.send_line("release");
  expect_line(holder, "released " + std::to_string(n));
  auto after = peek(loader->peek_prog_fd(), loader->peek_map_fd(), reqs);
  ASSERT_TRUE(after.ok());
  for (const PeekResult& r : *after) {
    EXPECT_STREQ(peek_status_name(r.status), "gone");
    EXPECT_TRUE(r.data.empty());
  }
}

TEST_F(Tracer, StackStoreFullIsCountedAndCallSitesRemain) {
  const int n = 40;
  MsgHold holder(n);
  ASSERT_TRUE(holder.ready());
  Child load({churn(), "proc", "300"});
  expect_line(load, "ready " + std::to_string(load.pid()));
  LoaderConfig cfg;
  cfg.stack_storage_size = 2;  // room for two distinct stacks, no more
  auto loader = attach(cfg);
  ASSERT_TRUE(loader);
  load.send_line("go");
  ASSERT_TRUE(load.read_line());
  ASSERT_TRUE(holder.send());
  Snapshot s = snapshot(*loader);
  EXPECT_GT(s.counters[KLEAK_CNT_STACK_ENOMEM], 0u);
  // Every message is still recorded and found, by its call site where the
  // stack could not be stored.
  EXPECT_EQ(msg_allocations(*loader, s, static_cast<uint32_t>(holder.pid())).count, static_cast<uint64_t>(n));
  size_t without_stack = 0;
  for (const auto& la : s.allocs) without_stack += la.a.stack_id == 0 && la.a.stack_err == -ENOMEM;
  EXPECT_GT(without_stack, 0u);
}

TEST_F(Tracer, OwnAllocationsAreNeverRecorded) {
  auto loader = attach();
  ASSERT_TRUE(loader);
  // Reading the maps makes this process allocate in the kernel.
  for (int i = 0; i < 3; ++i) (void)snapshot(*loader);
  Snapshot s = snapshot(*loader);
  for (const auto& la : s.allocs) EXPECT_NE(la.a.tgid, static_cast<uint32_t>(getpid()));
}

TEST_F(Tracer, MapFullIsCountedNotSilent) {
  const int n = 50;
  MsgHold holder(n);
  ASSERT_TRUE(holder.ready());
  LoaderConfig cfg;
  cfg.max_allocs = 8;
  cfg.target_tgid = static_cast<uint32_t>(holder.pid());
  auto loader = attach(cfg);
  ASSERT_TRUE(loader);
  ASSERT_TRUE(holder.send());
  Snapshot s = snapshot(*loader);
  EXPECT_LE(s.allocs.size(), 8u);
  EXPECT_GE(s.counters[KLEAK_CNT_LIVE_FULL], static_cast<uint64_t>(n - 8));
}

}  // namespace
}  // namespace kleak::test
