// parse_meminfo on /proc/meminfo-like text, then the unaccounted-memory
// formula on what it parsed, as kleak triage does every sample.
#include "fuzz_util.h"
#include "procfs/procfs.h"
#include "triage/unaccounted.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kleak::Meminfo m = kleak::parse_meminfo(kleak::fuzz::as_text(data, size));
  (void)m.get("MemTotal");
  if (auto u = kleak::unaccounted_kernel_memory(m)) (void)u->absent.size();
  return 0;
}
