// Where on an allocator function a uprobe is cheap to hit.
//
// A uprobe replaces one instruction with int3. On a hit the kernel either
// emulates the instruction it replaced (x86, arch/x86/kernel/uprobes.c:
// push of a register, jmp/jcc/call with a relative target, nops) or copies
// it to a page of its own and single-steps it there: a second trap. On this
// project's VM (Linux 6.18, Firecracker) a single-stepped hit costs ~33 us,
// an emulated one 0.8 us (docs/performance.md). glibc's free begins with
// `test %rdi,%rdi` (single-stepped) and a `je` (emulated) follows it.
//
// choose_probe_site() moves the probe forward, within the first few
// instructions, to the first one the kernel emulates, over instructions that
// change nothing a probe reads or relies on: no argument register, no stack
// pointer (a return probe takes the return address at [rsp]), no control
// flow, and none that a branch of the function lands after. Where that is
// not so, the probe stays at the entry (correct, only slower).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace kleak {

struct ProbeSite {
  uint64_t offset = 0;     // bytes from the function's start
  bool emulated = false;   // the instruction there is one the kernel emulates
  std::string insn;        // that instruction, as text (for -v and tests)
  std::string entry_insn;  // the function's first instruction, as text
};

// `code`: the function's bytes (its whole symbol, `size` bytes) as loaded at
// ELF virtual address `vaddr`. x86-64 only; anything it cannot decode keeps
// the probe at the entry.
ProbeSite choose_probe_site(const uint8_t* code, size_t size, uint64_t vaddr);

}  // namespace kleak
