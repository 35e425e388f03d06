// Kernel symbolizer: /proc/kallsyms parsed once into one arena, addresses
// sorted, looked up with upper_bound.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "symbols/symbolizer.h"
#include "util/result.h"

namespace kleak {

struct ResolvedSymbol {
  std::string_view name;
  uint64_t offset = 0;
  std::string_view module;  // empty for the core kernel
};

class Ksyms : public Symbolizer {
 public:
  // Reads and parses a kallsyms file (default /proc/kallsyms).
  static Result<Ksyms> load(const std::string& path = "/proc/kallsyms");
  // Parses kallsyms text. Keeps text symbols (t, T, w, W); lines that do not
  // parse are skipped.
  static Ksyms parse(std::string_view text);

  // The symbol covering addr, or nullopt when addr is below the first symbol,
  // more than kMaxOffsetBytes past the nearest symbol below it (a gap, such
  // as BPF JIT images when bpf_jit_kallsyms is off), or the table is empty.
  std::optional<ResolvedSymbol> resolve(uint64_t addr) const;

  // [start, end) of the core-kernel text symbol `name` (end: the next
  // symbol's address), or nullopt when there is none. A linear scan: for the
  // few names looked up at start-up.
  std::optional<std::pair<uint64_t, uint64_t>> function_range(std::string_view name) const;

  // The text symbols of module `module` (address, name), in address order.
  std::vector<std::pair<uint64_t, std::string>> module_symbols(std::string_view module) const;

  size_t size() const { return syms_.size(); }
  // True when every address read as 0: kptr_restrict hides them.
  bool addresses_hidden() const override { return addresses_hidden_; }
  // A report's frame of addr (the process is the kernel's: ignored).
  Frame frame(uint64_t addr, uint32_t tgid) override;

  // How far past a symbol an address still belongs to it: larger than any
  // kernel function, far smaller than the gaps between text regions.
  static constexpr uint64_t kMaxOffsetBytes = 1024 * 1024;

 private:
  struct Sym {  // 16 bytes: ~64k of them on a distribution kernel
    uint64_t addr;
    uint32_t name_off : 31;
    uint32_t global : 1;
    uint32_t module_off;  // 0: no module (arena starts with a NUL)
  };
  std::string_view str(uint32_t off) const;

  std::string arena_;
  std::vector<Sym> syms_;
  bool addresses_hidden_ = false;
};

// "func+0x1f [module]", or "0xffff..." when unresolved.
std::string format_symbol(const Ksyms& ksyms, uint64_t addr);

}  // namespace kleak
