#include "report/user_report.h"

#include <fmt/format.h>

#include "model/abi.h"

namespace kleak {
namespace {

Frame user_frame(UserSymbolizer& syms, uint32_t pid, uint64_t addr) {
  UserFrame u = syms.resolve(pid, addr, /*return_address=*/true);
  Frame f;
  f.addr = addr;
  if (!u.symbol.empty()) {
    f.symbol = std::move(u.symbol);
    f.offset = u.offset;
    f.module = std::move(u.module);
  } else if (!u.module.empty()) {
    // Stripped, or not a file: module+offset reads as "libfoo.so+0x1234".
    f.symbol = std::move(u.module);
    f.offset = u.offset;
  }
  f.source = std::move(u.source);
  return f;
}

}  // namespace

bool reaches_thread_start(const std::vector<Frame>& frames) {
  if (frames.empty()) return false;
  static const char* const kStarts[] = {"_start", "__libc_start_main", "__libc_start_call_main", "start_thread",
                                        "clone", "clone3", "__clone", "__clone3", "thread_start"};
  const std::string& s = frames.back().symbol;
  for (const char* start : kStarts)
    if (s == start) return true;
  return false;
}

void symbolize_user_report(Report& r, UserSymbolizer& syms, bool hide_addresses) {
  for (StackReport& s : r.stacks) {
    const uint32_t pid = s.tasks.empty() ? 0 : s.tasks.front().tgid;
    for (Frame& f : s.frames) f = user_frame(syms, pid, f.addr);
    s.call_site = user_frame(syms, pid, s.call_site.addr);
    s.stack_key = stack_key(s.frames.empty() ? std::vector<Frame>{s.call_site} : s.frames);
    for (AllocLine& a : s.allocs) a.addr &= KLEAK_USER_ADDR_MASK;
    if (hide_addresses) {
      s.stack_id = 0;
      s.call_site.addr = 0;
      for (Frame& f : s.frames) f.addr = 0;
    }
  }
}

std::string shallow_stack_note(const Report& r) {
  size_t with_frames = 0, cut = 0;
  for (const StackReport& s : r.stacks) {
    if (s.frames.empty()) continue;
    ++with_frames;
    if (!reaches_thread_start(s.frames)) ++cut;
  }
  if (with_frames == 0 || cut * 2 < with_frames) return {};
  return fmt::format(
      "{} of {} stacks end before main/thread start: the program (or the library that calls the allocator) "
      "was built without frame pointers, and kleak walks user stacks by frame pointer. For deeper stacks "
      "rebuild with -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer (distributions that build with frame "
      "pointers: Fedora 38+, Ubuntu 24.04+)",
      cut, with_frames);
}

}  // namespace kleak
