// parse_command_line (kleak [trace] ...) on argv words split from the input
// at NUL or newline. It must return options or a status, never throw.
#include "fuzz_util.h"
#include "options/options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kleak::fuzz::NullStream out, err;
  auto cl = kleak::parse_command_line(kleak::fuzz::argv_words(kleak::fuzz::as_text(data, size)), out, err);
  // What parse_command_line returns has passed validate().
  if (cl.trace && !kleak::validate(*cl.trace)) __builtin_trap();
  return 0;
}
