#include "report/folded.h"

#include <fmt/format.h>

namespace kleak {
namespace {

// ';' separates frames and the last space starts the value: neither may
// appear inside a frame (kernel symbols have no ';', a module name no space,
// but a raw name is not trusted).
std::string clean(std::string name) {
  for (char& c : name)
    if (c == ';' || c == '\n') c = '_';
  return name;
}

std::string with_line(std::string name, const std::string& source) {
  return source.empty() ? name : name + " " + shown_source(source);
}

// Root first, so a frame's inlined functions follow it, outermost first,
// marked `_[i]` as flamegraph.pl's stackcollapse marks them.
std::string folded_frame(const Frame& f) {
  std::string name = f.symbol.empty() ? (f.addr ? fmt::format("0x{:x}", f.addr) : std::string("?")) : f.symbol;
  if (!f.module.empty()) name += " [" + f.module + "]";
  name = clean(with_line(name, f.source));
  for (auto c = f.inlined.rbegin(); c != f.inlined.rend(); ++c)
    name += ";" + clean(with_line((c->symbol.empty() ? "?" : c->symbol) + "_[i]", c->source));
  return name;
}

}  // namespace

std::string render_folded(const Report& r, FoldedValue value) {
  std::string out;
  for (const StackReport& s : r.stacks) {
    uint64_t v = value == FoldedValue::bytes ? s.bytes : s.count;
    if (v == 0) continue;
    std::string line;
    if (!s.stack_error.empty()) {
      line = fmt::format("[no stack: {}];{}", s.stack_error, folded_frame(s.call_site));
    } else {
      for (auto f = s.frames.rbegin(); f != s.frames.rend(); ++f) {
        if (!line.empty()) line += ';';
        line += folded_frame(*f);
      }
    }
    out += fmt::format("{} {}\n", line.empty() ? "?" : line, v);
  }
  return out;
}

}  // namespace kleak
