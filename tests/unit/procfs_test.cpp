#include "procfs/procfs.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include <gtest/gtest.h>

#include "triage/unaccounted.h"

namespace kleak {
namespace {

const std::string kFixtures = KLEAK_FIXTURE_DIR;

std::string fixture(const std::string& name) {
  auto text = read_text_file(kFixtures + "/" + name);
  if (!text) ADD_FAILURE() << text.error().message;
  return text ? *text : std::string();
}

const SlabCache* find_cache(const Slabinfo& s, const std::string& name) {
  for (const SlabCache& c : s.caches)
    if (c.name == name) return &c;
  return nullptr;
}

constexpr uint64_t KiB = 1024;

// --- meminfo -----------------------------------------------------------------

TEST(Meminfo, RecordedModernKernel) {
  Meminfo m = parse_meminfo(fixture("meminfo-6.18.txt"));
  EXPECT_EQ(m.issues.bad_lines, 0u) << m.issues.first_bad_line;
  EXPECT_EQ(m.get("MemTotal"), 24684084 * KiB);
  EXPECT_EQ(m.get("Slab"), 88820 * KiB);
  EXPECT_EQ(m.get("Percpu"), 712 * KiB);
  EXPECT_EQ(m.get("Active(anon)").has_value(), true);  // parentheses in the key
  EXPECT_EQ(m.get("VmallocTotal"), 34359738367 * KiB);
  // Unit-less fields are counts, not bytes.
  EXPECT_FALSE(m.get("HugePages_Total"));
  EXPECT_EQ(m.counts.at("HugePages_Total"), 0u);
}

TEST(Meminfo, OlderKernelFieldsAreAbsentNotZero) {
  Meminfo m = parse_meminfo(fixture("meminfo-4.9-handwritten.txt"));
  EXPECT_EQ(m.issues.bad_lines, 0u) << m.issues.first_bad_line;
  EXPECT_EQ(m.get("MemTotal"), 2048000 * KiB);
  EXPECT_FALSE(m.get("Percpu"));
  EXPECT_FALSE(m.get("SecPageTables"));
  EXPECT_FALSE(m.get("KReclaimable"));
  EXPECT_EQ(m.counts.at("HugePages_Total"), 10u);
}

TEST(Meminfo, GarbledLinesAreSkippedAndCounted) {
  Meminfo m = parse_meminfo(
      "MemTotal:  1000 kB\n"
      "MemFree:\n"                             // no value
      "Cached:  12x kB\n"                      // not a number
      "Buffers: 99999999999999999999999 kB\n"  // does not fit in 64 bits
      "Slab: 18014398509481984 kB\n"           // fits, but x 1024 does not
      "no colon here 5 kB\n"
      "Shmem: 5 MB\n"           // unknown unit
      "MemTotal:  2000 kB\n"    // duplicate: ambiguous
      "SecPageTables:\t0 kB\n"  // v6.1 printed a tab here
      "AnonPages: 7 kB");       // truncated: no newline at the end
  EXPECT_EQ(m.issues.bad_lines, 7u);
  EXPECT_EQ(m.issues.first_bad_line, "MemFree:");
  EXPECT_EQ(m.get("MemTotal"), 1000 * KiB);  // the first one
  EXPECT_FALSE(m.get("MemFree"));
  EXPECT_FALSE(m.get("Cached"));
  EXPECT_FALSE(m.get("Buffers"));
  EXPECT_FALSE(m.get("Slab"));
  EXPECT_EQ(m.get("SecPageTables"), 0u);
  EXPECT_EQ(m.get("AnonPages"), 7 * KiB);
}

TEST(Meminfo, EmptyText) {
  Meminfo m = parse_meminfo("");
  EXPECT_TRUE(m.bytes.empty());
  EXPECT_EQ(m.issues.bad_lines, 0u);
}

// --- unaccounted -------------------------------------------------------------

TEST(Unaccounted, RecordedModernKernel) {
  auto u = unaccounted_kernel_memory(parse_meminfo(fixture("meminfo-6.18.txt")));
  ASSERT_TRUE(u);
  // 24684084 - 23952404 (free) - 1284 (Buffers) - 577112 (Cached) - 0 (SwapCached)
  // - 9536 (AnonPages) - 88820 (Slab) - 1364 (KernelStack) - 1508 (PageTables)
  // - 0 (SecPageTables) - 14156 (VmallocUsed) - 712 (Percpu)
  // - (62720 - 62720) (KReclaimable - SReclaimable) - 0 (Zswap, Balloon, Hugetlb,
  // Bounce, WritebackTmp) = 37188 kB
  EXPECT_EQ(u->bytes, 37188 * static_cast<int64_t>(KiB));
  std::vector<std::string> absent = u->absent;
  std::sort(absent.begin(), absent.end());
  EXPECT_EQ(absent, (std::vector<std::string>{"HardwareCorrupted", "ShadowCallStack", "Unaccepted"}));
}

TEST(Unaccounted, OlderKernelUsesHugePagesAndSkipsMissingFields) {
  auto u = unaccounted_kernel_memory(parse_meminfo(fixture("meminfo-4.9-handwritten.txt")));
  ASSERT_TRUE(u);
  // 2048000 - 500000 - 50000 - 600000 - 10000 (SwapCached) - 400000 - 200000
  // - 4000 - 10000 - 0 (VmallocUsed) - 10 x 2048 (HugePages_Total x
  // Hugepagesize, no Hugetlb field) = 253520 kB. Shmem (20000) and
  // AnonHugePages (100000) are inside Cached and AnonPages: not subtracted.
  EXPECT_EQ(u->bytes, 253520 * static_cast<int64_t>(KiB));
  for (const char* f : {"Percpu", "SecPageTables", "KReclaimable", "Hugetlb", "Zswap"})
    EXPECT_NE(std::find(u->absent.begin(), u->absent.end(), f), u->absent.end()) << f;
  EXPECT_EQ(std::find(u->absent.begin(), u->absent.end(), "KernelStack"), u->absent.end());
}

// unaccounted_kernel_memory of /proc/meminfo text, in KiB; nullopt when it
// cannot tell.
std::optional<int64_t> unaccounted_kib(const char* meminfo) {
  auto u = unaccounted_kernel_memory(parse_meminfo(meminfo));
  if (!u) return std::nullopt;
  EXPECT_EQ(u->bytes % static_cast<int64_t>(KiB), 0) << u->bytes;
  return u->bytes / static_cast<int64_t>(KiB);
}

TEST(Unaccounted, MiscReclaimableAndSlabParts) {
  // No Slab line: SReclaimable + SUnreclaim (90); KReclaimable adds 20 outside slab.
  EXPECT_EQ(unaccounted_kib("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 200 kB\nAnonPages: 300 kB\n"
                            "SReclaimable: 50 kB\nSUnreclaim: 40 kB\nKReclaimable: 70 kB\n"),
            1000 - 100 - 10 - 200 - 300 - 90 - 20);
}

TEST(Unaccounted, MayGoNegative) {
  EXPECT_EQ(unaccounted_kib("MemTotal: 1000 kB\nMemFree: 900 kB\nBuffers: 0 kB\nCached: 50 kB\nAnonPages: 50 kB\n"
                            "Slab: 10 kB\nSwapCached: 20 kB\n"),
            -30);
}

TEST(Unaccounted, RequiredFieldMissingOrHuge) {
  EXPECT_FALSE(unaccounted_kernel_memory(parse_meminfo("MemTotal: 1000 kB\nMemFree: 900 kB\n")));
  EXPECT_FALSE(unaccounted_kernel_memory(
      parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 0 kB\nCached: 0 kB\nAnonPages: 0 kB\nSlab: 0 kB\n"
                    "Percpu: 9000000000000000 kB\n")));
}

// --- slabinfo ----------------------------------------------------------------

TEST(Slabinfo, RecordedSlub) {
  auto s = parse_slabinfo(fixture("slabinfo-slub-6.18.txt"));
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->version, "2.1");
  EXPECT_EQ(s->issues.bad_lines, 0u) << s->issues.first_bad_line;
  EXPECT_EQ(s->caches.size(), 235u);
  const SlabCache* k4 = find_cache(*s, "kmalloc-4k");
  ASSERT_TRUE(k4);
  EXPECT_EQ(k4->active_objs, 236u);
  EXPECT_EQ(k4->num_objs, 336u);
  EXPECT_EQ(k4->objsize, 4096u);
  EXPECT_EQ(k4->bytes, 236u * 4096);
  const SlabCache* cg = find_cache(*s, "kmalloc-cg-4k");
  ASSERT_TRUE(cg);
  EXPECT_EQ(cg->bytes, 80u * 4096);
  ASSERT_TRUE(find_cache(*s, "dentry"));
  EXPECT_EQ(find_cache(*s, "dentry")->bytes, 40742u * 192);
}

TEST(Slabinfo, OldSlabSizeCaches) {
  auto s = parse_slabinfo(fixture("slabinfo-slab-2.1-handwritten.txt"));
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->version, "2.1");
  // The kmem_cache row has "32K" for objsize: skipped and reported.
  EXPECT_EQ(s->issues.bad_lines, 1u);
  EXPECT_NE(s->issues.first_bad_line.find("kmem_cache"), std::string::npos);
  EXPECT_EQ(s->caches.size(), 9u);
  const SlabCache* c = find_cache(*s, "size-4096");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->bytes, 530u * 4096);
  ASSERT_TRUE(find_cache(*s, "size-4096(DMA)"));
  EXPECT_EQ(find_cache(*s, "size-4194304(DMA)")->objsize, 4194304u);
}

TEST(Slabinfo, Version20) {
  auto s = parse_slabinfo(fixture("slabinfo-slab-2.0-handwritten.txt"));
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->version, "2.0");
  EXPECT_EQ(s->issues.bad_lines, 0u);
  ASSERT_EQ(s->caches.size(), 3u);
  EXPECT_EQ(s->caches[0].name, "size-4096");
  EXPECT_EQ(s->caches[0].bytes, 64u * 4096);
  EXPECT_EQ(s->caches[2].bytes, 3000u * 512);
}

TEST(Slabinfo, BadHeaders) {
  EXPECT_FALSE(parse_slabinfo(""));
  EXPECT_FALSE(parse_slabinfo("kmalloc-64 1 1 64 64 1 : tunables 0 0 0 : slabdata 1 1 0\n"));
  auto v1 = parse_slabinfo("slabinfo - version: 1.1\nkmalloc-64 1 1 64 1 1 1\n");
  ASSERT_FALSE(v1);
  EXPECT_NE(v1.error().message.find("1.1"), std::string::npos);
}

TEST(Slabinfo, GarbledRowsAreSkippedAndCounted) {
  auto s = parse_slabinfo(
      "slabinfo - version: 2.1\n"
      "# name <active_objs> ...\n"
      "good-cache 10 20 64 64 1 : tunables 0 0 0 : slabdata 1 1 0\n"
      "kmalloc-64    1814   20\n"                                   // truncated
      "kmalloc-32 1698 3712 32 128 1\n"                             // cut before the tunables
      "too-many 30 20 64 64 1 : tunables 0 0 0 : slabdata 1 1 0\n"  // active > num
      "zero-size 1 1 0 64 1 : tunables 0 0 0 : slabdata 1 1 0\n"    // objsize 0
      "huge 18446744073709551615 18446744073709551615 4096 1 1 : tunables 0 0 0 : slabdata 1 1 0\n"
      "big 99999999999999999999 1 64 1 1 : tunables 0 0 0 : slabdata 1 1 0\n"
      "two words 5 5 128 32 1 : tunables 0 0 0 : slabdata 1 1 0\n"  // a name with a space still parses
      "\n"
      "last 1 1 8 512 1 : tunables 0 0 0 : slab");  // truncated after the tunables: the counts are whole
  ASSERT_TRUE(s);
  EXPECT_EQ(s->issues.bad_lines, 6u);
  EXPECT_EQ(s->issues.first_bad_line, "kmalloc-64    1814   20");
  ASSERT_EQ(s->caches.size(), 3u);
  EXPECT_EQ(s->caches[0].bytes, 640u);
  EXPECT_EQ(s->caches[1].name, "two words");
  EXPECT_EQ(s->caches[1].bytes, 640u);
  EXPECT_EQ(s->caches[2].name, "last");
}

TEST(Slabinfo, KmallocSizes) {
  struct Case {
    const char* name;
    std::optional<uint64_t> size;
  };
  for (const Case& c : {Case{"kmalloc-4k", 4096},
                        Case{"kmalloc-96", 96},
                        Case{"kmalloc-8", 8},
                        Case{"kmalloc-cg-4k", 4096},
                        Case{"kmalloc-rcl-96", 96},
                        Case{"kmalloc-rcl-1k", 1024},
                        Case{"kmalloc-reclaimable-512", 512},
                        Case{"kmalloc-rnd-03-64", 64},
                        Case{"dma-kmalloc-512", 512},
                        Case{"kmalloc-8192", 8192},
                        Case{"kmalloc-2M", 2097152},
                        Case{"size-4096", 4096},
                        Case{"size-4096(DMA)", 4096},
                        Case{"size-32", 32},
                        Case{"kmalloc_buckets", std::nullopt},
                        Case{"kmalloc-", std::nullopt},
                        Case{"kmalloc-cg-", std::nullopt},
                        Case{"kmalloc-4kk", std::nullopt},
                        Case{"kmalloc-rnd-xx-64", std::nullopt},
                        Case{"kmalloc-0", std::nullopt},
                        Case{"dentry", std::nullopt},
                        Case{"size-", std::nullopt},
                        Case{"kmalloc-99999999999999999999", std::nullopt},
                        Case{"bio-312", std::nullopt}})
    EXPECT_EQ(kmalloc_size_of(c.name), c.size) << c.name;
}

TEST(Slabinfo, Aliases) {
  auto a = slab_aliases(
      {{"UDP", ":A-0001344"}, {"UDP-Lite", ":A-0001344"}, {"PINGv6", ":A-0001344"}, {"PING", ":A-0001024"}});
  ASSERT_EQ(a.count("UDP"), 1u);
  EXPECT_EQ(a["UDP"], (std::vector<std::string>{"UDP-Lite", "PINGv6"}));
  EXPECT_EQ(a.count("PING"), 0u);  // merged with nothing
}

TEST(Slabinfo, AliasesFromADirectory) {
  char tmpl[] = "/tmp/kleak-slab-XXXXXX";
  ASSERT_TRUE(mkdtemp(tmpl));
  std::string dir = tmpl;
  ASSERT_EQ(mkdir((dir + "/:0000048").c_str(), 0755), 0);
  ASSERT_EQ(symlink(":0000048", (dir + "/Acpi-Namespace").c_str()), 0);
  ASSERT_EQ(symlink(":0000048", (dir + "/ext4_extent_status").c_str()), 0);
  ASSERT_EQ(mkdir((dir + "/kmalloc-64").c_str(), 0755), 0);
  auto a = load_slab_aliases(dir);
  std::filesystem::remove_all(dir);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a["Acpi-Namespace"], std::vector<std::string>{"ext4_extent_status"});
  EXPECT_TRUE(load_slab_aliases("/nonexistent/kleak/slab").empty());
}

// --- smaps_rollup, comm --------------------------------------------------------

TEST(SmapsRollup, Recorded) {
  ParseIssues issues;
  auto m = parse_smaps_rollup(fixture("smaps_rollup-6.18.txt"), issues);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->rss_bytes, 1732 * KiB);
  EXPECT_EQ(m->pss_bytes, 526 * KiB);
  EXPECT_EQ(issues.bad_lines, 0u) << issues.first_bad_line;
}

TEST(SmapsRollup, KernelThreadAndGarbage) {
  ParseIssues issues;
  EXPECT_FALSE(parse_smaps_rollup("", issues));
  EXPECT_EQ(issues.bad_lines, 0u);
  EXPECT_FALSE(parse_smaps_rollup("Rss: 12 kB\nPss: lots kB\n", issues));
  EXPECT_GE(issues.bad_lines, 1u);
  ParseIssues more;
  auto m = parse_smaps_rollup("Rss: 12 kB\nPss: 8 kB\nweird line\n", more);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->pss_bytes, 8 * KiB);
  EXPECT_EQ(more.bad_lines, 1u);
}

TEST(Comm, TrimsNewline) {
  EXPECT_EQ(parse_comm("kworker/0:1\n"), "kworker/0:1");
  EXPECT_EQ(parse_comm(""), "");
}

// --- loaders on this machine ---------------------------------------------------

TEST(ProcLoaders, ReadErrorsNameThePathAndErrno) {
  auto r = read_text_file("/nonexistent/kleak/file");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().err, ENOENT);
  EXPECT_NE(r.error().message.find("/nonexistent/kleak/file"), std::string::npos);
}

TEST(ProcLoaders, ThisProcessIsScanned) {
  auto scan = scan_processes();
  ASSERT_TRUE(scan) << scan.error().message;
  auto self = std::find_if(scan->processes.begin(), scan->processes.end(),
                           [](const ProcessSample& p) { return p.pid == static_cast<uint32_t>(getpid()); });
  ASSERT_NE(self, scan->processes.end());
  EXPECT_GT(self->mem.pss_bytes, 0u);
  EXPECT_GE(self->mem.rss_bytes, self->mem.pss_bytes);
  EXPECT_EQ(self->comm.substr(0, 6), "kleak_");  // kleak_unit_tests, cut to 15 characters
  EXPECT_GT(scan->kernel_threads, 0u);           // kthreadd at least
  EXPECT_FALSE(scan_processes("/nonexistent/kleak/proc"));
}

}  // namespace
}  // namespace kleak
