#include "probe/snapshot.h"

#include "util/clock.h"

#include <cerrno>
#include <cstddef>
#include <ctime>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <algorithm>

#include <fmt/format.h>

namespace kleak {
namespace {

// Fallback for kernels without BPF_MAP_LOOKUP_BATCH on hash maps (< 5.6).
Status read_live_by_key(int fd, const LiveBatchFn& fn) {
  return for_each_key(fd, "iterate kleak_live", [&](uint64_t key) {
    LiveAlloc la{key, {}};
    if (bpf_map_lookup_elem(fd, &key, &la.a) == 0) fn(&la, 1);
  });
}

}  // namespace

Status for_each_key(int map_fd, const std::string& what, const std::function<void(uint64_t)>& fn, size_t max_keys) {
  uint64_t key = 0, next = 0;
  const uint64_t* prev = nullptr;
  for (size_t n = 0; n < max_keys; ++n) {
    if (bpf_map_get_next_key(map_fd, prev, &next) != 0) {
      if (errno != ENOENT) return make_error(what, errno);
      break;
    }
    fn(next);
    key = next;
    prev = &key;
  }
  return {};
}

RecursionMisses read_recursion_misses(const std::vector<std::pair<std::string, int>>& progs) {
  RecursionMisses r;
  for (const auto& [name, fd] : progs) {
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) continue;
    // A kernel older than the field returns a shorter struct (v5.12 added it).
    if (len < offsetof(bpf_prog_info, recursion_misses) + sizeof(info.recursion_misses)) continue;
    r.available = true;
    r.total += info.recursion_misses;
    if (info.recursion_misses > 0) r.by_program.emplace_back(name, info.recursion_misses);
  }
  return r;
}

Status read_live(int fd, std::vector<LiveAlloc>& out) {
  out.clear();
  return read_live(fd, [&out](const LiveAlloc* a, size_t n) { out.insert(out.end(), a, a + n); });
}

Status read_live(int fd, const LiveBatchFn& fn) {
  // A hash map returns whole buckets per batch; ENOSPC means one bucket held
  // more than `batch` entries, so retry that step with a larger buffer.
  uint32_t batch = 8192;
  std::vector<uint64_t> keys(batch);
  std::vector<kleak_alloc> values(batch);
  std::vector<LiveAlloc> merged(batch);
  uint64_t in_batch = 0, out_batch = 0;
  bool first = true;
  for (;;) {
    uint32_t n = batch;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    int err = bpf_map_lookup_batch(fd, first ? nullptr : &in_batch, &out_batch, keys.data(), values.data(), &n, &opts);
    int e = err ? errno : 0;
    if (err && e == ENOSPC && n == 0) {
      batch *= 2;
      keys.resize(batch);
      values.resize(batch);
      merged.resize(batch);
      continue;
    }
    if (err && first && (e == EINVAL || e == ENOTSUP || e == EOPNOTSUPP || e == ENOSYS)) return read_live_by_key(fd, fn);
    if (err && e != ENOENT) return make_error("batch-read kleak_live", e);
    for (uint32_t i = 0; i < n; ++i) merged[i] = LiveAlloc{keys[i], values[i]};
    if (n > 0) fn(merged.data(), n);
    if (err) break;  // ENOENT: that was the last batch
    in_batch = out_batch;
    first = false;
  }
  return {};
}

Result<std::vector<Counters>> read_counters(int fd) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return make_error("read kleak_counters' size", errno);
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) return make_error("count possible CPUs", ncpus);
  std::vector<kleak_counters> per_cpu(static_cast<size_t>(ncpus));
  std::vector<Counters> out(info.max_entries);
  for (uint32_t key = 0; key < info.max_entries; ++key) {
    if (bpf_map_lookup_elem(fd, &key, per_cpu.data()) != 0) return make_error("read kleak_counters", errno);
    for (const auto& pc : per_cpu)
      for (int i = 0; i < KLEAK_CNT_MAX; ++i) out[key].v[static_cast<size_t>(i)] += pc.v[i];
  }
  return out;
}

Result<std::vector<uint64_t>> read_stack(int fd, uint64_t stack_id) {
  kleak_stack st{};
  if (bpf_map_lookup_elem(fd, &stack_id, &st) != 0) return make_error(fmt::format("read stack {:#x}", stack_id), errno);
  uint32_t n = std::min<uint32_t>(st.nr, KLEAK_MAX_STACK_DEPTH);
  return std::vector<uint64_t>(st.ips, st.ips + n);
}

Result<SnapshotInfo> snapshot_info(const MapFds& fds) {
  SnapshotInfo s;
  s.mono_ns = monotonic_ns();
  s.realtime_ns = realtime_ns();
  auto c = read_counters(fds.counters);
  if (!c) return c.error();
  // Slab is the kmalloc and kmem_cache families together.
  for (uint32_t fam = 0; fam < c->size() && fam < KLEAK_FAMILY_MAX; ++fam) {
    if (fam == KLEAK_FAMILY_KMALLOC || fam == KLEAK_FAMILY_KMEM_CACHE) s.counters += (*c)[fam];
    else if (fds.family_live[fam] >= 0) s.family_counters[fam] = (*c)[fam];
  }
  s.recursion = read_recursion_misses(fds.progs);
  // A small map (at most KLEAK_MAX_MISSED_SITES): key by key is fine. A
  // walk cut short by an error leaves the sites read so far.
  if (fds.missed >= 0)
    (void)for_each_key(fds.missed, "read kleak_missed", [&](uint64_t site) {
      uint64_t count = 0;
      if (bpf_map_lookup_elem(fds.missed, &site, &count) == 0) s.missed_sites[site] = count;
    });
  return s;
}

Result<Snapshot> take_snapshot(const MapFds& fds) {
  auto info = snapshot_info(fds);
  if (!info) return info.error();
  Snapshot s;
  static_cast<SnapshotInfo&>(s) = *info;
  if (auto st = read_live(fds.live, s.allocs); !st) return st.error();
  for (int fd : fds.family_live) {
    if (fd < 0) continue;
    if (auto st = read_live(fd, [&s](const LiveAlloc* a, size_t n) { s.allocs.insert(s.allocs.end(), a, a + n); });
        !st)
      return st.error();
  }
  return s;
}

}  // namespace kleak
