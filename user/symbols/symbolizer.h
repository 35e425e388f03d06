// Names addresses: the kernel's (Ksyms, from kallsyms) or a traced
// process's (UserSymbolizer, from its maps and ELF files). Reports are
// built through this one interface, so a stack is symbolized once, where
// the report is built, whichever tracer recorded it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kleak {

// A function the compiler inlined at a frame's address, and the line of
// its code there (the innermost) or of its call to the next one inward.
struct InlinedCall {
  std::string symbol;
  std::string source;  // "include/linux/slab.h:600", empty when unknown
};

// One frame of a stack, or a call site, as reports show it.
struct Frame {
  uint64_t addr = 0;
  std::string symbol;  // function name; empty if unresolved
  uint64_t offset = 0;
  std::string module;  // empty for the core kernel; a file name in user space
  // "dir/file.c:42" from DWARF, empty when unknown: a user-space frame's
  // file (absolute), a kernel frame's (relative to its source tree). The
  // braces keep {addr, symbol, offset, module} initializers warning-free.
  std::string source{};
  // Kernel frames with DWARF: the functions inlined at addr, innermost
  // first; `source` is then the line in `symbol` that holds them.
  std::vector<InlinedCall> inlined{};
  // Kernel frames: its module was unloaded since (the symbol is the one it
  // had while loaded); and when no symbol covers addr, why not ("not in
  // kallsyms", "hidden by kptr_restrict", "module init text").
  bool unloaded = false;
  std::string unknown{};
};

class Symbolizer {
 public:
  virtual ~Symbolizer() = default;
  // Names `addr`, a return address (a stack frame or a call site), in the
  // address space of process `tgid` (the kernel's symbolizer ignores it).
  // Unresolved: the frame holds the address alone.
  virtual Frame frame(uint64_t addr, uint32_t tgid) = 0;
  // True when the symbols' addresses read as 0 (kptr_restrict hides them).
  virtual bool addresses_hidden() const { return false; }
  // Gives a frame from frame() its source line and inlined functions, where
  // debug info has them: apart from naming, so what only needs names (a
  // verdict's rules, grouping) never pays for DWARF.
  virtual void add_source(Frame&) {}
};

}  // namespace kleak
