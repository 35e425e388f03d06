#include "report/peek_text.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

namespace kleak {

std::string hexdump(const std::vector<uint8_t>& data, uint64_t base_addr, const std::string& indent) {
  std::string out;
  for (size_t off = 0; off < data.size(); off += 16) {
    std::string hex, text;
    for (size_t i = off; i < off + 16; ++i) {
      if (i < data.size()) {
        hex += fmt::format("{:02x}", data[i]);
        text += data[i] >= 0x20 && data[i] < 0x7f ? static_cast<char>(data[i]) : '.';
      } else {
        hex += "  ";
      }
      if (i % 2 == 1) hex += ' ';
    }
    out += fmt::format("{}{:016x}: {} {}\n", indent, base_addr + off, hex, text);
  }
  return out;
}

std::vector<std::string> printable_strings(const std::vector<uint8_t>& data, size_t min_len) {
  std::vector<std::string> out;
  std::string cur;
  auto flush = [&] {
    if (cur.size() >= std::max<size_t>(min_len, 1)) out.push_back(cur);
    cur.clear();
  };
  for (uint8_t c : data) {
    if ((c >= 0x20 && c < 0x7f) || c == '\t' || c == '\n')
      cur.push_back(static_cast<char>(c));
    else
      flush();
  }
  flush();
  return out;
}

std::vector<ContentGroup> group_samples(const std::vector<PeekResult>& samples, size_t min_len) {
  std::map<std::string, size_t> counts;
  for (const PeekResult& s : samples) {
    if (s.status != KLEAK_PEEK_OK) continue;
    auto strings = printable_strings(s.data, min_len);
    std::string shape = strings.empty() ? "" : strings.front().substr(0, 48);
    for (char& c : shape)
      if (c >= '0' && c <= '9') c = '#';
    // Runs of '#' are one number whatever its width.
    shape.erase(std::unique(shape.begin(), shape.end(), [](char a, char b) { return a == '#' && b == '#'; }),
                shape.end());
    ++counts[shape];
  }
  std::vector<ContentGroup> groups;
  for (auto& [shape, n] : counts) groups.push_back({shape, n});
  std::stable_sort(groups.begin(), groups.end(),
                   [](const ContentGroup& a, const ContentGroup& b) { return a.count > b.count; });
  return groups;
}

}  // namespace kleak
