// parse_smaps_rollup on /proc/PID/smaps_rollup-like text, and parse_comm on
// the same bytes (/proc/PID/comm: any bytes a process names itself with).
#include "fuzz_util.h"
#include "procfs/procfs.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text = kleak::fuzz::as_text(data, size);
  kleak::ParseIssues issues;
  (void)kleak::parse_smaps_rollup(text, issues);
  (void)kleak::parse_comm(text);
  return 0;
}
