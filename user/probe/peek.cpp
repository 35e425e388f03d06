#include "probe/peek.h"

#include <bpf/bpf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include <fmt/format.h>

namespace kleak {

const char* peek_status_name(uint32_t status) {
  switch (status) {
    case KLEAK_PEEK_OK: return "ok";
    case KLEAK_PEEK_GONE: return "gone";
    case KLEAK_PEEK_FAULT: return "fault";
    case KLEAK_PEEK_FREED: return "freed";
    default: return "unknown";
  }
}

Result<std::vector<PeekResult>> peek(int prog_fd, int map_fd, const std::vector<std::pair<uint64_t, uint32_t>>& reqs) {
  std::vector<PeekResult> out;
  kleak_peek_slot slot{};
  for (size_t base = 0; base < reqs.size(); base += KLEAK_PEEK_SLOTS) {
    size_t n = std::min<size_t>(KLEAK_PEEK_SLOTS, reqs.size() - base);
    for (uint32_t i = 0; i < KLEAK_PEEK_SLOTS; ++i) {
      std::memset(&slot, 0, offsetof(kleak_peek_slot, data));
      if (i < n) {
        slot.addr = reqs[base + i].first;
        slot.len = std::min<uint32_t>(reqs[base + i].second, KLEAK_PEEK_MAX_BYTES);
        slot.status = KLEAK_PEEK_ASKED;
      }
      if (bpf_map_update_elem(map_fd, &i, &slot, BPF_ANY) != 0) return make_error("write peek request", errno);
    }
    uint64_t args[1] = {0};
    LIBBPF_OPTS(bpf_test_run_opts, run, .ctx_in = args, .ctx_size_in = sizeof(args));
    if (bpf_prog_test_run_opts(prog_fd, &run) != 0) return make_error("run kleak_peek_run", errno);
    for (uint32_t i = 0; i < n; ++i) {
      if (bpf_map_lookup_elem(map_fd, &i, &slot) != 0) return make_error("read peek result", errno);
      PeekResult r;
      r.addr = slot.addr;
      r.status = slot.status;
      if (slot.status == KLEAK_PEEK_OK || slot.status == KLEAK_PEEK_FREED)
        r.data.assign(slot.data, slot.data + std::min<uint32_t>(slot.len, KLEAK_PEEK_MAX_BYTES));
      out.push_back(std::move(r));
    }
  }
  return out;
}

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
