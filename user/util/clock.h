// The two clocks kleak stamps things with.
#pragma once

#include <cstdint>

namespace kleak {

uint64_t monotonic_ns();  // CLOCK_MONOTONIC: bpf_ktime_get_ns()'s clock (kleak_alloc.ts_ns)
uint64_t realtime_ns();   // wall clock

}  // namespace kleak
