#include "procfs/cache_filter.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

namespace kleak {
namespace {

namespace fs = std::filesystem;

TEST(CacheFilter, KmallocNames) {
  auto k = parse_kmalloc_cache("kmalloc-4k");
  ASSERT_TRUE(k);
  EXPECT_EQ(k->size, 4096u);
  EXPECT_EQ(k->type, KmallocType::normal);
  EXPECT_EQ(parse_kmalloc_cache("kmalloc-cg-96")->type, KmallocType::cgroup);
  EXPECT_EQ(parse_kmalloc_cache("kmalloc-cg-96")->size, 96u);
  EXPECT_EQ(parse_kmalloc_cache("kmalloc-rcl-192")->type, KmallocType::reclaim);
  EXPECT_EQ(parse_kmalloc_cache("kmalloc-reclaimable-192")->type, KmallocType::reclaim);
  EXPECT_EQ(parse_kmalloc_cache("dma-kmalloc-1k")->type, KmallocType::dma);
  EXPECT_EQ(parse_kmalloc_cache("dma-kmalloc-1k")->size, 1024u);
  EXPECT_EQ(parse_kmalloc_cache("size-4096")->size, 4096u);           // old SLAB
  EXPECT_EQ(parse_kmalloc_cache("size-4096(DMA)")->type, KmallocType::dma);
  EXPECT_FALSE(parse_kmalloc_cache("kmalloc-rnd-03-4k"));  // random per call site
  EXPECT_FALSE(parse_kmalloc_cache("dentry"));
  EXPECT_FALSE(parse_kmalloc_cache("msg_msg-4k"));  // a bucket: needs slabinfo
}

class ResolveCache : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("kleak-cache-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "proc");
    fs::create_directories(dir_ / "slab" / "dentry");  // a cache of its own
    fs::copy_file(KLEAK_FIXTURE_DIR "/cache/slabinfo", dir_ / "proc" / "slabinfo");
    // SLUB merged caches: every name links to one id.
    fs::create_directory_symlink(":A-0000256", dir_ / "slab" / "filp");
    fs::create_directory_symlink(":A-0000256", dir_ / "slab" / "some_alias");
    fs::create_directory_symlink(":0000064", dir_ / "slab" / "lonely_alias");
  }
  void TearDown() override { fs::remove_all(dir_); }

  Result<CacheFilter> resolve(const std::string& name) {
    return resolve_cache(name, (dir_ / "proc").string(), (dir_ / "slab").string());
  }

  fs::path dir_;
};

TEST_F(ResolveCache, KmallocNameWarnsAboutBucketsOfItsSize) {
  auto f = resolve("kmalloc-4k");
  ASSERT_TRUE(f.ok()) << f.error().message;
  ASSERT_TRUE(f->kmalloc);
  EXPECT_EQ(f->kmalloc->size, 4096u);
  EXPECT_NE(f->note.find("msg_msg-4k"), std::string::npos) << f->note;
  EXPECT_EQ(f->note.find("bio"), std::string::npos) << f->note;
  auto small = resolve("kmalloc-cg-96");
  ASSERT_TRUE(small.ok());
  EXPECT_NE(small->note.find("msg_msg-96"), std::string::npos) << small->note;
}

TEST_F(ResolveCache, BucketIsItsSizeOfAnyType) {
  auto f = resolve("msg_msg-4k");
  ASSERT_TRUE(f.ok()) << f.error().message;
  ASSERT_TRUE(f->kmalloc);
  EXPECT_EQ(f->kmalloc->size, 4096u);
  EXPECT_FALSE(f->kmalloc->type);
  EXPECT_NE(f->note.find("kmalloc bucket"), std::string::npos);
}

TEST_F(ResolveCache, OtherSizeFamiliesAreNamedCaches) {
  auto f = resolve("bio-120");
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_FALSE(f->kmalloc);
  EXPECT_EQ(f->name, "bio-120");
}

TEST_F(ResolveCache, NamedCacheAndMergedAlias) {
  auto d = resolve("dentry");
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_FALSE(d->kmalloc);
  EXPECT_EQ(d->name, "dentry");
  auto a = resolve("some_alias");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->name, "filp");
  EXPECT_EQ(a->requested, "some_alias");
}

TEST_F(ResolveCache, UnknownNamesAreRefused) {
  auto none = resolve("no_such_cache");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("no such slab cache"), std::string::npos);
  EXPECT_FALSE(resolve("lonely_alias").ok());  // links to a cache slabinfo does not list
  auto rnd = resolve("kmalloc-rnd-03-4k");
  ASSERT_FALSE(rnd.ok());
  EXPECT_NE(rnd.error().message.find("--size"), std::string::npos);
}

}  // namespace
}  // namespace kleak
