// --peek: the contents of outstanding allocations, read in the kernel by
// kleak_peek_run (only live tracked allocations, at most their size), and
// what a person reads in them: an xxd-style dump, the printable strings, and
// how many samples look alike.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/abi.h"
#include "util/result.h"

namespace kleak {

struct PeekResult {
  uint64_t addr = 0;
  uint32_t status = KLEAK_PEEK_GONE;  // enum kleak_peek_status
  std::vector<uint8_t> data;
};

const char* peek_status_name(uint32_t status);  // "ok", "gone", "fault", "freed"

// Runs the peek program over (address, length) requests, KLEAK_PEEK_SLOTS at
// a time. Addresses kleak does not track come back "gone", with no data.
Result<std::vector<PeekResult>> peek(int prog_fd, int map_fd, const std::vector<std::pair<uint64_t, uint32_t>>& reqs);

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
