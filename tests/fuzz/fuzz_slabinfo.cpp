// parse_slabinfo on /proc/slabinfo-like text (SLUB and SLAB 2.1, SLAB 2.0:
// the seeds hold all three), then kmalloc_size_of on every cache name, as
// the triage report does to name the next step.
#include "fuzz_util.h"
#include "procfs/procfs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = kleak::fuzz::as_text(data, size);
  auto s = kleak::parse_slabinfo(text);
  if (s.ok()) {
    for (const kleak::SlabCache& c : s->caches) (void)kleak::kmalloc_size_of(c.name);
  }
  // The name parser on raw input too: names are whatever precedes the numbers.
  (void)kleak::kmalloc_size_of(text.substr(0, text.find('\n')));
  return 0;
}
