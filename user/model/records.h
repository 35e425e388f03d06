// What kleak's BPF maps hold, as C++ reads them: a live allocation, the
// counters, what the kernel skipped, one snapshot. Data only: the reading is
// probe/snapshot.h, the grouping analysis/aggregate.h.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "model/abi.h"
#include "util/clock.h"

namespace kleak {

struct LiveAlloc {
  uint64_t addr;
  kleak_alloc a;
};

// One family's counters (bpf/kleak.h, enum kleak_counter), or slab's: the
// kmalloc and kmem_cache families' summed.
struct Counters {
  std::array<uint64_t, KLEAK_CNT_MAX> v{};
  uint64_t operator[](kleak_counter c) const { return v[c]; }
  uint64_t stack_errors() const;
  // Frees of addresses kleak never recorded (allocated before it started, or
  // filtered).
  uint64_t frees_unmatched() const;
  // Allocations whose free went past the hooks: replaced, or dropped by an
  // allocation at their address that was not recorded.
  uint64_t missed_frees() const { return v[KLEAK_CNT_ALLOC_REPLACED] + v[KLEAK_CNT_MISSED_FILTERED]; }
  Counters& operator+=(const Counters& o);
};

// Runs the kernel skipped because the program was already running on that
// CPU (bpf_prog_info.recursion_misses, v5.12+): each skipped free can leave
// a phantom record behind.
struct RecursionMisses {
  bool available = false;  // false: the kernel does not report them
  uint64_t total = 0;
  std::vector<std::pair<std::string, uint64_t>> by_program;  // programs with misses
  // Runs of the free programs skipped: frees their backups may have done
  // (the rescued counters), or records left that were freed.
  uint64_t free_runs_skipped() const;
};

// A program that removes records at a free (bpf/kleak.bpf.c: kleak_kfree,
// kleak_kc_free, kleak_pg_free, kleak_pc_free, kleak_va_free), each backed
// by kleak_*_b for the runs the kernel skips.
bool is_free_program(std::string_view name);

// When a snapshot was taken and what the counters said then.
struct SnapshotInfo {
  Counters counters;
  std::array<Counters, KLEAK_FAMILY_MAX> family_counters;  // page, percpu, vmalloc (slab's are `counters`)
  RecursionMisses recursion;
  // Missed-free evidence: cache pointer or call site -> frees missed there.
  std::unordered_map<uint64_t, uint64_t> missed_sites;
  uint64_t mono_ns = 0;      // CLOCK_MONOTONIC when the read started
  uint64_t realtime_ns = 0;  // wall clock at the same moment
};

// False when events were lost (full map, map errors on allocation or free,
// a child process not followed): a report may then miss leaks or show
// phantoms.
bool counters_complete(const Counters& c);
// The same for the slab counters and every family's.
bool snapshot_complete(const SnapshotInfo& s);

// A whole snapshot in memory: for tests and small maps. Reports stream
// instead (read_live with a callback), so their memory does not grow with
// the number of live allocations.
struct Snapshot : SnapshotInfo {
  std::vector<LiveAlloc> allocs;
};

// What --peek read of one allocation (probe/peek.h).
struct PeekResult {
  uint64_t addr = 0;
  uint32_t status = KLEAK_PEEK_GONE;  // enum kleak_peek_status
  std::vector<uint8_t> data;
};

const char* peek_status_name(uint32_t status);  // "ok", "gone", "fault", "freed"

const char* peek_status_name(uint32_t status);  // "ok", "gone", "fault", "freed"

}  // namespace kleak
