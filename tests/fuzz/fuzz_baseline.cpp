// parse_baseline on an earlier report (kleak --ci --baseline FILE): one JSON
// document or JSON lines. It must return keys or an error, never throw.
#include "fuzz_util.h"
#include "report/verdict.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string error;
  auto keys = kleak::parse_baseline(std::string(kleak::fuzz::as_text(data, size)), &error);
  (void)keys.size();
  return 0;
}
