// Reading kleak's BPF maps: live allocations in batches, per-CPU counters
// summed, stacks by id.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "abi.h"
#include "result.h"

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

struct Snapshot {
  std::vector<LiveAlloc> allocs;
  Counters counters;
  uint64_t mono_ns = 0;     // CLOCK_MONOTONIC when the read started
  uint64_t realtime_ns = 0;  // wall clock at the same moment
};

uint64_t monotonic_ns();
uint64_t realtime_ns();

// Reads every entry of the live-allocation hash map (batched where the kernel
// supports it, else key by key) into `out`, which is cleared first.
Status read_live(int map_fd, std::vector<LiveAlloc>& out);

Result<Counters> read_counters(int map_fd);

// Frames of one stack, innermost first, without the trailing zeros.
Result<std::vector<uint64_t>> read_stack(int map_fd, int32_t stack_id);

// Takes a whole snapshot: counters, then the live map.
Result<Snapshot> take_snapshot(int live_fd, int counters_fd);

}  // namespace kleak
