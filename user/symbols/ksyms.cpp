#include "symbols/ksyms.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "util/text.h"

namespace kleak {
namespace {

bool is_text_type(char t) { return t == 't' || t == 'T' || t == 'w' || t == 'W'; }


}  // namespace

Result<Ksyms> Ksyms::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error("open " + path, errno);
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return make_error("read " + path, errno);
  return parse(buf.str());
}

Ksyms Ksyms::parse(std::string_view text) {
  Ksyms k;
  k.arena_.push_back('\0');
  bool any_nonzero = false;
  size_t lines = 0;
  std::string last_module;
  uint32_t last_module_off = 0;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);

    std::string_view addr_s = next_field(line);
    std::string_view type_s = next_field(line);
    std::string_view name = next_field(line);
    std::string_view module = next_field(line);
    if (addr_s.empty() || type_s.size() != 1 || name.empty()) continue;
    uint64_t addr = 0;
    auto [p, ec] = std::from_chars(addr_s.data(), addr_s.data() + addr_s.size(), addr, 16);
    if (ec != std::errc() || p != addr_s.data() + addr_s.size()) continue;
    ++lines;
    if (addr != 0) any_nonzero = true;
    if (!is_text_type(type_s[0]) || addr == 0) continue;
    // The 16 bytes of padding before each function (kernels with call
    // thunks or FineIBT: ~47% of all text symbols, 1.6 MB of names). No
    // return address points there; without them an address in a function
    // still resolves to it, and kleak's RSS is ~3 MiB smaller.
    if (name.starts_with("__pfx_")) continue;

    uint32_t module_off = 0;
    if (module.size() > 2 && module.front() == '[' && module.back() == ']') {
      module = module.substr(1, module.size() - 2);
      // kallsyms lists a module's symbols together: store each name once.
      if (module != last_module) {
        last_module = module;
        last_module_off = static_cast<uint32_t>(k.arena_.size());
        k.arena_.append(module);
        k.arena_.push_back('\0');
      }
      module_off = last_module_off;
    }
    if (k.arena_.size() + name.size() >= (1u << 31)) break;  // name_off's 31 bits
    uint32_t name_off = static_cast<uint32_t>(k.arena_.size());
    k.arena_.append(name);
    k.arena_.push_back('\0');
    k.syms_.push_back(Sym{addr, name_off, type_s[0] == 'T' || type_s[0] == 'W', module_off});
  }
  k.addresses_hidden_ = lines > 0 && !any_nonzero;
  // At one address, prefer a global symbol, then the first in file order.
  std::stable_sort(k.syms_.begin(), k.syms_.end(), [](const Sym& a, const Sym& b) {
    if (a.addr != b.addr) return a.addr < b.addr;
    return a.global && !b.global;
  });
  k.syms_.erase(std::unique(k.syms_.begin(), k.syms_.end(),
                            [](const Sym& a, const Sym& b) { return a.addr == b.addr; }),
                k.syms_.end());
  // Both grew by doubling: up to twice their size, kept for kleak's life.
  k.syms_.shrink_to_fit();
  k.arena_.shrink_to_fit();
  return k;
}

std::string_view Ksyms::str(uint32_t off) const {
  if (off == 0) return {};
  return std::string_view(arena_.data() + off);
}

std::optional<ResolvedSymbol> Ksyms::resolve(uint64_t addr) const {
  auto it = std::upper_bound(syms_.begin(), syms_.end(), addr,
                             [](uint64_t a, const Sym& s) { return a < s.addr; });
  if (it == syms_.begin()) return std::nullopt;
  const Sym& s = *std::prev(it);
  if (addr - s.addr > kMaxOffsetBytes) return std::nullopt;
  return ResolvedSymbol{str(s.name_off), addr - s.addr, str(s.module_off)};
}

std::optional<std::pair<uint64_t, uint64_t>> Ksyms::function_range(std::string_view name) const {
  for (size_t i = 0; i < syms_.size(); ++i) {
    if (syms_[i].module_off != 0 || str(syms_[i].name_off) != name) continue;
    uint64_t end = i + 1 < syms_.size() ? syms_[i + 1].addr : syms_[i].addr + 1;
    return std::pair{syms_[i].addr, end};
  }
  return std::nullopt;
}

std::vector<std::pair<uint64_t, std::string>> Ksyms::module_symbols(std::string_view module) const {
  std::vector<std::pair<uint64_t, std::string>> out;
  for (const Sym& s : syms_)
    if (s.module_off != 0 && str(s.module_off) == module) out.emplace_back(s.addr, std::string(str(s.name_off)));
  return out;
}

Frame Ksyms::frame(uint64_t addr, uint32_t) {
  Frame f;
  f.addr = addr;
  if (auto r = resolve(addr)) {
    f.symbol = std::string(r->name);
    f.offset = r->offset;
    f.module = std::string(r->module);
  } else {
    f.unknown = addresses_hidden_ ? "hidden by kptr_restrict" : "not in kallsyms";
  }
  return f;
}

std::string format_symbol(const Ksyms& ksyms, uint64_t addr) {
  auto r = ksyms.resolve(addr);
  if (!r) return fmt::format("0x{:x}", addr);
  if (r->module.empty()) return fmt::format("{}+0x{:x}", r->name, r->offset);
  return fmt::format("{}+0x{:x} [{}]", r->name, r->offset, r->module);
}

}  // namespace kleak
