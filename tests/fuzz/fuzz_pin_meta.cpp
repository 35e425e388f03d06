// parse_pin_meta on the text a pinned session's kleak_meta map holds (root
// only, but written by whichever kleak build pinned it), then the checks
// kleak report runs on what it parsed.
#include "fuzz_util.h"
#include "model/pin_meta.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto m = kleak::parse_pin_meta(kleak::fuzz::as_text(data, size));
  if (!m) return 0;
  (void)kleak::pin_incompatibility(*m, "0.1.0 (fuzz)", "0000000000000000", "boot");
  // What parses must print and parse back the same.
  auto again = kleak::parse_pin_meta(kleak::pin_meta_to_json(*m));
  if (!again || again->start_mono_ns != m->start_mono_ns || again->args != m->args) __builtin_trap();
  return 0;
}
