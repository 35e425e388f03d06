// The sampled stack mode's rate, shared by the options that choose it and
// the loaders and load matrix that use it.
#pragma once

#include <cstdint>

namespace kleak {

// --low-overhead: one allocation in this many gets its stack captured.
constexpr uint32_t kLowOverheadSampleEvery = 64;

}  // namespace kleak
