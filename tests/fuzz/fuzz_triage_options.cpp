// parse_triage_command_line (kleak triage ...) on argv words split from the
// input at NUL or newline. It must return options or a status, never throw.
#include "fuzz_util.h"
#include "options/triage_options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kleak::fuzz::NullStream out, err;
  auto cl = kleak::parse_triage_command_line(kleak::fuzz::argv_words(kleak::fuzz::as_text(data, size)), out, err);
  if (cl.triage) {
    // Options that passed validation must be safe for run_triage's sample count.
    if (!kleak::validate(*cl.triage)) __builtin_trap();
    double samples = cl.triage->duration_s / cl.triage->interval_s;
    if (!(samples >= 2 && samples <= kleak::TriageOptions::kMaxSamples)) __builtin_trap();
  }
  return 0;
}
