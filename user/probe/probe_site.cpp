#include "probe/probe_site.h"

#include <capstone/capstone.h>

#include <algorithm>
#include <memory>

#include <fmt/format.h>

namespace kleak {
namespace {

// How many instructions the probe may move over: glibc needs one (free's
// test), prologues that save nothing first are short.
constexpr size_t kMaxMoved = 4;

struct Disassembler {
  csh handle = 0;
  bool ok = false;
  Disassembler() {
    ok = cs_open(CS_ARCH_X86, CS_MODE_64, &handle) == CS_ERR_OK &&
         cs_option(handle, CS_OPT_DETAIL, CS_OPT_ON) == CS_ERR_OK &&
         cs_option(handle, CS_OPT_SKIPDATA, CS_OPT_ON) == CS_ERR_OK;
  }
  ~Disassembler() {
    if (handle) cs_close(&handle);
  }
  Disassembler(const Disassembler&) = delete;
  Disassembler& operator=(const Disassembler&) = delete;
};

struct InsnsDeleter {
  size_t count;
  void operator()(cs_insn* i) const { cs_free(i, count); }
};

std::string text(const cs_insn& i) { return fmt::format("{} {}", i.mnemonic, i.op_str); }

// What arch/x86/kernel/uprobes.c emulates instead of single-stepping
// (branch_setup_xol_ops, push_setup_xol_ops): judged on the bytes, as the
// kernel does.
bool kernel_emulates(const cs_insn& i) {
  const uint8_t* b = i.bytes;
  const size_t n = i.size;
  if (n == 1 && b[0] >= 0x50 && b[0] <= 0x57) return true;                   // push %reg
  if (n == 2 && b[0] == 0x41 && b[1] >= 0x50 && b[1] <= 0x57) return true;   // push %r8..%r15
  if (b[0] == 0x66) return false;  // 16-bit forms are refused, not emulated
  if (b[0] == 0x90 || i.id == X86_INS_NOP) return true;
  if (b[0] == 0xeb || b[0] == 0xe9 || b[0] == 0xe8) return true;  // jmp, call rel
  if (b[0] >= 0x70 && b[0] <= 0x7f) return true;                  // jcc rel8
  return n >= 2 && b[0] == 0x0f && b[1] >= 0x80 && b[1] <= 0x8f;  // jcc rel32
}

bool is_control_flow(const cs_insn& i) {
  const cs_detail* d = i.detail;
  for (uint8_t g = 0; g < d->groups_count; ++g)
    switch (d->groups[g]) {
      case CS_GRP_JUMP:
      case CS_GRP_CALL:
      case CS_GRP_RET:
      case CS_GRP_INT:
      case CS_GRP_IRET:
      case CS_GRP_BRANCH_RELATIVE:
        return true;
      default:
        break;
    }
  return false;
}

// The registers a probe at the entry could read: the six argument
// registers (System V), the stack pointer (the return address at [rsp]) and
// the instruction pointer, in every width.
bool protected_register(uint16_t reg) {
  switch (reg) {
    case X86_REG_RDI: case X86_REG_EDI: case X86_REG_DI: case X86_REG_DIL:
    case X86_REG_RSI: case X86_REG_ESI: case X86_REG_SI: case X86_REG_SIL:
    case X86_REG_RDX: case X86_REG_EDX: case X86_REG_DX: case X86_REG_DL: case X86_REG_DH:
    case X86_REG_RCX: case X86_REG_ECX: case X86_REG_CX: case X86_REG_CL: case X86_REG_CH:
    case X86_REG_R8: case X86_REG_R8D: case X86_REG_R8W: case X86_REG_R8B:
    case X86_REG_R9: case X86_REG_R9D: case X86_REG_R9W: case X86_REG_R9B:
    case X86_REG_RSP: case X86_REG_ESP: case X86_REG_SP: case X86_REG_SPL:
    case X86_REG_RIP: case X86_REG_EIP: case X86_REG_IP:
      return true;
    default:
      return false;
  }
}

// True when running `i` before the probe instead of after it changes
// nothing the probe sees.
bool harmless_to_move_over(csh h, const cs_insn& i) {
  if (i.id == X86_INS_INVALID || is_control_flow(i)) return false;
  cs_regs read, written;
  uint8_t nread = 0, nwritten = 0;
  if (cs_regs_access(h, &i, read, &nread, written, &nwritten) != CS_ERR_OK) return false;
  return std::none_of(written, written + nwritten, protected_register);
}

// Whether a direct branch or call of the function lands in (from, to]:
// code reaching those addresses other than from the entry would pass the
// moved probe without having passed the entry, or the other way round.
bool branch_lands_in(csh h, const uint8_t* code, size_t size, uint64_t vaddr, uint64_t from, uint64_t to) {
  cs_insn* raw = nullptr;
  const size_t n = cs_disasm(h, code, size, vaddr, 0, &raw);
  std::unique_ptr<cs_insn, InsnsDeleter> insns(raw, InsnsDeleter{n});
  for (size_t k = 0; k < n; ++k) {
    const cs_insn& i = insns.get()[k];
    if (i.id == 0 || !is_control_flow(i)) continue;  // id 0: data SKIPDATA stepped over
    const cs_x86& x = i.detail->x86;
    for (uint8_t o = 0; o < x.op_count; ++o) {
      if (x.operands[o].type != X86_OP_IMM) continue;
      const uint64_t target = static_cast<uint64_t>(x.operands[o].imm);
      if (target > from && target <= to) return true;
    }
  }
  return false;
}

}  // namespace

ProbeSite choose_probe_site(const uint8_t* code, size_t size, uint64_t vaddr) {
  ProbeSite entry;
  Disassembler d;
  if (!d.ok || !code || size == 0) return entry;
  cs_insn* raw = nullptr;
  const size_t n = cs_disasm(d.handle, code, size, vaddr, kMaxMoved + 1, &raw);
  std::unique_ptr<cs_insn, InsnsDeleter> insns(raw, InsnsDeleter{n});
  if (n == 0 || insns.get()[0].id == 0) return entry;
  entry.entry_insn = entry.insn = text(insns.get()[0]);
  for (size_t k = 0; k < n; ++k) {
    const cs_insn& i = insns.get()[k];
    if (i.id == 0) return entry;
    if (kernel_emulates(i)) {
      if (k > 0 && branch_lands_in(d.handle, code, size, vaddr, vaddr, i.address)) return entry;
      ProbeSite s;
      s.offset = i.address - vaddr;
      s.emulated = true;
      s.insn = text(i);
      s.entry_insn = entry.entry_insn;
      return s;
    }
    if (!harmless_to_move_over(d.handle, i)) return entry;
  }
  return entry;
}

}  // namespace kleak
