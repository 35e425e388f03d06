// Reading kleak's BPF maps: live allocations in batches, per-CPU counters
// summed, stacks by id.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <unordered_map>
#include <vector>

#include "model/abi.h"
#include "util/result.h"

namespace kleak {

struct LiveAlloc {
  uint64_t addr;
  kleak_alloc a;
};

struct Counters {
  std::array<uint64_t, KLEAK_CNT_MAX> v{};
  uint64_t operator[](kleak_counter c) const { return v[c]; }
  uint64_t stack_errors() const;
  // Frees of addresses kleak never recorded (allocated before it started, or
  // filtered).
  uint64_t frees_unmatched() const;
};

// Counters of one family beyond slab (kleak_fcounters).
struct FamilyCounters {
  std::array<uint64_t, KLEAK_FCNT_MAX> v{};
  uint64_t operator[](kleak_fam_counter c) const { return v[c]; }
  uint64_t frees_unmatched() const;
};

// Runs the kernel skipped because the program was already running on that
// CPU (bpf_prog_info.recursion_misses, v5.12+): each skipped free can leave
// a phantom record behind.
struct RecursionMisses {
  bool available = false;  // false: the kernel does not report them
  uint64_t total = 0;
  std::vector<std::pair<std::string, uint64_t>> by_program;  // programs with misses
};

// When a snapshot was taken and what the counters said then.
struct SnapshotInfo {
  Counters counters;
  std::array<FamilyCounters, KLEAK_FAMILY_MAX> family_counters;  // page, percpu, vmalloc
  RecursionMisses recursion;
  // Missed-free evidence: cache pointer or call site -> frees missed there.
  std::unordered_map<uint64_t, uint64_t> missed_sites;
  uint64_t mono_ns = 0;      // CLOCK_MONOTONIC when the read started
  uint64_t realtime_ns = 0;  // wall clock at the same moment
};

// A whole snapshot in memory: for tests and small maps. Reports stream
// instead (read_live with a callback), so their memory does not grow with
// the number of live allocations.
// False when events were lost (full map, map errors on allocation or free,
// a child process not followed): a report may then miss leaks or show
// phantoms.
bool counters_complete(const Counters& c);
// The same for the slab counters and every family's.
bool snapshot_complete(const SnapshotInfo& s);

// Sums bpf_prog_info.recursion_misses over `progs`.
RecursionMisses read_recursion_misses(const std::vector<std::pair<std::string, int>>& progs);

struct Snapshot : SnapshotInfo {
  std::vector<LiveAlloc> allocs;
};

uint64_t monotonic_ns();
uint64_t realtime_ns();

// Reads every entry of the live-allocation hash map, batched where the kernel
// supports it (else key by key), handing each batch to `fn`.
using LiveBatchFn = std::function<void(const LiveAlloc* allocs, size_t n)>;
Status read_live(int map_fd, const LiveBatchFn& fn);
// The same, collected into `out` (cleared first).
Status read_live(int map_fd, std::vector<LiveAlloc>& out);

Result<Counters> read_counters(int map_fd);

// Frames of one stack, innermost first, without the trailing zeros.
Result<std::vector<uint64_t>> read_stack(int map_fd, uint64_t stack_id);

// The maps a snapshot reads.
struct MapFds {
  int live = -1;
  int counters = -1;
  int missed = -1;
  int fcounters = -1;                                // kleak_fcounters, -1: not read
  std::array<int, KLEAK_FAMILY_MAX> family_live{-1, -1, -1, -1, -1};  // traced families beyond slab
  std::vector<std::pair<std::string, int>> progs;    // loaded programs: name, fd
};

// Reads the counters and missed-free evidence and notes the time: the start
// of a snapshot.
Result<SnapshotInfo> snapshot_info(const MapFds& fds);
// Takes a whole snapshot: snapshot_info, then the live map.
Result<Snapshot> take_snapshot(const MapFds& fds);

}  // namespace kleak
