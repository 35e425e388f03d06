// Ksyms::parse on /proc/kallsyms-like text, then resolve() and
// format_symbol() at addresses the input names, at their edges (one below,
// one past, the last byte a symbol covers and the first it does not) and at
// four addresses taken from the input's last bytes.
#include <charconv>
#include <cstring>

#include "fuzz_util.h"
#include "symbols/ksyms.h"

namespace {

void probe(const kleak::Ksyms& k, uint64_t addr) {
  if (auto r = k.resolve(addr)) {
    // The views point into the Ksyms arena: read them all.
    volatile size_t n = r->name.size() + r->module.size();
    for (char c : r->name) n = n + static_cast<unsigned char>(c);
    for (char c : r->module) n = n + static_cast<unsigned char>(c);
    (void)n;
  }
  (void)kleak::format_symbol(k, addr);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = kleak::fuzz::as_text(data, size);
  kleak::Ksyms k = kleak::Ksyms::parse(text);
  (void)k.size();
  (void)k.addresses_hidden();

  // Addresses named on the first lines.
  std::string_view rest = text;
  for (int i = 0; i < 16 && !rest.empty(); ++i) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    uint64_t a = 0;
    auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), a, 16);
    if (ec != std::errc()) continue;
    for (uint64_t d : {uint64_t{0}, uint64_t{1}, kleak::Ksyms::kMaxOffsetBytes, kleak::Ksyms::kMaxOffsetBytes + 1})
      probe(k, a + d);
    probe(k, a - 1);
  }
  // Addresses from the input's tail, as any value a stack map could hold.
  for (size_t off = 0; off + 8 <= size && off < 32; off += 8) {
    uint64_t a;
    std::memcpy(&a, data + size - 8 - off, 8);
    probe(k, a);
  }
  probe(k, 0);
  probe(k, UINT64_MAX);
  return 0;
}
