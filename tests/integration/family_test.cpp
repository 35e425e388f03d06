// Tier 4 for the families beyond slab (--family page,percpu,vmalloc): a
// child holds known allocations of one family, they must be in that
// family's map at the expected stack with the expected size, and gone once
// released. Needs root and BTF: skips by hand without them, fails under
// CI=true.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <unordered_map>

#include <bpf/libbpf.h>
#include <gtest/gtest.h>

#include "child.h"
#include "env.h"
#include "loader_fixture.h"
#include "probe/snapshot.h"

namespace kleak::test {
namespace {

struct Held {
  uint64_t count = 0;
  uint64_t bytes = 0;
  uint32_t bytes_req = 0;  // of the last one seen
};

class Families : public LoaderFixture {
 protected:
  std::unique_ptr<Loader> attach(FamilySet families) {
    LoaderConfig cfg;
    cfg.families = families;
    cfg.ksyms = &kernel_symbols();
    return LoaderFixture::attach(cfg);
  }

  // Records of `family` made by `tgid` whose stack passes through one of
  // `functions`.
  static Held held(Loader& l, uint32_t family, uint32_t tgid, const std::vector<std::string>& functions) {
    Held h;
    std::unordered_map<uint64_t, bool> through;
    for (const auto& la : snapshot(l).allocs) {
      if (la.a.family != family || la.a.tgid != tgid) continue;
      auto [it, fresh] = through.try_emplace(la.a.stack_id, false);
      if (fresh && la.a.stack_id != 0) {
        auto ips = read_stack(l.stacks_fd(), la.a.stack_id);
        for (uint64_t ip : ips ? *ips : std::vector<uint64_t>{})
          if (auto sym = kernel_symbols().resolve(ip);
              sym && std::find(functions.begin(), functions.end(), sym->name) != functions.end())
            it->second = true;
      }
      if (!it->second) continue;
      ++h.count;
      h.bytes += la.a.bytes_alloc;
      h.bytes_req = la.a.bytes_req;
    }
    return h;
  }

  // Polls until no record of the kind is left (maps are freed by a kernel
  // worker after their last fd closes): up to 5 s.
  static Held gone(Loader& l, uint32_t family, uint32_t tgid, const std::vector<std::string>& functions) {
    Held h;
    for (int i = 0; i < 50; ++i) {
      h = held(l, family, tgid, functions);
      if (h.count == 0) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return h;
  }
};

TEST_F(Families, PipePagesAtPipeWriteThenGone) {
  const int n = 8;
  Child c({KLEAK_FAMHOLD_BIN, "page", std::to_string(n)});
  expect_line(c, "ready " + std::to_string(c.pid()));
  auto loader = attach(FamilySet{false, true, false, false});
  ASSERT_TRUE(loader);
  c.send_line("hold");
  expect_line(c, "held " + std::to_string(n));
  const uint32_t tgid = static_cast<uint32_t>(c.pid());
  // pipe_write, anon_pipe_write since v6.15.
  const std::vector<std::string> pipe_write = {"pipe_write", "anon_pipe_write"};
  Held h = held(*loader, KLEAK_FAMILY_PAGE, tgid, pipe_write);
  EXPECT_EQ(h.count, static_cast<uint64_t>(n));
  EXPECT_EQ(h.bytes, static_cast<uint64_t>(n) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)));
  EXPECT_EQ(h.bytes_req, 0u) << "order 0";
  c.send_line("release");
  expect_line(c, "released");
  EXPECT_EQ(gone(*loader, KLEAK_FAMILY_PAGE, tgid, pipe_write).count, 0u);
}

TEST_F(Families, PercpuMapValuesAtArrayMapAllocThenGone) {
  const int n = 50;
  Child c({KLEAK_FAMHOLD_BIN, "percpu", std::to_string(n)});
  expect_line(c, "ready " + std::to_string(c.pid()));
  auto loader = attach(FamilySet{false, false, true, false});
  ASSERT_TRUE(loader);
  c.send_line("hold");
  expect_line(c, "held " + std::to_string(n));
  const uint32_t tgid = static_cast<uint32_t>(c.pid());
  Held h = held(*loader, KLEAK_FAMILY_PERCPU, tgid, {"array_map_alloc"});
  EXPECT_EQ(h.count, static_cast<uint64_t>(n));
  EXPECT_EQ(h.bytes_req, 64u) << "the per-CPU size";
  // bytes_alloc is the cost on every possible CPU, plus with memcg one
  // obj_cgroup pointer per 4 bytes (pcpu_obj_full_size()).
  const uint64_t cpus = static_cast<uint64_t>(libbpf_num_possible_cpus());
  EXPECT_GE(h.bytes, static_cast<uint64_t>(n) * 64 * cpus);
  EXPECT_LE(h.bytes, static_cast<uint64_t>(n) * 64 * (cpus + 2));
  c.send_line("release");
  expect_line(c, "released");
  EXPECT_EQ(gone(*loader, KLEAK_FAMILY_PERCPU, tgid, {"array_map_alloc"}).count, 0u);
}

TEST_F(Families, LargeMapIsOneVmallocThenGone) {
  const int kib = 1024;  // a 1 MiB BPF array
  Child c({KLEAK_FAMHOLD_BIN, "vmalloc", std::to_string(kib)});
  expect_line(c, "ready " + std::to_string(c.pid()));
  auto loader = attach(FamilySet{false, false, false, true});
  ASSERT_TRUE(loader);
  if (!kernel_has_tracepoint("alloc_vmap_area")) {
    // The vmalloc trace events came after v6.1: a kernel without them must
    // say so, not pretend.
    EXPECT_TRUE(loader->traced_families().empty());
    ASSERT_FALSE(loader->missing().empty());
    EXPECT_EQ(loader->missing()[0], "vmalloc/alloc_vmap_area");
    return;
  }
  c.send_line("hold");
  expect_line(c, "held " + std::to_string(kib));
  const uint32_t tgid = static_cast<uint32_t>(c.pid());
  Held h = held(*loader, KLEAK_FAMILY_VMALLOC, tgid, {"array_map_alloc"});
  EXPECT_EQ(h.count, 1u);
  // The area: the array and its header, page-aligned, plus the guard page.
  EXPECT_GE(h.bytes, static_cast<uint64_t>(kib) * 1024);
  EXPECT_LE(h.bytes, static_cast<uint64_t>(kib) * 1024 + 3 * 4096);
  c.send_line("release");
  expect_line(c, "released");
  EXPECT_EQ(gone(*loader, KLEAK_FAMILY_VMALLOC, tgid, {"array_map_alloc"}).count, 0u);
}

// Only the families asked for are loaded: slab alone keeps the programs
// (and the per-allocation cost) kleak always had.
TEST_F(Families, OnlyAskedFamiliesAreLoaded) {
  auto slab = attach(FamilySet{});
  ASSERT_TRUE(slab);
  EXPECT_TRUE(slab->traced_families().empty());
  for (const auto& a : slab->attached()) EXPECT_EQ(a.rfind("kmem/k", 0), 0u) << a;
  slab.reset();
  auto all = attach(FamilySet{true, true, true, true});
  ASSERT_TRUE(all);
  std::vector<std::string> want = {"kmem/mm_page_alloc", "kmem/mm_page_free", "percpu/percpu_alloc_percpu",
                                   "percpu/percpu_free_percpu"};
  for (const auto& w : want)
    EXPECT_NE(std::find(all->attached().begin(), all->attached().end(), w), all->attached().end()) << w;
}

}  // namespace
}  // namespace kleak::test
