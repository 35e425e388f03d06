#include "report/user_report.h"

#include <fmt/format.h>

#include "model/abi.h"

namespace kleak {

bool reaches_thread_start(const std::vector<Frame>& frames) {
  if (frames.empty()) return false;
  static const char* const kStarts[] = {"_start", "__libc_start_main", "__libc_start_call_main", "start_thread",
                                        "clone", "clone3", "__clone", "__clone3", "thread_start"};
  const std::string& s = frames.back().symbol;
  for (const char* start : kStarts)
    if (s == start) return true;
  return false;
}

void strip_user_keys(Report& r) {
  for (StackReport& s : r.stacks)
    for (AllocLine& a : s.allocs) a.addr &= KLEAK_USER_ADDR_MASK;
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
