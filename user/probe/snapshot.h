// Reading kleak's BPF maps: live allocations in batches, per-CPU counters
// summed, stacks by id (the records: model/records.h).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <unordered_map>
#include <vector>

#include "model/abi.h"
#include "model/records.h"
#include "util/result.h"

namespace kleak {

// Sums bpf_prog_info.recursion_misses over `progs`.
RecursionMisses read_recursion_misses(const std::vector<std::pair<std::string, int>>& progs);

// Calls fn with every key of the hash map `map_fd` (u64 keys), key by key,
// at most max_keys of them (a bound for an LRU map, whose walk restarts
// when the key it stands on is evicted). Errors other than the end of the
// map name `what`.
Status for_each_key(int map_fd, const std::string& what, const std::function<void(uint64_t)>& fn,
                    size_t max_keys = SIZE_MAX);

// Reads every entry of the live-allocation hash map, batched where the kernel
// supports it (else key by key), handing each batch to `fn`.
using LiveBatchFn = std::function<void(const LiveAlloc* allocs, size_t n)>;
Status read_live(int map_fd, const LiveBatchFn& fn);
// The same, collected into `out` (cleared first).
Status read_live(int map_fd, std::vector<LiveAlloc>& out);

// Every entry of a counters map (kleak_counters: one per enum
// kleak_family; kleak user's: one), per-CPU values summed.
Result<std::vector<Counters>> read_counters(int map_fd);

// Frames of one stack, innermost first, without the trailing zeros.
Result<std::vector<uint64_t>> read_stack(int map_fd, uint64_t stack_id);

// The maps a snapshot reads.
struct MapFds {
  int live = -1;
  int counters = -1;
  int missed = -1;
  std::array<int, KLEAK_FAMILY_MAX> family_live{-1, -1, -1, -1, -1};  // traced families beyond slab
  std::vector<std::pair<std::string, int>> progs;    // loaded programs: name, fd
};

// Reads the counters and missed-free evidence and notes the time: the start
// of a snapshot.
Result<SnapshotInfo> snapshot_info(const MapFds& fds);
// Takes a whole snapshot: snapshot_info, then the live map.
Result<Snapshot> take_snapshot(const MapFds& fds);

}  // namespace kleak
