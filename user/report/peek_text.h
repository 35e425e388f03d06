// What a person reads in --peek samples (model/records.h's PeekResult): an
// xxd-style dump, the printable strings, and how many samples look alike.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/records.h"

namespace kleak {

// "ffff888012345000: 4c45 414b 4d41 524b ...  LEAKMARK........", 16 bytes a line.
std::string hexdump(const std::vector<uint8_t>& data, uint64_t base_addr, const std::string& indent);

// Runs of at least min_len printable ASCII characters.
std::vector<std::string> printable_strings(const std::vector<uint8_t>& data, size_t min_len);

struct ContentGroup {
  std::string shape;  // the first string, digits folded to '#' ("LEAKMARK-#...")
  size_t count = 0;
};

// Groups samples by the shape of their first string, most common first
// (samples without a string group under "").
std::vector<ContentGroup> group_samples(const std::vector<PeekResult>& samples, size_t min_len);

}  // namespace kleak
