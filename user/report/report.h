// A report: what one interval's snapshot says, symbolized and ready to print
// as text or JSON. Building it (build_report) is separate from printing it.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "analysis/aggregate.h"
#include "analysis/reclaim.h"
#include "model/degraded.h"
#include "model/family.h"
#include "analysis/growth.h"
#include "symbols/symbolizer.h"
#include "report/peek_text.h"
#include "model/records.h"

namespace kleak {

// What a report shows, as the command line chose it: options/options.h's
// TraceOptions is one of these.
struct ReportSettings {
  uint32_t top = 10;
  SortKey sort = SortKey::score;
  // Allocations younger than this are not reported. The default covers
  // kfree_rcu()'s batching (KFREE_DRAIN_JIFFIES, 5 s since v6.0,
  // commit 51824b780b71) plus a
  // grace period and lazy RCU's 10 s flush, so RCU-deferred frees are not
  // reported as leaks.
  uint64_t min_age_ms = 10000;
  uint32_t pid = 0;  // 0 = every task
  bool show_allocs = false;
  // No raw kernel addresses in reports (symbol+offset only), so a report can
  // be shared without revealing the KASLR offset.
  bool hide_addresses = false;
  // --peek: read the first peek_bytes of up to peek_samples outstanding
  // allocations per reported stack (0: off). Root only: it shows kernel memory.
  uint32_t peek_bytes = 0;
  uint32_t peek_samples = 3;
  uint32_t peek_min_string = 4;
  // --peek-addr ADDR[,LEN]: one tracked allocation (an address from -a),
  // read in every report; LEN defaults to 256.
  uint64_t peek_addr = 0;
  uint32_t peek_addr_len = 256;
};

struct AllocLine {
  uint64_t addr;
  uint64_t bytes_alloc;
  uint32_t bytes_req;
  uint64_t age_ms;
  uint32_t pid;
  uint32_t tgid;
  std::string comm;
};

struct StackReport {
  uint32_t rank = 0;
  uint32_t family = KLEAK_FAMILY_KMALLOC;  // enum kleak_family; family_name() for reports
  uint64_t stack_id = 0;  // kleak_stacks key, 0 = none
  std::string stack_key;  // symbolic, comparable across boots: see stack_key()
  uint64_t stack_hash = 0;  // stack_hash(stack_key): the same across boots and hosts
  bool reclaimable = false;
  // Frees kleak saw bypass its hooks for this stack's cache (or kmalloc call
  // site): some of its outstanding allocations may already be freed.
  uint64_t missed_frees = 0;
  std::string stack_error;  // "ENOMEM", "EFAULT", ... when there is no stack
  uint64_t bytes = 0;
  uint64_t count = 0;
  std::vector<SizeCount> sizes;
  uint64_t oldest_age_ms = 0;
  uint64_t newest_age_ms = 0;
  std::vector<TaskCount> tasks;
  Frame call_site;
  std::vector<Frame> frames;  // innermost first; tracing frames removed
  std::vector<AllocLine> allocs;
  Estimate estimate;        // the sampled mode: bytes/count are estimates
  bool has_growth = false;  // trace keeps history; CI and one-shot reports may not
  Growth growth;
  std::vector<PeekResult> peeks;  // --peek samples, oldest allocations first
  std::vector<ContentGroup> peek_groups;
};

// What kleak tracks next to what the kernel's own counters say changed since
// kleak started (/proc/meminfo). kleak sees only allocations made since it
// started, the kernel's deltas also count frees of older objects: the two
// agree when one stack's growth dominates, and the share says how much of
// SUnreclaim's growth the tracked stacks explain.
struct Reconciliation {
  bool available = false;
  int64_t slab_delta = 0;
  int64_t sunreclaim_delta = 0;
  int64_t sreclaimable_delta = 0;
  uint64_t tracked_unreclaimable = 0;
  uint64_t tracked_reclaimable = 0;
  uint64_t tracked_large_kmalloc = 0;
};

struct ReportContext {
  uint64_t seq = 0;
  bool final_report = false;
  std::string kernel;  // uname -r
  double interval_s = 0;
  uint64_t start_mono_ns = 0;
  uint32_t live_capacity = 0;
  uint32_t stack_capacity = 0;
  uint32_t stack_sample_every = 1;  // 1: exact stacks; N: sampled mode
  // The stack store after the last sweep (stack_reclaim.h); stacks_stored 0
  // with stacks_reclaimed 0: no sweep ran.
  uint64_t stacks_stored = 0;
  uint64_t stacks_reclaimed = 0;
  std::vector<std::string> attached;
  std::vector<std::string> missing;
  std::vector<Degraded> degraded;  // parts the kernel refused or lacks, dropped
  std::optional<ReclaimTally> reclaim;  // --reclaim: what reclaim freed before this report
  // The filters in force in the kernel (--cache implies a size).
  uint64_t min_size_bytes = 0;
  uint64_t max_size_bytes = ~0ull;
  std::string cache;  // resolved --cache, empty for all
  FamilySet families;                    // --family
  std::vector<uint32_t> traced_families;  // beyond slab, attached on this kernel
};

struct Report {
  ReportContext ctx;
  const ReportSettings* opts = nullptr;
  uint64_t time_unix_ns = 0;
  double elapsed_s = 0;
  Counters counters;
  std::array<Counters, KLEAK_FAMILY_MAX> family_counters;
  RecursionMisses recursion;
  bool complete = true;  // snapshot_complete()
  uint64_t page_size = 4096;  // to show page records as pages
  std::array<FamilyTotal, KLEAK_FAMILY_MAX> by_family;
  uint64_t live_count = 0;
  uint64_t total_bytes = 0;
  uint64_t total_count = 0;
  uint64_t young_bytes = 0;
  uint64_t young_count = 0;
  uint64_t stacks_total = 0;
  std::vector<StackReport> stacks;
  bool symbols_hidden = false;
  // Frames of the reported stacks that no symbol names, by why not
  // (Frame::unknown: "not in kallsyms", ...).
  std::map<std::string, uint64_t> frames_unknown;
  Reconciliation reconciliation;
  std::optional<PeekResult> peek_addr;  // --peek-addr
  // Lines the text report prints under its header ("NOTE: ..."), and the
  // JSON "notes" array: what a reader must know to trust the stacks.
  std::vector<std::string> notes;
  // Tracer-specific JSON fields (kleak user: "user"), merged in when set.
  nlohmann::json extra;
};

// Reads a stack's frames: (stack_id) -> innermost-first ips, or an error.
using StackSource = std::function<Result<std::vector<uint64_t>>(uint64_t)>;

// A group's frames, symbolized, tracing frames removed. For a group without
// a stack: its call site alone. `error` says why there is no stack.
// Frames are named in the address space of the group's top task.
std::vector<Frame> group_frames(const StackGroup& g, Symbolizer& syms, const StackSource& stacks,
                                std::string* error);

// Symbolic identity of a stack: "func" or "func [module]" per frame, innermost
// first, joined by ";". No addresses or offsets, so KASLR and rebuilds do not
// change it; unresolved frames are "?".
std::string stack_key(const std::vector<Frame>& frames);

// A 64-bit FNV-1a hash of a stack key: a short identity that stays the same
// across boots, hosts and kleak runs (std::hash promises none of that).
uint64_t stack_hash(std::string_view key);
// The 16 lowercase hex digits every format shows.
std::string stack_hash_hex(uint64_t hash);

// A frame's source as text and folded output show it: a user-space file
// (absolute) by its name, "uleak.c:42"; a kernel one (relative to the
// tree, which has many slub.c) whole, "mm/slub.c:4321".
std::string shown_source(const std::string& source);

// `growth` (may be null) gives each stack its growth verdict.
Report build_report(const SnapshotInfo& snap, const Aggregate& agg, const ReportSettings& opts, const ReportContext& ctx,
                    Symbolizer& syms, const StackSource& stacks, const GrowthTracker* growth = nullptr);

// Drops the innermost frames that belong to the tracing machinery: up to and
// including the last of bpf_prog_*, bpf_trace_run*, __bpf_trace_* and
// __traceiter_* among the first kMaxTracingFrames frames (the program's own
// frame may be unresolved when bpf_jit_kallsyms is off). The allocator frame
// follows them.
std::vector<Frame> strip_tracing_frames(std::vector<Frame> frames);


std::string render_text(const Report& r);
nlohmann::json to_json(const Report& r);
// What proving by reclaim freed, as the report's and a CI verdict's "reclaim".
nlohmann::json reclaim_json(const ReclaimTally& t);

}  // namespace kleak
