#include "procfs/cache_filter.h"

#include <unistd.h>

#include <cerrno>
#include <climits>

#include <algorithm>
#include <map>
#include <vector>

#include <fmt/format.h>

#include "procfs/procfs.h"

namespace kleak {
namespace {

// Where /sys/kernel/slab/NAME points: merged caches share one target.
std::string slab_target(const std::string& dir, const std::string& name) {
  char buf[PATH_MAX];
  std::string path = dir + "/" + name;
  ssize_t n = readlink(path.c_str(), buf, sizeof(buf) - 1);
  if (n > 0) return std::string(buf, static_cast<size_t>(n));
  return access(path.c_str(), F_OK) == 0 ? name : std::string();  // a cache of its own
}

bool is_kmalloc_ladder(const std::string& prefix, const std::vector<std::string>& caches) {
  for (const char* size : {"96", "192", "1k", "4k"})
    if (std::find(caches.begin(), caches.end(), prefix + "-" + size) == caches.end()) return false;
  return true;
}

}  // namespace

std::optional<KmallocCache> parse_kmalloc_cache(std::string_view name) {
  auto size = kmalloc_size_of(name);
  if (!size) return std::nullopt;
  KmallocCache c;
  c.size = *size;
  c.type = KmallocType::normal;
  auto starts = [&](std::string_view p) { return name.substr(0, p.size()) == p; };
  if (starts("kmalloc-rnd-")) return std::nullopt;  // one of 16 copies, picked per call site
  if (starts("dma-kmalloc-") || (starts("size-") && name.size() > 5 && name.substr(name.size() - 5) == "(DMA)"))
    c.type = KmallocType::dma;
  else if (starts("kmalloc-rcl-") || starts("kmalloc-reclaimable-"))
    c.type = KmallocType::reclaim;
  else if (starts("kmalloc-cg-"))
    c.type = KmallocType::cgroup;
  return c;
}

Result<CacheFilter> resolve_cache(const std::string& name, const std::string& proc_dir,
                                  const std::string& sys_slab_dir) {
  CacheFilter f;
  f.requested = f.name = name;
  if (name.rfind("kmalloc-rnd-", 0) == 0)
    return Error{"--cache " + name + ": random kmalloc caches are picked per call site; use --size instead", EINVAL};
  f.kmalloc = parse_kmalloc_cache(name);
  auto slabinfo = load_slabinfo(proc_dir);
  if (!slabinfo) return Error{"--cache " + name + ": cannot check it: " + slabinfo.error().message, EINVAL};
  // Bucket caches: names PREFIX-SIZE whose prefix has the kmalloc ladder in
  // slabinfo, recognised by its odd sizes 96 and 192 beside 1k and 4k (other
  // families such as bio-N have several sizes too, but not those).
  std::map<std::string, std::vector<std::string>> ladders;  // prefix -> caches
  for (const SlabCache& c : slabinfo->caches) {
    size_t dash = c.name.rfind('-');
    if (dash == std::string::npos || c.name.rfind("kmalloc-", 0) == 0 || c.name.rfind("dma-kmalloc-", 0) == 0)
      continue;
    if (kmalloc_size_of("kmalloc-" + c.name.substr(dash + 1))) ladders[c.name.substr(0, dash)].push_back(c.name);
  }
  auto bucket_size = [&](const std::string& cache) -> std::optional<uint64_t> {
    size_t dash = cache.rfind('-');
    if (dash == std::string::npos) return std::nullopt;
    auto it = ladders.find(cache.substr(0, dash));
    if (it == ladders.end() || !is_kmalloc_ladder(it->first, it->second)) return std::nullopt;
    return kmalloc_size_of("kmalloc-" + cache.substr(dash + 1));
  };
  auto buckets_of_size = [&](uint64_t size) {
    std::string list;
    for (const auto& [prefix, caches] : ladders)
      for (const std::string& c : caches)
        if (bucket_size(c) == size) list += (list.empty() ? "" : ", ") + c;
    return list;
  };
  if (f.kmalloc) {
    if (auto others = buckets_of_size(f.kmalloc->size); !others.empty())
      f.note = fmt::format("{}-byte kmallocs also land in bucket caches here ({}); kmalloc's tracepoint does not "
                           "name the cache, so theirs are traced too",
                           f.kmalloc->size, others);
    return f;
  }
  if (auto size = bucket_size(name)) {
    f.kmalloc = KmallocCache{*size, std::nullopt};
    f.note = fmt::format("{} is a kmalloc bucket (CONFIG_SLAB_BUCKETS); kmalloc's tracepoint does not name the "
                         "cache, so every {}-byte kmalloc is traced",
                         name, *size);
    return f;
  }
  for (const SlabCache& c : slabinfo->caches)
    if (c.name == name) return f;
  // Not a row of its own: an alias of a merged cache? Its row is the cache
  // whose /sys/kernel/slab entry points to the same place.
  std::string target = slab_target(sys_slab_dir, name);
  if (!target.empty()) {
    for (const SlabCache& c : slabinfo->caches) {
      if (slab_target(sys_slab_dir, c.name) != target) continue;
      f.name = c.name;
      f.kmalloc = parse_kmalloc_cache(c.name);
      return f;
    }
  }
  return Error{"--cache " + name + ": no such slab cache on this kernel (see /proc/slabinfo)", ENOENT};
}

}  // namespace kleak
