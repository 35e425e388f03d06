// parse_user_command_line (kleak user ...) on argv words split from the
// input at NUL or newline, -c's quoting included. It must return options
// or a status, never throw.
#include "fuzz_util.h"
#include "options/user_options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kleak::fuzz::NullStream out, err;
  auto cl = kleak::parse_user_command_line(kleak::fuzz::argv_words(kleak::fuzz::as_text(data, size)), out, err);
  if (cl.user && !kleak::validate(*cl.user)) __builtin_trap();
  return 0;
}
