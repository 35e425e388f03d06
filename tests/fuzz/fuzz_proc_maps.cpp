// parse_proc_maps (/proc/PID/maps of a traced process) on any text: it must
// return entries with start < end, never throw or read out of bounds.
#include "fuzz_util.h"
#include "symbols/usyms.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (const kleak::MapEntry& m : kleak::parse_proc_maps(kleak::fuzz::as_text(data, size)))
    if (m.start >= m.end) __builtin_trap();
  return 0;
}
