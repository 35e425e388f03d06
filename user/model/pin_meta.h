// The description a pinned session (`kleak start`) leaves next to its maps:
// which kleak pinned it, in which boot, since when, with which filters. A
// later `kleak report` or `kleak stop` reads it first and refuses a session
// it cannot read correctly. Pure data and parsing: no BPF here, so the
// parser is fuzzed (tests/fuzz/fuzz_pin_meta.cpp).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "model/degraded.h"
#include "util/result.h"

namespace kleak {

struct PinMeta {
  std::string version;  // kVersion of the kleak that pinned the session
  std::string abi;      // its abi_fingerprint(): maps' layouts and BPF object
  std::string boot_id;  // /proc/sys/kernel/random/boot_id at start
  std::string kernel;   // uname -r at start
  // CLOCK_MONOTONIC when the programs were attached: the clock of
  // bpf_ktime_get_ns(), which stamps every allocation (kleak_alloc.ts_ns).
  uint64_t start_mono_ns = 0;
  uint64_t start_unix_ns = 0;  // wall clock at the same moment
  uint32_t start_pid = 0;      // the `kleak start` process (gone by now)
  std::vector<std::string> args;  // `kleak start`'s options, for reports
  // Filters in force in the kernel, as the loader resolved them.
  uint64_t min_size_bytes = 0;
  uint64_t max_size_bytes = ~0ull;
  uint32_t pid = 0;
  std::string cache;
  uint32_t max_allocs = 0;
  uint32_t stack_storage_size = 0;
  uint32_t stack_sample_every = 1;  // --low-overhead / --stack-sample
  std::vector<std::string> attached;
  std::vector<std::string> missing;
  std::vector<Degraded> degraded;  // parts dropped at `kleak start` (absent in older metadata: none)
  // /proc/meminfo fields at start (bytes), for the reconciliation line;
  // empty when meminfo was unreadable.
  std::map<std::string, uint64_t, std::less<>> meminfo;
};

// Largest metadata text kept (the pinned kleak_meta map's value).
inline constexpr size_t kPinMetaMaxBytes = 16384;

// One JSON object, schema "kleak/pin/v1".
std::string pin_meta_to_json(const PinMeta& m);

// Never throws: malformed text, a wrong schema, a missing or mistyped field,
// or text longer than kPinMetaMaxBytes is an error naming what is wrong.
Result<PinMeta> parse_pin_meta(std::string_view text);

// Whether a kleak of `version` and `abi`, in boot `boot_id`, can read a
// session described by `m`; the error is the one-line reason.
Status pin_incompatibility(const PinMeta& m, const std::string& version, const std::string& abi,
                                const std::string& boot_id);

}  // namespace kleak
